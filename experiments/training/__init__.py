"""A run's training: the one trainer (K >= 1 runs), which runs may train together,
what made a run (provenance) and its live metric logs."""
from experiments.training.trainer import (CHECKPOINT_RATIO, config_hash, learning_rate,  # noqa: F401
                                          run_setup,
                                          restarted, train_run, train_runs)
