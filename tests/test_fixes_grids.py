"""The later fixes of Adam as rules of a grid (experiments.optimizers.fixes): each trains
grouped as alone, its runs differing only in numbers in one program (AdaBound and AMSBound
in one), and its run ids name its own keys."""
import io
import textwrap

import numpy as np
import pytest

from experiments import optimizers
from experiments.config import load_config
from experiments.config.runs import expand_grid
from experiments.grid.runner import run_grid
from experiments.results.store import RunStore
from experiments.training.grouping import group_runs
from test_run_grid_cli import REAL, needs_mnist

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
