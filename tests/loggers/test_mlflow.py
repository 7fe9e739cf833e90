"""logger=mlflow: one MLflow run per cvrun run, read back with MLflow's client and served by `mlflow server`."""

import sys

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
