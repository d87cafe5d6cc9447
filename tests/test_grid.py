"""Grid expansion, run ids, --only, the plan and the grid loop (with a stand-in trainer)."""
import dataclasses
import io
import json
import os
import time

import numpy as np
import pytest

from experiments.config import ConfigError, load_config, parse_config
from experiments.data import Dataset, DataError
from experiments.config.runs import expand_grid, run_id, select
from experiments.grid.plan import plan
from experiments.grid.runner import run_grid
from experiments.results.store import RunStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOG = ("logreg", "cifarnet", "small_vgg", "vgg")


def _blog(name):
    return load_config(os.path.join(REPO, "configs", f"{name}.yaml"))


def _small(**changes):
    """2 updaters x 2 bias corrections x 2 seeds = 8 runs of 3 epochs."""
    data = {"name": "small", "model": "logreg", "epochs": 3, "learning_rate": 0.01,
            "grid": {"updater": ["adam", "amsgrad"], "bias_correction": [True, False]},
            "seeds": [0, 1]}
    data.update(changes)
    return parse_config({k: v for k, v in data.items() if v is not None}, path="small.yaml")


class FakeTrainer:
    """Stands in for experiments.training.train_run: writes curves and a final status."""

    def __init__(self, fail=(), diverge=(), stop_after=None):
        self.calls, self.datasets = [], []
        self.fail, self.diverge, self.stop_after = set(fail), set(diverge), stop_after

    def __call__(self, run, store, engine, data_dir, dataset, quiet, position, on_epoch):
        self.calls.append(run["run_id"])
        self.datasets.append(dataset)
        assert store.read_config() == run  # the grid wrote the run config first
        if run["run_id"] in self.fail:
            raise FloatingPointError("boom\nsecond line")
        start = len(store.read_curves())
        end = run["epochs"] if self.stop_after is None else min(start + self.stop_after,
                                                                 run["epochs"])
        rows = store.read_curves()
        for e in range(start, end):
            rows.append(dict(epoch=e, lr=run["learning_rate"], loss=1.0, acc=0.5, val_loss=1.0,
                             val_acc=0.5 + run["seed"] / 10, seconds=0.1))
            store.write_curves(rows)
            on_epoch(rows[-1])
        state = "diverged" if run["run_id"] in self.diverge else (
            "finished" if end == run["epochs"] else "running")
        return store.update_status(state=state, engine=engine)


def _load(calls):
    def load(name, data_dir=None, quiet=False):
        calls.append((name, data_dir))
        x = np.arange(20 * 4, dtype=np.float32).reshape(20, 1, 2, 2)
        return Dataset(name, x, np.arange(20, dtype=np.int32) % 10, x[:8], np.arange(8) % 10)
    return load


def _run(config, tmp_path, trainer, only=(), dry_run=False, loads=None):
    out = io.StringIO()
    summary = run_grid(config, results_dir=str(tmp_path), only=only, quiet=True,
                       dry_run=dry_run, train_fn=trainer,
                       load_fn=_load([] if loads is None else loads), out=out)
    return summary, out.getvalue()


@pytest.mark.parametrize("name", BLOG)
def test_blog_grids_have_120_distinct_runs(name):
    runs = expand_grid(_blog(name))
    assert len(runs) == 120
    assert len({r["run_id"] for r in runs}) == 120
    assert {r["seed"] for r in runs} == {0, 1, 2, 3, 4}
    assert sum(r["updater"] == "amsgrad" for r in runs) == 60
    assert all(r["epochs"] == 150 and r["batch_size"] == 128 and r["beta1"] == 0.9
               and r["epsilon"] == 1e-8 and r["lr_schedule"] == "linear" for r in runs)


def test_run_ids_read_as_the_settings():
    runs = expand_grid(_blog("vgg"))
    assert runs[0]["run_id"] == "adam_lr=0.01_b2=0.99_bc=on_seed=0"
    by_id = {r["run_id"]: r for r in runs}
    run = by_id["amsgrad_lr=0.001_b2=0.999_bc=off_seed=3"]
    assert [run[k] for k in ("updater", "learning_rate", "beta2", "bias_correction", "seed")] \
        == ["amsgrad", 0.001, 0.999, False, 3]
    assert by_id["adam_lr=0.0001_b2=0.99_bc=on_seed=4"]["learning_rate"] == 0.0001
    # seeds outermost: the first 24 runs are every setting once, with seed 0
    assert {r["seed"] for r in runs[:24]} == {0} and len({r["run_id"] for r in runs[:24]}) == 24


