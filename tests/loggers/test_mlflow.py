"""logger=mlflow: one MLflow run per cvrun run, read back with MLflow's client and served by `mlflow server`."""

import socket
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cvrun.loggers.mlflow import store_folder
from tests.conftest import cli
from tests.conftest import free_port, get_json, server
from tests.loggers.conftest import RUN, metrics_rows, summary_of


def client_for(run):
    return MlflowClient(f"sqlite:///{store_folder(run) / 'mlflow.db'}")


def test_params_metrics_tags_and_artifacts_match_the_run_folder(logged_run):
    client, summary = client_for(logged_run), summary_of(logged_run)
    tracked = client.get_run(summary["mlflow_run_id"])
    assert tracked.info.status == "FINISHED" and tracked.data.tags["status"] == "completed"
    assert tracked.data.tags["regime"] == "scratch" and tracked.data.tags["model"] == "lenet5"
    assert tracked.data.params["trainer.epochs"] == "3" and tracked.data.params["dataset.name"] == "shapes"
    rows = metrics_rows(logged_run)
    for column in rows[0]:
        if column == "epoch":
            continue
        history = client.get_metric_history(tracked.info.run_id, column)
        assert [m.step for m in history] == [int(row["epoch"]) for row in rows], column
        assert [m.value for m in history] == pytest.approx([row[column] for row in rows], rel=1e-4, abs=1e-4)
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"config.yaml", "summary.json", "curves.png"} <= artifacts


def test_the_final_results_are_metrics_and_the_best_checkpoint_an_artifact(logged_run, tmp_path):
    """logger.mlflow.log_model=true: best.pt alone (last.pt is for resuming, in the run folder)."""
    summary = summary_of(logged_run)
    mlflow.set_tracking_uri(f"sqlite:///{store_folder(logged_run) / 'mlflow.db'}")
    try:
        found = mlflow.search_runs(experiment_names=["cvrun"],
                                   filter_string=f"metrics.test_acc1 > {summary['test_acc1'] - 0.5}")
    finally:
        mlflow.set_tracking_uri(None)
    assert list(found["run_id"]) == [summary["mlflow_run_id"]]
    for key in ("test_acc1", "test_acc5", "best_val_acc1", "epochs_run", "wall_seconds"):
        assert found[f"metrics.{key}"][0] == pytest.approx(summary[key]), key
    client = client_for(logged_run)
    assert [a.path for a in client.list_artifacts(summary["mlflow_run_id"], "checkpoints")] == ["checkpoints/best.pt"]
    copy = client.download_artifacts(summary["mlflow_run_id"], "checkpoints/best.pt", str(tmp_path))
    assert open(copy, "rb").read() == (logged_run / "checkpoints" / "best.pt").read_bytes()


def test_an_interrupted_run_resumes_into_the_same_mlflow_run(tmp_path, monkeypatch):
    from tests.conftest import interrupt_after_epoch

    interrupt_after_epoch(monkeypatch, 1)
    assert cli("train", *RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path).returncode == 130
    run_id = summary_of(tmp_path / "run")["mlflow_run_id"]
    assert client_for(tmp_path / "run").get_run(run_id).info.status == "KILLED"
    monkeypatch.undo()
    assert cli("train", *RUN, f"trainer.resume={tmp_path / 'run'}", cwd=tmp_path).returncode == 0
    assert summary_of(tmp_path / "run")["mlflow_run_id"] == run_id
    tracked = client_for(tmp_path / "run").get_run(run_id)
    assert tracked.info.status == "FINISHED" and tracked.data.tags["status"] == "completed"
    assert [m.step for m in client_for(tmp_path / "run").get_metric_history(run_id, "val_acc1")] == [1, 2, 3]


def test_a_tracker_that_fails_warns_once_and_the_run_goes_on(tmp_path):
    result = cli("train", *RUN[:-1], "logger=[csv,mlflow]", "logger.mlflow.tracking_uri=sqlite:////proc/no/mlflow.db",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "outputs").glob("*/*"))
    assert summary_of(run)["status"] == "completed" and (run / "metrics.csv").is_file()
    log = (run / "train.log").read_text()
    assert log.count("MlflowLogger failed") == 1 and "the run goes on without it" in log


def timed_run(tmp_path, name, *overrides):
    started = time.perf_counter()
    result = cli("train", *RUN[:-2], "trainer.epochs=1", "trainer.deterministic=true",
                 f"hydra.run.dir={tmp_path / name}", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - started, summary_of(tmp_path / name), (tmp_path / name / "train.log").read_text()


def test_an_unreachable_server_costs_the_run_no_time(tmp_path):
    """A closed port (MLflow's client alone retries it for about 4 minutes), then a server that takes the
    connection but never answers: each run ends within seconds of one without a tracker, with one warning."""
    plain, expected, _ = timed_run(tmp_path, "plain", "logger=[csv]")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        silent_uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for name, uri, timeout in (("closed", f"http://127.0.0.1:{free_port()}", []),  # the default timeout
                                   ("silent", silent_uri, ["logger.mlflow.timeout=2"])):
            seconds, summary, log = timed_run(tmp_path, name, "logger=[csv,mlflow]", *timeout,
                                              f"logger.mlflow.tracking_uri={uri}")
            assert seconds < plain + 4, (name, seconds, plain)
            assert log.count("WARNING") == 1
            assert f"MlflowLogger failed (OSError: no tracking server answers at {uri}" in log
            assert summary["status"] == "completed" and "mlflow_run_id" not in summary
            assert {k: summary[k] for k in ("test_acc1", "test_acc5", "best_val_acc1")} == {
                k: expected[k] for k in ("test_acc1", "test_acc5", "best_val_acc1")}
    finally:
        silent.close()


def test_mlflow_server_serves_the_runs_metrics(logged_run):
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               f"sqlite:///{store_folder(logged_run) / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    with server(command, "/health", port) as base:
        history = get_json(base + "/api/2.0/mlflow/metrics/get-history?run_id="
                           f"{summary_of(logged_run)['mlflow_run_id']}&metric_key=val_acc1")
    assert [m["value"] for m in history["metrics"]] == pytest.approx(
        [row["val_acc1"] for row in metrics_rows(logged_run)], abs=1e-4)
