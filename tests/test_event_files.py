"""TensorBoard's HPARAMS dashboard: the live log (--log tensorboard) and the export of a
finished grid's curves (analysis.event_files.export_tensorboard) give each run its
hyperparameters and final metrics; read back with TensorBoard's own reader."""
import glob
import os
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorboardX")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from experiments.results import tensorboard  # noqa: E402
from experiments.training import metric_logs  # noqa: E402
from experiments.analysis import records  # noqa: E402
from experiments.analysis.event_files import EXPORT_SUFFIX, export_tensorboard  # noqa: E402
from experiments.results.store import RunStore  # noqa: E402
from test_comparisons import write_three_rules  # noqa: E402
from test_plots import write_fake_grid  # noqa: E402


def read_back(run_dir):
    """``(scalars {tag: [(step, value)]}, hparams plugin data {tag: message})``."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
               for tag in events.Tags()["scalars"]}
    plugin = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
              for tag, content in events.PluginTagToContent("hparams").items()}
    return scalars, plugin


def session_values(plugin):
    """The session's hyperparameters as Python values."""
    out = {}
    for name, value in plugin["_hparams_/session_start_info"].session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


def expected(run, axes):
    """The run's config on the updater, the axes and the seed, as the dashboard holds it."""
    values = {k: run.config.get(k) for k in ["updater", *axes, "seed"]}
    return {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in values.items() if v is not None}


def check_scalars(scalars, run):
    assert set(scalars) == {"lr", "loss", "acc", "val_loss", "val_acc", "seconds"}
    for tag, points in scalars.items():
        assert [s for s, _ in points] == [row["epoch"] for row in run.rows], tag
        np.testing.assert_allclose([v for _, v in points], [row[tag] for row in run.rows],
                                   rtol=1e-6, equal_nan=True)


def test_export_writes_scalars_and_hparams_equal_to_the_stored_run(tmp_path):
    root = tmp_path / "fake"
    write_fake_grid(root)
    runs = records.load_grid(root)
    paths = export_tensorboard(root)
    assert len(paths) == len(runs) == 48
    axes = ["learning_rate", "beta2", "bias_correction"]  # what varies: the grid's axes
    for run in runs[:6] + [r for r in runs if r.state == "diverged"]:
        scalars, plugin = read_back(run.path)
        check_scalars(scalars, run)
        assert session_values(plugin) == expected(run, axes)
        experiment = plugin["_hparams_/experiment"].experiment
        assert [m.name.tag for m in experiment.metric_infos] == ["val_acc", "val_loss"]
        domains = {h.name: [v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                            for v in h.domain_discrete.values] for h in experiment.hparam_infos}
        assert domains == {"updater": ["adam", "amsgrad"], "learning_rate": [0.001, 0.01],
                           "beta2": [0.99, 0.999], "bias_correction": [False, True],
                           "seed": [0.0, 1.0, 2.0]}
        assert plugin["_hparams_/session_end_info"].session_end_info.status == 1  # SUCCESS


def test_export_again_replaces_the_earlier_export(tmp_path):
    root = tmp_path / "fake"
    write_fake_grid(root, seeds=(0,))
    first = export_tensorboard(root)
    run_dir = os.path.dirname(first[0])
    os.utime(first[0], (1, 1))  # as if written long ago
    second = export_tensorboard(root)
    exported = glob.glob(os.path.join(run_dir, f"events.out.tfevents.*{EXPORT_SUFFIX}"))
    assert len(exported) == 1 and exported[0] in second
    assert not glob.glob(os.path.join(run_dir, ".*tmp"))
    run = next(r for r in records.load_grid(root) if r.path == run_dir)
    check_scalars(read_back(run_dir)[0], run)  # no point twice


def test_export_to_another_folder_and_a_grid_of_mixed_rules(tmp_path):
    root = str(tmp_path / "three")
    write_three_rules(root)
    out = tmp_path / "tb"
    paths = export_tensorboard(root, out)
    assert all(p.startswith(str(out / "three") + os.sep) for p in paths) and len(paths) == 30
    assert not glob.glob(os.path.join(root, "*", "events.*"))
    runs = {os.path.basename(r.path): r for r in records.load_grid(root)}
    axes = ["learning_rate", "beta1", "beta2", "epsilon", "bias_correction", "variant",
            "momentum"]
    for rid in ("momentum_lr=0.1_seed=2", "adam_lr=0.01_bc=0_seed=1"):
        scalars, plugin = read_back(out / "three" / rid)
        check_scalars(scalars, runs[rid])
        # variant: not in these configs; the Adam family's runs of before it existed
        legacy = {} if rid.startswith("momentum") else {"variant": "lasagne"}
        assert session_values(plugin) == {**expected(runs[rid], axes), **legacy}
        # every hyperparameter of the grid, each with the values the grid has
        infos = plugin["_hparams_/experiment"].experiment.hparam_infos
        assert [h.name for h in infos] == ["updater", *axes, "seed"]
    assert "beta2" not in session_values(read_back(out / "three" / "momentum_lr=0.1_seed=2")[1])


def test_export_without_tensorboardx_says_what_to_install(tmp_path, monkeypatch):
    write_fake_grid(tmp_path / "fake", seeds=(0,))
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(records.ResultsError, match=r"needs tensorboardX: pip install -e "
                                                   r"'\.\[tensorboard\]'"):
        export_tensorboard(tmp_path / "fake")


