"""The analysis layer's records: loading runs, a grid's axes, settings keyed by them."""
import math
import os

import pytest

from experiments.analysis import records, report, stats
from experiments.config import parse_config
from experiments.config.runs import expand_grid
from experiments.grid.plan import check_grid_dir
from experiments.results.store import RunStore


def _row(epoch, **values):
    row = dict(epoch=epoch, lr=0.001, loss=0.5, acc=0.8, val_loss=0.6, val_acc=0.75,
               seconds=1.5)
    row.update(values)
    return row


def _make_run(root, grid, rid, updater, curves, state):
    store = RunStore(os.path.join(root, grid, rid))
    store.write_config({"name": grid, "run_id": rid, "updater": updater, "seed": 0})
    if curves:
        store.write_curves(curves)
    if state:
        store.write_status({"state": state})


def test_load_runs_and_results(tmp_path):
    _make_run(tmp_path, "vgg", "amsgrad_seed=0", "amsgrad", [_row(0), _row(1, val_acc=0.9)],
              "finished")
    _make_run(tmp_path, "vgg", "adam_seed=0", "adam", [], None)
    (tmp_path / "vgg" / "grid.yaml").write_text("settings: {}\n")  # not a run
    runs = records.load_runs(tmp_path)
    assert [(r["name"], r["run_id"]) for r in runs] == [("vgg", "adam_seed=0"),
                                                        ("vgg", "amsgrad_seed=0")]
    assert runs[0]["status"] is None and runs[0]["curves"] == []
    assert runs[1]["config"]["updater"] == "amsgrad"
    assert [c["val_acc"] for c in runs[1]["curves"]] == [0.75, 0.9]

    rows = records.load_results(tmp_path)
    assert rows[1]["state"] == "finished" and rows[1]["epochs_done"] == 2
    assert rows[1]["final_val_acc"] == 0.9 and rows[1]["grid"] == "vgg"
    assert rows[0]["state"] is None and math.isnan(rows[0]["final_val_acc"])


def test_load_results_as_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    _make_run(tmp_path, "g", "adam_seed=0", "adam", [_row(0, val_acc=0.5)], "finished")
    _make_run(tmp_path, "g", "amsgrad_seed=0", "amsgrad", [_row(0, val_acc=0.6)], "diverged")
    frame = records.load_results(tmp_path, as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert frame.set_index("updater")["final_val_acc"].to_dict() == {"adam": 0.5, "amsgrad": 0.6}


def _write_grid(root, text, final_acc):
    """The runs of config ``text`` as the suite writes them (configs, grid.yaml), each
    finished after one epoch at the validation accuracy ``final_acc(run)``."""
    config = parse_config(__import__("yaml").safe_load(text), default_name="g")
    grid_dir = os.path.join(root, config.name)
    check_grid_dir(config, grid_dir, write=True)
    runs = expand_grid(config)
    for run in runs:
        store = RunStore(os.path.join(grid_dir, run["run_id"]))
        store.write_config(run)
        store.write_curves([_row(1, val_acc=final_acc(run))])
        store.write_status({"state": "finished"})
    return runs


BETA1_GRID = """\
name: b1
model: logreg
epochs: 1
learning_rate: 0.001
beta2: 0.999
grid:
  updater: [adam, amsgrad]
  beta1: [0.9, 0.0]
seeds: 2
"""


def test_a_beta1_axis_is_reported_setting_by_setting(tmp_path):
    # Before settings were keyed by the grid's axes, the two beta1 values of one seed
    # merged into one setting with n=2 (and a seed paired with itself).
    acc = {("adam", 0.9): 0.91, ("adam", 0.0): 0.81, ("amsgrad", 0.9): 0.92,
           ("amsgrad", 0.0): 0.82}
    _write_grid(tmp_path, BETA1_GRID,
                lambda run: acc[run["updater"], run["beta1"]] + 0.001 * run["seed"])
    runs = records.load_grid(tmp_path / "b1")
    assert records.grid_axes(runs) == ("updater", "beta1")
    summary = stats.summarize(runs)
    assert [(r["updater"], r["beta1"], r["n"], r["seeds"]) for r in summary] == [
        ("adam", 0.0, 2, [0, 1]), ("adam", 0.9, 2, [0, 1]),
        ("amsgrad", 0.0, 2, [0, 1]), ("amsgrad", 0.9, 2, [0, 1])]
    assert summary[0]["final_val_acc_mean"] == pytest.approx(0.8105)
    rows = stats.compare(runs)
    assert [(r["beta1"], r["n"]) for r in rows] == [(0.0, 2), (0.9, 2)]
    assert [r["mean"] for r in rows] == pytest.approx([-0.01, -0.01])
    text = report.render_report(runs, str(tmp_path / "report.md"))
    assert "| updater | β1 | n |" in text
    assert "| adam | 0.9 | 2 | 0 | 0 | 91.05 ± 0.07 |" in text  # accuracies in percent
    assert "- amsgrad: β1=0.9: final val acc 92.05 ± 0.07% (n=2)" in text


def test_axes_come_from_grid_yaml_and_from_what_varies(tmp_path):
    text = BETA1_GRID.replace("  beta1: [0.9, 0.0]\n", "  beta2: [0.999]\n").replace(
        "beta2: 0.999\n", "beta1: 0.9\n")
    _write_grid(tmp_path, text, lambda run: 0.9)
    runs = records.load_grid(tmp_path / "b1")
    # a one-value axis of grid.yaml still names the setting
    assert records.grid_axes(runs) == ("updater", "beta2")
    assert stats.setting_axes(runs) == ("beta2",)
    os.remove(tmp_path / "b1" / "grid.yaml")  # e.g. runs copied without it
    assert records.grid_axes(runs) == ("updater",)
    # the post's grids: what varies, in the order of run ids
    assert records.grid_axes([r for r in runs if r.updater == "adam"]) == ()
