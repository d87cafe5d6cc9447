"""Faults: runners killed at random moments, two runners on one folder, damaged files,
a full disk, a run that keeps crashing.

Most tests run ``scripts/run_grid.py`` in subprocesses with the real grid and trainer
(:func:`experiments.training.train_run`: curves, checkpoints, status) but a toy engine
that trains in microseconds (this file is also the runner: ``python test_faults.py
ARGS`` runs run_grid.py with the toy engine). One test uses the real JAX engine on MNIST.
"""
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_grid.py")


class ToyEngine:
    """A deterministic stand-in for an engine (see experiments.engines.base): a weight
    vector pulled towards each batch, some state that a resume must restore exactly."""

    def __init__(self, spec, dataset, optimizer, seed, **options):
        self.seed = seed
        self.w = np.random.default_rng([seed, 0]).normal(size=4)
        self.t = np.int64(0)
        self.beta2 = optimizer["beta2"] if optimizer.name == "amsgrad" else 0.5
        self.x = dataset.x_train.reshape(len(dataset.x_train), -1)[:, :4].astype(np.float64)

    def info(self):
        return {"engine": "toy"}

    def as_group(self):  # what the trainer drives: a group of one (base.Engine's)
        from experiments.engines.base import GroupOfOne
        return GroupOfOne(self, self.seed)

    def dump(self):
        return {"param:w": self.w.copy(), "opt:t": np.asarray(self.t)}

    def load(self, arrays):
        self.w, self.t = arrays["param:w"].copy(), np.int64(arrays["opt:t"])

    def train_epoch(self, epoch, lr, indices, flips):
        time.sleep(float(os.environ.get("TOY_EPOCH_SECONDS", "0")))
        crash = os.environ.get("TOY_CRASH_AT", "")  # "run updater:epoch": die there
        if crash and crash == f"{self.updater_tag}:{epoch}":
            os.kill(os.getpid(), signal.SIGKILL)
        for batch in indices:
            self.w = self.w + lr * (self.x[batch].mean(axis=0) - self.beta2 * self.w)
            self.t += 1
        loss = float(np.sum(self.w ** 2))
        return loss, 1.0 / (1.0 + loss)

    def evaluate(self, batch_size=None):
        return float(np.sum(np.abs(self.w))), float(self.t % 7) / 7

    @property
    def updater_tag(self):
        return "amsgrad" if self.beta2 != 0.5 else "adam"


def toy_dataset(name, data_dir=None, quiet=False, **kwargs):
    from experiments.data import Dataset
    x = np.random.default_rng(5).normal(size=(40, 1, 2, 2)).astype(np.float32)
    y = np.arange(40, dtype=np.int32) % 10
    return Dataset(name, x, y, x[:10], y[:10])


def _load_toy(root, download, quiet):
    return toy_dataset("toy")


def register_toys():
    """The toy dataset and engine, registered from outside the package as a user's would
    be: ``dataset: toy`` (40 examples of 2x2 pixels), ``--engine toy`` (one run at a time).
    Done when this module is imported: in the test process, the toy runner below and a
    Ray worker alike."""
    from experiments.data import DatasetEntry, register_dataset
    from experiments.engines import Abilities, EngineEntry, register_engine
    register_dataset(DatasetEntry("toy", _load_toy, (1, 2, 2), 10), replace=True)
    register_engine(EngineEntry("toy", Abilities(groups=False), single="test_faults:ToyEngine"))


register_toys()


TOY = """\
    name: toy
    model: logreg
    dataset: toy
    epochs: {epochs}
    batch_size: 8
    learning_rate: 0.1
    grid:
      updater: [adam, amsgrad]
    seeds: {seeds}
    """


def toy_config(tmp_path, epochs=6, seeds="[0]"):
    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent(TOY.format(epochs=epochs, seeds=seeds)))
    return path


def toy_cmd(config, results, *args):
    # one run at a time: see __main__ below
    return [sys.executable, __file__, str(config), "--results", str(results), "--quiet",
            *args]


def toy_run(config, results, *args, env=None):
    return subprocess.run(toy_cmd(config, results, *args), capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})), cwd=REPO)


