"""Figures a reader can read: each panel's y-range fits its data, rules that run on top of
each other stay visible (checked on the rendered pixels), the best view cuts no line off,
the synthetic problem's optimum line shows over AMSGrad, and plot.py draws the metrics and
formats asked for."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb

from experiments import optimizers
from experiments.analysis import figures, records
from experiments.results.store import RunStore
from test_plots import NAN, STUCK, _panels, write_fake_grid

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "fake"
    written = write_fake_grid(root)
    return root, written, records.load_grid(root)


def pixels(fig):
    """The rendered figure as an (H, W, 3) float array in [0, 1], at the 120 dpi the
    figures are saved at."""
    fig.set_dpi(120)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3] / 255.0


def near(image, colour, tol=0.15):
    """How many pixels are within ``tol`` of ``colour`` on every channel."""
    return int(np.all(np.abs(image - np.array(to_rgb(colour))) < tol, axis=-1).sum())


def inside(image, ax):
    """The part of the rendered ``image`` within ``ax`` (no legend, no title)."""
    box, height = ax.get_window_extent(), image.shape[0]
    return image[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]


def write_twins(root, updaters=("adam", "amsgrad"), epochs=30):
    """One run per rule with the very same curves: the lines lie exactly on each other."""
    for u in updaters:
        store = RunStore(os.path.join(root, f"{u}_seed=0"))
        store.write_config({"name": "twins", "updater": u, "learning_rate": 0.001,
                            "beta2": 0.999, "bias_correction": True, "seed": 0,
                            "epochs": epochs})
        store.write_curves([dict(epoch=e, lr=0.001, loss=1.0 / e, acc=0.5 + 0.01 * e,
                                 val_loss=1.0 / e, val_acc=0.5 + 0.01 * e, seconds=0.1)
                            for e in range(1, epochs + 1)])
        store.write_status({"state": "finished"})
    return records.load_grid(root)


def test_each_panel_fits_its_own_runs(grid):
    _, written, runs = grid
    fig = figures.plot_metric(runs, "val_acc")
    for (lr, beta2), ax in _panels(fig).items():
        values = np.concatenate([c["val_acc"] for k, (c, _) in written.items()
                                 if k[1:3] == (lr, beta2) and k not in (STUCK, NAN)])
        lo, hi = ax.get_ylim()
        span = values.max() - values.min()
        assert lo < values.min() and values.max() < hi  # every trained value in frame
        assert hi - lo == pytest.approx(1.1 * span)  # and no more than a 5% margin
    # one range for all panels on request (the post's look)
    shared = figures.plot_metric(runs, "val_acc", y_range="shared")
    assert len({ax.get_ylim() for ax in _panels(shared).values()}) == 1
    with pytest.raises(ValueError, match="unknown y_range 'each'"):
        figures.plot_metric(runs, "val_acc", y_range="each")


def test_diverged_runs_set_no_panel_s_scale(grid):
    _, written, runs = grid
    for metric in ("loss", "val_loss"):
        for (lr, beta2), ax in _panels(figures.plot_metric(runs, metric)).items():
            good = [c[metric] for k, (c, _) in written.items()
                    if k[1:3] == (lr, beta2) and k not in (STUCK, NAN)]
            top = max(v.max() for v in good)
            assert top <= ax.get_ylim()[1] < 1.2 * top  # the clipped 14.5 is off the scale


def test_coinciding_rules_both_stay_visible(tmp_path):
    runs = write_twins(str(tmp_path / "twins"))
    for view in ("full", "mean"):
        fig = figures.plot_metric(runs, "val_acc", view)
        ax = fig.axes[0]
        adam, amsgrad = (ln for ln in ax.lines)  # drawn in this order: Adam underneath
        blue, red = (optimizers.get_rule(u).colors[0] for u in ("adam", "amsgrad"))
        assert to_hex(adam.get_color()) == blue  # the registry entry's colour
        assert adam.get_linewidth() > 1.5 * amsgrad.get_linewidth()
        image = inside(pixels(fig), ax)
        # Adam's blue shows on both sides of the red line on top of it
        assert near(image, blue) > 100, view
        assert near(image, red) > 100, view


def test_a_third_rule_gets_its_own_colour_and_stays_visible(tmp_path):
    runs = write_twins(str(tmp_path / "three"), updaters=("adam", "amsgrad", "lion"))
    colours = {figures.color(u) for u in ("adam", "amsgrad", "lion")}
    own = {c for r in optimizers.registered_rules() if r.colors for c in r.colors}
    assert len(colours) == 3 and figures.color("lion") not in own
    fig = figures.plot_metric(runs, "val_acc")
    widths = [ln.get_linewidth() for ln in fig.axes[0].lines]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3
    image = inside(pixels(fig), fig.axes[0])
    for u in ("adam", "amsgrad", "lion"):
        assert near(image, figures.color(u)) > 50, u
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Adam, bias correction on", "AMSGrad, bias correction on",
                      "Lion, bias correction on"]


def test_the_best_view_cuts_no_line_off_when_the_best_is_the_last_epoch(tmp_path):
    # still improving when training ends (as logreg at lr=1e-4): best = last epoch
    runs = write_twins(str(tmp_path / "rising"), epochs=40)
    for r in runs[1:]:
        r.curves["val_acc"] = r.curves["val_acc"] - 0.05
    ax = figures.plot_metric(runs, "val_acc", "best").axes[0]
    (x0, x1), (lo, hi) = ax.get_xlim(), ax.get_ylim()
    assert x1 > 40 + 0.4  # room after the last epoch
    bests = [r.curves["val_acc"].max() for r in runs]
    assert lo < min(bests) and max(bests) + 0.1 * (max(bests) - min(bests)) < hi
    for line in ax.lines:  # every line's last point strictly inside the frame
        x, y = line.get_xdata()[-1], line.get_ydata()[-1]
        assert x0 < x < x1 and lo < y < hi


def test_the_synthetic_optimum_shows_over_amsgrad(tmp_path):
    folder = tmp_path / "syn"
    folder.mkdir()
    rows = ["step,problem,rule,x"]
    for s in range(200):  # AMSGrad reaches -1 at step 20 and stays there
        rows += [f"{s},online,adam,{min(1.0, s / 10)}",
                 f"{s},online,amsgrad,{max(-1.0, -s / 20)}"]
    (folder / "trajectories.csv").write_text("\n".join(rows) + "\n")
    fig = figures.plot_synthetic(folder)
    ax = fig.axes[0]
    optimum = next(ln for ln in ax.lines if ln.get_label() == "optimum x = -1")
    assert all(optimum.get_zorder() > ln.get_zorder() for ln in ax.lines if ln is not optimum)
    lo, hi = ax.get_ylim()
    assert lo < -1.1 and hi > 1.1  # not on the frame
    image = pixels(fig)
    assert near(image, "black", tol=0.15) > near(pixels(_without(fig, optimum)), "black",
                                                 tol=0.15) + 100


def _without(fig, line):
    line.set_visible(False)
    return fig


def test_plot_grid_writes_the_metrics_and_formats_asked_for(grid, tmp_path):
    _, _, runs = grid
    paths = figures.plot_grid(runs, str(tmp_path), metrics=("val_acc",), formats=("svg",))
    assert sorted(os.path.basename(p) for p in paths) == [
        "val_acc.svg", "val_acc_best.svg", "val_acc_last.svg", "val_acc_mean.svg"]
    assert Path(paths[0]).read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="unknown figure format 'docx'"):
        figures.plot_grid(runs, str(tmp_path), formats=("png", "docx"))


def _plot(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "plot.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_cli_metrics_and_formats(grid, tmp_path):
    root, _, _ = grid
    proc = _plot(root, "--out", tmp_path / "f", "--metrics", "val_acc,loss",
                 "--formats", "png,pdf,svg", "--quiet")
    assert proc.returncode == 0, proc.stderr
    stems = [stem for m, _, stem in figures.figure_names() if m in ("val_acc", "loss")]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(
        f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf", "svg"))
    proc = _plot(root, "--out", tmp_path / "g", "--y-range", "shared", "--quiet",
                 "--metrics", "acc", "--formats", "png")
    assert proc.returncode == 0 and len(list((tmp_path / "g").iterdir())) == 3


@pytest.mark.parametrize("args, words", [
    (["--metrics", "val_acc,val_ac"], ["--metrics", "unknown metric 'val_ac'",
                                       "loss, val_loss, acc, val_acc"]),
    (["--formats", "png,docx"], ["--formats", "unknown figure format 'docx'", "svg"]),
    (["--y-range", "each"], ["--y-range", "'each'"]),
])
def test_cli_mistakes_are_one_line(grid, tmp_path, args, words):
    root, _, _ = grid
    proc = _plot(root, "--out", tmp_path / "f", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "f").exists()


def test_rules_at_their_own_beta2_share_a_panel_per_learning_rate(tmp_path, grid):
    """The studies of the fixes run each rule at its own beta2 (ADOPT 0.9999, AdamNC none):
    one column, each rule's lines in its learning rate's panel; the post's grid, where a
    rule runs at two beta2, keeps a column per beta2."""
    beta2 = {"adam": 0.999, "adopt": 0.9999, "adamnc": None}
    for u, b2 in beta2.items():
        for lr in (0.01, 0.001):
            store = RunStore(tmp_path / "own" / f"{u}_lr={lr}_seed=0")
            store.write_config({"name": "own", "updater": u, "learning_rate": lr,
                                "beta2": b2, "seed": 0, "epochs": 3})
            store.write_curves([dict(epoch=e, lr=lr, loss=1.0 / e, acc=0.5, val_loss=1.0 / e,
                                     val_acc=0.5 + 0.01 * e + lr, seconds=0.1)
                                for e in range(1, 4)])
            store.write_status({"state": "finished"})
    fig = figures.plot_metric(records.load_grid(tmp_path / "own"), "val_acc", "mean")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["lr=0.01", "lr=0.001"]
    for ax, lr in zip(axes, (0.01, 0.001)):
        means = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
        assert sorted(round(float(line.get_ydata()[-1]), 6) for line in means) == \
            [round(0.53 + lr, 6)] * 3
    titles = {ax.get_title() for ax in figures.plot_metric(grid[2], "val_acc").axes}
    assert {"lr=0.01, β2=0.99", "lr=0.01, β2=0.999"} <= titles
