"""torchrun: one run folder from rank 0, per-rank shards, every evaluation image counted once."""

import json

import pytest

from cvrun.data.loaders import SeededSampler
from cvrun.engine import distributed
from cvrun.errors import UserError
from tests.conftest import make_cfg, torchrun


def as_rank(monkeypatch, rank, world=2):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_cover_the_order_and_evaluation_counts_each_image_once(monkeypatch, shuffle):
    shards = []
    for rank in range(3):
        as_rank(monkeypatch, rank, world=3)
        sampler = SeededSampler(10, seed=4, shuffle=shuffle, shard=True)
        shards.append([index for index, _ in sampler])
        assert len(shards[-1]) == len(sampler)
    everything = sorted(i for shard in shards for i in shard)
    if shuffle:  # training: equal shards (padded with repeats) so every rank takes as many steps
        assert [len(s) for s in shards] == [4, 4, 4] and set(everything) == set(range(10))
    else:  # evaluation: uneven shards, each image exactly once
        assert everything == list(range(10))
    monkeypatch.setenv("WORLD_SIZE", "1")
    whole = [index for index, _ in SeededSampler(10, seed=4, shuffle=shuffle, shard=True)]
    assert sorted(whole) == list(range(10))  # one process: the whole order, as before


def test_only_rank_0_gives_hydra_a_run_folder(monkeypatch):
    from cvrun.commands.train import hydra_args

    args = ["dataset=shapes", "hydra.run.dir=outputs/x"]
    as_rank(monkeypatch, 0)
    assert hydra_args(args) == args
    as_rank(monkeypatch, 1)
    assert hydra_args(args) == ["dataset=shapes", "hydra.run.dir=.", "hydra.output_subdir=null",
                                "hydra/job_logging=disabled"]
    with pytest.raises(UserError, match="drop -m"):
        hydra_args(["-m", "model=lenet5,resnet18"])


def test_regimes_that_cannot_run_under_torchrun_say_why(monkeypatch):
    from cvrun.commands.train import refuse_under_torchrun

    as_rank(monkeypatch, 0)
    for regime, reason in (("knn", "it takes no gradient steps"), ("noisy_student", "several training runs")):
        with pytest.raises(UserError, match=f"regime={regime} does not run under torchrun \\(.*{reason}"):
            refuse_under_torchrun(make_cfg(regime={"name": regime}))
    refuse_under_torchrun(make_cfg(regime={"name": "lwf"}))  # lwf and distill run under torchrun
    refuse_under_torchrun(make_cfg(regime={"name": "distill"}))


@pytest.mark.parametrize("sections, message", [
    ({"trainer": {"batch_size": 33}}, "trainer.batch_size=33 does not split over 2 processes"),
    ({"trainer": {"sync_bn": True, "device": "cpu"}}, "trainer.sync_bn=true needs CUDA"),
])
def test_what_cannot_run_under_torchrun_is_refused_before_joining(monkeypatch, sections, message):
    as_rank(monkeypatch, 0)
    with pytest.raises(UserError, match=message):
        distributed.start(make_cfg(**sections), "outputs/x")


THREE, TWO = "dataset.classes=[circle,ring,square]", "dataset.classes=[triangle,cross]"
TORCHRUN_REGIMES = {  # what each regime needs beside the shapes; {source} is a trained source run
    "lwf": [TWO, "regime=lwf", "model.pretrained={source}"],
    "distill": [THREE, "regime=distill", "regime.teacher={source}"],
    "fixmatch": [THREE, "regime=fixmatch", "regime.threshold_mode=flex", "regime.mu=2", "dataset.labeled_per_class=20",
                 "trainer.steps_per_epoch=4", "trainer.ema_decay=0.9"],
    "mean_teacher": [THREE, "regime=mean_teacher", "regime.mu=2", "dataset.labeled_per_class=20",
                     "trainer.steps_per_epoch=4", "trainer.ema_decay=0.9"],
}


@pytest.mark.parametrize("regime", TORCHRUN_REGIMES)
def test_regimes_with_more_than_a_model_run_under_torchrun(regime, source_run, tmp_path):
    """LwF's old output layer trains inside the distributed step, distill's teacher runs beside it, FlexMatch's
    record takes every process's pseudo-labels, Mean Teacher's EMA teacher follows the synchronised student."""
    extra = [arg.format(source=source_run) for arg in TORCHRUN_REGIMES[regime]]
    result = torchrun("train", "dataset=shapes", "dataset.image_size=32", "dataset.std=[0.25,0.25,0.25]",
                      "dataset.train_size=300", "dataset.test_size=101", "model=lenet5", *extra, "trainer.epochs=1",
                      "trainer.batch_size=32", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.ranks_output
    runs = list((tmp_path / "outputs").glob("*/*"))
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert len(runs) == 1 and summary["status"] == "completed" and summary["world_size"] == 2
    from cvrun.data.splits import build_splits

    classes = (THREE if THREE in extra else TWO).split("=")[1].strip("[]").split(",")
    test_images = len(build_splits(make_cfg(dataset={"name": "shapes", "image_size": 32, "test_size": 101,
                                                     "classes": classes}).dataset).test)
    assert summary["test_samples"] == test_images  # each counted once over the two processes
    if regime in ("fixmatch", "mean_teacher"):
        assert summary["mask_rate"] is not None and summary["pseudo_label_acc1"] is not None
