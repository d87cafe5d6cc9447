"""A dataset, a model, a metric, a logger and an experiment kind are each one entry,
registered here from a test file as a user's own would be, and the suite takes them in
every part: config, grid, trainer, engines, files, figures. (A rule: test_rule_plugin.py;
an engine: the toy engine of test_faults.py.)"""
import io
import textwrap
from pathlib import Path

import numpy as np
import pytest

from experiments import models
from experiments.analysis import figures, records
from experiments.cli.run_grid import main as run_grid_main
from experiments.config import kinds, load_config
from experiments.config.checks import Key, integer
from experiments.data import Dataset, DatasetEntry, register_dataset
from experiments.grid.runner import run_grid
from experiments.models import DenseLayer
from experiments.results import metrics
from experiments.results.store import RunStore
from experiments.training import metric_logs

# -- a dataset: its loader and one entry -------------------------------------------------


def load_stripes(root, download, quiet):
    """Two classes of 4x4 images: a bright top row or a bright bottom row, with noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 320).astype(np.int32)
    x = rng.normal(0, 0.3, (320, 1, 4, 4)).astype(np.float32)
    x[y == 0, 0, 0, :] += 1.0
    x[y == 1, 0, 3, :] += 1.0
    return Dataset("stripes", x[:256], y[:256], x[256:], y[256:], mean_subtracted=False)


register_dataset(DatasetEntry("stripes", load_stripes, input_shape=(1, 4, 4), classes=2,
                              augmentation="none", subtract_mean=False), replace=True)

# -- a model: a builder of its layers for a number of classes, and one entry -------------


def mlp(classes):
    return (DenseLayer("hidden", 16, W="he"),
            DenseLayer("out", classes, W="glorot", nonlinearity="softmax"))


if "mlp" not in models.model_names():
    models.register_model("mlp", mlp, "stripes", "a one-hidden-layer perceptron")

GRID = textwrap.dedent("""\
    name: stripes
    model: {model}
    dataset: stripes
    epochs: 4
    batch_size: 32
    val_batch_size: 64
    lr_schedule: constant
    grid:
      updater: [adam, amsgrad]
      learning_rate: [0.05, 0.01]
    seeds: 2
    """)


def _grid(tmp_path, model="logreg", **options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{model}.yaml"
    path.write_text(GRID.format(model=model))
    config = load_config(path)
    summary = run_grid(config, results_dir=tmp_path / "results", quiet=True, out=io.StringIO(),
                       **options)
    return config, summary


def test_logreg_trains_on_a_dataset_registered_here(tmp_path):
    config, summary = _grid(tmp_path)
    assert config.fixed["augmentation"] == "none" and config.fixed["subtract_mean"] is False
    assert models.get_model("logreg", "stripes").layers[0].num_units == 2  # two classes
    assert len(summary["trained"]) == 8
    runs = records.load_grid(tmp_path / "results" / "stripes")
    best = max(r.curves["val_acc"][-1] for r in runs)
    assert best > 0.95  # the stripes are learnt


def test_a_model_registered_here_trains_grouped_and_alone_alike(tmp_path):
    _, grouped = _grid(tmp_path / "g", model="mlp", group_size=8)
    _, alone = _grid(tmp_path / "a", model="mlp", group_size=1)
    assert len(grouped["trained"]) == len(alone["trained"]) == 8
    for run in records.load_grid(tmp_path / "g" / "results" / "stripes"):
        other = RunStore(tmp_path / "a" / "results" / "stripes" / run.config["run_id"])
        np.testing.assert_allclose([r["val_loss"] for r in other.read_curves()],
                                   run.curves["val_loss"], rtol=1e-5)
    assert models.count_params(models.get_model("mlp")) == 16 * 16 + 16 + 16 * 2 + 2


# -- a metric: one entry, computed from a run's curves ----------------------------------

def test_a_metric_registered_here_reaches_the_records_and_the_figures(tmp_path):
    metrics.register_metric(metrics.Metric("val_error", "validation error", False,
                                           validation=True,
                                           derive=lambda row: 1.0 - row["val_acc"]),
                            replace=True)
    try:
        _grid(tmp_path)
        runs = records.load_grid(tmp_path / "results" / "stripes")
        np.testing.assert_allclose(runs[0].curves["val_error"], 1 - runs[0].curves["val_acc"])
        written = figures.plot_grid(runs, tmp_path / "figures", metrics=["val_error"],
                                    formats=["png"])
        assert sorted(p.rsplit("/", 1)[1] for p in written) == [
            "val_error.png", "val_error_best.png", "val_error_last.png", "val_error_mean.png"]
    finally:
        metrics.unregister_metric("val_error")


# -- a logger: one entry ----------------------------------------------------------------

class ListLog:
    """A logger keeping every row it is given (for the test)."""
    rows = []

    def __init__(self, run, run_dir, first_epoch):
        self.run_id = run["run_id"]

    def write(self, epoch, values):
        ListLog.rows.append((self.run_id, epoch, values["val_acc"]))

    def close(self, ended):
        ListLog.rows.append((self.run_id, "closed", ended))


def test_a_logger_registered_here_gets_every_row(tmp_path):
    metric_logs.register_logger("list", ListLog, package="numpy", extra="test")
    ListLog.rows.clear()
    _grid(tmp_path, metric_log=("list",))
    epochs = [r for r in ListLog.rows if r[1] != "closed"]
    assert len(epochs) == 8 * 4 and {e for _, e, _ in epochs} == {1, 2, 3, 4}
    assert sum(r[1] == "closed" and r[2] for r in ListLog.rows) == 8
    with pytest.raises(Exception, match="--log nolog: unknown; choose from"):
        metric_logs.check(["nolog"])


# -- an experiment kind: its schema and its runner, one entry ---------------------------

def parse_count(data, name, checker):
    checker.known_keys(data, ("name", "kind", "count"))
    return CountConfig(name, checker.check(integer(1), data.get("count", 3), "count"),
                       checker.path)


class CountConfig:
    kind = "count"

    def __init__(self, name, count, path):
        self.name, self.count, self.path = name, count, path

    def experiment(self):
        return {"kind": self.kind, "count": self.count}


def run_count(config, options):
    folder = Path(options.results_dir) / config.name
    folder.mkdir(parents=True)
    (folder / "count.txt").write_text(" ".join(map(str, range(config.count))))
    print(f"{config.name}: counted to {config.count}", file=options.out)
    return {"total": 1, "done_before": 0, "trained": [config.name], "failed": []}


def test_an_experiment_kind_registered_here_runs_from_the_command(tmp_path, capsys):
    kinds.register_kind(kinds.Kind("count", parse_count, f"{__name__}:run_count"),
                        replace=True)
    path = tmp_path / "count.yaml"
    path.write_text("kind: count\ncount: 4\n")
    assert run_grid_main([str(path), "--results", str(tmp_path)]) == 0
    assert (tmp_path / "count" / "count.txt").read_text() == "0 1 2 3"
    path.write_text("kind: count\ncount: 0\n")
    assert run_grid_main([str(path), "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path}: key 'count': expected an "
                                               f"integer >= 1, got 0")
    path.write_text("kind: count\ncount: 2\n")
    assert run_grid_main([str(path), "--only", "seed=0"]) == 2
    assert "--only applies to training grids only (this is a count config)" in \
        capsys.readouterr().err
    assert Key  # the vocabulary a kind's keys are checked with
