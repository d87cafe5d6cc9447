"""Analysis for any comparison: a baseline rule and candidates, setting by setting where
they share axes, best against best for every one; d_z; report.csv and report.json; the
mean view; the long-format loader. On a hand-made results folder of three rules."""
import csv
import io
import json
import math
import os
import re
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats as sps

from experiments.analysis import figures, records, report, stats
from experiments.config import ConfigError, parse_config
from experiments.results.store import RunStore

SEEDS = (0, 1, 2)
# final validation accuracy = LEVEL[rule, setting] + BUMP[rule][seed]: the differences
# of a pair are known by hand.
ADAM_SETTINGS = [(0.01, True), (0.01, False), (0.001, True), (0.001, False)]
LEVEL = {("adam", 0.01, True): 0.90, ("adam", 0.01, False): 0.89,
         ("adam", 0.001, True): 0.93, ("adam", 0.001, False): 0.92,
         ("amsgrad", 0.01, True): 0.91, ("amsgrad", 0.01, False): 0.90,
         ("amsgrad", 0.001, True): 0.92, ("amsgrad", 0.001, False): 0.94,
         ("momentum", 0.1): 0.95, ("momentum", 0.05): 0.91}
BUMP = {"adam": (0.000, 0.002, 0.004), "amsgrad": (0.001, 0.001, 0.004),
        "momentum": (0.003, 0.001, 0.002)}


def _write(root, rid, config, val_acc, epochs=3, state="finished"):
    store = RunStore(os.path.join(root, rid))
    store.write_config({"name": os.path.basename(root), "run_id": rid, "model": "logreg",
                        "epochs": epochs, **config})
    acc = [val_acc - 0.1 * (epochs - e) for e in range(1, epochs + 1)]
    store.write_curves([dict(epoch=e, lr=config["learning_rate"], loss=1.0 / e, acc=a,
                             val_loss=1.5 / e, val_acc=a, seconds=0.1)
                        for e, a in zip(range(1, epochs + 1), acc)])
    store.write_status({"state": state})


def write_three_rules(root):
    """Adam and AMSGrad over lr x bias correction, momentum at its own lrs, 3 seeds."""
    os.makedirs(root)
    with open(os.path.join(root, "grid.yaml"), "w") as f:
        f.write("settings:\n  axes: [updater, learning_rate, bias_correction, momentum]\n")
    for seed in SEEDS:
        for u in ("adam", "amsgrad"):
            for lr, bc in ADAM_SETTINGS:
                _write(root, f"{u}_lr={lr}_bc={int(bc)}_seed={seed}",
                       dict(updater=u, learning_rate=lr, beta1=0.9, beta2=0.999,
                            epsilon=1e-8, bias_correction=bc, seed=seed),
                       LEVEL[u, lr, bc] + BUMP[u][seed])
        for lr in (0.1, 0.05):  # its own learning rates, and none of Adam's keys
            _write(root, f"momentum_lr={lr}_seed={seed}",
                   dict(updater="momentum", learning_rate=lr, momentum=0.9, seed=seed),
                   LEVEL["momentum", lr] + BUMP["momentum"][seed])


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("results") / "three")
    write_three_rules(root)
    return root, records.load_grid(root)


# Statistics by hand ----------------------------------------------------------------------

def test_effect_size_hand_computed():
    # d = [0.1, 0.3, -0.1, 0.5]: mean 0.2; squared deviations 0.01 + 0.01 + 0.09 + 0.09 =
    # 0.2, s^2 = 0.2 / 3, so d_z = 0.2 / sqrt(0.2 / 3) = sqrt(0.6).
    assert stats.effect_size([0.1, 0.3, -0.1, 0.5]) == pytest.approx(math.sqrt(0.6))
    # d = [1, 2, 2]: mean 5/3, s = sqrt(1/3): d_z = 5 / sqrt(3) = t / sqrt(n) with t = 5.
    res = stats.paired_test([1.0, 2.0, 3.0], [0.0, 0.0, 1.0])
    assert res["d_z"] == pytest.approx(5 / math.sqrt(3))
    assert res["d_z"] == pytest.approx(res["t"] / math.sqrt(3))
    assert np.isnan(stats.effect_size([0.5]))  # fewer than 2
    assert np.isnan(stats.effect_size([0.5, 0.5, 0.5]))  # no spread
    assert np.isnan(stats.paired_test([1.0, 2.0], [1.0, 2.0])["d_z"])


