"""`logger=[csv,mlflow]`: one MLflow run per cvrun run.

Params are the flattened config; metrics each metrics.csv column per epoch (and the learning rate and
loss every trainer.log_every_n_steps steps) and, at the end, the final results (test_acc1, test_acc5,
best_val_acc1, ...: what `mlflow.search_runs(filter_string="metrics.test_acc1 > 50")` filters on); tags
the status, regime, model and dataset; artifacts config.yaml, summary.json and curves.png, with
`logger.mlflow.log_model=true` checkpoints/best.pt (`logger.mlflow.checkpoints=true`: last.pt too).
The tracking URI is MLFLOW_TRACKING_URI, else `logger.mlflow.tracking_uri`, else an SQLite store
beside outputs/ (`sqlite:///<folder holding outputs/>/mlflow.db`, MLflow's own default kind of store
since 3.0), with artifacts in `mlartifacts/` beside it. A sweep is a parent run (made by the sweep's
callback, cvrun/report/sweep.py) with one child per job; a resumed run continues its MLflow run
(`mlflow_run_id` in summary.json); the MLflow status follows summary.json's.

An HTTP server is probed first (one request, half `logger.mlflow.timeout` at most): MLflow's own client
retries a refused connection for minutes. Each event is bounded by that timeout too (cvrun/loggers/base.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cvrun.config import flatten
from cvrun.loggers.base import FINAL_METRICS, LOGGERS, Logger, TrackerConfig, within

# summary.json's status -> MLflow's run status.
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
PARENT_RUN_FILE = "mlflow_parent_run_id"
# MLflow limits a param's value to this many characters.
PARAM_LENGTH = 6000


@dataclass
class MlflowConfig(TrackerConfig):
    name: str = "mlflow"
    tracking_uri: Optional[str] = None  # null: MLFLOW_TRACKING_URI, else sqlite beside outputs/
    experiment: str = "cvrun"
    log_model: bool = False  # log checkpoints/best.pt as an artifact
    checkpoints: bool = False  # log checkpoints/best.pt and last.pt (to resume elsewhere) as artifacts


def store_folder(run_path: Path) -> Path:
    """The folder holding outputs/ (or multirun/) above a run folder, where the default store lives."""
    for folder in run_path.resolve().parents:
        if folder.name in ("outputs", "multirun"):
            return folder.parent
    return run_path.resolve().parent


def tracking_uri(options: Any, run_path: Path) -> str:
    return (os.environ.get("MLFLOW_TRACKING_URI") or options.tracking_uri
            or f"sqlite:///{store_folder(run_path) / 'mlflow.db'}")


def reachable_client(options: Any, run_path: Path) -> Any:
    """An MlflowClient of the tracking URI; an HTTP server that does not answer in time raises OSError at once
    (any answer will do, an error status included: the server is there)."""
    import requests
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(options, run_path)
    if uri.startswith(("http://", "https://")):
        try:  # half the event's deadline, so that a server that does not answer is named as such
            requests.get(uri, timeout=options.timeout / 2)
        except requests.RequestException as err:
            raise OSError(f"no tracking server answers at {uri} ({type(err).__name__})") from None
    return MlflowClient(uri)


def experiment_id(client: Any, name: str, run_path: Path) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=(store_folder(run_path) / "mlartifacts").as_uri())


def start_parent_run(options: Any, sweep_dir: Path) -> None:
    """The sweep's MLflow run; its id goes to SWEEP/mlflow_parent_run_id for the jobs, which may run elsewhere."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    run = within(options.timeout, "the sweep's MLflow run", create_parent_run, options, sweep_dir)
    (sweep_dir / PARENT_RUN_FILE).write_text(run.info.run_id + "\n")


def create_parent_run(options: Any, sweep_dir: Path) -> Any:
    client = reachable_client(options, sweep_dir)
    return client.create_run(experiment_id(client, options.experiment, sweep_dir), run_name=sweep_dir.name,
                             tags={"cvrun.sweep_dir": str(sweep_dir)})


