"""Every rule of the library trains in a group as alone, through the one optax face;
each run of a group keeps its own step count."""
import os
from pathlib import Path

import numpy as np
import pytest

from experiments import models
from experiments.config import parse_config
from experiments.data import Dataset, epoch_batches, load_dataset
from experiments.optimizers import Optimizer
from experiments.engines.base import initial_arrays
from experiments.engines.jax_engine import JaxEngine
from experiments.engines.jax_group import GroupEngine
from experiments.training.grouping import group_runs
from experiments.config.runs import expand_grid
from experiments.results.store import RunStore
from experiments.training import train_run, train_runs
from test_jax_group import LOGREG, assert_same_curves

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_mnist = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found in {REAL}")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", REAL, download=False)


def rule_runs():
    """Runs of every rule, two seeds: momentum and Nesterov with per-run momentum,
    AdamW with per-run decay next to Adam and AMSGrad (one rule with switches)."""
    base = dict(LOGREG, epochs=2)
    spec = [("sgd", 0.1, {}), ("sgd", 0.05, {}),
            ("momentum", 0.05, {"momentum": 0.9}), ("momentum", 0.05, {"momentum": 0.5}),
            ("nesterov_momentum", 0.05, {"momentum": 0.9}),
            ("adamw", 1e-3, {"weight_decay": 0.1}), ("adamw", 1e-3, {"weight_decay": 0.01}),
            ("adam", 1e-3, {}), ("amsgrad", 1e-3, {})]
    return [dict(base, run_id=f"{u}_{i}_seed={s}", updater=u, learning_rate=lr, seed=s, **extra)
            for s in (0, 1) for i, (u, lr, extra) in enumerate(spec)]


def assert_grouped_as_alone(runs, groups, mnist, root):
    """Train ``groups`` grouped and every run of ``runs`` alone: the same curves."""
    for group in groups:
        grouped = train_runs(group, [RunStore(root / "g" / r["run_id"]) for r in group],
                             dataset=mnist, quiet=True)
        assert [s["state"] for s in grouped] == ["finished"] * len(group)
    steps = -(-LOGREG["train_subset"] // 128) * 128
    for run in runs:
        alone = RunStore(root / "a" / run["run_id"])
        train_run(run, alone, dataset=mnist, quiet=True)
        grouped = RunStore(root / "g" / run["run_id"]).read_curves()
        assert_same_curves(alone.read_curves(), grouped, LOGREG["val_subset"], steps)
    # every run trains differently, so a mix-up of the per-run values fails above
    finals = [RunStore(root / "a" / r["run_id"]).read_curves()[-1]["loss"] for r in runs]
    assert len(set(finals)) == len(runs)


@needs_mnist
def test_every_rule_trains_in_a_group_as_alone(mnist, tmp_path):
    runs = rule_runs()
    groups = group_runs(runs, 100)
    assert sorted(sorted({r["updater"] for r in g}) for g in groups) == [
        ["adam", "adamw", "amsgrad"], ["momentum"], ["nesterov_momentum"], ["sgd"]]
    assert_grouped_as_alone(runs, groups, mnist, tmp_path)


#: A grid mixing Adam, AMSGrad, AdamW (with and without AMSGrad's maximum) and momentum,
#: each rule with values of its own.
MIXED_GRID = dict(name="mixed", model="logreg", epochs=2, val_batch_size=256,
                  train_subset=LOGREG["train_subset"], val_subset=LOGREG["val_subset"],
                  grid={"updater": ["adam", "amsgrad", "adamw", "momentum"],
                        "learning_rate": [1e-3, 3e-3], "beta2": [0.99]},
                  rules={"adamw": {"weight_decay": [0.1], "amsgrad": [False, True]},
                         "momentum": {"learning_rate": [0.05], "momentum": [0.9, 0.5]}},
                  seeds=2)


@needs_mnist
def test_a_grid_mixing_rules_trains_grouped_as_alone(mnist, tmp_path):
    runs = expand_grid(parse_config(MIXED_GRID, path="mixed.yaml"))
    assert len(runs) == 20 and "beta2" not in runs[-1] and runs[-1]["momentum"] == 0.5
    groups = group_runs(runs, 100)
    assert sorted(len(g) for g in groups) == [4, 16]  # the Adam family, momentum
    assert_grouped_as_alone(runs, groups, mnist, tmp_path)


@needs_mnist
@pytest.mark.parametrize("updater", ["adam", "amsgrad"])
def test_runs_of_a_group_keep_their_own_step_counts(mnist, updater):
    """Runs resumed at different steps: each one's bias correction follows its own count
    (a shared count, or the group's, would change the first steps' sizes by far more)."""
    spec = models.get_model("logreg")
    data = Dataset("mnist", mnist.x_train[:1024], mnist.y_train[:1024], mnist.x_val[:256],
                   mnist.y_val[:256])
    hp = [Optimizer.of(updater, beta2=0.99)] * 3
    seeds, counts = [0, 0, 1], [0, 40, 7]
    arrays = []
    for h, s, t in zip(hp, seeds, counts):
        a = initial_arrays(spec, h, s)
        a["opt:t"] = np.asarray(t, np.int64)
        rng = np.random.default_rng(t)
        for name in a:
            if name.startswith(("opt:m:", "opt:v")) and t:
                a[name] = (rng.random(a[name].shape, np.float32) * 1e-3).astype(np.float32)
        arrays.append(a)
    group = GroupEngine(spec, data, hp, seeds)
    group.load(arrays)
    plans = {s: epoch_batches(s, 0, 1024) for s in (0, 1)}
    group.train_epoch(0, [1e-3] * 3, [True] * 3, plans)
    for k, (h, s, t) in enumerate(zip(hp, seeds, counts)):
        alone = JaxEngine(spec, data, h, s)
        alone.load(arrays[k])
        alone.train_epoch(0, 1e-3, *plans[s])
        want, got = alone.dump(), group.dump()[k]
        assert got["opt:t"] == want["opt:t"] == t + 8
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=1e-7, err_msg=name)
