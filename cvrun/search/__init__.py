"""Hyperparameter search on Optuna's ask-and-tell interface, as a Hydra sweeper (hydra/sweeper=optuna).

    space.py    the search space: Hydra's sweep grammar (choice, range, interval, tag(log, ...)) -> Optuna's
                distributions
    study.py    the study's storage under the sweep folder, the pruners, and TrialReport: the callback that
                reports a trial's trainer.monitor every epoch and ends a run its pruner stops
    sweeper.py  the search: asks the study for trials, launches them as sweep jobs through any Hydra
                launcher, tells the study how each ended; resumes a study that was stopped

Hydra finds sweepers only in the hydra_plugins package: hydra_plugins/cvrun_optuna holds the plugin class,
which hands the work to sweeper.py.
"""