def test_run_id_names_only_the_grid_axes_in_a_fixed_order():
    run = {"updater": "adam", "learning_rate": 1e-5, "beta1": 0.5, "beta2": 0.9, "epsilon": 1e-7,
           "bias_correction": True, "seed": 12}
    assert run_id(run, ["bias_correction", "learning_rate", "epsilon", "beta1"]) \
        == "lr=1e-05_b1=0.5_eps=1e-07_bc=on_seed=12"
    assert run_id(run, []) == "seed=12"


def test_run_ids_are_stable_when_a_grid_grows():
    before = {r["run_id"] for r in expand_grid(_small(grid={"updater": ["adam"]}))}
    after = {r["run_id"] for r in expand_grid(_small(grid={"updater": ["adam", "amsgrad"]},
                                                     seeds=[0, 1, 2]))}
    assert before == {"adam_seed=0", "adam_seed=1"}
    assert before < after and len(after) == 6


def test_run_dict_is_the_resolved_config():
    run = expand_grid(_small())[0]
    assert run == {"name": "small", "run_id": "adam_bc=on_seed=0", "model": "logreg",
                   "dataset": "mnist", "epochs": 3, "batch_size": 128, "val_batch_size": 1024,
                   "lr_schedule": "linear", "augmentation": "none", "train_subset": None,
                   "val_subset": None, "updater": "adam", "learning_rate": 0.01, "beta1": 0.9,
                   "beta2": 0.999, "epsilon": 1e-8, "bias_correction": True,
                   "variant": "lasagne", "subtract_mean": True, "he_gain": "relu", "val_average": "examples",
                   "maxpool_tie_gradient": "all", "precision": "default", "seed": 0}


def test_only_selects_runs():
    config = _blog("vgg")
    runs = expand_grid(config)
    assert len(select(runs, config, ["updater=amsgrad"])) == 60
    assert len(select(runs, config, ["bc=off", "seed=0"])) == 12
    assert len(select(runs, config, ["lr=1e-2", "lr=0.0001"])) == 80
    picked = select(runs, config, ["bias_correction=false", "b2=0.99", "lr=0.001",
                                   "updater=adam", "seed=2"])
    assert [r["run_id"] for r in picked] == ["adam_lr=0.001_b2=0.99_bc=off_seed=2"]


@pytest.mark.parametrize("only, message", [
    ("rate=0.1", "--only 'rate=0.1': unknown key 'rate'; choose from updater, learning_rate, "
                 "beta2, bias_correction, seed"),
    ("lr=0.5", "--only 'lr=0.5': not in this grid; learning_rate is one of 0.01, 0.001, "
               "0.0001"),
    ("learning_rat=0.5", "--only 'learning_rat=0.5': unknown key 'learning_rat' (did you mean "
                         "'learning_rate'?)"),
    ("lr=fast", "--only 'lr=fast': expected a number, got 'fast'"),
    ("seed=9", "--only 'seed=9': not in this grid; seed is one of 0, 1, 2, 3, 4"),
    ("seed=x", "--only 'seed=x': expected an integer, got 'x'"),
    ("epochs=3", "--only 'epochs=3': 'epochs' is fixed to 150 in this grid"),
    ("updater", "--only 'updater': expected key=value"),
])
def test_bad_only_is_a_config_error(only, message):
    config = _blog("vgg")
    with pytest.raises(ConfigError) as info:
        select(expand_grid(config), config, [only])
    assert str(info.value).startswith(message)


def test_epochs_override_is_another_grid():
    from experiments.config.overrides import load_with_overrides
    path = os.path.join(REPO, "configs", "vgg.yaml")
    assert load_with_overrides(path, ["epochs=150"]) == _blog("vgg")
    short = load_with_overrides(path, ["epochs=2"])
    assert short.name.startswith("vgg_epochs=2_") and short.fixed["epochs"] == 2


def test_grid_trains_everything_once_and_skips_what_is_done(tmp_path):
    config, trainer, loads = _small(), FakeTrainer(), []
    summary, out = _run(config, tmp_path, trainer, loads=loads)
    assert sorted(trainer.calls) == sorted(r["run_id"] for r in expand_grid(config))
    assert summary["failed"] == [] and len(summary["trained"]) == 8
    assert loads == [("mnist", None)]  # the dataset is loaded once per grid
    assert all(d is trainer.datasets[0] for d in trainer.datasets)
    assert out.startswith("small: 8 runs in ")
    assert "0 done, 8 to do (8 new)" in out.splitlines()[0]

    grid_dir = tmp_path / "small"
    mtimes = {p: os.stat(p).st_mtime_ns for p in grid_dir.glob("*/*")}
    again, loads2 = FakeTrainer(), []
    summary, out = _run(config, tmp_path, again, loads=loads2)
    assert again.calls == [] and loads2 == []  # nothing to do: no data loaded either
    assert summary["done_before"] == 8
    assert "8 done (8 finished), 0 to do" in out
    assert {p: os.stat(p).st_mtime_ns for p in grid_dir.glob("*/*")} == mtimes


