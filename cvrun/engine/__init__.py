"""The one trainer, evaluation, checkpoints and the run folder."""
