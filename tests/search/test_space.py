"""The search space: Hydra's sweep grammar read as Optuna's distributions, the way Hydra's Optuna plugin reads it."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from cvrun.errors import UserError
from cvrun.search.space import as_override, search_space


def test_each_sweep_form_becomes_its_distribution():
    space, fixed = search_space({"aug.n": "range(1, 4)", "x": "range(0, 10, 3)", "optim.lr": "tag(log, interval(1e-3, 1))",
                                 "trainer.label_smoothing": "interval(0, 0.2)", "model": "choice(lenet5, resnet20)",
                                 "k": "tag(int, interval(2, 9))", "trainer.epochs": "5"}, [])
    assert space == {"aug.n": IntDistribution(1, 3), "x": IntDistribution(0, 9, step=3),
                     "optim.lr": FloatDistribution(1e-3, 1, log=True),
                     "trainer.label_smoothing": FloatDistribution(0, 0.2),
                     "model": CategoricalDistribution(["lenet5", "resnet20"]), "k": IntDistribution(2, 9)}
    assert fixed == ["trainer.epochs=5"]


def test_the_command_line_replaces_a_presets_parameter_and_a_plain_value_fixes_it():
    space, fixed = search_space({"aug.n": "range(1, 4)", "aug.m": "range(0, 31)"}, ["aug.n=2", "aug.m=5,9", "model=lenet5"])
    assert space == {"aug.m": CategoricalDistribution([5, 9])}
    assert fixed == ["aug.n=2", "model=lenet5"]


def test_a_space_that_cannot_be_read_is_one_line():
    with pytest.raises(UserError, match="the search space cannot be read"):
        search_space({"optim.lr": "interval(1e-3"}, [])


def test_a_trials_values_go_back_as_overrides_hydra_reads_as_values():
    assert as_override("optim.lr", 0.0123) == "optim.lr=0.0123"
    assert as_override("model", "resnet20") == "model=resnet20"
    assert as_override("dataset.classes", "a,b") == r"dataset.classes=a\,b"

