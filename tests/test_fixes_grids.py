"""The later fixes of Adam as rules of a grid (experiments.optimizers.fixes): each trains
grouped as alone, its runs differing only in numbers in one program (AdaBound and AMSBound
in one), and its run ids name its own keys."""
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from experiments import optimizers
from experiments.config import load_config
from experiments.config.runs import expand_grid
from experiments.grid.runner import run_grid
from experiments.results.store import RunStore
from experiments.training.grouping import group_runs
from test_run_grid_cli import REAL, REPO, SCRIPT, needs_mnist
from test_jax_group import needs_cifar

FIXES = ("adamnc", "adabound", "amsbound", "yogi", "adabelief", "adopt")
GRID = textwrap.dedent("""\
    name: fixes
    model: logreg
    epochs: 2
    train_subset: 1024
    val_subset: 512
    grid:
      updater: [adamnc, adabound, amsbound, yogi, adabelief, adopt]
      learning_rate: [0.01, 0.001]
    rules:
      adamnc: {beta1_decay: 0.999}
      adabound: {final_lr: [0.1, 0.01]}
    seeds: 2
    """)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "fixes.yaml"
    path.write_text(GRID)
    return load_config(path)


def test_the_fixes_are_rules_with_their_own_keys_and_defaults(config):
    runs = expand_grid(config)
    assert len(runs) == 2 * (2 + 4 + 2 + 2 + 2 + 2)
    ids = {r["run_id"] for r in runs}
    assert {"adabound_lr=0.01_final_lr=0.01_seed=1", "adamnc_lr=0.001_seed=0",
            "yogi_lr=0.01_seed=0"} <= ids
    yogi = next(r for r in runs if r["updater"] == "yogi")
    assert (yogi["epsilon"], yogi["initial_accumulator_value"]) == (1e-3, 1e-6)
    adopt = next(r for r in runs if r["updater"] == "adopt")
    assert (adopt["beta2"], adopt["epsilon"], adopt["use_clipping"]) == (0.9999, 1e-6, True)
    groups = group_runs(runs, 100)
    families = sorted({tuple(sorted({r["updater"] for r in g})) for g in groups})
    assert families == [("adabelief",), ("adabound", "amsbound"), ("adamnc",), ("adopt",),
                        ("yogi",)]
    assert all(optimizers.get_rule(u).family.lasagne is not None for u in FIXES)


@needs_mnist
@pytest.mark.slow
def test_every_fix_trains_grouped_as_alone(config, tmp_path):
    common = dict(data_dir=REAL, quiet=True, out=io.StringIO())
    run_grid(config, results_dir=tmp_path / "grouped", group_size=100, **common)
    run_grid(config, results_dir=tmp_path / "alone", group_size=1, **common)
    finals = {}
    for run in expand_grid(config):
        a = RunStore(tmp_path / "grouped" / "fixes" / run["run_id"]).read_curves()
        b = RunStore(tmp_path / "alone" / "fixes" / run["run_id"]).read_curves()
        assert len(a) == len(b) == 2
        for x, y in zip(a, b):
            for key in ("loss", "acc", "val_loss", "val_acc"):
                np.testing.assert_allclose(x[key], y[key], rtol=2e-5, atol=1e-6,
                                           err_msg=f"{run['run_id']} {key}")
        finals[run["run_id"]] = a[-1]["val_loss"]
    assert len(set(finals.values())) == len(finals)  # every run its own


CIFARNET_FIXES = f"{REPO}/configs/cifarnet_fixes.yaml"


def test_the_cifarnet_study_for_a_gpu_plans_its_runs_and_cost(tmp_path):
    config = load_config(CIFARNET_FIXES)
    runs = expand_grid(config)
    assert len(runs) == 6 * 3 * 5
    assert {r["precision"] for r in runs} == {"highest"}
    assert {r["updater"] for r in runs} == {"adam", "amsgrad", "adamnc", "adabound",
                                            "adabelief", "adopt"}
    plan = subprocess.run([sys.executable, SCRIPT, CIFARNET_FIXES, "--dry-run", "--results",
                           tmp_path], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[1].startswith("cost: 90 runs x 150 epochs: 57.9 PFLOP ")


@needs_cifar
@pytest.mark.slow
def test_the_cifarnet_study_trains_on_a_subset_of_cifar10(tmp_path, cifar_root):
    """Its smoke run, as on a CPU: one epoch of 256 images, a learning rate, a seed."""
    smoke = subprocess.run(
        [sys.executable, SCRIPT, CIFARNET_FIXES, "--set", "train_subset=256", "--set",
         "val_subset=256", "--set", "epochs=1", "--only", "lr=0.001", "--only", "seed=0",
         "--results", tmp_path, "--data-dir", cifar_root, "--quiet"],
        capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.splitlines()[-1].endswith(": 6 trained, 0 failed; 6/6 done")
    (grid,) = tmp_path.iterdir()
    finals = {}
    for run in sorted(grid.glob("*_seed=0")):
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "finished" and status["epochs_done"] == 1
        finals[run.name] = RunStore(run).read_curves()[-1]["val_loss"]
    assert sorted(finals) == sorted(f"{u}_lr=0.001_seed=0" for u in
                                    ("adam", "amsgrad", "adamnc", "adabound", "adabelief",
                                     "adopt"))
    assert all(np.isfinite(v) for v in finals.values())
    # five rules, five different runs (AMSGrad leaves Adam only once a squared gradient
    # falls far below the running mean: in two steps, hardly anywhere)
    assert len({v for k, v in finals.items() if not k.startswith("amsgrad")}) == 5
