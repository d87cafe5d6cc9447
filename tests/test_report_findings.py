"""The report's first words: key findings (best against best, verdicts with counts and
sizes), an unfinished grid said up front, the provenance of the runs, and numbers
rounded for people. On small hand-made results folders."""
import json
import math
import os

import pytest
import yaml

from experiments.analysis import findings, progress, readable, records, report, stats
from experiments.analysis.provenance import provenance
from experiments.results.store import RunStore

SEEDS = (0, 1, 2)
# Final validation accuracy per (rule, lr) and seed: the per-seed differences are known.
FINAL = {("adam", 0.01): (0.900, 0.902, 0.904), ("amsgrad", 0.01): (0.910, 0.911, 0.915),
         ("adam", 0.001): (0.930, 0.932, 0.931), ("amsgrad", 0.001): (0.920, 0.923, 0.921),
         ("adam", 0.0001): (0.950, 0.951, 0.952), ("amsgrad", 0.0001): (0.950, 0.952, 0.951)}
CODE_A = {"version": "0.1.0", "commit": "a" * 40, "dirty": False}
CODE_B = {"version": "0.1.0", "commit": "b" * 40, "dirty": True}


def run_id(updater, lr, seed):
    return f"{updater}_lr={lr}_seed={seed}"


def write_run(root, updater, lr, seed, final, state="finished", epochs=2, code=CODE_A,
              jax="0.10.2"):
    rid = run_id(updater, lr, seed)
    store = RunStore(os.path.join(root, rid))
    store.write_config({"name": os.path.basename(root), "run_id": rid, "model": "logreg",
                        "dataset": "mnist", "epochs": epochs, "batch_size": 128,
                        "updater": updater, "learning_rate": lr, "beta1": 0.9, "beta2": 0.999,
                        "epsilon": 1e-8, "bias_correction": True, "seed": seed})
    done = epochs if state == "finished" else 1
    store.write_curves([dict(epoch=e, lr=lr, loss=1.0 / e, acc=final, val_loss=1.0 - final,
                             val_acc=final - 0.01 * (done - e), seconds=0.5)
                        for e in range(1, done + 1)])
    store.write_status({"state": state, "code": code, "command": "python run_grid.py g.yaml",
                        "cwd": "/work", "versions": {"python": "3.11.7", "numpy": "2.4.6",
                                                     "jax": jax}})
    return rid


def write_grid(root, plan=None, skip=(), states=None, **kw):
    """Adam and AMSGrad over three learning rates and 3 seeds (18 runs), finals FINAL;
    ``skip`` run ids left out, ``states`` {run id: state}; ``plan`` the planned_runs."""
    os.makedirs(root, exist_ok=True)
    grid = {"name": os.path.basename(root),
            "settings": {"axes": ["updater", "learning_rate"]}}
    if plan is not None:
        grid["planned_runs"] = plan
    with open(os.path.join(root, "grid.yaml"), "w") as f:
        yaml.safe_dump(grid, f)
    ids = []
    for seed in SEEDS:
        for (updater, lr), finals in FINAL.items():
            rid = run_id(updater, lr, seed)
            ids.append(rid)
            if rid not in skip:
                write_run(root, updater, lr, seed, finals[seed],
                          state=(states or {}).get(rid, "finished"), **kw)
    return ids


# Numbers for people -------------------------------------------------------------------

def test_numbers_are_rounded_for_people():
    assert readable.plural(1, "epoch") == "1 epoch" and readable.plural(3, "epoch") == "3 epochs"
    assert readable.plural(0, "setting") == "0 settings"
    assert readable.number(0.02521) == "0.025" and readable.number(0.0999) == "0.10"
    assert readable.number(1234.5, 3) == "1230" and readable.number(math.nan) == "n/a"
    assert readable.p_value(0.02521) == "0.025" and readable.p_value(0.5) == "0.50"
    assert readable.p_value(3e-6) == "< 0.0001" and readable.p_value(None) == "n/a"
    # a difference that is 0 to rounding prints as 0, never -2.22e-17 or -0.000
    assert readable.estimate(-2.220446049250313e-17, (-0.0012, 0.0012)) == ("0", "-0.0012",
                                                                          "0.0012")
    assert readable.fixed(-0.00001, 3) == "0"
    assert readable.estimate(1.85e-17, (-6e-17, 9.7e-17), 100) == ("0", "0", "0")
    # to 2 significant digits of the half-width (0.069 points here): 3 decimals
    assert readable.estimate(-0.00087133, (-0.0015653, -0.00017736), 100) == (
        "-0.087", "-0.157", "-0.018")
    assert readable.estimate(0.02, (math.nan, math.nan), 100) == ("2.0", "n/a", "n/a")
    assert readable.percent(0.93046) == "93.05%"


