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
    study = optuna.create_study(study_name="warm-up", direction="maximize", pruner=make_pruner(search, epochs=9))
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
    assert verdicts[:2] == [False, False]
    # Hyperband puts a trial in a bracket by its number's hash: this one's first rung may come later.
    assert verdicts[2] or pruner == "hyperband"


def test_a_trial_that_cannot_reach_its_study_trains_without_reports(tmp_path, caplog):
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from cvrun.config import OptunaSweeperConfig
    from cvrun.search.study import trial_reporters
    from tests.conftest import make_cfg

    previous = HydraConfig.instance().cfg
    hydra = OmegaConf.merge(OmegaConf.structured(HydraConf), {
        "mode": RunMode.MULTIRUN, "sweeper": {"_target_": OptunaSweeperConfig._target_, "storage": None,
                                              "study_name": "cvrun"},
        "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
        "sweep": {"dir": str(tmp_path)}, "job": {"num": 0}})
    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra}))
    try:
        assert trial_reporters(make_cfg()) == []  # no study in the sweep folder
    finally:
        HydraConfig.instance().cfg = previous
    assert "trial 0 cannot reach its study" in caplog.text


# issue 25: the search's objective is trainer.monitor
def test_a_trial_reports_its_monitor_and_the_study_is_told_its_best_minimised_for_the_loss(tmp_path):
    import json
    from types import SimpleNamespace

    import optuna

    from cvrun.engine.events import EndRun
    from cvrun.search.study import TrialReport
    from cvrun.search.sweeper import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=2.0))
    trial = study.ask()
    report = TrialReport(trial, "threshold", "val_loss")
    report.on_epoch_end({"epoch": 1, "val_loss": 1.5, "val_acc1": 40.0}, [])
    with pytest.raises(EndRun, match=r"after epoch 2 \(validation loss 2.5000\)"):
        report.on_epoch_end({"epoch": 2, "val_loss": 2.5, "val_acc1": 60.0}, [])
    assert study.trials[0].intermediate_values == {1: 1.5, 2: 2.5}
    run = tmp_path / "job"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "completed", "best_val_acc1": 55.0, "best_val_loss": 0.9}))
    job = SimpleNamespace(hydra_cfg=SimpleNamespace(hydra=SimpleNamespace(runtime=SimpleNamespace(output_dir=run))))
    told = study.ask()
    OptunaSearch.tell(SimpleNamespace(monitor="val_loss", failures=0), study, told, job)
    assert study.trials[1].value == 0.9


def test_the_search_direction_follows_the_monitor_and_one_against_it_is_refused():
    from cvrun.errors import UserError
    from cvrun.search.sweeper import objective_direction

    assert objective_direction(None, "val_loss") == "minimize"
    assert objective_direction(None, "val_macro_f1") == "maximize"
    assert objective_direction("maximize", "val_acc1") == "maximize"
    with pytest.raises(UserError, match="hydra.sweeper.direction=maximize would search for the worst "
                                        "trainer.monitor=val_loss; use hydra.sweeper.direction=minimize"):
        objective_direction("maximize", "val_loss")