def test_choose_comparison():
    choose = stats.choose_comparison
    assert choose({"amsgrad", "adam"}) == ("adam", ["amsgrad"])  # the post's
    assert choose({"momentum", "adamw", "amsgrad", "adam"}) == (
        "adam", ["amsgrad", "adamw", "momentum"])
    assert choose({"momentum", "sgd"}) == ("momentum", ["sgd"])  # the first rule
    assert choose({"adam", "amsgrad", "momentum"}, candidates=["adam"]) == ("amsgrad", ["adam"])
    assert choose({"adam", "amsgrad", "momentum"}, "momentum") == ("momentum",
                                                                    ["amsgrad", "adam"])
    with pytest.raises(ValueError, match=r"'adamw' is not a rule of this grid \(adam, amsgrad\)"):
        choose({"adam", "amsgrad"}, candidates=["adamw"])
    with pytest.raises(ValueError, match="'adam' is the baseline"):
        choose({"adam", "amsgrad"}, "adam", ["adam"])


def test_setting_by_setting_where_axes_are_shared(three):
    _, runs = three
    axes = stats.setting_axes(runs)
    assert axes == ("learning_rate", "beta1", "beta2", "epsilon", "bias_correction", "variant",
                    "momentum")
    assert stats.rule_axes(runs, "momentum", axes) == ("learning_rate", "momentum")
    assert stats.shares_axes(runs, "adam", "amsgrad", axes)
    assert not stats.shares_axes(runs, "adam", "momentum", axes)
    with pytest.raises(ValueError, match="best against best"):
        stats.compare(runs, axes=axes, baseline="adam", candidate="momentum")
    rows = stats.compare(runs, axes=axes, baseline="adam", candidate="amsgrad")
    assert [(r["learning_rate"], r["bias_correction"]) for r in rows] == ADAM_SETTINGS
    for row in rows:
        key = (row["learning_rate"], row["bias_correction"])
        d = [LEVEL[("adam", *key)] + BUMP["adam"][s] - LEVEL[("amsgrad", *key)]
             - BUMP["amsgrad"][s] for s in SEEDS]
        assert row["seeds"] == list(SEEDS) and row["mean"] == pytest.approx(np.mean(d))
        assert row["d_z"] == pytest.approx(np.mean(d) / np.std(d, ddof=1))
    # Holm across the four settings of this one comparison
    np.testing.assert_allclose([r["p_holm"] for r in rows], stats.holm([r["p"] for r in rows]))