def end_parent_run(options: Any, sweep_dir: Path, failed: bool) -> None:
    within(options.timeout, "the sweep's MLflow run", close_parent_run, options, sweep_dir, failed)


def close_parent_run(options: Any, sweep_dir: Path, failed: bool) -> None:
    if (sweep_dir / PARENT_RUN_FILE).is_file():
        client = reachable_client(options, sweep_dir)
        run_id = (sweep_dir / PARENT_RUN_FILE).read_text().strip()
        for name in ("summary.csv", "summary.png", "best.json"):
            if (sweep_dir / name).is_file():
                client.log_artifact(run_id, str(sweep_dir / name))
        client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


@LOGGERS.register("mlflow")
class MlflowLogger(Logger):
    config = MlflowConfig

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self.client, self.run_id = None, None
        self.logged_epochs = 0

    def on_run_start(self, summary: dict[str, Any]) -> None:
        if not self.context.run.writes:
            return
        from omegaconf import OmegaConf

        path = self.context.run.path
        self.client = reachable_client(self.options, path)
        cfg = self.context.cfg
        self.run_id = summary.get("mlflow_run_id")  # a resumed run carries its MLflow run on
        if self.run_id is None:
            tags = {"cvrun.run_dir": str(path), "regime": cfg.regime.name, "model": cfg.model.name,
                    "dataset": cfg.dataset.name}
            parent = self.parent_run_id()
            if parent is not None:
                tags["mlflow.parentRunId"] = parent
            run = self.client.create_run(experiment_id(self.client, self.options.experiment, path), tags=tags,
                                         run_name=path.name)
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            params = [Param(key, str(value)[:PARAM_LENGTH])
                      for key, value in flatten(OmegaConf.to_container(cfg)).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[start:start + 100])
            summary["mlflow_run_id"] = self.run_id
            self.context.run.update_summary(mlflow_run_id=self.run_id)
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged_epochs = max((m.step for m in self.client.get_metric_history(self.run_id, "train_loss")),
                                     default=0)
        self.client.set_tag(self.run_id, "status", "running")

    def parent_run_id(self) -> str | None:
        sweep = self.context.sweep_dir
        if sweep is None or not (sweep / PARENT_RUN_FILE).is_file():
            return None
        return (sweep / PARENT_RUN_FILE).read_text().strip()

    def on_steps(self, step: int, values: dict[str, float]) -> None:
        self.log_metrics({f"step_{key}": value for key, value in values.items()}, step)

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Every row the MLflow run lacks: after a resume, those an interruption kept from it."""
        for earlier in rows[self.logged_epochs:]:
            self.log_metrics({key: value for key, value in earlier.items() if key != "epoch"}, earlier["epoch"])
        self.logged_epochs = len(rows)

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(1000 * time.time())
        metrics = [Metric(key, float(value), now, step) for key, value in values.items()
                   if isinstance(value, (int, float)) and value is not None]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_run_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if self.client is None:
            return
        run = self.context.run
        self.log_metrics({key: summary[key] for key in FINAL_METRICS if key in summary}, len(rows))
        self.client.log_dict(self.run_id, summary, "summary.json")
        for name in ("config.yaml", "curves.png"):
            if (run.path / name).is_file():
                self.client.log_artifact(self.run_id, str(run.path / name))
        for checkpoint in sorted(run.checkpoints.glob("*.pt")):
            if self.options.checkpoints or (self.options.log_model and checkpoint.name == "best.pt"):
                self.client.log_artifact(self.run_id, str(checkpoint), "checkpoints")
        self.client.set_tag(self.run_id, "status", summary["status"])
        if summary.get("reason"):
            self.client.set_tag(self.run_id, "reason", str(summary["reason"])[:PARAM_LENGTH])
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(summary["status"], "FAILED"))
