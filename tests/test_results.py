"""The results store: atomic writes, round trips of curves, status and checkpoints,
damaged files detected and repaired."""
import errno
import json
import math
import os
import warnings

import numpy as np
import pytest

from experiments.results import files as results
from experiments.results.files import CURVE_FIELDS, atomic_write_bytes, atomic_write_text
from experiments.results.store import RunStore


def _row(epoch, **values):
    row = dict(epoch=epoch, lr=0.001, loss=0.5, acc=0.8, val_loss=0.6, val_acc=0.75,
               seconds=1.5)
    row.update(values)
    return row


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["f.txt"]


def test_failed_rename_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["status.json"]


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("fsync failed")
    monkeypatch.setattr(results.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_bytes(tmp_path / "checkpoint.npz", b"\x00" * 1000)
    assert os.listdir(tmp_path) == []


def test_interrupted_checkpoint_keeps_previous_checkpoint(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.save_checkpoint({"w": np.arange(3, dtype=np.float32)}, {"epoch": 1})
    def interrupted_replace(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(results.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        store.save_checkpoint({"w": np.zeros(3, dtype=np.float32)}, {"epoch": 2})
    monkeypatch.undo()
    arrays, meta = store.load_checkpoint()
    assert meta == {"epoch": 1}
    np.testing.assert_array_equal(arrays["w"], [0, 1, 2])
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_curves_round_trip_exactly_including_nan_and_inf(tmp_path):
    store = RunStore(tmp_path)
    rows = [_row(0, loss=1 / 3, val_acc=0.1234567890123),
            _row(1, loss=math.nan, val_loss=math.inf, acc=-math.inf, lr=1e-3 * (1 - 1 / 150))]
    store.write_curves(rows)
    with open(store.curves_path) as f:
        assert f.readline().strip() == ",".join(CURVE_FIELDS)
    back = store.read_curves()
    assert [r["epoch"] for r in back] == [0, 1]
    assert all(type(r["epoch"]) is int for r in back)
    assert back[0] == rows[0]  # floats come back bit for bit
    assert math.isnan(back[1]["loss"])
    assert back[1]["val_loss"] == math.inf and back[1]["acc"] == -math.inf
    assert back[1]["lr"] == 1e-3 * (1 - 1 / 150)


def test_curves_missing_value_reads_as_nan_and_unknown_field_is_refused(tmp_path):
    store = RunStore(tmp_path)
    store.write_curves([{"epoch": 0, "lr": 0.1}])
    (row,) = store.read_curves()
    assert row["lr"] == 0.1 and math.isnan(row["val_acc"])
    with pytest.raises(ValueError, match="valacc"):
        store.write_curves([_row(0, valacc=0.5)])
    assert store.read_curves()[0]["lr"] == 0.1  # the refused write changed nothing


def test_missing_files_read_as_nothing(tmp_path):
    store = RunStore(tmp_path / "never")
    assert store.read_config() is None
    assert store.read_status() is None
    assert store.read_curves() == []
    assert store.load_checkpoint() is None
    store.remove_checkpoint()  # no error


def test_status_is_strict_json_and_update_merges(tmp_path):
    store = RunStore(tmp_path)
    store.write_status({"state": "running", "epochs_done": 3})
    status = store.update_status(state="diverged", best_val_loss=math.nan,
                                 final=np.float32(0.5))
    assert status["epochs_done"] == 3
    with open(store.status_path) as f:
        text = f.read()

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    assert json.loads(text, parse_constant=refuse) == {
        "state": "diverged", "epochs_done": 3, "best_val_loss": None, "final": 0.5}
    assert store.read_status()["state"] == "diverged"


def test_checkpoint_round_trip(tmp_path):
    store = RunStore(tmp_path)
    arrays = {"conv1.W": np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32),
              "conv1_bn.inv_std": np.ones(4, np.float32), "step": np.array(782, np.int32)}
    meta = {"epoch": 2, "engine": "jax", "lr": 0.001}
    store.save_checkpoint(arrays, meta)
    loaded, loaded_meta = store.load_checkpoint()
    assert loaded_meta == meta
    assert sorted(loaded) == sorted(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)
    store.remove_checkpoint()
    assert not os.path.exists(store.checkpoint_path)
    with pytest.raises(ValueError, match="reserved"):
        store.save_checkpoint({"__meta__": np.zeros(1)}, {})
    with pytest.raises(ValueError, match="reserved"):
        store.save_checkpoint({"__sha256__": np.zeros(1)}, {})


def test_config_round_trip(tmp_path):
    store = RunStore(tmp_path)
    config = {"name": "vgg", "run_id": "adam_lr=0.0001_seed=0", "lr": 0.0001, "epsilon": 1e-8,
              "bias_correction": False, "train_subset": None, "seed": 0}
    store.write_config(config)
    assert store.read_config() == config
    assert list(store.read_config()) == list(config)  # key order kept


def test_checkpoint_keeps_the_one_before_and_falls_back_to_it(tmp_path):
    store = RunStore(tmp_path)
    store.write_curves([_row(1)])
    store.save_checkpoint({"w": np.zeros(3, np.float32)}, {"epochs_done": 1})
    assert not os.path.exists(store.previous_checkpoint_path)
    store.write_curves([_row(1), _row(2)])
    store.save_checkpoint({"w": np.ones(3, np.float32)}, {"epochs_done": 2})
    assert RunStore(tmp_path).load_checkpoint()[1] == {"epochs_done": 2}
    with open(store.checkpoint_path, "r+b") as f:  # cut short
        f.truncate(200)
    with pytest.warns(results.CorruptFileWarning, match=r"checkpoint.npz: unreadable \("
                                                        r"BadZipFile.*trying the checkpoint"):
        arrays, meta = RunStore(tmp_path).load_checkpoint()
    assert meta == {"epochs_done": 1}
    np.testing.assert_array_equal(arrays["w"], np.zeros(3))
    store.remove_checkpoint()
    assert sorted(os.listdir(tmp_path)) == ["curves.csv"]


def test_recover_promotes_the_previous_checkpoint_and_rebuilds_curves(tmp_path):
    store = RunStore(tmp_path)
    for epoch in (1, 2):
        store.write_curves([_row(e) for e in range(1, epoch + 1)])
        store.save_checkpoint({"w": np.full(2, epoch, np.float32)}, {"epochs_done": epoch})
    store.write_curves([_row(e) for e in (1, 2, 3)])  # epoch 3 ran; its checkpoint did not
    with open(store.checkpoint_path, "wb") as f:
        f.write(b"garbage")
    with open(store.curves_path, "w") as f:
        f.write("epoch,lr,loss,acc,val_loss,val_acc,seconds\n1,0.001,0.5,0.8")  # cut short
    fresh = RunStore(tmp_path)
    with pytest.warns(results.CorruptFileWarning) as caught:
        assert fresh.recover(epochs=5) == 1
    messages = [str(w.message) for w in caught]
    assert messages[0].endswith("set aside as checkpoint.npz.corrupt")
    assert "resuming from the previous checkpoint (epoch 1)" in messages[1]
    assert "curves.csv: line 2: cut short (no final newline)" in messages[2]
    assert messages[3].endswith("curves.csv: rebuilt from the checkpoint")
    assert fresh.read_curves() == [_row(1)]  # as the epoch-1 checkpoint saw them
    assert fresh.load_checkpoint()[1] == {"epochs_done": 1}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "checkpoint.npz.corrupt",
                                            "checkpoint.prev.npz", "curves.csv",
                                            "curves.csv.corrupt"]


def test_recover_leaves_good_files_alone_and_clears_dead_temp_files(tmp_path):
    store = RunStore(tmp_path)
    store.write_curves([_row(1)])
    store.save_checkpoint({"w": np.zeros(1)}, {"epochs_done": 1})
    store.write_curves([_row(1), _row(2)])  # the row after the checkpoint: redone later
    (tmp_path / ".curves.csv.abc123.tmp").write_text("half")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".tmp")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.recover(epochs=3) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_damaged_curves_and_status_are_errors_naming_the_file(tmp_path):
    store = RunStore(tmp_path)
    store.write_curves([_row(1), _row(2), _row(3)])
    text = open(store.curves_path).read()
    open(store.curves_path, "w").write(text.replace("\n3,", "\n5,"))
    with pytest.raises(results.CorruptFileError, match=r"curves.csv: line 4: epoch 5 after 2$"):
        store.read_curves()
    assert [r["epoch"] for r in store.read_curves(partial=True)] == [1, 2]
    open(store.status_path, "w").write("[1, 2]")
    with pytest.raises(results.CorruptFileError, match=r"status.json: not a JSON object"):
        store.read_status()


def test_full_disk_while_saving_a_checkpoint_keeps_both_previous_ones(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    for epoch in (1, 2):
        store.save_checkpoint({"w": np.full(2, epoch)}, {"epochs_done": epoch})
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        store.save_checkpoint({"w": np.full(2, 3)}, {"epochs_done": 3})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    assert store.load_checkpoint()[1] == {"epochs_done": 2}