def test_best_against_best_for_every_candidate(three):
    _, runs = three
    result = stats.analyse(runs)
    assert result["baseline"] == "adam" and result["candidates"] == ["amsgrad", "momentum"]
    assert result["setting"]["momentum"] is None  # no axes in common: best only
    # Best by mean final val acc: Adam (0.001, on), AMSGrad (0.001, off), momentum 0.1.
    bvb = result["best_vs_best"]["momentum"]
    assert (bvb["baseline"]["learning_rate"], bvb["baseline"]["bias_correction"]) == (0.001, True)
    assert (bvb["candidate"]["learning_rate"], bvb["candidate"]["momentum"]) == (0.1, 0.9)
    assert bvb["candidate"]["beta2"] is None
    a = [0.93 + BUMP["adam"][s] for s in SEEDS]
    b = [0.95 + BUMP["momentum"][s] for s in SEEDS]
    assert bvb["seeds"] == list(SEEDS)
    # d = adam - momentum per seed: -0.023, -0.019, -0.018
    assert bvb["mean"] == pytest.approx(-0.02)
    assert bvb["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    d = np.subtract(a, b)
    assert bvb["d_z"] == pytest.approx(-0.02 / np.std(d, ddof=1))
    ams = result["best_vs_best"]["amsgrad"]
    assert (ams["candidate"]["learning_rate"], ams["candidate"]["bias_correction"]) == (0.001,
                                                                                       False)
    assert ams["mean"] == pytest.approx(np.mean([0.93 + BUMP["adam"][s] - 0.94
                                                 - BUMP["amsgrad"][s] for s in SEEDS]))
    # Named the other way round: momentum the baseline, adam the one candidate.
    other = stats.analyse(runs, "momentum", ["adam"])
    assert other["best_vs_best"]["adam"]["mean"] == pytest.approx(0.02)
    assert other["setting"]["adam"] is None


def test_markdown_of_three_rules(three, tmp_path):
    _, runs = three
    text = report.render_report(runs, str(tmp_path / "report.md"))
    assert text.startswith("# Adam vs AMSGrad vs Momentum\n")
    # keys it does not take; variant: the Adam family's (lasagne for runs without it)
    assert "| momentum | 0.1 | – | – | – | – | – | 0.9 | 3 |" in text
    assert "- momentum: lr=0.1, momentum=0.9: final val acc 95.20 ± 0.10% (n=3)" in text
    # d = Adam - Momentum per seed: -0.023, -0.019, -0.018: mean -0.02, s = 0.002646,
    # half-width t_{0.975, 2} * s / sqrt(3) = 0.00657: in points 2.00 +- 0.66
    assert ("**Adam vs Momentum, best against best** (final validation accuracy): Momentum "
            "at its best (lr=0.1, momentum=0.9: 95.20%) against Adam at its best (lr=0.001, "
            "β1=0.9, β2=0.999, ε=1e-08, bias correction on, variant=lasagne: 93.20%): "
            "Momentum higher by 2.00 points (95% CI 1.34 to 2.66), d_z = 7.6") in text
    assert "Momentum does not take every hyperparameter Adam takes, so it is compared " \
           "best against best only (in the key findings)." in text
    assert "## Adam vs AMSGrad, paired by seed" in text
    assert "## Adam vs Momentum, paired by seed" not in text
    table = text.split("### Final validation accuracy: Adam − AMSGrad")[1]
    assert "| lr | β1 | β2 | ε | bias corr. | variant | pairs |" in table  # not momentum's


def _table(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_and_json_hold_every_test(three):
    _, runs = three
    result = stats.analyse(runs)
    rows = _table(report.report_csv(result))
    # The key finding first: best against best for each candidate; then AMSGrad's 4
    # settings x 2 statistics (momentum: best only)
    assert [(r["comparison"], r["candidate"]) for r in rows] == (
        [("best", "amsgrad"), ("best", "momentum")] + [("setting", "amsgrad")] * 8)
    setting = result["setting"]["amsgrad"]["final_val_acc"]
    for row, expect in zip(rows[2:6], setting):
        assert row["stat"] == "final_val_acc" and row["baseline"] == "adam"
        assert float(row["learning_rate"]) == expect["learning_rate"]
        assert row["baseline_learning_rate"] == row["learning_rate"]
        assert row["bias_correction"] == str(expect["bias_correction"])
        assert row["momentum"] == "" and row["seeds"] == "0 1 2"
        for key in ("mean", "sd", "d_z", "t", "p", "p_holm", "p_wilcoxon"):
            value = expect[key]
            assert (row[key] == "" and np.isnan(value)) or float(row[key]) == value, key
        assert (float(row["ci_low"]), float(row["ci_high"])) == expect["ci"]
    best = rows[1]
    assert (best["learning_rate"], best["momentum"], best["beta2"]) == ("0.1", "0.9", "")
    assert (best["baseline_learning_rate"], best["baseline_bias_correction"],
            best["baseline_momentum"]) == ("0.001", "True", "")
    assert float(best["mean"]) == pytest.approx(-0.02) and best["p_holm"] == ""
    data = json.loads(report.report_json(result, title="three"))
    assert data["baseline"] == "adam" and data["candidates"] == ["amsgrad", "momentum"]
    assert data["best"]["momentum"]["learning_rate"] == 0.1
    assert len(data["tests"]) == len(rows) and len(data["summary"]) == 10
    last = data["tests"][1]
    assert last["setting"]["momentum"] == 0.9 and last["setting"]["beta2"] is None
    assert last["p_holm"] is None and last["mean"] == pytest.approx(-0.02)
    assert last["p"] == pytest.approx(float(best["p"]), rel=1e-15)


def test_write_report_writes_three_files(three, tmp_path):
    _, runs = three
    paths = report.write_report(runs, str(tmp_path / "r.md"), baseline="amsgrad",
                                candidates=["adam"])
    assert paths == tuple(str(tmp_path / f"r.{ext}") for ext in ("md", "csv", "json"))
    assert "# AMSGrad vs Adam" in (tmp_path / "r.md").read_text()
    assert {r["baseline"] for r in _table((tmp_path / "r.csv").read_text())} == {"amsgrad"}
    assert json.loads((tmp_path / "r.json").read_text())["candidates"] == ["adam"]
    assert report.report_paths("out") == (os.path.join("out", "report.md"),
                                          os.path.join("out", "report.csv"),
                                          os.path.join("out", "report.json"))
    assert report.report_paths("x/r.md") == ("x/r.md", "x/r.csv", "x/r.json")


def test_a_variant_axis_is_reported_setting_by_setting(tmp_path):
    # An axis the config module may not know yet: grid.yaml names it, runs carry it.
    root = str(tmp_path / "variants")
    os.makedirs(root)
    with open(os.path.join(root, "grid.yaml"), "w") as f:
        f.write("settings:\n  axes: [updater, variant]\n")
    level = {("adam", "lasagne"): 0.9, ("adam", "pytorch"): 0.8,
             ("amsgrad", "lasagne"): 0.91, ("amsgrad", "pytorch"): 0.83}
    for (u, v), acc in level.items():
        for s in (0, 1):
            _write(root, f"{u}_{v}_seed={s}", dict(updater=u, variant=v, learning_rate=0.001,
                                                   seed=s), acc + 0.01 * s * (u == "adam"))
    runs = records.load_grid(root)
    assert records.grid_axes(runs) == ("updater", "variant")
    summary = stats.summarize(runs)
    assert [(r["updater"], r["variant"], r["n"]) for r in summary] == [
        ("adam", "lasagne", 2), ("adam", "pytorch", 2), ("amsgrad", "lasagne", 2),
        ("amsgrad", "pytorch", 2)]
    rows = stats.compare(runs)
    assert [(r["variant"], r["n"]) for r in rows] == [("lasagne", 2), ("pytorch", 2)]
    assert [r["mean"] for r in rows] == pytest.approx([-0.005, -0.025])
    text = report.render_report(runs, str(tmp_path / "report.md"))
    assert "| adam | pytorch | 2 |" in text and "| variant | pairs |" in text


# Figures ---------------------------------------------------------------------------------

def test_mean_band_hand_computed(three):
    _, runs = three
    group = [r for r in runs if r.updater == "momentum" and r.learning_rate == 0.1]
    group[2].curves["val_acc"] = group[2].curves["val_acc"].copy()
    group[2].curves["val_acc"][0] = np.nan  # a non-finite value does not count
    x, mean, lo, hi = figures.mean_band(group, "val_acc")
    np.testing.assert_array_equal(x, [1, 2, 3])
    finals = [0.95 + b for b in BUMP["momentum"]]  # 0.953, 0.951, 0.952
    assert mean[2] == pytest.approx(0.952)
    half = 4.302652729749464 * 0.001 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(3)
    assert (lo[2], hi[2]) == pytest.approx((0.952 - half, 0.952 + half))
    assert mean[2] == pytest.approx(np.mean(finals))
    first = [0.75 + b for b in BUMP["momentum"][:2]]  # epoch 1: two runs count
    half = 12.706204736174698 * np.std(first, ddof=1) / math.sqrt(2)
    assert (mean[0], lo[0], hi[0]) == pytest.approx((np.mean(first), np.mean(first) - half,
                                                     np.mean(first) + half))
    _, mean, lo, _ = figures.mean_band(group[:1], "val_acc")
    assert np.isfinite(mean[2]) and np.isnan(lo[2])  # one run: no band


def _legend_inside(fig):
    FigureCanvasAgg(fig).draw()
    box, page = fig.legends[0].get_window_extent(), fig.bbox
    return page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


def test_mean_view_and_mixed_panels(three, tmp_path):
    _, runs = three
    fig = figures.plot_metric(runs, "val_acc", "mean")
    titles = [ax.get_title() for ax in fig.axes]
    # rows lr (largest first); each rule at one beta2 of its own (momentum none): one
    # column, so every rule run at a learning rate is in its panel
    assert titles == ["lr=0.1", "lr=0.05", "lr=0.01", "lr=0.001"]
    panel = fig.axes[0]
    assert len(panel.lines) == 1 and len(panel.collections) == 1  # a mean and its band
    np.testing.assert_allclose(panel.lines[0].get_ydata()[-1], 0.952)
    assert panel.lines[0].get_color() == figures.color("momentum", None)
    adam = fig.axes[3]
    assert len(adam.lines) == 4 and len(adam.collections) == 4  # 2 rules x bias correction
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Adam, bias correction on", "Adam, bias correction off",
                      "AMSGrad, bias correction on", "AMSGrad, bias correction off", "Momentum"]
    assert _legend_inside(fig)
    paths = figures.save_figure(fig, str(tmp_path / "val_acc_mean"))
    assert [os.path.basename(p) for p in paths] == ["val_acc_mean.png", "val_acc_mean.pdf"]
    for path, magic in zip(paths, (b"\x89PNG\r\n\x1a\n", b"%PDF")):
        with open(path, "rb") as f:
            data = f.read()
        assert data.startswith(magic) and len(data) > 1000


def test_an_axis_one_rule_takes_styles_that_rule_only(tmp_path):
    # AdamW over weight decay beside Adam, which has none: Adam keeps the plain line and
    # no legend entry reads 'weight_decay=None'.
    root = str(tmp_path / "decay")
    os.makedirs(root)
    with open(os.path.join(root, "grid.yaml"), "w") as f:
        f.write("settings:\n  axes: [updater, weight_decay]\n")
    for s in (0, 1):
        _write(root, f"adam_seed={s}", dict(updater="adam", learning_rate=0.001, seed=s), 0.9)
        for wd in (0.01, 0.1):
            _write(root, f"adamw_wd={wd}_seed={s}", dict(updater="adamw", learning_rate=0.001,
                                                         weight_decay=wd, seed=s), 0.91)
    fig = figures.plot_metric(records.load_grid(root), "val_acc", "mean")
    lines = {line.get_label(): line.get_linestyle() for line in fig.axes[0].lines}
    assert lines == {"Adam (n=2)": "-", "AdamW, weight_decay=0.01 (n=2)": "-",
                     "AdamW, weight_decay=0.1 (n=2)": "--"}
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-2:] == ["weight_decay=0.01", "weight_decay=0.1"]
    assert not any("None" in label for label in labels)