def run_dirs(results):
    grid = os.path.join(results, "toy")
    return {r: os.path.join(grid, r) for r in sorted(os.listdir(grid)) if r != "grid.yaml"}


def curves(run_dir):
    from experiments.results.store import RunStore
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in RunStore(run_dir).read_curves()]


def status(run_dir):
    with open(os.path.join(run_dir, "status.json")) as f:
        return json.load(f)


def progress(run_dir):
    """Epochs that survive a crash now: all if finished, else the checkpoint's."""
    from experiments.results.store import RunStore
    store = RunStore(run_dir)
    try:
        if status(run_dir).get("state") == "finished":
            return math.inf
    except FileNotFoundError:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checkpoint = store.load_checkpoint()
    return checkpoint[1]["epochs_done"] if checkpoint else 0


@pytest.fixture
def reference(tmp_path):
    """An uninterrupted run of the toy grid: run id -> curves."""
    def make(config):
        ref = tmp_path / "reference"
        result = toy_run(config, ref)
        assert result.returncode == 0, result.stderr
        return {rid: curves(d) for rid, d in run_dirs(ref).items()}
    return make


def test_runner_killed_20_times_at_random_moments(tmp_path, reference):
    config = toy_config(tmp_path, epochs=40)
    expected = reference(config)
    results = tmp_path / "killed"
    # 20 s of training in all: more than 20 kills at <= 1.8 s can leave time for, so
    # the grid cannot finish early however fast the machine (the final run completes it).
    env = dict(os.environ, TOY_EPOCH_SECONDS="0.25")
    rng = random.Random(20)
    finished_trainings, last_progress, kills = {}, {}, 0
    for _ in range(20):
        proc = subprocess.Popen(toy_cmd(config, results, "--max-attempts", "1000"), env=env,
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.8))
        proc.send_signal(signal.SIGKILL)
        kills += proc.wait() == -signal.SIGKILL
        if not (results / "toy").is_dir():
            continue
        for rid, run_dir in run_dirs(results).items():
            done = progress(run_dir)
            assert done >= last_progress.get(rid, 0)  # nothing but the epoch in progress lost
            last_progress[rid] = done
            if os.path.exists(os.path.join(run_dir, "curves.csv")) and done != math.inf:
                assert len(curves(run_dir)) - done in (0, 1)  # at most the row being redone
            if done == math.inf:  # finished: it must never be trained again
                trainings = status(run_dir)["trainings"]
                assert finished_trainings.setdefault(rid, trainings) == trainings
    assert kills >= 10  # most kills landed while the grid was running
    final = toy_run(config, results, "--max-attempts", "1000")
    assert final.returncode == 0, final.stderr
    for rid, run_dir in run_dirs(results).items():
        assert curves(run_dir) == expected[rid]
        assert status(run_dir)["state"] == "finished"
        if rid in finished_trainings:
            assert status(run_dir)["trainings"] == finished_trainings[rid]
        assert sorted(os.listdir(run_dir)) == ["config.yaml", "curves.csv", "status.json"]


