"""Curves rows to TensorBoard and W&B (experiments.metric_logs): read back after a run
group is killed and resumed. W&B runs offline only (nothing reaches the network)."""
import glob
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.training import metric_logs
from experiments.config import ConfigError
from experiments.results.store import RunStore

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("AMSGRAD_REAL_DATA", REPO.parent / "shared" / "data"))
needs_mnist = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found in {REAL}")

RUN = dict(name="g", model="logreg", dataset="mnist", epochs=4, batch_size=128,
           val_batch_size=256, lr_schedule="linear", augmentation="none", train_subset=1000,
           val_subset=300, learning_rate=1e-3, beta1=0.9, beta2=0.99, epsilon=1e-8,
           bias_correction=True, seed=0)
RUNS = [dict(RUN, run_id=f"{u}_seed=0", updater=u) for u in ("adam", "amsgrad")]

# Trains RUNS as one group with both logs and SIGKILLs itself once both have written
# epoch 3: the only checkpoint is epoch 1's, so the resume redoes epochs 2 and 3.
KILLED_AT_3 = """
import json, os, signal, sys
from experiments.results.store import RunStore
from experiments.training import train_runs
runs, results, data = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
def on_epoch(run, row):
    if row["epoch"] == 3 and run is runs[-1]:
        os.kill(os.getpid(), signal.SIGKILL)
train_runs(runs, [RunStore(os.path.join(results, r["run_id"])) for r in runs], data_dir=data,
           quiet=True, checkpoint_every=3600, on_epoch=on_epoch,
           metric_log=("tensorboard", "wandb"))
"""


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B strictly offline, its files in tmp_path/wandb_dir."""
    pytest.importorskip("wandb")
    where = tmp_path / "wandb_dir"
    where.mkdir()
    for key, value in (("WANDB_MODE", "offline"), ("WANDB_DIR", str(where)),
                       ("WANDB_SILENT", "true"), ("WANDB_DISABLE_GIT", "true")):
        monkeypatch.setenv(key, value)
    return where


def wandb_records(path):
    """The records of a W&B ``.wandb`` file (LevelDB log format: a 7-byte file header,
    then chunks with a 7-byte header in 32 KiB blocks), as protobufs."""
    from wandb.proto import wandb_internal_pb2
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, size, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending, pos = pending + data[pos + 7:pos + 7 + size], pos + 7 + size
        if kind in (1, 4) and pending:  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_offline_runs(where, run_id):
    """``(run record, history steps)`` of each offline W&B run with id ``run_id``."""
    found = []
    for path in sorted(glob.glob(os.path.join(where, "wandb", f"offline-run-*-{run_id}",
                                              f"run-{run_id}.wandb"))):
        records = wandb_records(path)
        runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        steps = [r.history.step.num for r in records if r.WhichOneof("record_type") == "history"]
        found.append((runs[0] if runs else None, steps))
    return found


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_kinds_are_parsed_and_checked():
    assert metric_logs.parse("tensorboard, WandB,tensorboard") == ("tensorboard", "wandb")
    assert metric_logs.parse("") == ()
    with pytest.raises(ValueError, match="unknown metric log 'mlflow'; choose from "
                                         "tensorboard, wandb"):
        metric_logs.parse("tensorboard,mlflow")
    with pytest.raises(ConfigError, match="--log csv: unknown"):
        metric_logs.check(["csv"])


def test_check_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it fails
    with pytest.raises(ConfigError) as info:
        metric_logs.check(["tensorboard", "wandb"])
    assert str(info.value) == (f"--log wandb: wandb is not installed in this Python "
                               f"({sys.executable}); pip install -e '.[wandb]'")
    # installed, but its import raises (e.g. a protobuf that does not fit)
    monkeypatch.setattr(metric_logs.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(TypeError("bad\nprotobuf")))
    with pytest.raises(ConfigError, match=r"--log wandb: wandb does not import \(TypeError: "
                                          r"bad protobuf\) in this Python"):
        metric_logs.check(["wandb"])


def test_a_failing_logger_is_dropped_with_one_warning(tmp_path, monkeypatch):
    calls = []

    class Broken:
        def __init__(self, run, run_dir, first_epoch):
            calls.append(first_epoch)

        def write(self, epoch, values):
            raise OSError("no space left")

        def close(self, ended):
            calls.append("closed")
    monkeypatch.setitem(metric_logs._LOGGERS, "tensorboard", Broken)
    log = metric_logs.RunLog(("tensorboard",), RUNS[0], tmp_path)
    with pytest.warns(UserWarning, match=r"tensorboard logging stopped \(epoch 3: OSError: "
                                         r"no space left\)"):
        log.write({"epoch": 3, "loss": 1.0})
    log.write({"epoch": 4, "loss": 0.5})  # dropped: no second warning, no error
    log.close()
    assert calls == [3]  # opened at the first epoch written, never closed once dropped


@needs_mnist
@pytest.mark.slow
def test_a_killed_group_resumes_its_logs_without_duplicate_steps(tmp_path, offline_wandb):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    from experiments.training import train_runs
    results = tmp_path / "g"
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_3, json.dumps(RUNS), str(results),
                             str(REAL)], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stores = [RunStore(results / r["run_id"]) for r in RUNS]
    for store in stores:  # epochs 2 and 3 are past the checkpoint: they are redone
        assert len(store.read_curves()) == 3
        assert store.load_checkpoint()[1]["epochs_done"] == 1
        assert [e.step for e in scalars(store.run_dir)["val_loss"]] == [1, 2, 3]
    resumed_at = time.time()
    statuses = train_runs(RUNS, stores, data_dir=str(REAL), quiet=True,
                          metric_log=("tensorboard", "wandb"))
    assert [s["state"] for s in statuses] == ["finished"] * 2
    for run, store in zip(RUNS, stores):
        curves = store.read_curves()
        assert [r["epoch"] for r in curves] == [1, 2, 3, 4]
        series = scalars(store.run_dir)
        assert set(series) == {"lr", "loss", "acc", "val_loss", "val_acc", "seconds"}
        for tag, events in series.items():  # one point per epoch, the last training's
            assert [e.step for e in events] == [1, 2, 3, 4], tag
            np.testing.assert_allclose([e.value for e in events], [r[tag] for r in curves],
                                       rtol=1e-6)
            assert events[0].wall_time < resumed_at < min(e.wall_time for e in events[1:])
        assert len(glob.glob(os.path.join(store.run_dir, "events.out.tfevents.*"))) == 2
        # W&B offline cannot resume: the resumed training is a second offline run with
        # the same id, in the grid's group, starting at the first epoch it redid.
        wandb_id = f"g.{run['run_id']}"
        found = wandb_offline_runs(offline_wandb, wandb_id)
        assert len(found) == 2, found
        assert [r.run_id for r, _ in found if r is not None][-1] == wandb_id
        assert all(r.run_group == "g" and r.display_name == run["run_id"]
                   for r, _ in found if r is not None)
        assert [steps for _, steps in found][-1] == [2, 3, 4]
        assert set(found[0][1]) <= {1, 2, 3}  # what the killed training got to write


BLOCKED = "import runpy, sys; sys.modules[{module!r}] = None; sys.argv = sys.argv[1:]; " \
          "runpy.run_path(sys.argv[0], run_name='__main__')"


@pytest.mark.parametrize("kind, module", [("tensorboard", "tensorboardX"), ("wandb", "wandb")])
def test_log_without_its_package_is_refused_before_anything(tmp_path, kind, module):
    # as where the extra is not installed: importing the package fails
    script = os.path.join(REPO, "scripts", "run_grid.py")
    done = subprocess.run([sys.executable, "-c", BLOCKED.format(module=module), script,
                           os.path.join(REPO, "configs", "smoke.yaml"), "--results",
                           str(tmp_path / "r"), "--log", f"tensorboard,{kind}"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr == (f"error: --log {kind}: {module} is not installed in this Python "
                           f"({sys.executable}); pip install -e '.[{kind}]'\n")
    assert not (tmp_path / "r").exists()  # nothing planned, nothing trained


def test_a_ray_task_checks_its_workers_packages_before_it_trains(tmp_path, monkeypatch):
    from experiments.grid import ray_executor
    from experiments.grid.executors import Job
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # not in this worker's Python
    (tmp_path / "grid").mkdir()
    jobs = [Job({"run_id": f"r{k}", "epochs": 1}, str(tmp_path / "grid" / f"r{k}"),
                metric_log=("tensorboard",)) for k in range(2)]
    for job, one in ((jobs[0], True), (jobs, False)):
        # the task's body, as Ray runs it (no events: nothing gets that far)
        outcome = ray_executor._ray_task(job, events=None)
        outcomes = [outcome] if one else outcome
        assert [o["run_id"] for o in outcomes] == (["r0"] if one else ["r0", "r1"])
        for o in outcomes:
            assert o["result"] == "user_error"
            assert o["message"].startswith("--log tensorboard: tensorboardX is not installed "
                                           "in the Ray worker's Python on ")
            assert o["message"].endswith("; pip install -e '.[tensorboard]'")
    assert os.listdir(tmp_path / "grid") == []  # no run was claimed or trained