def test_one_panel_figures_keep_their_legend_inside(three):
    _, runs = three
    one = [r for r in runs if (r.learning_rate, r.updater != "momentum") == (0.01, True)]
    for view in ("full", "mean"):
        fig = figures.plot_metric(one, "val_acc", view)
        assert len([ax for ax in fig.axes if ax.get_title()]) == 1
        assert len(fig.legends[0].get_texts()) == 4 and _legend_inside(fig), view


# The long-format loader ------------------------------------------------------------------

def test_load_curves_long_format(three):
    root, _ = three
    rows = records.load_curves(root)
    assert len(rows) == 30 * 3  # 30 runs x 3 epochs
    first = next(r for r in rows if r["run_id"] == "momentum_lr=0.1_seed=2")
    assert first["updater"] == "momentum" and first["momentum"] == 0.9
    assert first["beta2"] is None and first["seed"] == 2 and first["epoch"] == 1
    assert first["val_acc"] == pytest.approx(0.95 + BUMP["momentum"][2] - 0.2)
    assert list(first)[:4] == ["grid", "run_id", "state", "updater"]
    assert list(first)[-7:] == ["epoch", "lr", "loss", "acc", "val_loss", "val_acc", "seconds"]


def test_load_curves_as_frame(three):
    pd = pytest.importorskip("pandas")
    root, _ = three
    frame = records.load_curves(root, as_frame=True)
    assert isinstance(frame, pd.DataFrame) and frame.shape[0] == 90
    last = frame[frame.epoch == 3].groupby(["updater", "learning_rate"]).val_acc.mean()
    assert last["momentum", 0.1] == pytest.approx(0.952)
    long = frame.melt(id_vars=["run_id", "epoch"], value_vars=list(records.METRICS),
                      var_name="metric")
    assert long.shape[0] == 90 * 4


