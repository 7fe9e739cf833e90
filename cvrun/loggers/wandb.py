"""`logger=[csv,wandb]`: one Weights & Biases run per cvrun run (pip install 'cvrun[wandb]').

Config: the run's resolved config (config.yaml's keys, nested). Metrics: each metrics.csv row per epoch, under
metrics.csv's column names and plotted against `epoch`; the learning rate and loss every
trainer.log_every_n_steps steps as step/lr and step/train_loss against `optimizer_step`. Summary: the final
results (test_acc1, test_acc5, best_val_acc1, ...: FINAL_METRICS) and the status. A sweep's jobs are one group,
named after the sweep's folder; each run is named after its own folder; a resumed run carries its W&B run on
(`wandb_run_id` in summary.json).

Offline unless asked otherwise (WANDB_MODE, else `logger.wandb.mode`): the run is written to RUN_DIR/wandb/
and `wandb sync RUN_DIR/wandb/offline-run-*` uploads it later. wandb's own console output is off (silent, no
console capture); each event is bounded by `logger.wandb.timeout` (cvrun/loggers/base.py),
and wandb.init's own wait for a server too.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from cvrun.errors import UserError
from cvrun.loggers.base import FINAL_METRICS, LOGGERS, Logger, TrackerConfig

MODES = ("offline", "online", "disabled")


@dataclass
class WandbConfig(TrackerConfig):
    name: str = "wandb"
    project: str = "cvrun"
    entity: Optional[str] = None  # null: your W&B default entity
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE variable wins
    tags: list[str] = field(default_factory=list)

    def check(self) -> None:
        super().check()
        if self.mode not in MODES:
            raise UserError(f"logger.wandb.mode={self.mode} is not a W&B mode; use one of {', '.join(MODES)}")
        if importlib.util.find_spec("wandb") is None:
            raise UserError("logger=wandb needs the wandb package: pip install 'cvrun[wandb]'")


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    config = WandbConfig

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self.run: Any = None
        self.logged_epochs = 0
        self.defined: set[str] = set()

    def on_run_start(self, summary: dict[str, Any]) -> None:
        if not self.context.run.writes:
            return
        import wandb
        from omegaconf import OmegaConf

        path, sweep = self.context.run.path, self.context.sweep_dir
        mode = os.environ.get("WANDB_MODE") or self.options.mode
        settings = wandb.Settings(silent=True, console="off", init_timeout=self.options.timeout)
        self.run = wandb.init(project=self.options.project, entity=self.options.entity, mode=mode, dir=str(path),
                              name=path.name, group=sweep.name if sweep is not None else None,
                              tags=list(self.options.tags), config=OmegaConf.to_container(self.context.cfg),
                              id=summary.get("wandb_run_id"), resume="allow", reinit="create_new",
                              settings=settings)
        self.run.define_metric("optimizer_step")
        self.run.define_metric("step/*", step_metric="optimizer_step")
        self.run.define_metric("epoch")
        if summary.get("wandb_run_id") != self.run.id:
            summary["wandb_run_id"] = self.run.id
            self.context.run.update_summary(wandb_run_id=self.run.id)

    def on_steps(self, step: int, values: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({"optimizer_step": step, **{f"step/{key}": value for key, value in values.items()}})

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Every row this process has not logged: a resumed run logs the rows before the stop again (W&B keeps
        the values each epoch was last given)."""
        if self.run is None:
            return
        for earlier in rows[self.logged_epochs:]:
            for key in earlier.keys() - self.defined - {"epoch"}:
                self.run.define_metric(key, step_metric="epoch")
                self.defined.add(key)
            self.run.log(dict(earlier))
        self.logged_epochs = len(rows)

    def on_run_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if self.run is None:
            return
        self.run.summary.update({key: summary[key] for key in FINAL_METRICS if key in summary})
        self.run.summary["status"] = summary["status"]
        self.run.finish(exit_code=0 if summary["status"] == "completed" else 1)
