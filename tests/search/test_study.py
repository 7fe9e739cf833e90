"""The study's pruners: what hparams_search names, holding back for the warm-up epochs."""

import pytest


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband"])
def test_no_pruner_stops_a_trial_before_its_warmup_epochs(pruner):
    import optuna
    from omegaconf import OmegaConf

    from cvrun.config import SearchConfig
    from cvrun.search.study import make_pruner

    search = OmegaConf.merge(OmegaConf.structured(SearchConfig),
                             {"pruner": pruner, "pruner_warmup_epochs": 3, "pruner_startup_trials": 1})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(search, epochs=9))
    for _ in range(3):  # good trials that finish
        good = study.ask()
        for epoch in range(1, 10):  # as TrialReport does: report, then ask (the halving pruners record rungs then)
            good.report(80.0, epoch)
            good.should_prune()
        study.tell(good, 80.0)
    poor = study.ask()
    verdicts = []
    for epoch in range(1, 4):
        poor.report(10.0, epoch)
        verdicts.append(poor.should_prune())
    assert verdicts == [False, False, True]