def test_without_pandas_the_message_says_so(three, monkeypatch):
    root, _ = three
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    for load in (records.load_curves, records.load_results):
        with pytest.raises(ImportError, match=r"needs pandas: pip install pandas"):
            load(root, as_frame=True)
    assert len(records.load_curves(root)) == 90  # lists need no pandas


# The config's analysis: mapping ----------------------------------------------------------

def _config(**extra):
    return parse_config({"model": "logreg", "grid": {"updater": ["adam", "amsgrad"]},
                         **extra}, default_name="g")


def test_config_analysis_is_not_part_of_the_experiment():
    from experiments.config.runs import expand_grid
    from experiments.grid.plan import grid_settings

    plain = _config()
    named = _config(analysis={"baseline": "amsgrad", "candidates": ["adam"]})
    assert named.analysis == {"baseline": "amsgrad", "candidates": ["adam"]}
    assert plain == named  # same experiment
    assert expand_grid(plain) == expand_grid(named)  # run ids and run configs
    assert grid_settings(plain) == grid_settings(named)  # grid.yaml
    assert named.to_dict()["analysis"] == named.analysis and "analysis" not in plain.to_dict()


@pytest.mark.parametrize("analysis, message", [
    ({"baseline": "adm"}, "key 'analysis.baseline': 'adm' is not an updater of this grid "
                          "(did you mean 'adam'?); the grid has adam, amsgrad"),
    ({"basline": "adam"}, "key 'analysis.basline': unknown key (did you mean 'baseline'?)"),
    ({"candidates": []}, "key 'analysis.candidates': empty"),
    ({"baseline": "adam", "candidates": ["adam"]}, "'adam' is the baseline"),
    ("adam", "key 'analysis': expected a mapping"),
])
def test_config_analysis_errors(analysis, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(analysis=analysis)


# The report command ----------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd=None):
    import subprocess

    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "report.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _one_error(proc, *parts):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def test_cli_out_folder_and_flags(three, tmp_path):
    root, _ = three
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "val_acc_mean.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = _cli(root, "--out", out, "--baseline", "amsgrad", "--candidates", "adam,momentum")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.csv", "report.json",
                                                     "report.md"]
    text = (out / "report.md").read_text()
    assert "## AMSGrad vs Adam, paired by seed" in text
    assert "![val_acc (mean)](figures/val_acc_mean.png)" in text  # figures/ next to it
    assert {r["baseline"] for r in _table((out / "report.csv").read_text())} == {"amsgrad"}
    assert json.loads((out / "report.json").read_text())["candidates"] == ["adam", "momentum"]
    # --out FILE.md as before: the CSV and JSON next to it
    proc = _cli(root, "--out", tmp_path / "r" / "mine.md")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["mine.csv", "mine.json",
                                                                  "mine.md"]
    assert "# Adam vs AMSGrad vs Momentum" in (tmp_path / "r" / "mine.md").read_text()