def test_a_difference_that_is_zero_to_rounding_prints_as_zero(tmp_path):
    root = str(tmp_path / "g")
    os.makedirs(root)
    (tmp_path / "g" / "grid.yaml").write_text("settings: {axes: [updater, learning_rate]}\n")
    # Adam - AMSGrad per seed: 5.55e-17 (0.1 + 0.2 - 0.3 in floats), 0, 0
    for seed, (a, b) in enumerate([(0.1 + 0.2, 0.3), (0.9, 0.9), (0.8, 0.8)]):
        write_run(root, "adam", 0.01, seed, a)
        write_run(root, "amsgrad", 0.01, seed, b)
    assert 0 < stats.compare(records.load_grid(root))[0]["mean"] < 1e-16
    text = report.render_report(records.load_grid(root), str(tmp_path / "r.md"))
    row = next(ln for ln in text.split("### Final validation accuracy")[1].splitlines()
               if ln.startswith("| 0.01 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0" and cells[3] == "[0, 0]" and "e-" not in row
    assert "Model `logreg` on `mnist`, 2 epochs" in text


# Key findings ---------------------------------------------------------------------------

def test_key_findings_come_first_with_counts_and_sizes(tmp_path):
    root = str(tmp_path / "g")
    write_grid(root)
    runs = records.load_grid(root)
    text = report.render_report(runs, str(tmp_path / "r.md"))
    assert text.index("## Key findings") < text.index("## Per setting") \
        < text.index("## Provenance")
    # AMSGrad better at lr=0.01 by 1.0 point (d = -0.010, -0.009, -0.011), Adam at 0.001 by
    # 0.97 (0.010, 0.009, 0.010); 0.0001: d = 0, -0.001, 0.001, no difference.
    rows = stats.compare(runs)
    assert [r["p_holm"] < 0.05 for r in rows] == [True, True, False]
    assert ("- **Adam vs AMSGrad, final validation accuracy, setting by setting:** AMSGrad "
            "is better in 1 of 3 settings tested after Holm, by 1.0 points; Adam in 1, by "
            "0.97 points; 1 shows no significant difference.") in text
    # best against best: Adam lr=0.0001 (95.10%) and AMSGrad lr=0.0001 (95.10%): the same
    assert ("- **Adam vs AMSGrad, best against best** (final validation accuracy): AMSGrad at "
            "its best (lr=0.0001: 95.10%) against Adam at its best (lr=0.0001: 95.10%): the "
            "same to rounding over 3 seeds.") in text


def test_best_against_best_says_who_is_higher_with_interval_and_effect():
    bvb = {"baseline": {"learning_rate": 0.001, "final_val_acc_mean": 0.9305},
           "candidate": {"learning_rate": 0.001, "final_val_acc_mean": 0.9313},
           "n": 5, "mean": -0.00087133, "ci": (-0.0015653, -0.00017736), "d_z": -1.559,
           "p": 0.02521}
    text = findings.best_text(bvb, "adam", "amsgrad", ("learning_rate",))
    assert text == ("AMSGrad at its best (lr=0.001: 93.13%) against Adam at its best "
                    "(lr=0.001: 93.05%): AMSGrad higher by 0.087 points (95% CI 0.018 to "
                    "0.157), d_z = 1.6, paired t-test p = 0.025 over 5 seeds: significant at "
                    "5% (optimistic, as both settings were picked on these runs).")


def test_verdict_sizes_for_a_loss_and_untested_settings():
    def row(mean, p, n=5):
        return {"mean": mean, "p_holm": p, "n": n, "sd": 0.1}
    counts = findings.verdict_counts([row(0.002, 0.01), row(0.013, 0.001), row(-0.03, 0.02),
                                      row(0.1, 0.4), row(math.nan, math.nan, n=1)],
                                     higher_is_better=False)
    assert counts["candidate_better"] == [0.002, 0.013] and counts["baseline_better"] == [0.03]
    text = findings.verdict_text(counts, "adam", "amsgrad", "final_val_loss")
    assert text == ("AMSGrad is better in 2 of 4 settings tested after Holm, by 0.0020 to "
                    "0.013; Adam in 1, by 0.030; 1 shows no significant difference. 1 setting "
                    "could not be tested (fewer than 2 pairs).")


# An unfinished grid ---------------------------------------------------------------------

def test_an_unfinished_grid_says_what_is_missing_first(tmp_path):
    root = str(tmp_path / "g")
    absent = [run_id("adam", 0.01, 2), run_id("amsgrad", 0.01, 2)]
    states = {run_id("adam", 0.001, 1): "running", run_id("amsgrad", 0.001, 2): "failed"}
    plan = write_grid(root, skip=absent, states=states)
    with open(os.path.join(root, "grid.yaml")) as f:
        grid = yaml.safe_load(f)
    grid["planned_runs"] = plan
    with open(os.path.join(root, "grid.yaml"), "w") as f:
        yaml.safe_dump(grid, f)
    runs = records.load_grid(root)
    state = progress.grid_progress(runs)
    assert state["planned"] == 18 and state["on_disk"] == 16 and state["done"] == 14
    assert state["absent"] == absent and state["states"] == {"failed": 1, "finished": 14,
                                                             "running": 1}
    assert [(r["setting"], r["done"], r["total"]) for r in state["incomplete"]] == [
        ("adam_lr=0.01", 2, 3), ("amsgrad_lr=0.01", 2, 3), ("adam_lr=0.001", 2, 3),
        ("amsgrad_lr=0.001", 2, 3)]
    text = report.render_report(runs, str(tmp_path / "r.md"))
    first = text.split("## Key findings\n\n", 1)[1]
    assert first.startswith("**Unfinished grid: 4 of the 18 planned runs are not done** "
                            "(2 not on disk yet, 1 failed, 1 running).\n\nIncomplete settings "
                            "(4): `adam_lr=0.01` (2 of 3 done); `amsgrad_lr=0.01` (2 of 3 done);")
    paths = report.write_report(runs, str(tmp_path / "r.md"))
    data = json.loads(open(paths[2]).read())
    assert list(data)[:3] == ["title", "findings", "progress"]
    assert data["progress"]["absent"] == absent and data["progress"]["planned"] == 18


def test_without_a_plan_the_report_counts_the_runs_on_disk(tmp_path):
    root = str(tmp_path / "g")
    write_grid(root, states={run_id("adam", 0.01, 0): "running"})
    lines = progress.progress_lines(progress.grid_progress(records.load_grid(root)))
    assert lines[0] == ("**Unfinished grid: 1 of the 18 runs on disk is not done** (1 running); "
                        "grid.yaml lists no plan (`planned_runs`), so runs not started yet "
                        "cannot be counted.")
    assert lines[2] == "Incomplete settings (1): `adam_lr=0.01` (2 of 3 done)."
    write_grid(str(tmp_path / "done"))
    assert progress.progress_lines(progress.grid_progress(records.load_grid(
        str(tmp_path / "done")))) == [
        "18 runs on disk, all done (18 finished); grid.yaml lists no plan (`planned_runs`), "
        "so runs not started yet cannot be counted."]
    plan = write_grid(str(tmp_path / "planned"))
    write_grid(str(tmp_path / "planned"), plan=plan)
    assert progress.progress_lines(progress.grid_progress(records.load_grid(
        str(tmp_path / "planned")))) == ["All 18 planned runs are done (18 finished)."]


def test_a_plan_that_cannot_be_read_is_no_plan(tmp_path):
    (tmp_path / "grid.yaml").write_text("planned_runs: [a, b\n")
    assert progress.planned_runs(tmp_path) is None
    (tmp_path / "grid.yaml").write_text("planned_runs: a\n")
    assert progress.planned_runs(tmp_path) is None
    assert progress.planned_runs(tmp_path / "missing") is None
    assert progress.setting_label("adam_lr=0.001_b2=0.99_bc=on_seed=3") == \
        "adam_lr=0.001_b2=0.99_bc=on"


# Provenance -----------------------------------------------------------------------------

def test_provenance_names_commands_commits_and_versions_with_their_runs(tmp_path):
    root = str(tmp_path / "g")
    write_grid(root)
    for updater in ("adam", "amsgrad"):  # resumed on other code: 6 runs
        for seed in SEEDS:
            write_run(root, updater, 0.01, seed, FINAL[updater, 0.01][seed], code=CODE_B,
                      jax="0.4.30")
    os.remove(os.path.join(root, run_id("adam", 0.0001, 0), "status.json"))
    runs = records.load_grid(root)
    summary = provenance(runs)
    assert summary["recorded"] == 17 and summary["unrecorded"] == 1
    assert [(c["commit"][:1], c["runs"]) for c in summary["code"]] == [("a", 11), ("b", 6)]
    text = report.render_report(runs, str(tmp_path / "r.md"))
    part = text.split("## Provenance\n", 1)[1]
    assert "- Command: `python run_grid.py g.yaml` in `/work`" in part
    assert ("- Code: amsgrad-experiments 2 code versions: 0.1.0, commit aaaaaaa, clean (11 "
            "runs); 0.1.0, commit bbbbbbb, dirty (tracked files changed) (6 runs)") in part
    assert "- Libraries: python 3.11.7, numpy 2.4.6" in part
    assert "- jax: 2 versions: 0.10.2 (11 runs); 0.4.30 (6 runs)" in part
    assert "- 1 run without a record" in part


def test_plural_words_in_the_report(tmp_path):
    root = str(tmp_path / "g")
    for seed in (0, 1):
        write_run(root, "adam", 0.01, seed, 0.9, epochs=1)
        write_run(root, "amsgrad", 0.01, seed, 0.9, epochs=1)
    text = report.render_report(records.load_grid(root), str(tmp_path / "r.md"))
    assert "Model `logreg` on `mnist`, 1 epoch, batch size 128." in text
    assert "In 1 setting Adam and AMSGrad ended identical for every seed." in text
    assert "1 settings" not in text and "1 runs" not in text and "1 epochs" not in text


@pytest.mark.parametrize("name", ["findings", "progress", "provenance", "readable",
                                  "report", "report_tables"])
def test_modules_stay_small(name):
    import importlib
    import inspect
    module = importlib.import_module(f"experiments.analysis.{name}")
    source = inspect.getsource(module)
    assert len(source.splitlines()) <= 400
    for fn in [f for _, f in inspect.getmembers(module, inspect.isfunction)
               if f.__module__ == module.__name__]:
        assert len(inspect.getsource(fn).splitlines()) <= 70, fn.__name__