def test_sigterm_ends_like_ctrl_c_and_releases_the_claim(tmp_path):
    config = toy_config(tmp_path, epochs=40)
    results = tmp_path / "r"
    proc = subprocess.Popen(toy_cmd(config, results), cwd=REPO, text=True,
                            env=dict(os.environ, TOY_EPOCH_SECONDS="0.05"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_dir = results / "toy" / "adam_seed=0"
    deadline = time.time() + 60
    while len(curves(run_dir) if (run_dir / "curves.csv").exists() else []) < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.splitlines()[-1] == "interrupted: run the same command again to resume"
    assert not (run_dir / "claim.json").exists()
    assert status(run_dir)["state"] == "running" and progress(run_dir) >= 1


def test_two_runners_on_one_folder_train_each_run_once(tmp_path, reference):
    config = toy_config(tmp_path, epochs=4, seeds="[0, 1, 2]")  # 6 runs
    expected = reference(config)
    results = tmp_path / "shared"
    env = dict(os.environ, TOY_EPOCH_SECONDS="0.05")
    runners = [subprocess.Popen(toy_cmd(config, results), env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(2)]
    outputs = [r.communicate(timeout=120) for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    trained = [int(out.splitlines()[-1].split(": ")[1].split()[0]) for out, _ in outputs]
    assert sum(trained) == 6  # between them, each run once
    for rid, run_dir in run_dirs(results).items():
        assert status(run_dir)["trainings"] == 1 and status(run_dir)["state"] == "finished"
        assert curves(run_dir) == expected[rid]
        assert not os.path.exists(os.path.join(run_dir, "claim.json"))


def test_a_run_that_keeps_crashing_is_given_up_and_the_grid_goes_on(tmp_path):
    config = toy_config(tmp_path, epochs=4)
    results = tmp_path / "r"
    crash = {"TOY_CRASH_AT": "adam:2"}  # the adam run kills its process in epoch 3
    # The first start gets from epoch 0 to 2 (progress); the next three get nowhere.
    codes = [toy_run(config, results, env=crash).returncode for _ in range(4)]
    assert codes == [-signal.SIGKILL] * 4
    adam, amsgrad = (os.path.join(results, "toy", f"{u}_seed=0") for u in ("adam", "amsgrad"))
    assert not os.path.exists(amsgrad)  # every start died on the adam run
    assert status(adam)["attempts"] == 3 and status(adam)["attempt_epoch"] == 2
    fifth = toy_run(config, results, env=crash)
    assert fifth.returncode == 1
    assert "failed adam_seed=0: gave up after 3 attempts that did not finish epoch 3 " \
           "(last: the process died)" in fifth.stderr
    assert status(adam)["state"] == "failed" and status(adam)["gave_up"] is True
    assert status(amsgrad)["state"] == "finished"  # the grid went on past it
    plan = toy_run(config, results, "--dry-run")
    assert plan.stdout.splitlines()[0].endswith(
        "1 done (1 finished), 0 to do, 1 given up after 3 attempts (--max-attempts to retry)")
    assert plan.stdout.splitlines()[1].split() == ["given", "up", "adam_seed=0"]
    assert toy_run(config, results, env=crash).returncode == 1  # stays given up, no crash
    retried = toy_run(config, results, "--max-attempts", "4")  # fixed, and allowed once more
    assert retried.returncode == 0, retried.stderr
    assert status(adam)["state"] == "finished" and len(curves(adam)) == 4
    assert status(adam)["trainings"] == 5  # 4 crashed starts and the one that finished


# Damaged files and a full disk, in this process (the same grid and trainer).
def _grid(tmp_path, results, epochs=5, stop_after=None, **kwargs):
    """Run the toy grid here; with ``stop_after``, every run stops (fails) after that
    many epochs of this call, leaving a checkpoint."""
    import io
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    from experiments.training import train_run

    def train_fn(run, store, on_epoch=None, **kw):
        count = [0]

        def hook(row):
            on_epoch(row)
            count[0] += 1
            if stop_after is not None and count[0] == stop_after:
                raise KeyboardInterrupt  # as a Ctrl-C between epochs
        return train_run(run, store, on_epoch=hook, **kw)
    config = load_config(toy_config(tmp_path, epochs=epochs))
    kwargs.setdefault("engine", "toy")
    try:
        return run_grid(config, results_dir=str(results), quiet=True, out=io.StringIO(),
                        train_fn=train_fn, **kwargs)
    except KeyboardInterrupt:
        return None


@pytest.fixture
def toy():
    """The toy dataset and engine (registered when this module loads)."""


def _reference(tmp_path):
    _grid(tmp_path, tmp_path / "reference")
    return {rid: curves(d) for rid, d in run_dirs(tmp_path / "reference").items()}


def _adam(results):
    return os.path.join(results, "toy", "adam_seed=0")


def _resume_and_check(tmp_path, results, expected, capsys, *fragments, trainings=2):
    capsys.readouterr()
    summary = _grid(tmp_path, results)
    assert summary["failed"] == []
    messages = capsys.readouterr().err  # the grid's warning lines
    for fragment in fragments:
        assert f"warning: adam_seed=0: {_adam(results)}/{fragment}" in messages
    run = _adam(results)
    assert curves(run) == expected["adam_seed=0"]
    assert status(run)["trainings"] == trainings and status(run)["state"] == "finished"
    return messages


def test_truncated_checkpoint_resumes_from_the_previous_one(tmp_path, toy, capsys):
    expected = _reference(tmp_path)
    results = tmp_path / "r"
    _grid(tmp_path, results, stop_after=3)
    ckpt = os.path.join(_adam(results), "checkpoint.npz")
    data = open(ckpt, "rb").read()
    with open(ckpt, "wb") as f:
        f.write(data[:len(data) // 2])
    messages = _resume_and_check(tmp_path, results, expected, capsys,
                                 "checkpoint.npz: unreadable (BadZipFile",
                                 "checkpoint.npz: resuming from the previous checkpoint (epoch 2)")
    assert "; set aside as checkpoint.npz.corrupt\n" in messages
    assert open(ckpt + ".corrupt", "rb").read() == data[:len(data) // 2]


@pytest.mark.parametrize("damage, problem", [
    ("flipped bit", "unreadable (BadZipFile: Bad CRC-32 for file 'param:w.npy')"),
    ("changed array, valid zip", "checksum mismatch")])
def test_altered_checkpoint_is_detected(tmp_path, toy, capsys, damage, problem):
    from experiments.results.files import CorruptFileError, read_checkpoint
    expected = _reference(tmp_path)
    results = tmp_path / "r"
    _grid(tmp_path, results, stop_after=3)
    ckpt = os.path.join(_adam(results), "checkpoint.npz")
    with np.load(ckpt) as npz:
        members = dict(npz)
    if damage == "flipped bit":
        raw = bytearray(open(ckpt, "rb").read())
        raw[bytes(raw).index(members["param:w"].tobytes()) + 3] ^= 0x10
        open(ckpt, "wb").write(bytes(raw))
    else:  # the zip's own CRCs are right; only the stored SHA-256 can tell
        members["param:w"] = members["param:w"] + 1e-12
        np.savez(ckpt, **members)
    with pytest.raises(CorruptFileError, match=re.escape(problem)):
        read_checkpoint(ckpt)
    _resume_and_check(tmp_path, results, expected, capsys, f"checkpoint.npz: {problem}",
                      "checkpoint.npz: resuming from the previous checkpoint (epoch 2)")


def test_both_checkpoints_damaged_restarts_the_run(tmp_path, toy, capsys):
    expected = _reference(tmp_path)
    results = tmp_path / "r"
    _grid(tmp_path, results, stop_after=3)
    for name in ("checkpoint.npz", "checkpoint.prev.npz"):
        open(os.path.join(_adam(results), name), "wb").write(b"PK\x03\x04garbage")
    _resume_and_check(tmp_path, results, expected, capsys, "checkpoint.npz: unreadable",
                      "checkpoint.prev.npz: unreadable")


@pytest.mark.parametrize("damage", ["cut", "garbage", "missing", "rows lost"])
def test_damaged_curves_are_rebuilt_from_the_checkpoint(tmp_path, toy, capsys, damage):
    expected = _reference(tmp_path)
    results = tmp_path / "r"
    _grid(tmp_path, results, stop_after=3)
    path = os.path.join(_adam(results), "curves.csv")
    text = open(path).read()
    damaged = {"cut": text[:len(text) - 9], "garbage": text.replace("\n2,", "\n2,x,", 1),
               "missing": None, "rows lost": "\n".join(text.split("\n")[:2]) + "\n"}[damage]
    if damaged is None:
        os.remove(path)
    else:
        open(path, "w").write(damaged)
    if damage == "cut":
        from experiments.results.store import CorruptFileError, RunStore
        with pytest.raises(CorruptFileError, match="cut short"):
            RunStore(_adam(results)).read_curves()
    _resume_and_check(tmp_path, results, expected, capsys,
                      "curves.csv: rebuilt from the checkpoint")


def test_damaged_status_of_a_finished_run_is_rebuilt_not_retrained(tmp_path, toy, capsys):
    results = tmp_path / "r"
    _grid(tmp_path, results)
    run = _adam(results)
    before = curves(run)
    open(os.path.join(run, "status.json"), "w").write('{"state": "fini')
    capsys.readouterr()
    summary = _grid(tmp_path, results)
    assert f"warning: adam_seed=0: {run}/status.json: not JSON" in capsys.readouterr().err
    assert summary["trained"] == [] and summary["failed"] == []
    assert status(run)["state"] == "finished" and status(run)["recovered"] == "from curves.csv"
    assert curves(run) == before


def test_full_disk_while_checkpointing_keeps_the_previous_files(tmp_path, toy, monkeypatch):
    import errno
    from experiments.results import files as results_module
    expected = _reference(tmp_path)
    results = tmp_path / "r"
    real_fdopen, calls = os.fdopen, []

    class FullFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *args, **kwargs):  # the 4th checkpoint of the adam run
        f = real_fdopen(fd, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "adam_seed=0/.checkpoint.npz." in name:
            calls.append(name)
            if len(calls) == 4:
                return FullFile(f)
        return f
    monkeypatch.setattr(results_module.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space left on device"):  # the grid stops
        _grid(tmp_path, results)
    monkeypatch.undo()
    run = _adam(results)
    assert status(run)["state"] == "running"  # not the run's fault: not marked failed
    from experiments.results.store import RunStore
    arrays, meta = RunStore(run).load_checkpoint()  # the previous files are intact
    assert meta["epochs_done"] == 3 and len(curves(run)) == 4
    assert sorted(f for f in os.listdir(run) if not f.startswith(".")) == [
        "checkpoint.npz", "checkpoint.prev.npz", "config.yaml", "curves.csv", "status.json"]
    assert [f for f in os.listdir(run) if f.startswith(".")] == []  # no temp files left
    summary = _grid(tmp_path, results)  # space again: it resumes
    assert sorted(summary["trained"]) == ["adam_seed=0", "amsgrad_seed=0"]
    assert curves(run) == expected["adam_seed=0"] and status(run)["trainings"] == 2


# The real trainer and engine: a killed runner, then a damaged checkpoint.
REAL = os.environ.get("AMSGRAD_REAL_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
needs_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "mnist", "train-images-idx3-ubyte.gz")),
    reason=f"real MNIST not found in {REAL} (set AMSGRAD_REAL_DATA)")


@needs_mnist
@pytest.mark.slow
def test_real_runner_killed_then_damaged_checkpoint_resumes_exactly(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\nmodel: logreg\nepochs: 30\ntrain_subset: 3000\n"
                      "val_subset: 1000\nlearning_rate: 0.001\ngrid:\n  updater: [amsgrad]\n"
                      "seeds: [3]\n")

    def cli(results, *args):
        return [sys.executable, SCRIPT, str(config), "--results", str(results), "--data-dir",
                REAL, "--quiet", *args]
    killed = tmp_path / "killed"
    run_dir = killed / "tiny" / "amsgrad_seed=3"
    proc = subprocess.Popen(cli(killed), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 100
        while proc.poll() is None and time.time() < deadline and not (
                (run_dir / "checkpoint.prev.npz").exists() and len(curves(run_dir)) >= 3):
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert (run_dir / "claim.json").exists()  # left behind by the dead runner
    ckpt = run_dir / "checkpoint.npz"
    (run_dir / "cut").write_bytes(ckpt.read_bytes()[:1000])  # as a copy cut short
    os.replace(run_dir / "cut", ckpt)
    resumed = subprocess.run(cli(killed), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "took the run over from" in resumed.stderr and "is dead" in resumed.stderr
    assert "resuming from the previous checkpoint" in resumed.stderr
    reference = tmp_path / "reference"
    straight = subprocess.run(cli(reference), cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr
    assert curves(run_dir) == curves(reference / "tiny" / "amsgrad_seed=3")  # bit for bit
    assert status(run_dir)["trainings"] == 2 and status(run_dir)["state"] == "finished"


if __name__ == "__main__":  # run_grid.py with the toy engine (see the module docstring)
    import runpy
    sys.path.insert(0, REPO)
    argv = sys.argv[1:]
    if "--engine" not in argv:
        argv += ["--engine", "toy"]
    sys.argv = [SCRIPT] + argv
    runpy.run_path(SCRIPT, run_name="__main__")