def test_failed_runs_are_recorded_and_retried_diverged_are_not(tmp_path):
    config = _small()
    trainer = FakeTrainer(fail={"adam_bc=off_seed=0"}, diverge={"amsgrad_bc=on_seed=1"})
    summary, _ = _run(config, tmp_path, trainer)
    assert len(trainer.calls) == 8  # a failure does not stop the grid
    assert summary["failed"] == ["adam_bc=off_seed=0"] and len(summary["trained"]) == 7
    status = RunStore(tmp_path / "small" / "adam_bc=off_seed=0").read_status()
    assert status["state"] == "failed"
    assert status["error"] == "FloatingPointError: boom"
    assert "Traceback" in status["traceback"]
    diverged = RunStore(tmp_path / "small" / "amsgrad_bc=on_seed=1").read_status()
    assert diverged["state"] == "diverged"

    retry = FakeTrainer()
    summary, out = _run(config, tmp_path, retry)
    assert retry.calls == ["adam_bc=off_seed=0"]
    assert "(7 finished, 1 diverged)" not in out  # 6 finished + 1 diverged were done
    assert "7 done (6 finished, 1 diverged), 1 to do (1 failed)" in out
    assert summary["failed"] == []


def test_partly_trained_runs_are_handed_back_to_the_trainer(tmp_path):
    config = _small()
    first = FakeTrainer(stop_after=1)  # returns while still 'running': counts as failed
    summary, _ = _run(config, tmp_path, first, only=["seed=0"])
    assert len(summary["failed"]) == 4
    the_plan = plan(config, str(tmp_path))
    assert [the_plan.label(r) for r in the_plan.runs[:4]] == ["failed"] * 4
    store = RunStore(tmp_path / "small" / "adam_bc=on_seed=0")
    store.update_status(state="running")  # as after a kill
    assert plan(config, str(tmp_path)).label(the_plan.runs[0]) == "partial 1/3"
    assert plan(config, str(tmp_path)).label(the_plan.runs[5]) == "new"

    second = FakeTrainer()
    _run(config, tmp_path, second, only=["seed=0"])
    assert len(second.calls) == 4
    assert [r["epoch"] for r in store.read_curves()] == [0, 1, 2]


def test_dry_run_writes_nothing_and_lists_states(tmp_path):
    config = _small()
    _run(config, tmp_path, FakeTrainer(), only=["updater=adam", "bc=on"])
    trainer = FakeTrainer()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    summary, out = _run(config, tmp_path, trainer, dry_run=True)
    assert trainer.calls == [] and sorted(str(p) for p in tmp_path.rglob("*")) == before
    lines = out.splitlines()
    assert "2 done (2 finished), 6 to do (6 new)" in lines[0]
    assert lines[1].startswith("cost: 6 runs x 3 epochs: ") and lines[2].startswith("time: ")
    assert lines[3].split() == ["finished", "adam_bc=on_seed=0"]
    assert lines[4].split() == ["new", "adam_bc=off_seed=0"]
    assert len(lines) == 11


def test_changed_fixed_settings_are_refused(tmp_path):
    _run(_small(), tmp_path, FakeTrainer(), only=["seed=0"])
    with pytest.raises(ConfigError) as info:
        plan(_small(epochs=5), str(tmp_path))
    message = str(info.value)
    assert message.startswith("small.yaml: ") and "epochs: 3 -> 5" in message
    assert "change the config's name" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"axes: \['updater', 'bias_correction'\] -> "
                                          r"\['updater', 'learning_rate', 'bias_correction'\]; "
                                          r"learning_rate: 0.01 -> '\(unset\)'"):
        plan(_small(learning_rate=None, grid={"updater": ["adam", "amsgrad"], "bias_correction":
                                              [True, False], "learning_rate": [0.01]}),
             str(tmp_path))
    # more seeds or axis values are the same experiment, grown
    grown = _small(seeds=[0, 1, 2], grid={"updater": ["adam", "amsgrad"],
                                          "bias_correction": [True, False]})
    assert len(plan(grown, str(tmp_path)).todo) == 8
    # a different --epochs goes elsewhere instead of being refused
    five = dataclasses.replace(_small(), name="small_epochs=5",
                               fixed={**_small().fixed, "epochs": 5})
    assert plan(five, str(tmp_path)).grid_dir.endswith("small_epochs=5")


