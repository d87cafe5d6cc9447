"""A run's training: the one trainer (K >= 1 runs), what it needs (:mod:`.inputs`), a
run's part in a group (:mod:`.members`), which runs may train together
(:mod:`.grouping`), its progress, what made a run (:mod:`.provenance`) and its live
metric logs (:mod:`.metric_logs`)."""
from experiments.training.members import CHECKPOINT_RATIO, config_hash, restarted
from experiments.training.trainer import train_run, train_runs

__all__ = ["train_runs", "train_run", "config_hash", "restarted", "CHECKPOINT_RATIO"]
