"""The post's figures, on a fixed fake results set written as plain files."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from experiments.results.metrics import get_metric
from experiments.analysis import figures, records

REPO = Path(__file__).resolve().parents[1]
UPDATERS = ("adam", "amsgrad")
LRS = (0.01, 0.001)
BETA2S = (0.99, 0.999)
CLIPPED = 14.506
# Two diverged runs: one stuck at the clipped loss, one gone to NaN (and stopped).
STUCK = ("adam", 0.01, 0.999, False, 1)
NAN = ("amsgrad", 0.01, 0.99, False, 2)


def fake_curves(key, epochs):
    """Deterministic curves for run ``key = (updater, lr, beta2, bc, seed)``."""
    updater, lr, beta2, bc, seed = key
    rng = np.random.default_rng([UPDATERS.index(updater), LRS.index(lr),
                                 BETA2S.index(beta2), int(bc), seed])
    e = np.arange(epochs, dtype=float)
    level = 0.05 + 0.02 * LRS.index(lr) + 0.01 * (updater == "amsgrad") + 0.01 * (not bc)
    loss = 2.0 * np.exp(-e / 2.0) + level + 0.01 * rng.random(epochs)
    val_loss = 1.0 * np.exp(-e / 2.0) + 0.4 + 0.02 * (e / epochs) ** 2 + 0.01 * rng.random(epochs)
    acc = 1.0 - 0.5 * np.exp(-e / 2.0) - 0.02 * rng.random(epochs)
    val_acc = 0.9 - 0.4 * np.exp(-e / 2.0) + 0.01 * (updater == "adam") \
        + 0.01 * rng.standard_normal(epochs)
    if key == STUCK:
        loss[3:] = val_loss[3:] = CLIPPED
        acc[3:] = val_acc[3:] = 0.1
    curves = {"loss": loss, "acc": acc, "val_loss": val_loss, "val_acc": val_acc}
    if key == NAN:
        curves = {k: v[:6] for k, v in curves.items()}
        curves["loss"][5] = curves["val_loss"][5] = math.nan
    return curves


def write_run(run_dir, key, curves, state, epochs):
    updater, lr, beta2, bc, seed = key
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(f"name: fake\nmodel: logreg\ndataset: mnist\nupdater: {updater}\n"
                f"learning_rate: {lr}\n"
                f"beta1: 0.9\nbeta2: {beta2}\nepsilon: 1.0e-08\n"
                f"bias_correction: {str(bc).lower()}\nseed: {seed}\nepochs: {epochs}\n"
                f"batch_size: 128\n")
    with open(os.path.join(run_dir, "curves.csv"), "w") as f:
        f.write("epoch,lr,loss,acc,val_loss,val_acc,seconds\n")
        for i in range(len(curves["loss"])):
            values = [lr * (1 - i / epochs)] + [float(curves[k][i]) for k in
                                                ("loss", "acc", "val_loss", "val_acc")]
            f.write(",".join([str(i + 1)] + [repr(v) for v in values] + ["0.5"]) + "\n")
    with open(os.path.join(run_dir, "status.json"), "w") as f:
        json.dump({"state": state}, f)


def write_fake_grid(root, seeds=(0, 1, 2), epochs=10, partial=False):
    """Write a fake grid into ``root``; returns ``{key: (curves, state)}`` as written.

    ``partial``: a grid still running -- the (0.001, 0.99) setting has no runs yet, and
    seed 2 of every other setting is running, with 4 epochs done.
    """
    written = {}
    for updater in UPDATERS:
        for lr in LRS:
            for beta2 in BETA2S:
                for bc in (True, False):
                    for seed in seeds:
                        key = (updater, lr, beta2, bc, seed)
                        if partial and (lr, beta2) == (0.001, 0.99):
                            continue
                        curves = fake_curves(key, epochs)
                        state = "diverged" if key in (STUCK, NAN) else "finished"
                        if partial and seed == 2:
                            curves, state = {k: v[:4] for k, v in curves.items()}, "running"
                        run_id = f"{updater}_lr{lr}_b{beta2}_bc{int(bc)}_s{seed}"
                        write_run(os.path.join(root, run_id), key, curves, state, epochs)
                        written[key] = (curves, state)
    return written


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "fake"
    return root, write_fake_grid(root)


def _panels(fig):
    """``{(lr, beta2): axes}`` from the panel titles."""
    out = {}
    for ax in fig.axes:
        title = ax.get_title()
        if title:
            lr, beta2 = (float(part.split("=")[1]) for part in title.split(", "))
            out[lr, beta2] = ax
    return out


def test_load_grid_reads_the_plain_files(grid):
    root, written = grid
    runs = records.load_grid(root)
    assert len(runs) == len(written) == 48
    by_key = {(r.updater, r.learning_rate, r.beta2, r.bias_correction, r.seed): r for r in runs}
    assert set(by_key) == set(written)
    run = by_key[STUCK]
    np.testing.assert_array_equal(run.curves["val_loss"], written[STUCK][0]["val_loss"])
    np.testing.assert_array_equal(run.epoch, np.arange(1, 11))
    assert run.state == "diverged" and run.epochs == 10


def test_divergence_detection(grid):
    root, _ = grid
    runs = {(r.updater, r.learning_rate, r.beta2, r.bias_correction, r.seed): r
            for r in records.load_grid(root)}
    assert [k for k, r in runs.items() if records.is_diverged(r)] == sorted([STUCK, NAN],
                                                                          key=list(runs).index)
    # Stuck at the clipped loss is caught from the curves alone, and NaN too.
    for key in (STUCK, NAN):
        runs[key].state = "finished"
        assert records.is_diverged(runs[key])


@pytest.mark.parametrize("metric", records.METRICS)
def test_one_panel_per_setting_one_line_per_run(grid, metric):
    root, written = grid
    fig = figures.plot_metric(records.load_grid(root), metric)
    panels = _panels(fig)
    assert sorted(panels) == sorted((lr, b2) for lr in LRS for b2 in BETA2S)
    assert sum(1 for ax in fig.axes if ax.lines) == 4
    for (lr, beta2), ax in panels.items():
        keys = [k for k in written if k[1:3] == (lr, beta2)]
        assert len(ax.lines) == len(keys) == 12
        colors = sorted(to_hex(line.get_color()) for line in ax.lines)
        assert colors == sorted(figures.color(k[0], k[3]) for k in keys)
    # Rows are learning rates (largest first), columns beta2.
    grid_axes = fig.axes[:4]
    assert [ax.get_title() for ax in grid_axes] == [
        "lr=0.01, β2=0.99", "lr=0.01, β2=0.999", "lr=0.001, β2=0.99", "lr=0.001, β2=0.999"]
    assert grid_axes[2].get_xlabel() == "epoch"
    assert grid_axes[0].get_ylabel() == get_metric(metric).label
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "Adam, bias correction on", "Adam, bias correction off",
        "AMSGrad, bias correction on", "AMSGrad, bias correction off"]


def test_diverged_runs_do_not_set_the_scale(grid):
    root, written = grid
    runs = records.load_grid(root)
    good = [c for k, (c, _) in written.items() if k not in (STUCK, NAN)]
    for metric in ("loss", "val_loss"):
        lo, hi = figures.plot_metric(runs, metric).axes[0].get_ylim()
        top = max(c[metric].max() for c in good)
        assert top <= hi < 1.2 * top < CLIPPED  # the clipped 14.5 is off the scale
    lo, hi = figures.plot_metric(runs, "val_acc").axes[0].get_ylim()
    assert lo <= min(c["val_acc"].min() for c in good) and lo > 0.1 - 1e-9 + 0.3


def test_zoomed_views(grid):
    root, written = grid
    runs = records.load_grid(root)
    fig = figures.plot_metric(runs, "loss", "last")
    ax = _panels(fig)[0.001, 0.999]
    assert ax.get_xlim()[0] == 9 and ax.get_xlim()[1] == pytest.approx(10)  # last 20%
    tail = [c["loss"][8:] for k, (c, _) in written.items() if k[1:3] == (0.001, 0.999)]
    lo, hi = ax.get_ylim()
    span = max(t.max() for t in tail) - min(t.min() for t in tail)
    assert lo == pytest.approx(min(t.min() for t in tail) - 0.05 * span)
    assert hi == pytest.approx(max(t.max() for t in tail) + 0.05 * span)
    # best view: every trained run's best value is in frame, the stuck run's 0.1 is not.
    fig = figures.plot_metric(runs, "val_acc", "best")
    ax = _panels(fig)[0.01, 0.999]
    lo, hi = ax.get_ylim()
    bests = [c["val_acc"].max() for k, (c, _) in written.items()
             if k[1:3] == (0.01, 0.999) and k != STUCK]
    assert lo < min(bests) and max(bests) < hi and lo > 0.5
    # the last epoch inside the frame, not on it: a best value there stays visible
    assert ax.get_xlim()[0] >= 1 and 10 < ax.get_xlim()[1] <= 11


def test_partial_grid(tmp_path):
    written = write_fake_grid(tmp_path / "fake", partial=True)
    runs = records.load_grid(tmp_path / "fake")
    assert len(runs) == len(written) == 36
    fig = figures.plot_metric(runs, "val_acc")
    panels = _panels(fig)
    assert sum(1 for ax in fig.axes if ax.lines) == 3  # (0.001, 0.99) has no runs yet
    assert len(panels[0.001, 0.99].lines) == 0
    for setting in ((0.01, 0.99), (0.01, 0.999), (0.001, 0.999)):
        lines = panels[setting].lines
        assert len(lines) == 12
        assert sorted(len(line.get_xdata()) for line in lines)[:4] == [4, 4, 4, 4]
    for metric, view, _ in figures.figure_names():  # every view copes with the gaps
        fig = figures.plot_metric(runs, metric, view)
        assert sum(1 for ax in fig.axes if ax.lines) == 3
    paths = figures.save_figure(fig, str(tmp_path / "figs" / "val_acc_best"))
    _check_files(paths)


def _check_files(paths):
    for path in paths:
        data = Path(path).read_bytes()
        magic = b"\x89PNG\r\n\x1a\n" if path.endswith(".png") else b"%PDF"
        assert data.startswith(magic) and len(data) > 1000, path


def write_synthetic(folder, rules=(("adam", 1.0), ("amsgrad", -0.9))):
    """A tiny trajectories.csv as experiments.synthetic writes it: x = end * step / 4."""
    folder.mkdir(parents=True)
    rows = ["step,problem,rule,x"]
    for problem in ("online", "stochastic"):
        for rule, end in rules:
            rows += [f"{s},{problem},{rule},{end * s / 4!r}" for s in range(5)]
    (folder / "trajectories.csv").write_text("\n".join(rows) + "\n")
    (folder / "config.yaml").write_text("name: synthetic\nkind: synthetic\n")


def test_synthetic_figure(tmp_path):
    write_synthetic(tmp_path / "synthetic")
    fig = figures.plot_synthetic(tmp_path / "synthetic")
    assert [ax.get_title() for ax in fig.axes] == ["online problem", "stochastic problem"]
    for ax in fig.axes:
        colors = {line.get_label(): to_hex(line.get_color()) for line in ax.lines}
        assert colors["Adam"] == figures.color("adam")
        assert colors["AMSGrad"] == figures.color("amsgrad")
        optimum = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert len(optimum) == 1 and list(optimum[0].get_ydata()) == [-1, -1]
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 0.25, 0.5, 0.75, 1.0])


def test_synthetic_figure_tells_the_library_variants_apart(tmp_path):
    write_synthetic(tmp_path / "syn", rules=[("adam", 1.0), ("amsgrad", -0.9),
                                             ("amsgrad_pytorch", -0.9),
                                             ("amsgrad_optax", -0.5)])
    fig = figures.plot_synthetic(tmp_path / "syn")
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.lines}
        assert set(lines) == {"Adam", "AMSGrad", "AMSGrad (PyTorch)", "AMSGrad (optax)",
                              "optimum x = -1"}
        amsgrads = [lines[name] for name in ("AMSGrad", "AMSGrad (PyTorch)",
                                             "AMSGrad (optax)")]
        assert len({to_hex(ln.get_color()) for ln in amsgrads}) == 3
        # dashed, so a variant drawn over ours leaves ours visible
        assert [ln.get_linestyle() for ln in amsgrads] == ["-", "--", "--"]
        np.testing.assert_allclose(lines["AMSGrad (optax)"].get_ydata(),
                                   [0, -0.125, -0.25, -0.375, -0.5])


def test_a_long_trajectory_is_drawn_as_window_means_and_a_bounce_shaded():
    from experiments.analysis.synthetic_figure import windows
    steps = np.arange(10)
    x = np.array([0.0, 1, -1, 1, -1, 1, -1, 1, 0.5, 0.5])
    s, mean, low, high = windows(steps, x, points=4)  # windows of 3 points, the last of 1
    assert s.tolist() == [2, 5, 8, 9]
    np.testing.assert_allclose(mean, [0, 1 / 3, 1 / 6, 0.5])
    assert low.tolist() == [-1, -1, -1, 0.5] and high.tolist() == [1, 1, 1, 0.5]
    same = windows(steps, x, points=10)
    assert all(np.array_equal(a, b) for a, b in zip(same, (steps, x, x, x)))


def test_a_beta2_sweep_gets_a_figure_per_problem_with_a_panel_per_beta2(tmp_path):
    write_synthetic(tmp_path / "syn", rules=[(f"{rule}_b2={b}", end) for b in (0.9, 0.99, 0.999)
                                             for rule, end in (("adam", 1.0), ("adopt", -1.0))])
    paths = figures.save_synthetic(tmp_path / "syn", formats=("png",))
    assert [Path(p).name for p in paths] == ["synthetic_online.png", "synthetic_stochastic.png"]
    _check_files(paths)
    fig = figures.plot_synthetic(tmp_path / "syn", problems=["online"])
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [
        "online problem, β2=0.9", "online problem, β2=0.99", "online problem, β2=0.999"]
    assert len(fig.axes) == 4  # two panels a row, the fourth hidden
    labels = [ln.get_label() for ln in shown[0].lines]
    assert labels == ["Adam", "ADOPT", "optimum x = -1"]


def test_cli_on_a_results_root(grid, tmp_path):
    """A root holding a grid and the synthetic problem: each gets its figures."""
    root, _ = grid
    shutil.copytree(root, tmp_path / "fake")
    write_synthetic(tmp_path / "synthetic")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "plot.py"), str(tmp_path),
                           "--out", str(tmp_path / "figs"), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "figs" / "fake"
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(f"{stem}.{ext}" for _, _, stem in figures.figure_names()
                      for ext in ("png", "pdf"))
    assert names == expected and "loss_last.png" in names and "val_acc_best.pdf" in names
    _check_files([str(p) for p in out.iterdir()])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    assert sorted(p.name for p in (tmp_path / "figs" / "synthetic").iterdir()) == [
        "synthetic.pdf", "synthetic.png"]
    _check_files([str(p) for p in (tmp_path / "figs" / "synthetic").iterdir()])


def test_cli_redraws_the_synthetic_figure_where_the_grid_runner_drew_it(tmp_path):
    """Not a second copy in figures/: the runner's synthetic.png is replaced."""
    folder = tmp_path / "syn"
    write_synthetic(folder)
    figures.save_synthetic(folder)  # as scripts/run_grid.py leaves it
    (folder / "synthetic.png").write_bytes(b"stale")
    before = sorted(p.name for p in folder.iterdir())
    assert before == ["config.yaml", "synthetic.pdf", "synthetic.png", "trajectories.csv"]
    for target in (folder, tmp_path):  # the folder itself, or a root holding it
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "plot.py"), str(target)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"wrote 2 files to {folder}\n"
        assert sorted(p.name for p in folder.iterdir()) == before
        _check_files([str(folder / "synthetic.png"), str(folder / "synthetic.pdf")])
        (folder / "synthetic.png").write_bytes(b"stale")
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "bad_yaml"])
def test_cli_bad_results_dir(tmp_path, case):
    target = tmp_path / "results"
    if case != "missing":
        target.mkdir()
    if case == "bad_yaml":
        (target / "run").mkdir()
        (target / "run" / "config.yaml").write_text("updater: [adam\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "plot.py"), str(target)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0]
    assert "Traceback" not in proc.stderr