def test_run_configured_otherwise_is_refused(tmp_path):
    config = _small()
    _run(config, tmp_path, FakeTrainer(), only=["seed=0"])
    os.remove(tmp_path / "small" / "grid.yaml")  # even without the grid's record
    with pytest.raises(ConfigError, match=r"adam_bc=on_seed=0 was configured otherwise "
                                          r"\(learning_rate: 0.01 -> 0.02\)"):
        plan(_small(learning_rate=0.02), str(tmp_path))


def test_subsets_are_applied_once_for_the_grid(tmp_path):
    trainer = FakeTrainer()
    _run(_small(train_subset=5, val_subset=3), tmp_path, trainer, only=["seed=0"])
    dataset = trainer.datasets[0]
    assert dataset.x_train.shape == (5, 1, 2, 2) and dataset.y_val.shape == (3,)
    np.testing.assert_array_equal(dataset.y_train, [0, 1, 2, 3, 4])


def test_subset_larger_than_the_data_is_a_config_error(tmp_path):
    trainer = FakeTrainer()
    with pytest.raises(ConfigError, match=r"^small.yaml: key 'val_subset': 9 is more than the "
                                          r"8 examples mnist has$"):
        _run(_small(val_subset=9), tmp_path, trainer)
    assert trainer.calls == []


def test_data_errors_stop_the_grid(tmp_path):
    def missing(name, data_dir=None, quiet=False):
        raise DataError("no MNIST in /nowhere")
    with pytest.raises(DataError):
        run_grid(_small(), results_dir=str(tmp_path), quiet=True, train_fn=FakeTrainer(),
                 load_fn=missing, out=io.StringIO())


def test_results_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):  # scripts/run_grid.py: one line, exit 3
        plan(_small(), str(tmp_path / "file"))


def test_a_run_held_by_a_live_runner_is_left_to_it(tmp_path):
    from experiments.results.claims import acquire
    run_dir = tmp_path / "small" / "adam_bc=on_seed=0"
    run_dir.mkdir(parents=True)
    with acquire(run_dir / "claim.json", heartbeat=0.2):  # another runner, still beating
        trainer = FakeTrainer()
        start = time.time()
        summary, out = _run(_small(), tmp_path, trainer, only=["seed=0"])
    assert summary["busy"] == ["adam_bc=on_seed=0"] and summary["failed"] == []
    assert time.time() - start < 30  # it saw a beat and went, long before stale_after
    assert sorted(trainer.calls) == ["adam_bc=off_seed=0", "amsgrad_bc=off_seed=0",
                                     "amsgrad_bc=on_seed=0"]
    assert out.splitlines()[-1] == "small: 3 trained, 0 failed; 3/4 done; 1 in progress elsewhere"
    assert os.listdir(run_dir) == []  # not touched


def test_a_run_whose_owner_stopped_beating_elsewhere_is_waited_for(tmp_path, capsys):
    # Its owner died on another host: its pid cannot be checked, its claim goes stale.
    run_dir = tmp_path / "small" / "adam_bc=on_seed=0"
    run_dir.mkdir(parents=True)
    (run_dir / "claim.json").write_text(json.dumps(
        {"pid": 4242, "host": "elsewhere", "pidns": None, "token": "t",
         "started": time.time(), "heartbeat": time.time()}))
    trainer = FakeTrainer()
    start = time.time()
    summary = run_grid(_small(), results_dir=str(tmp_path), only=["seed=0"], quiet=True,
                       train_fn=trainer, load_fn=_load([]), out=io.StringIO(),
                       stale_after=1.5, heartbeat=0.1)
    waited = time.time() - start
    assert sorted(summary["trained"]) == sorted(trainer.calls) and len(trainer.calls) == 4
    assert trainer.calls[-1] == "adam_bc=on_seed=0" and summary["busy"] == []
    assert 1.5 <= waited < 20
    assert "took the run over from elsewhere:4242: its heartbeat is 2 s old" in \
        capsys.readouterr().err