RUN = dict(name="g", model="logreg", updater="amsgrad", learning_rate=1e-3, beta1=0.9,
           beta2=0.99, epsilon=1e-8, bias_correction=False, seed=3,
           run_id="amsgrad_lr=0.001_b2=0.99_bc=off_seed=3")


def _rows(epochs):
    return [dict(epoch=e, lr=1e-3 * (1 - (e - 1) / 4), loss=1.0 / e, acc=0.8 + 0.01 * e,
                 val_loss=1.2 / e, val_acc=0.75 + 0.01 * e, seconds=0.5) for e in epochs]


def _live(run_dir, rows, run=RUN, ended=True):
    log = metric_logs.RunLog(("tensorboard",), run, run_dir)
    for row in rows:
        log.write(row)
    log.close(ended)


def test_the_live_log_gives_each_run_its_hyperparameters(tmp_path):
    grid = tmp_path / "g"
    grid.mkdir()
    (grid / "grid.yaml").write_text(yaml.safe_dump({"name": "g", "settings": {
        "axes": ["updater", "learning_rate", "beta2", "bias_correction"], "beta1": 0.9}}))
    run_dir = grid / RUN["run_id"]
    run_dir.mkdir()  # as the trainer's store has made it
    _live(run_dir, _rows([1, 2, 3]), ended=False)  # killed after epoch 3 ...
    _live(run_dir, _rows([3, 4]))  # ... resumed after its checkpoint of epoch 2
    RunStore(run_dir).write_curves(_rows([1, 2, 3, 4]))
    run = records.Run(grid="g", path=str(run_dir), hparams={}, seed=3, state="finished",
                      epochs=4, epoch=np.arange(1, 5), curves={}, config=RUN,
                      rows=_rows([1, 2, 3, 4]))
    scalars, plugin = read_back(run_dir)
    check_scalars(scalars, run)  # the resumed epochs replace the killed training's
    assert session_values(plugin) == {"updater": "amsgrad", "learning_rate": 1e-3,
                                      "beta2": 0.99, "bias_correction": False, "seed": 3.0}
    experiment = plugin["_hparams_/experiment"].experiment
    assert [h.name for h in experiment.hparam_infos] == ["updater", "learning_rate", "beta2",
                                                        "bias_correction", "seed"]
    assert [m.name.tag for m in experiment.metric_infos] == ["val_acc", "val_loss"]
    assert plugin["_hparams_/session_end_info"].session_end_info.status == 1


def test_a_rule_without_every_axis_leaves_the_experiment_to_tensorboard(tmp_path):
    # momentum takes no beta2: its list of hyperparameters is not the grid's, so it
    # writes its session only (TensorBoard then builds the experiment from all runs)
    grid = tmp_path / "g"
    grid.mkdir()
    (grid / "grid.yaml").write_text(yaml.safe_dump({"settings": {
        "axes": ["updater", "learning_rate", "beta2"],
        "rules": {"momentum": {"momentum": [0.9, 0.5]}}}}))
    run = dict(name="g", updater="momentum", learning_rate=0.1, momentum=0.5, seed=0,
               run_id="momentum_lr=0.1_mom=0.5_seed=0")
    (grid / run["run_id"]).mkdir()
    _live(grid / run["run_id"], _rows([1]), run=run)
    _, plugin = read_back(grid / run["run_id"])
    assert session_values(plugin) == {"updater": "momentum", "learning_rate": 0.1,
                                      "momentum": 0.5, "seed": 0.0}
    assert "_hparams_/experiment" not in plugin
    assert tensorboard.grid_axes_of(str(grid)) == ["updater", "learning_rate", "beta2",
                                                   "momentum"]
    assert tensorboard.grid_axes_of(str(tmp_path / "nowhere")) is None


def _plot(*args, block=None):
    """scripts/plot.py as a user runs it (``block``: a module that does not import)."""
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(repo, "scripts", "plot.py")
    code = ["-c", f"import runpy, sys; sys.modules[{block!r}] = None; sys.argv = "
                  f"sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"] \
        if block else []
    return subprocess.run([sys.executable, *code, script, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_plot_tensorboard_exports_a_finished_grid(tmp_path):
    root = tmp_path / "fake"
    write_fake_grid(root)
    runs = records.load_grid(root)
    done = _plot(root, "--tensorboard")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"wrote {len(runs)} TensorBoard event files; to see them: "
                           f"tensorboard --logdir {root}\n")
    assert not (root / "figures").exists()  # event files instead of figures
    check_scalars(read_back(runs[0].path)[0], runs[0])
    out = tmp_path / "tb"
    assert _plot(root, "--tensorboard", "--out", out).returncode == 0
    check_scalars(read_back(out / "fake" / os.path.basename(runs[0].path))[0], runs[0])
    mixed = _plot(root, "--tensorboard", "--metrics", "val_acc")
    assert mixed.returncode == 2 and mixed.stderr == (
        "error: --metrics, --formats and --y-range are options of the figures, not of "
        "--tensorboard\n")
    missing = _plot(root, "--tensorboard", block="tensorboardX")
    assert missing.returncode == 2 and missing.stderr == (
        "error: exporting TensorBoard event files needs tensorboardX: "
        "pip install -e '.[tensorboard]'\n")