def test_cli_mistakes_are_one_line(three, tmp_path):
    root, _ = three
    _one_error(_cli(root, "--candidates", "adamw"), "--candidates", "'adamw' is not a rule "
               "of this grid (adam, amsgrad, momentum)")
    _one_error(_cli(root, "--baseline", "adam", "--candidates", "adam"), "--candidates",
               "'adam' is the baseline")
    _one_error(_cli(root, "--baseline", "adams"), "--baseline", "'adams' is not a rule")
    _one_error(_cli(root, "--out", tmp_path / "report.txt"), "--out", "report.txt",
               "a folder or a .md file")
    assert not (tmp_path / "report.txt").exists() and not (tmp_path / "r.md").exists()


def test_cli_reads_the_config_analysis(three, tmp_path):
    root, _ = three
    grid = tmp_path / "three"
    import shutil

    shutil.copytree(root, grid)
    config = tmp_path / "configs" / "three.yaml"
    config.parent.mkdir()
    config.write_text("model: logreg\nanalysis:\n  baseline: momentum\n  candidates: [adam]\n")
    (grid / "grid.yaml").write_text(f"config: {config}\n" + (grid / "grid.yaml").read_text())
    proc = _cli(grid)
    assert proc.returncode == 0, proc.stderr
    assert (grid / "report.md").read_text().startswith("# Momentum vs Adam")
    proc = _cli(grid, "--candidates", "amsgrad")  # a flag wins over the config
    assert json.loads((grid / "report.json").read_text())["candidates"] == ["amsgrad"]
    assert json.loads((grid / "report.json").read_text())["baseline"] == "momentum"
    other = tmp_path / "other.yaml"
    other.write_text("analysis: {baseline: adamw}\n")
    _one_error(_cli(grid, "--config", other), str(other), "key 'analysis.baseline'",
               "'adamw' is not an updater of this grid")