def test_a_runner_whose_claim_is_taken_over_stops_without_writing(tmp_path):
    from experiments.results.claims import acquire

    class TakenOver(FakeTrainer):
        """After one epoch, another runner judges this one dead and takes the run over."""
        def __call__(self, run, store, **kwargs):
            on_epoch = kwargs.pop("on_epoch")
            taken = []

            def hook(row):
                if not taken:
                    time.sleep(0.01)  # a moment of silence, more than stale_after=0
                    taken.append(acquire(store.claim.path, stale_after=0, heartbeat=None))
                    assert taken[0] is not None
                on_epoch(row)
            return super().__call__(run, store, on_epoch=hook, **kwargs)
    trainer = TakenOver()
    summary, out = _run(_small(), tmp_path, trainer, only=["seed=0", "updater=adam", "bc=on"])
    assert summary["busy"] == ["adam_bc=on_seed=0"] and summary["failed"] == []
    store = RunStore(tmp_path / "small" / "adam_bc=on_seed=0")
    assert len(store.read_curves()) == 1  # the epoch before the takeover, then nothing
    assert store.read_status().get("state") is None  # not marked failed by the loser


def test_the_runner_records_the_grids_plan_keeping_grid_yaml_as_it_was(tmp_path):
    from experiments.analysis.progress import planned_runs
    grid_yaml = tmp_path / "small" / "grid.yaml"
    _run(_small(), tmp_path, FakeTrainer(), only=["seed=0"])
    every = [r["run_id"] for r in expand_grid(_small())]
    assert planned_runs(tmp_path / "small") == every  # the grid's runs, not --only's
    # a grid.yaml of before: its text stays, byte for byte, the plan is added at its end
    old = grid_yaml.read_text().split("planned_runs:")[0]
    grid_yaml.write_text(old)
    _run(_small(seeds=[0, 1, 2]), tmp_path, FakeTrainer())  # grown by a seed
    text = grid_yaml.read_text()
    assert text.startswith(old) and text[len(old):].startswith("planned_runs:\n- ")
    grown = [r["run_id"] for r in expand_grid(_small(seeds=[0, 1, 2]))]
    assert planned_runs(tmp_path / "small") == grown
    # a grid done by a version that kept no plan: a run with nothing to do adds it
    grid_yaml.write_text(old)
    summary, _ = _run(_small(seeds=[0, 1, 2]), tmp_path, FakeTrainer())
    assert summary["trained"] == [] and planned_runs(tmp_path / "small") == grown
    assert grid_yaml.read_text() == text
    # fewer seeds asked for later: what was planned stays planned
    _run(_small(seeds=[0]), tmp_path, FakeTrainer(), only=["seed=0"])
    assert planned_runs(tmp_path / "small") == grown and grid_yaml.read_text() == text
    # a grid.yaml edited so that the list is not its last key is left alone
    edited = text.replace("planned_runs:", "extra: 1\nplanned_runs:", 1) + "note: mine\n"
    grid_yaml.write_text(edited)
    _run(_small(seeds=[0, 1, 2, 3]), tmp_path, FakeTrainer())
    assert grid_yaml.read_text() == edited


def test_the_epilogue_names_each_rules_best_setting_and_the_commands(tmp_path):
    from experiments.analysis.epilogue import epilogue
    config = _small(grid={"updater": ["adam", "amsgrad"], "bias_correction": [True, False],
                          "learning_rate": [0.01, 0.001]}, learning_rate=None)
    out = io.StringIO()
    summary = run_grid(config, results_dir=str(tmp_path), quiet=True, train_fn=FakeTrainer(),
                       load_fn=_load([]), out=out,
                       epilogue=lambda d: epilogue(d, "amsgrad-report", "amsgrad-plot"))
    assert len(summary["trained"]) == 16
    lines = out.getvalue().splitlines()
    grid = tmp_path / "small"
    # FakeTrainer: val_acc 0.5 + seed / 10 in every setting: seeds 0 and 1 give 55% ± 7.07
    assert lines[-6:] == [
        "best setting of each rule (final val_acc, mean ± sd over seeds):",
        "  adam_lr=0.01_bc=on     55.00% ± 7.07  (2 seeds)",
        "  amsgrad_lr=0.01_bc=on  55.00% ± 7.07  (2 seeds)",
        f"report:  amsgrad-report {grid}  (report.md, .csv, .json in that folder)",
        f"figures: amsgrad-plot {grid}    (PNG and PDF in its figures/)",
        "small: 16 trained, 0 failed; 16/16 done"]
    assert epilogue(grid, encoding="ascii")[0].endswith("mean +- sd over seeds):")
    assert epilogue(tmp_path / "nothing") == []
    # nothing trained: no epilogue
    again = io.StringIO()
    run_grid(config, results_dir=str(tmp_path), quiet=True, train_fn=FakeTrainer(),
             load_fn=_load([]), out=again, epilogue=lambda d: ["never"])
    assert "never" not in again.getvalue()
