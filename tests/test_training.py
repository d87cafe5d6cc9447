"""The single-run trainer: schedule, curves, resume after a kill, divergence, status."""
import io
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.data import load_dataset
from experiments.results.store import CURVE_FIELDS, RunStore
from experiments.config.schedules import learning_rate
from experiments.data import DataError
from experiments.training import config_hash, train_run

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("AMSGRAD_REAL_DATA", REPO.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"real data not found in {REAL}")

RUN = dict(name="test", run_id="amsgrad_seed=0", model="logreg", dataset="mnist",
           updater="amsgrad", learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
           bias_correction=True, seed=0, epochs=3, batch_size=128, val_batch_size=1024,
           lr_schedule="linear", augmentation="none", train_subset=3000, val_subset=1000)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", REAL, download=False, quiet=True)


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_linear_schedule_values():
    assert learning_rate(0.01, 0, 150) == 0.01
    assert learning_rate(0.01, 75, 150) == 0.005
    assert learning_rate(0.001, 149, 150) == pytest.approx(0.001 / 150, rel=1e-12)
    assert [learning_rate(0.3, e, 3) for e in range(3)] == [0.3, 0.3 * (1 - 1 / 3),
                                                            0.3 * (1 - 2 / 3)]
    assert learning_rate(0.01, 149, 150, "constant") == 0.01
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        learning_rate(0.01, 0, 150, "cosin")


def test_run_writes_curves_and_status(tmp_path, mnist, capsys):
    store = RunStore(tmp_path / "run")
    status = train_run(RUN, store, dataset=mnist, quiet=True)
    assert capsys.readouterr() == ("", "")  # quiet: nothing printed
    rows = store.read_curves()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == [learning_rate(0.001, e, 3) for e in range(3)]
    assert all(set(r) == set(CURVE_FIELDS) for r in rows)
    assert rows[0]["loss"] > rows[2]["loss"] and rows[2]["val_acc"] > 0.6
    assert all(r["seconds"] > 0 for r in rows)
    assert store.read_status() == status
    assert status["state"] == "finished" and status["epochs_done"] == status["epochs"] == 3
    assert status["engine"] == "jax" and status["trainings"] == 1
    assert {"python", "numpy"} <= set(status["versions"])
    assert {"jax", "device"} <= set(status["engine_info"])
    assert status["started"] <= status["finished"] and status["host"]
    assert status["config_hash"] == config_hash(RUN)
    # its times: the share of its epochs (curves' seconds), within the training's wall time
    assert status["epoch_seconds"] == pytest.approx(sum(r["seconds"] for r in rows))
    assert status["wall_seconds"] > status["epoch_seconds"] > 0 and "seconds" not in status
    assert not os.path.exists(store.checkpoint_path)
    # A finished run is left as it is.
    assert train_run(RUN, store, dataset=mnist, quiet=True) == status


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_only(tmp_path, mnist, capsys, monkeypatch):
    terminal = Terminal()
    with monkeypatch.context() as m:
        m.setattr(sys, "stderr", terminal)
        train_run(dict(RUN, epochs=2), RunStore(tmp_path / "a"), dataset=mnist, quiet=False)
    err = terminal.getvalue()
    assert "2/2" in err and "loss=" in err and "val_acc=" in err
    train_run(dict(RUN, epochs=2), RunStore(tmp_path / "b"), dataset=mnist, quiet=False)
    out, err = capsys.readouterr()  # stderr a file or a pipe: no bar, a plain line
    assert out == "" and "\r" not in err and re.fullmatch(
        r"logreg amsgrad seed 0: epoch 2/2, best val_acc \d\.\d{4}, \d+\.\d s/epoch, ETA 0s\n",
        err), err
    train_run(dict(RUN, epochs=2), RunStore(tmp_path / "c"), dataset=mnist, quiet=True)
    assert capsys.readouterr() == ("", "")  # quiet: nothing


KILL_AFTER_FIRST_EPOCH = textwrap.dedent("""
    import os, signal, sys
    from experiments.results.store import RunStore
    from experiments.training import train_run
    run, run_dir, data_dir = eval(sys.argv[1]), sys.argv[2], sys.argv[3]
    def kill(row):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    train_run(run, RunStore(run_dir), data_dir=data_dir, quiet=True, on_epoch=kill)
""")


