"""The catalogue of user mistakes: each ends with one line naming what is wrong, exit status 2, no traceback.

Every case runs the real command line in-process (cvrun.cli.main, Hydra included) from a
scratch folder. Placeholders in the arguments are filled from the `places` fixture.
"""

import shutil

import pytest

from cvrun.cli import main
from tests.conftest import write_image_tree

SHAPES_RUN = ["dataset=shapes", "dataset.train_size=100", "dataset.test_size=20", "model=lenet5",
              "trainer.epochs=1", "trainer.progress=false"]

CATALOGUE = [
    # unknown option in each group
    (["train", "dataset=cifar11"], "unknown dataset 'cifar11'; valid dataset options: cifar10, cifar100"),
    (["train", "model=resnet19"], "unknown model 'resnet19'; valid model options:"),
    (["train", "aug=randaugment"], "unknown aug 'randaugment'; valid aug options:"),
    (["train", "regime=distil"], "unknown regime 'distil'; valid regime options:"),
    (["train", "optim=adam"], "unknown optim 'adam'; valid optim options: adamw, sgd"),
    (["train", "sched=linear"], "unknown sched 'linear'; valid sched options:"),
    (["train", "experiment=cifar10_lenet"], "unknown experiment 'cifar10_lenet'"),
    # misspelt keys, wrong types, bad values
    (["train", "trainer.epoch=3"], "unknown config key 'trainer.epoch'; did you mean 'trainer.epochs'?"),
    (["train", "optim.learning_rate=0.1"], "unknown config key 'optim.learning_rate'"),
    (["train", "trainer.batch_size=big"], "trainer.batch_size=big: Value 'big' of type 'str' could not be "
                                          "converted to Integer"),
    (["train", "trainer.epochs=0"], "trainer.epochs must be a positive integer, got 0"),
    (["train", "trainer.epochs=-2"], "trainer.epochs must be a positive integer, got -2"),
    (["train", "trainer.batch_size=0"], "trainer.batch_size must be a positive integer, got 0"),
    (["train", "optim.lr=0"], "optim.lr must be positive"),
    (["train", "optim.lr=-1"], "optim.lr must be positive"),
    (["train", "-m", "model=lenet5,nope"], "unknown model 'nope'"),
    (["train", "aug=randaug", "aug.m=31"], "aug.m (RandAugment magnitude) must be in [0, 30], got 31"),
    (["train", "aug.mix=cutmax"], "aug.mix must be null or one of cutmix, mixup, got cutmax"),
    (["train", "dataset.val_fraction=1.5"], "dataset.val_fraction must be in [0, 1)"),
    (["train", "dataset.cache=gpu"], "dataset.cache must be one of auto, none, ram, disk, got gpu"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["reproduce", "{missing}"], "{missing} has no config.yaml"),
    (["summarize", "{missing}"], "is not a folder"),
    # data
    (["train", *SHAPES_RUN, "dataset=imagefolder", "dataset.root={tree}", "dataset.classes=[cat,dgo]"],
     "dataset.classes: unknown class dgo"),
    (["train", *SHAPES_RUN, "dataset=imagefolder", "dataset.root={missing}"], "dataset root {missing} does not exist"),
    (["train", *SHAPES_RUN, "dataset=imagefolder", "dataset.root={empty}"], "has no train/ and test/ folders"),
    (["train", *SHAPES_RUN, "dataset=imagefolder", "dataset.root={unreadable}"], "dataset root {unreadable} is a file"),
    (["train", *SHAPES_RUN, "dataset=imagefolder", "dataset.root={corrupt}", "trainer.num_workers=1"],
     "cannot decode image file {corrupt}/train/cat/0003.png; remove it or replace it with a valid image"),
    # teachers
    (["train", *SHAPES_RUN, "regime=distill"], "regime=distill needs regime.teacher"),
    (["train", *SHAPES_RUN, "regime=pseudo_label", "dataset.labeled_per_class=10"],
     "regime=pseudo_label needs regime.teacher"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={missing}"], "regime.teacher={missing} does not exist"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={no_checkpoint}"],
     "regime.teacher={no_checkpoint} has no checkpoints/best.pt"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={source}"], "regime.teacher={source} was trained on "
                                                                          "classes ['circle', 'ring', 'square']"),
    # eval, resume, device
    (["eval", "{empty}"], "{empty} is not a cvrun run folder (no config.yaml)"),
    (["eval", "{truncated}"], "checkpoint {truncated}/checkpoints/best.pt cannot be read"),
    (["train", "trainer.resume={missing}"], "trainer.resume={missing}: no such run folder"),
    (["train", "trainer.resume={empty}"], "trainer.resume={empty} is not a run folder (no config.yaml in it)"),
    (["train", "trainer.resume={source}"], "the run already completed"),
    (["train", "trainer.resume={no_checkpoint}", "model=vgg11"], "trainer.resume carries on with the run's own "
                                                                 "config.yaml; drop model=vgg11"),
    (["train", *SHAPES_RUN, "trainer.device=cuda"], "trainer.device=cuda but this machine has no CUDA device"),
]


@pytest.fixture
def places(tmp_path, source_run):
    """The folders the catalogue's arguments name, each broken in its own way."""
    tree = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6})
    corrupt = write_image_tree(tmp_path / "corrupt", {"cat": 6, "dog": 6})
    (corrupt / "train" / "cat" / "0003.png").write_bytes(b"this is not a PNG")
    empty = tmp_path / "empty"
    empty.mkdir()
    unreadable = tmp_path / "cifar10.tar.gz"  # a file where a folder belongs: unreadable as a dataset root
    unreadable.write_bytes(b"\x1f\x8b")
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(source_run / "config.yaml", no_checkpoint / "config.yaml")
    truncated = tmp_path / "truncated"
    shutil.copytree(source_run, truncated)
    best = truncated / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    return {"tree": tree, "corrupt": corrupt, "empty": empty, "unreadable": unreadable, "missing": tmp_path / "nope",
           "no_checkpoint": no_checkpoint, "truncated": truncated, "source": source_run}


def test_the_catalogue_has_at_least_twenty_mistakes():
    assert len(CATALOGUE) >= 20


@pytest.mark.parametrize("args, expected", CATALOGUE, ids=[" ".join(a[1:2] + a[-1:]) for a, _ in CATALOGUE])
def test_mistake_is_one_line_and_exit_2(args, expected, places, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    filled = [arg.format(**places) for arg in args]
    assert main(filled) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("cvrun: error: "), err
    assert expected.format(**places) in lines[-1]
    assert "Traceback" not in err and len([line for line in lines if "error" in line.lower()]) == 1, err
