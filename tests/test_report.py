"""The Markdown report: statistics against numpy/scipy on a fixed fake results set."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from experiments.analysis import records, report
from experiments.analysis import stats as grid_stats
from test_plots import BETA2S, LRS, NAN, STUCK, write_fake_grid

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2, 3, 4)
AXES = ("learning_rate", "beta2", "bias_correction")  # the post's


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "fake"
    written = write_fake_grid(root, seeds=SEEDS)
    return root, written, records.load_grid(root)


def _settings():
    return [(lr, b2, bc) for lr in LRS for b2 in BETA2S for bc in (True, False)]


def _final(written, updater, setting, stat="val_acc", seeds=SEEDS):
    return np.array([written[(updater, *setting, s)][0][stat][-1] for s in seeds])


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.5
    np.testing.assert_allclose(grid_stats.holm([0.01, 0.04, 0.03, np.nan, 0.5]),
                               [0.04, 0.09, 0.09, np.nan, 0.5])
    np.testing.assert_allclose(grid_stats.holm([0.3, 0.6]), [0.6, 0.6])
    np.testing.assert_allclose(grid_stats.holm([0.9, 0.8, 0.01]), [1.0, 1.0, 0.03])


def test_paired_test_hand_computed():
    # d = [1, 2, 2]: mean 5/3, sd sqrt(1/3), t = 5; with 2 df, p = 1 - t / sqrt(t^2 + 2).
    res = grid_stats.paired_test([1.0, 2.0, 3.0], [0.0, 0.0, 1.0])
    assert res["n"] == 3 and res["mean"] == pytest.approx(5 / 3)
    assert res["sd"] == pytest.approx(np.sqrt(1 / 3))
    assert res["t"] == pytest.approx(5.0)
    assert res["p"] == pytest.approx(1 - 5 / np.sqrt(27))
    half = 4.302652729749464 / 3  # t_{0.975, 2} * sd / sqrt(3)
    assert res["ci"] == pytest.approx((5 / 3 - half, 5 / 3 + half))
    assert np.isnan(res["p_wilcoxon"])  # fewer than 5 pairs
    one = grid_stats.paired_test([1.0], [0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and np.isnan(one["p"]) and np.isnan(one["sd"])


def test_summary_matches_numpy(grid):
    _, written, runs = grid
    rows = {(r["updater"], r["learning_rate"], r["beta2"], r["bias_correction"]): r
            for r in grid_stats.summarize(runs)}
    assert len(rows) == 16
    for (updater, lr, beta2, bc), row in rows.items():
        curves = [written[(updater, lr, beta2, bc, s)][0] for s in SEEDS]
        assert row["n"] == 5 and row["n_running"] == 0 and row["seeds"] == list(SEEDS)
        assert row["n_diverged"] == sum((updater, lr, beta2, bc, s) in (STUCK, NAN)
                                        for s in SEEDS)
        expect = {"final_val_acc": [c["val_acc"][-1] for c in curves],
                  "best_val_acc": [np.nanmax(c["val_acc"]) for c in curves],
                  "final_val_loss": [c["val_loss"][-1] for c in curves],
                  "best_val_loss": [np.nanmin(c["val_loss"]) for c in curves],
                  "final_loss": [c["loss"][-1] for c in curves]}
        for name, values in expect.items():
            np.testing.assert_allclose(row[f"{name}_mean"], np.mean(values), rtol=1e-12)
            np.testing.assert_allclose(row[f"{name}_std"], np.std(values, ddof=1), rtol=1e-12)
    # The NaN run makes its setting's final losses undefined, not silently dropped.
    assert np.isnan(rows["amsgrad", 0.01, 0.99, False]["final_val_loss_mean"])
    assert rows["adam", 0.01, 0.999, False]["final_val_loss_mean"] > 2  # stuck at 14.5


def test_comparisons_match_scipy(grid):
    _, written, runs = grid
    for stat, metric in (("final_val_acc", "val_acc"), ("final_val_loss", "val_loss")):
        rows = grid_stats.compare(runs, stat)
        assert [(r["learning_rate"], r["beta2"], r["bias_correction"]) for r in rows] == _settings()
        raw = []
        for row in rows:
            setting = (row["learning_rate"], row["beta2"], row["bias_correction"])
            a, b = _final(written, "adam", setting, metric), _final(written, "amsgrad", setting,
                                                                    metric)
            d = a - b
            assert row["n"] == 5 and row["seeds"] == list(SEEDS)
            if not np.all(np.isfinite(d)):
                assert np.isnan(row["p"]) and np.isnan(row["ci"][0])
                raw.append(np.nan)
                continue
            assert row["mean"] == pytest.approx(d.mean(), rel=1e-12)
            ci = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
            np.testing.assert_allclose(row["ci"], ci, rtol=1e-10)
            res = stats.ttest_rel(a, b)
            assert row["t"] == pytest.approx(res.statistic, rel=1e-10)
            assert row["p"] == pytest.approx(res.pvalue, rel=1e-10)
            assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
            raw.append(res.pvalue)
        finite = [p for p in raw if np.isfinite(p)]
        order = np.argsort(finite)
        holm = np.maximum.accumulate([min(1, (len(finite) - k) * finite[i])
                                      for k, i in enumerate(order)])
        expected = np.empty(len(finite))
        expected[order] = holm
        got = [r["p_holm"] for r in rows if np.isfinite(r["p"])]
        np.testing.assert_allclose(got, expected, rtol=1e-10)
    # The fake data give Adam +0.01 val acc: some settings are significant at 5%.
    assert any(r["p"] < 0.05 for r in grid_stats.compare(runs))


def test_best_against_best(grid):
    _, written, runs = grid
    res = grid_stats.best_vs_best(runs, grid_stats.summarize(runs))
    best = {u: (res[k]["learning_rate"], res[k]["beta2"], res[k]["bias_correction"])
            for u, k in (("adam", "baseline"), ("amsgrad", "candidate"))}
    a, b = _final(written, "adam", best["adam"]), _final(written, "amsgrad", best["amsgrad"])
    assert res["seeds"] == list(SEEDS)
    assert res["mean"] == pytest.approx((a - b).mean())
    assert res["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def _section(text, heading):
    part = text.split(heading, 1)[1]
    return part.split("\n#", 1)[0]


def test_markdown_shows_the_numbers(grid, tmp_path):
    root, written, runs = grid
    text = report.render_report(runs, str(tmp_path / "report.md"))
    summary = {(r["updater"], r["learning_rate"], r["beta2"], r["bias_correction"]): r
               for r in grid_stats.summarize(runs)}
    row = summary["adam", 0.001, 0.99, True]
    values = _final(written, "adam", (0.001, 0.99, True))
    line = next(ln for ln in text.splitlines() if ln.startswith("| adam | 0.001 | 0.99 | on |"))
    # accuracies in percent, losses as they are
    assert f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}" in line
    assert f"{row['final_loss_mean']:.4f} ± {row['final_loss_std']:.4f}" in line
    acc = _section(text, "### Final validation accuracy")
    assert "| pairs | mean diff. (points) | 95% CI |" in acc
    rows = grid_stats.compare(runs)
    for r in rows:
        line = next(ln for ln in acc.splitlines() if ln.startswith(
            f"| {r['learning_rate']:g} | {r['beta2']:g} | {'on' if r['bias_correction'] else 'off'} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == "5"
        # the difference in points, to 2 significant digits of the interval's half-width
        half = 100 * (r["ci"][1] - r["ci"][0]) / 2
        decimals = max(0, 1 - int(np.floor(np.log10(half))))
        low, high = cells[5].strip("[]").split(", ")
        for shown, value in ((cells[4], r["mean"]), (low, r["ci"][0]), (high, r["ci"][1])):
            assert shown == ("0" if round(100 * value, decimals) == 0
                             else f"{100 * value:.{decimals}f}")
        assert cells[6] == f"{r['t']:.2f}"
        for shown, p in zip(cells[7:10], (r["p"], r["p_holm"], r["p_wilcoxon"])):
            assert float(shown) == pytest.approx(float(f"{p:.2g}"))  # 2 significant digits
        better = "Adam" if r["mean"] > 0 else "AMSGrad"  # accuracy: higher is better
        assert cells[10] == (f"yes: {better} better" if r["p"] < 0.05 else "no")
        assert cells[11] == (f"yes: {better} better" if r["p_holm"] < 0.05 else "no")
    n_raw = sum(r["p"] < 0.05 for r in rows)
    n_holm = sum(r["p_holm"] < 0.05 for r in rows)
    assert f"of 8 settings tested, {n_raw} show a difference" in acc
    assert f"and {n_holm} after Holm correction" in acc
    assert "**Conclusion:" in acc
    loss = _section(text, "### Final validation loss")
    assert "| 0.01 | 0.99 | off | 5 | n/a |" in loss  # the NaN run
    best = grid_stats.best_settings(grid_stats.summarize(runs))
    means = {k: _final(written, k[0], k[1:]).mean() for k in summary}
    for u in ("adam", "amsgrad"):
        top = max((k for k in means if k[0] == u), key=means.get)
        assert (best[u]["learning_rate"], best[u]["beta2"], best[u]["bias_correction"]) == top[1:]


def test_partial_results(tmp_path):
    # Seeds 0 and 2; seed 2 is still running: n = 1 everywhere -> std and tests n/a.
    written = write_fake_grid(tmp_path / "fake", seeds=(0, 2), partial=True)
    runs = records.load_grid(tmp_path / "fake")
    rows = grid_stats.summarize(runs)
    assert len(rows) == 12 and all(r["n"] == 1 and r["n_running"] == 1 for r in rows)
    assert all(np.isnan(r["final_val_acc_std"]) for r in rows)
    row = next(r for r in rows if (r["updater"], r["learning_rate"], r["beta2"], r["bias_correction"])
               == ("adam", 0.01, 0.99, True))
    assert row["final_val_acc_mean"] == written["adam", 0.01, 0.99, True, 0][0]["val_acc"][-1]
    comparisons = grid_stats.compare(runs)
    assert all(r["n"] == 1 and np.isnan(r["p"]) and np.isnan(r["p_holm"]) for r in comparisons)
    text = report.render_report(runs, str(tmp_path / "report.md"))
    assert "| adam | 0.01 | 0.99 | on | 1 | 0 | 1 |" in text
    assert f"{100 * row['final_val_acc_mean']:.2f} ± n/a" in text
    assert "nothing can be tested" in text


def test_unpaired_seeds_are_left_out(tmp_path):
    write_fake_grid(tmp_path / "fake", seeds=(0, 1, 2))
    # AMSGrad's seed 1 of one setting is missing: that setting has 2 pairs, seeds 0 and 2.
    shutil.rmtree(tmp_path / "fake" / "amsgrad_lr0.001_b0.999_bc1_s1")
    rows = {(r["learning_rate"], r["beta2"], r["bias_correction"]): r
            for r in grid_stats.compare(records.load_grid(tmp_path / "fake"))}
    assert rows[0.001, 0.999, True]["seeds"] == [0, 2]
    assert rows[0.001, 0.99, True]["seeds"] == [0, 1, 2]


def _cli(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_cli_writes_the_report(grid, tmp_path):
    root, _, _ = grid
    results = tmp_path / "fake"
    shutil.copytree(root, results)
    (results / "figures").mkdir()
    for name in ("val_acc.png", "loss_last.png"):
        (results / "figures" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = _cli(results)
    assert proc.returncode == 0, proc.stderr
    text = (results / "report.md").read_text()
    assert "![val_acc (full)](figures/val_acc.png)" in text
    assert "![loss (last)](figures/loss_last.png)" in text
    assert "val_loss.png" not in text  # only figures that exist are linked
    proc = _cli(results, "--out", tmp_path / "elsewhere" / "r.md")
    assert proc.returncode == 0, proc.stderr
    assert "](../fake/figures/val_acc.png)" in (tmp_path / "elsewhere" / "r.md").read_text()


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_cli_bad_results_dir(tmp_path, case):
    target = tmp_path / "results"
    if case == "empty":
        target.mkdir()
    proc = _cli(target)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0]
    assert not target.joinpath("report.md").exists()


def test_cli_reports_where_each_synthetic_lane_ends(tmp_path):
    """x = end * step / 4 over steps 0..4 (test_plots.write_synthetic): the final x is
    ``end``, the last tenth of the steps is step 4 alone, and only a lane ending at -1
    reaches x <= -0.99 (at step 4)."""
    from test_plots import write_synthetic
    folder = tmp_path / "results" / "syn"
    write_synthetic(folder, rules=[("amsgrad_b2=0.9", -0.9), ("adam_b2=0.9", 1.0),
                                   ("adam_b2=0.99", 0.5), ("adopt_b2=0.99", -1.0)])
    proc = _cli(tmp_path / "results")
    assert proc.returncode == 0, proc.stderr
    text = (folder / "report.md").read_text()
    assert "| rule | β2=0.9 | β2=0.99 |" in text
    assert "| Adam | +1.000 (+1.000; never) | +0.500 (+0.500; never) |" in text
    assert "| AMSGrad | -0.900 (-0.900; never) |  |" in text
    assert "| ADOPT |  | -1.000 (-1.000; 4) |" in text
    assert text.index("| Adam |") < text.index("| AMSGrad |") < text.index("| ADOPT |")
    rows = list(csv.DictReader(open(folder / "report.csv")))
    assert len(rows) == 8 and {r["problem"] for r in rows} == {"online", "stochastic"}
    adopt = [r for r in rows if r["rule"] == "adopt"][0]
    assert (adopt["beta2"], adopt["final_x"], adopt["first_near_optimum"]) == \
        ("0.99", "-1.0", "4")


def test_cli_on_an_empty_folder_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _cli(tmp_path / "empty")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: no training runs (no */config.yaml) in results folder '{tmp_path / 'empty'}'"]


def test_verdicts_at_the_five_percent_line():
    def row(lr, mean, p):
        return {"learning_rate": lr, "beta2": 0.999, "bias_correction": True, "n": 5, "mean": mean,
                "sd": 0.1, "ci": (mean - 1, mean + 1), "t": 2.0, "p": p, "p_wilcoxon": np.nan,
                "d_z": mean / 0.1}
    rows = [row(0.01, 0.02, 0.0049), row(0.001, -0.01, 0.0499), row(0.0001, 0.01, 0.0501),
            row(0.1, 0.0, np.nan)]
    for r, p in zip(rows, grid_stats.holm([r["p"] for r in rows])):
        r["p_holm"] = p  # 0.0147, 0.0998, 0.0998
    lines = report._comparison_section(rows, AXES, "Final validation accuracy")
    verdicts = [[c.strip() for c in ln.strip("|").split("|")][10:12] for ln in lines[4:8]]
    assert verdicts == [["yes: Adam better", "yes: Adam better"], ["yes: AMSGrad better", "no"],
                        ["no", "no"], ["n/a", "n/a"]]
    text = "\n".join(lines)
    assert "of 3 settings tested, 2 show a difference" in text
    assert "and 1 after Holm correction across the 3 tests" in text
    assert "differ significantly in final validation accuracy in 1 of 3 settings" in text
    # For a loss, lower is better: a positive Adam − AMSGrad favours AMSGrad.
    lines = report._comparison_section(rows, AXES, "Final validation loss", higher_is_better=False)
    assert [c.strip() for c in lines[4].strip("|").split("|")][10] == "yes: AMSGrad better"
    # Identical results for every seed: nothing to test, and said so.
    same = grid_stats.paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same["mean"] == 0 and same["sd"] == 0 and np.isnan(same["p"])
    lines = report._comparison_section(
        [{**same, "learning_rate": 0.01, "beta2": 0.99, "bias_correction": True, "p_holm": np.nan}], AXES, "X")
    assert lines[4].endswith("| no: identical | no: identical | n/a |")  # d_z undefined
    assert "In 1 setting Adam and AMSGrad ended identical for every seed." in lines[-1]