def test_killed_run_resumes_to_the_same_curves(tmp_path, mnist):
    whole = RunStore(tmp_path / "whole")
    train_run(RUN, whole, dataset=mnist, quiet=True)

    # SIGKILL right after epoch 1 was recorded and checkpointed.
    killed = RunStore(tmp_path / "killed")
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_EPOCH, repr(RUN),
                           killed.run_dir, str(REAL)], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert killed.read_status()["state"] == "running"
    arrays, meta = killed.load_checkpoint()
    assert meta["epochs_done"] == 1 and arrays["opt:t"] == math.ceil(3000 / 128)
    # As if a later kill fell between writing epoch 2's row and its checkpoint:
    rows = killed.read_curves()
    killed.write_curves(rows + [dict(rows[0], epoch=2, loss=123.0)])

    resumed = []
    status = train_run(RUN, killed, dataset=mnist, quiet=True,
                       on_epoch=lambda row: resumed.append(row["epoch"]))
    assert resumed == [2, 3]  # epoch 1 came from the checkpoint
    assert status["state"] == "finished" and status["trainings"] == 2
    # Every epoch derives from (seed, epoch) and XLA on CPU is deterministic: the
    # resumed curves are bit for bit those of the uninterrupted run.
    assert without_seconds(killed.read_curves()) == without_seconds(whole.read_curves())
    assert not os.path.exists(killed.checkpoint_path)


def test_failed_attempt_is_recorded_and_resumed(tmp_path, mnist):
    store = RunStore(tmp_path)

    def fail(row):
        if row["epoch"] == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        train_run(RUN, store, dataset=mnist, quiet=True, on_epoch=fail)
    status = store.read_status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: disk on fire"
    assert status["epochs_done"] == 2 and store.load_checkpoint()[1]["epochs_done"] == 2
    status = train_run(RUN, store, dataset=mnist, quiet=True)
    assert status["state"] == "finished" and status["trainings"] == 2 and "error" not in status
    assert [r["epoch"] for r in store.read_curves()] == [1, 2, 3]


def test_checkpoint_of_another_config_is_refused(tmp_path, mnist):
    store = RunStore(tmp_path)
    store.save_checkpoint({}, {"epochs_done": 1, "config_hash": config_hash(dict(RUN, seed=9))})
    with pytest.raises(ValueError, match="checkpoint was written for a different run config"):
        train_run(RUN, store, dataset=mnist, quiet=True)


def test_divergence_ends_the_run(tmp_path, mnist):
    # lr 1e4 saturates the softmax at once: the clipped loss passes no gradient, so the
    # weights freeze (the same val loss every epoch) and the run still finishes.
    frozen = RunStore(tmp_path / "frozen")
    assert train_run(dict(RUN, learning_rate=1e4), frozen, dataset=mnist, quiet=True)["state"] == "finished"
    val = [r["val_loss"] for r in frozen.read_curves()]
    assert val[0] == val[1] == val[2] > 2
    # lr 1e38 overflows the weights to inf: NaN loss, recorded, run ends as diverged.
    store = RunStore(tmp_path / "nan")
    status = train_run(dict(RUN, learning_rate=1e38), store, dataset=mnist, quiet=True)
    assert status["state"] == "diverged" and status["epochs_done"] == 1
    rows = store.read_curves()
    assert len(rows) == 1 and math.isnan(rows[0]["loss"]) and math.isnan(rows[0]["val_loss"])
    assert not os.path.exists(store.checkpoint_path)
    assert store.read_status()["state"] == "diverged"


def test_bad_run_settings(tmp_path, mnist):
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'"):
        train_run(dict(RUN, dataset="cifar100"), RunStore(tmp_path), dataset=mnist, quiet=True)
    with pytest.raises(DataError, match="key 'train_subset': 60000 is more than the 50000 "
                                        "examples mnist has"):
        train_run(dict(RUN, train_subset=60000), RunStore(tmp_path), dataset=mnist, quiet=True)
    with pytest.raises(ValueError, match="unknown augmentation 'crop'"):
        train_run(dict(RUN, augmentation="crop"), RunStore(tmp_path), dataset=mnist, quiet=True)


def test_a_status_of_before_reads_with_the_names_of_now(tmp_path):
    store = RunStore(tmp_path / "run")
    os.makedirs(store.run_dir)
    with open(store.status_path, "w") as f:  # as runs wrote it before wall_seconds
        f.write('{"state": "finished", "seconds": 12.5}')
    assert store.read_status() == {"state": "finished", "epoch_seconds": 12.5}
