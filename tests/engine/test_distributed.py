"""torchrun: one run folder from rank 0, per-rank shards, every evaluation image counted once."""

import json
import os
import subprocess
import sys

import pytest

from cvrun.data.loaders import SeededSampler
from cvrun.engine import distributed
from cvrun.errors import UserError
from tests.conftest import free_port, make_cfg, torchrun


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
        with pytest.raises(UserError, match=f"regime={regime} does not run under torchrun or as several SLURM "
                                            f"tasks \\(.*{reason}"):
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


ONE_RUN = ["train", "dataset=shapes", "dataset.image_size=32", "dataset.std=[0.25,0.25,0.25]", "dataset.train_size=300",
           "dataset.test_size=101", "model=lenet5", "trainer.epochs=1", "trainer.batch_size=32", "trainer.progress=false"]


def assert_one_run_of_two_processes(run) -> None:
    from cvrun.data.splits import build_splits

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2, summary
    test_images = len(build_splits(make_cfg(dataset={"name": "shapes", "image_size": 32, "test_size": 101}).dataset).test)
    assert summary["test_samples"] == test_images  # each counted once over the two processes
    assert (run / "train.log").read_text().count("run folder:") == 1  # one log, from rank 0


def without_rank_variables() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT") and not k.startswith(("SLURM_", "SUBMITIT_"))}


def test_slurm_variables_become_the_ranks(monkeypatch):
    from cvrun import parallel

    # A copy of the environment for this test alone: what adopt_slurm_tasks sets must not reach later tests.
    monkeypatch.setattr(os, "environ", {**without_rank_variables(), "SLURM_PROCID": "5", "SLURM_NTASKS": "8",
                                        "SLURM_LOCALID": "1", "SLURM_JOB_ID": "1234",
                                        "SLURM_JOB_NODELIST": "gpu[03-05,09],cpu1"})
    parallel.adopt_slurm_tasks()
    assert (parallel.rank(), parallel.world_size(), parallel.local_rank()) == (5, 8, 1)
    assert os.environ["MASTER_ADDR"] == "gpu03" and os.environ["MASTER_PORT"] == str(29500 + 1234)
    os.environ.update(RANK="0", SLURM_PROCID="3")  # torchrun's own variables win
    parallel.adopt_slurm_tasks()
    assert parallel.rank() == 0


def test_the_tasks_of_submitits_local_executor_become_the_ranks(monkeypatch):
    from cvrun import parallel

    monkeypatch.setattr(os, "environ", {**without_rank_variables(), "SUBMITIT_LOCAL_GLOBALID": "1",
                                        "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NTASKS": "2",
                                        "SUBMITIT_LOCAL_JOB_ID": "4321"})
    parallel.adopt_slurm_tasks()
    assert (parallel.rank(), parallel.world_size(), parallel.local_rank()) == (1, 2, 1)
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and os.environ["MASTER_PORT"] == str(29500 + 4321)


def test_two_tasks_started_as_slurm_starts_them_train_as_one_run(tmp_path):
    """No torchrun: each process has only SLURM's variables, as `srun --ntasks=2 cvrun train ...` gives it."""
    slurm = {**without_rank_variables(), "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost", "SLURM_NODEID": "0",
             "SLURM_JOB_ID": "7", "MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    run = tmp_path / "run"
    tasks = [subprocess.Popen([sys.executable, "-m", "cvrun", *ONE_RUN, f"hydra.run.dir={run}"], cwd=tmp_path,
                              env={**slurm, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for task in (0, 1)]
    errors = [task.communicate(timeout=300)[1] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], errors
    assert_one_run_of_two_processes(run)


def test_two_torchrun_agents_rendezvous_as_two_nodes(tmp_path):
    """The two-node recipe on one machine: two agents, one process each, a c10d rendezvous on loopback."""
    endpoint = f"127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                                "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=cvrun-test",
                                "-m", "cvrun", *ONE_RUN, f"hydra.run.dir={run}"], cwd=tmp_path,
                               env=without_rank_variables(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    errors = [agent.communicate(timeout=300)[1] for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], [e[-3000:] for e in errors]
    assert_one_run_of_two_processes(run)
