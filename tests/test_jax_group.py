"""Grouped training: a run trained in a group equals the run trained alone.

Equal means: the same curves to float32 tolerance. The group computes each run's
matrix products and convolutions inside larger kernels (K runs' outputs at once), so
single steps differ from the run alone by float32 rounding (~1e-7 relative); over a
few epochs Adam carries such differences along but does not blow them up, and
1e-5 relative is still 100 float32 ulps. A real mistake (another learning rate, bias
correction, update rule, seed, data order or dropout mask) changes the curves by far
more: at least 1e-3 in these settings. Accuracies count examples, so a prediction
near a tie could flip: they may differ by at most one example.
"""
import io
import math
import os
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments.data import Dataset, epoch_batches, load_dataset
from experiments.optimizers import Optimizer
from experiments.engines.base import array_shapes, initial_arrays
from experiments.engines.group_layout import slot_layout
from experiments.engines.jax_group import GroupEngine
from experiments.training.grouping import check_group
from experiments.results.store import RunStore
from experiments.training import train_run, train_runs

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_mnist = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found in {REAL}")
needs_cifar = pytest.mark.skipif(not (REAL / "cifar10-jpeg.tar.gz").is_file(),
                                 reason=f"real CIFAR-10 not found in {REAL}")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]

LOGREG = dict(name="g", model="logreg", dataset="mnist", epochs=3, batch_size=128,
              val_batch_size=256, lr_schedule="linear", augmentation="none",
              train_subset=1500, val_subset=500, beta1=0.9, epsilon=1e-8)
# Adam and AMSGrad, two learning rates, bias correction on and off, two seeds; seed 0
# has five runs and seed 1 three, so the group pads seed 1 with two slots (copies).
MIXED = [("adam", 1e-2, 0.999, True, 0), ("amsgrad", 1e-2, 0.99, False, 0),
         ("adam", 1e-3, 0.99, False, 0), ("amsgrad", 1e-3, 0.999, True, 0),
         ("adam", 1e-2, 0.99, False, 0), ("adam", 1e-3, 0.999, True, 1),
         ("amsgrad", 1e-2, 0.999, True, 1), ("amsgrad", 1e-3, 0.99, False, 1)]


def make_runs(base, combos):
    return [dict(base, run_id=f"{u}_lr={lr}_b2={b2}_bc={'on' if bc else 'off'}_seed={s}",
                 updater=u, learning_rate=lr, beta2=b2, bias_correction=bc, seed=s)
            for u, lr, b2, bc, s in combos]


def stores(root, runs):
    return [RunStore(root / r["run_id"]) for r in runs]


def assert_same_curves(alone, grouped, n_val, n_train_steps):
    assert [r["epoch"] for r in grouped] == [r["epoch"] for r in alone]
    for a, g in zip(alone, grouped):
        assert g["lr"] == a["lr"]
        np.testing.assert_allclose([g["loss"], g["val_loss"]], [a["loss"], a["val_loss"]],
                                   rtol=1e-5, atol=1e-6)
        assert abs(g["val_acc"] - a["val_acc"]) <= 1.0 / n_val + 1e-12
        assert abs(g["acc"] - a["acc"]) <= 1.0 / n_train_steps + 1e-12


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", REAL, download=False)


@pytest.fixture(scope="module")
def cifar():
    """Real CIFAR-10 images, 12 per class for training and 6 for validation, read
    straight from the JPEG archive (decoding all 60,000 would take 15 s)."""
    wanted = {f"{split}/{c}/{i:04d}.jpg": (split, label)
              for split, n in (("train", 12), ("test", 6))
              for label, c in enumerate(CLASSES) for i in range(n)}
    from PIL import Image
    found = {"train": [], "test": []}
    with tarfile.open(REAL / "cifar10-jpeg.tar.gz", "r|gz") as tar:
        for member in tar:
            if member.name in wanted:
                split, label = wanted[member.name]
                img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                found[split].append((member.name, np.asarray(img), label))
    arrays = {}
    for split, items in found.items():
        items.sort()
        order = np.random.default_rng(0).permutation(len(items))
        x = np.stack([items[i][1] for i in order]).transpose(0, 3, 1, 2)
        arrays[split] = (x.astype(np.float32) / np.float32(255),
                         np.array([items[i][2] for i in order], np.int32))
    return Dataset("cifar10", *arrays["train"], *arrays["test"], flip=True)


# -- the engine ----------------------------------------------------------------------

def test_slot_layout_pads_seeds_to_the_widest():
    order, width, slots = slot_layout([3, 1, 3, 3, 1])
    assert order == [3, 1] and width == 3
    assert slots.tolist() == [0, 2, 3, 1, 4, -1]


def test_dump_has_each_runs_checkpoint_arrays(mnist):
    spec = models.get_model("logreg")
    hp = [Optimizer.of("adam"), Optimizer.of("amsgrad", beta2=0.99)]
    engine = GroupEngine(spec, mnist, hp, [4, 7])
    dumped = engine.dump()
    for arrays, h, seed in zip(dumped, hp, (4, 7)):
        assert {k: np.shape(v) for k, v in arrays.items()} == dict(array_shapes(spec, h))
        fresh = initial_arrays(spec, h, seed)
        for name, value in fresh.items():
            np.testing.assert_array_equal(arrays[name], value)
    dumped[1]["param:out.W"] = dumped[1]["param:out.W"] + 1.0
    dumped[1]["opt:t"] = np.asarray(5, np.int64)
    engine.load(dumped)
    again = engine.dump()
    assert again[1]["opt:t"] == 5 and again[0]["opt:t"] == 0
    np.testing.assert_array_equal(again[1]["param:out.W"], dumped[1]["param:out.W"])
    with pytest.raises(ValueError, match="v_hat"):
        engine.load([dumped[0], dumped[0]])  # an Adam checkpoint for the AMSGrad run


@needs_mnist
def test_nan_in_one_run_leaves_the_others_bit_identical(mnist):
    """A run gone NaN computes NaN; the others do exactly what they do without it."""
    spec = models.get_model("logreg")
    data = Dataset("mnist", mnist.x_train[:1024], mnist.y_train[:1024], mnist.x_val[:256],
                   mnist.y_val[:256])
    hp = [Optimizer.of(u, bias_correction=bc)
          for u, bc in (("adam", True), ("amsgrad", False), ("amsgrad", True))]
    seeds = [0, 0, 1]

    def train(poison):
        engine = GroupEngine(spec, data, hp, seeds)
        arrays = engine.dump()
        if poison:
            arrays[1]["param:out.W"][3, 2] = np.nan
        engine.load(arrays)
        plans = {s: epoch_batches(s, 0, 1024) for s in (0, 1)}
        losses, _ = engine.train_epoch(0, [1e-2, 1e-2, 1e-3], [True] * 3, plans)
        return losses, engine.evaluate(256), engine.dump()

    clean, poisoned = train(False), train(True)
    assert math.isnan(poisoned[0][1]) and math.isnan(poisoned[1][0][1])
    assert np.isfinite(clean[0]).all()
    for k in (0, 2):
        assert poisoned[0][k] == clean[0][k] and poisoned[1][0][k] == clean[1][0][k]
        for name, value in clean[2][k].items():
            np.testing.assert_array_equal(poisoned[2][k][name], value)


@needs_mnist
def test_inactive_runs_keep_their_arrays(mnist):
    spec = models.get_model("logreg")
    data = Dataset("mnist", mnist.x_train[:512], mnist.y_train[:512], mnist.x_val[:128],
                   mnist.y_val[:128])
    engine = GroupEngine(spec, data, [Optimizer.of("amsgrad")] * 2, [0, 0])
    before = engine.dump()
    engine.train_epoch(0, [1e-3, 1e-3], [False, True], {0: epoch_batches(0, 0, 512)})
    after = engine.dump()
    for name, value in before[0].items():
        np.testing.assert_array_equal(after[0][name], value)
    assert after[1]["opt:t"] == 4 and not np.array_equal(after[1]["param:out.W"],
                                                         before[1]["param:out.W"])
    # an epoch with every run active compiles without the masking: the same values to
    # float32 rounding (XLA compiles the two programs' kernels a little differently)
    both = GroupEngine(spec, data, [Optimizer.of("amsgrad")] * 2, [0, 0])
    both.train_epoch(0, [1e-3, 1e-3], [True, True], {0: epoch_batches(0, 0, 512)})
    for name, value in both.dump()[1].items():
        np.testing.assert_allclose(after[1][name], value, rtol=1e-5, atol=1e-8)


def test_compile_options_this_jax_lacks_are_left_out():
    from experiments.engines.jax_layers import compile_with as _compile
    lowered = jax.jit(lambda a: a * 2.0).lower(jnp.ones(3))
    program = _compile(lowered, {"xla_no_such_option_anywhere": ""})
    np.testing.assert_array_equal(program(jnp.ones(3)), [2.0, 2.0, 2.0])



@needs_cifar
def test_the_three_layouts_train_a_conv_net_alike(cifar):
    """'shared' (the GPU default for conv nets), 'per_run' and 'loop' (the CPU default)
    step the same runs: batch norm, dropout and the stored (S, *shape, R) arrays."""
    spec = models.get_model("cifarnet")
    data = Dataset("cifar10", cifar.x_train[:160], cifar.y_train[:160], cifar.x_val[:32],
                   cifar.y_val[:32], flip=True)
    hp = [Optimizer.of(u) for u in ("adam", "amsgrad", "adam")]
    seeds = [0, 0, 1]
    results = {}
    for layout in ("loop", "shared", "per_run"):
        engine = GroupEngine(spec, data, hp, seeds, layout=layout)
        losses, _ = engine.train_epoch(  # learning rates far apart: runs mixed up would show
            0, [1e-2, 1e-4, 1e-3], [True] * 3,
            {s: epoch_batches(s, 0, 160, 40, flip=True) for s in (0, 1)})
        results[layout] = losses, engine.evaluate(32)[0], engine.dump()
    loss, val, dumped = results["loop"]
    for layout in ("shared", "per_run"):
        np.testing.assert_allclose(results[layout][0], loss, rtol=1e-5)
        np.testing.assert_allclose(results[layout][1], val, rtol=1e-4)
        for ref, got in zip(dumped, results[layout][2]):
            assert set(got) == set(ref)
            for name, value in ref.items():
                # by norm: Adam moves an element whose gradient is rounding noise by
                # up to a step whatever its size, so single elements may differ more
                scale = float(np.linalg.norm(value)) or 1.0
                assert np.linalg.norm(got[name] - value) <= 1e-3 * scale, (layout, name)


@needs_mnist
def test_validation_in_chunks_of_runs_gives_the_same(mnist):
    spec = models.get_model("logreg")
    data = Dataset("mnist", mnist.x_train[:512], mnist.y_train[:512], mnist.x_val[:300],
                   mnist.y_val[:300])
    hp = [Optimizer.of(u) for u in ("adam", "amsgrad", "adam")]
    whole, chunked = (GroupEngine(spec, data, hp, [0, 1, 1], eval_runs=e) for e in (None, 2))
    for engine in (whole, chunked):
        engine.train_epoch(0, [1e-2] * 3, [True] * 3,
                           {s: epoch_batches(s, 0, 512) for s in (0, 1)})
    a, b = whole.evaluate(128), chunked.evaluate(128)
    # programs for 4 and for 2 runs tile their matrix products differently: float32 rounding
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])
    assert len(set(a[0].tolist())) == 3  # three different runs

# -- training: grouped equals alone ---------------------------------------------------

@needs_mnist
def test_logreg_group_equals_runs_alone(mnist, tmp_path):
    runs = make_runs(LOGREG, MIXED)
    alone = [train_run(r, s, dataset=mnist, quiet=True)
             for r, s in zip(runs, stores(tmp_path / "alone", runs))]
    grouped = train_runs(runs, stores(tmp_path / "group", runs), dataset=mnist, quiet=True,
                          checkpoint_every=0)
    steps = -(-LOGREG["train_subset"] // 128) * 128
    for run, a, g in zip(runs, alone, grouped):
        assert g["state"] == a["state"] == "finished"
        assert set(g) == set(a) and g["epochs_done"] == 3
        assert g["engine_info"]["group_size"] == 8 and g["engine_info"]["group_slots"] == 10
        ga, gs = (RunStore(tmp_path / d / run["run_id"]) for d in ("alone", "group"))
        assert not os.path.exists(gs.checkpoint_path)
        assert_same_curves(ga.read_curves(), gs.read_curves(), 500, steps)


@needs_cifar
def test_cifarnet_group_equals_runs_alone_with_dropout(cifar, tmp_path):
    base = dict(LOGREG, model="cifarnet", dataset="cifar10", epochs=2, batch_size=40,
                val_batch_size=32, augmentation="flip", train_subset=None, val_subset=None)
    runs = make_runs(base, [("adam", 1e-3, 0.999, True, 0), ("amsgrad", 1e-3, 0.99, False, 0),
                            ("amsgrad", 1e-4, 0.999, True, 1)])
    alone = [train_run(r, s, dataset=cifar, quiet=True)
             for r, s in zip(runs, stores(tmp_path / "alone", runs))]
    grouped = train_runs(runs, stores(tmp_path / "group", runs), dataset=cifar, quiet=True)
    for run, a, g in zip(runs, alone, grouped):
        assert g["state"] == a["state"] == "finished"
        curves = [RunStore(tmp_path / d / run["run_id"]).read_curves()
                  for d in ("alone", "group")]
        assert_same_curves(*curves, 60, 3 * 40)
    # dropout was on: without it the same run trains differently
    off = train_runs(runs[:1], stores(tmp_path / "off", runs[:1]), dataset=cifar,
                      quiet=True, engine_options={"dropout": False})
    assert off[0]["state"] == "finished"
    loss_off = RunStore(tmp_path / "off" / runs[0]["run_id"]).read_curves()[0]["loss"]
    loss_on = RunStore(tmp_path / "alone" / runs[0]["run_id"]).read_curves()[0]["loss"]
    assert abs(loss_off - loss_on) > 1e-3


@needs_mnist
def test_diverged_run_is_recorded_and_the_others_go_on(mnist, tmp_path):
    # lr 1e38 without bias correction: the first step overflows float32 (inf, then NaN)
    runs = make_runs(LOGREG, [("adam", 1e-2, 0.999, True, 0), ("adam", 1e38, 0.999, False, 0),
                              ("amsgrad", 1e-3, 0.99, False, 1)])
    alone = [train_run(r, s, dataset=mnist, quiet=True)
             for r, s in zip(runs, stores(tmp_path / "alone", runs))]
    grouped = train_runs(runs, stores(tmp_path / "group", runs), dataset=mnist, quiet=True)
    assert [s["state"] for s in grouped] == [s["state"] for s in alone] == \
        ["finished", "diverged", "finished"]
    bad = RunStore(tmp_path / "group" / runs[1]["run_id"])
    rows = bad.read_curves()
    assert len(rows) == 1 and math.isnan(rows[0]["loss"]) and grouped[1]["epochs_done"] == 1
    assert not os.path.exists(bad.checkpoint_path)
    steps = -(-LOGREG["train_subset"] // 128) * 128
    for run in (runs[0], runs[2]):
        curves = [RunStore(tmp_path / d / run["run_id"]).read_curves()
                  for d in ("alone", "group")]
        assert len(curves[1]) == 3
        assert_same_curves(*curves, 500, steps)


class Stop(Exception):
    pass


def stop_after(n):
    seen = []

    def on_epoch(*args):
        seen.append(args)
        if len(seen) >= n:
            raise Stop
    return on_epoch


@needs_mnist
def test_resume_alone_and_in_a_group_from_group_checkpoints(mnist, tmp_path):
    """Interrupted after epoch 1; one run then goes on alone for an epoch (so the
    group's runs stand at different epochs), the rest catch up in a group. Every run
    ends with the curves of an uninterrupted training."""
    runs = make_runs(dict(LOGREG, epochs=4), MIXED[:3] + MIXED[5:7])
    whole = train_runs(runs, stores(tmp_path / "whole", runs), dataset=mnist, quiet=True)
    assert all(s["state"] == "finished" for s in whole)
    part = stores(tmp_path / "part", runs)
    with pytest.raises(Stop):
        train_runs(runs, part, dataset=mnist, quiet=True, checkpoint_every=0,
                    on_epoch=stop_after(len(runs)))
    assert all(s.read_status()["state"] == "failed" for s in part)
    assert all(s.load_checkpoint()[1]["epochs_done"] == 1 for s in part)
    with pytest.raises(Stop):  # run 0 alone, from the group's checkpoint: epoch 2
        train_run(runs[0], part[0], dataset=mnist, quiet=True, on_epoch=stop_after(1))
    assert part[0].load_checkpoint()[1]["epochs_done"] == 2
    resumed = train_runs(runs, part, dataset=mnist, quiet=True)
    assert all(s["state"] == "finished" and s["trainings"] >= 2 for s in resumed)
    steps = -(-LOGREG["train_subset"] // 128) * 128
    for run in runs:
        curves = [RunStore(tmp_path / d / run["run_id"]).read_curves()
                  for d in ("whole", "part")]
        assert len(curves[1]) == 4
        assert_same_curves(*curves, 500, steps)



@needs_mnist
def test_a_run_taken_over_by_another_process_leaves_the_group(mnist, tmp_path):
    from experiments.results import claims
    runs = make_runs(LOGREG, MIXED[:3])
    for r in runs:
        (tmp_path / r["run_id"]).mkdir()
    held = [claims.acquire(str(tmp_path / r["run_id"] / "claim.json")) for r in runs]
    group = [RunStore(tmp_path / r["run_id"], claim=c) for r, c in zip(runs, held)]

    def take_over(run, row):  # another process claims run 1 after its first epoch
        if run is runs[1] and row["epoch"] == 1:
            os.replace(held[1].path, str(tmp_path / "gone"))
            (tmp_path / runs[1]["run_id"] / "claim.json").write_text("{}")
    try:
        out = train_runs(runs, group, dataset=mnist, quiet=True, on_epoch=take_over)
    finally:
        for c in held:
            c.release()
    assert [s["state"] for s in out] == ["finished", "lost", "finished"]
    assert "claim" in out[1]["error"]
    assert len(group[1].read_curves()) == 1 and group[1].read_status()["state"] == "running"
    assert all(len(group[k].read_curves()) == 3 for k in (0, 2))

def test_finished_runs_are_left_alone(tmp_path):
    runs = make_runs(LOGREG, MIXED[:2])
    store = stores(tmp_path, runs)
    for s in store:
        s.write_status({"state": "finished", "epochs_done": 3})
    assert train_runs(runs, store, dataset=None, quiet=True) == \
        [{"state": "finished", "epochs_done": 3}] * 2


def test_incompatible_runs_are_refused():
    runs = make_runs(LOGREG, MIXED[:2])
    runs[1]["batch_size"] = 64
    with pytest.raises(ValueError, match="differ in 'batch_size'"):
        check_group(runs)
    with pytest.raises(ValueError, match="differ in 'rule' \\(adam_family vs sgd\\)"):
        check_group([runs[0], dict(runs[0], updater="sgd", run_id="sgd")])
    check_group([dict(runs[0], updater="sgd")])  # any rule of the library groups


# -- the benchmarks run (tiny) ----------------------------------------------------------

def test_gpu_check_runs_tiny_on_cpu(capsys):
    from experiments.benchmarks import gpu
    import argparse
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    assert gpu.run(parser.parse_args(["--tiny"])) == 0
    out = capsys.readouterr().out
    for model in ("logreg", "cifarnet"):
        for k in (1, 2):
            assert any(line.split()[:2] == [model, str(k)] and "h" in line.split()[-1]
                       for line in out.splitlines())
    assert "best projected full grid per model" in out and "error" not in out.lower()


@needs_mnist
def test_grid_benchmark_compares_grouped_and_sequential(capsys, monkeypatch):
    from experiments.benchmarks import grid
    import argparse
    monkeypatch.setenv("AMSGRAD_DATA_DIR", str(REAL))
    parser = argparse.ArgumentParser()
    grid.add_arguments(parser)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    assert grid.run(parser.parse_args(["--config", config, "--group-sizes", "4,2",
                                       "--epochs", "1", "--sequential", "1",
                                       "--engines", "jax"])) == 0
    out = capsys.readouterr().out
    rows = {line[:34].strip(): line[34:].split() for line in out.splitlines()
            if line.startswith(("grouped", "jax"))}
    assert rows["grouped K=4 (shared)"][0] == "1x4" and rows["grouped K=2 (shared)"][0] == "2x2"
    assert rows["jax one after another (1 timed)"][0] == "4x1"
    assert min(float(r[-1]) for r in rows.values()) == 1.0  # ratios to the fastest way
    assert "projected full grid (4 runs x 2 epochs)" in out
    # the same timing from another interpreter (how the Theano environment is timed)
    args = parser.parse_args(["--config", config, "--epochs", "1", "--sequential", "1"])
    per_epoch, compile_s = grid.time_sequential_in(sys.executable, "jax", args)
    assert per_epoch > 0 and compile_s > 0


@needs_mnist
def test_grid_trains_groups_like_runs_one_after_another(tmp_path):
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    # "auto": run_grid's default, without the argument (logreg's 4 runs at once)
    summaries = {k: run_grid(config, results_dir=tmp_path / str(k), data_dir=REAL, quiet=True,
                             out=io.StringIO(), **({} if k == "auto" else {"group_size": k}))
                 for k in (1, 2, "auto")}
    assert all(len(s["trained"]) == 4 and not s["failed"] for s in summaries.values())
    for run_id in summaries[1]["trained"]:
        one, two, auto = (RunStore(tmp_path / str(k) / "smoke" / run_id) for k in (1, 2, "auto"))
        assert two.read_status()["engine_info"]["group_size"] == 2
        assert auto.read_status()["engine_info"]["group_size"] == 4
        assert "group_size" not in one.read_status()["engine_info"]
        for other in (two, auto):
            assert_same_curves(one.read_curves(), other.read_curves(), 1000, 16 * 128)


@needs_mnist
def test_a_group_retry_starts_with_a_clean_status(mnist, tmp_path):
    """A failed attempt leaves its error, traceback and time in status.json (the
    executors write them); the next attempt, in a group, must not carry them on, as a
    run alone does not (one function for both)."""
    runs = make_runs(dict(LOGREG, epochs=2), MIXED[:2])
    group = stores(tmp_path, runs)
    for s in group:
        s.write_status({"state": "failed", "error": "RuntimeError: boom",
                        "traceback": "Traceback ...", "failed_at": "2026-01-01T00:00:00",
                        "finished": "then", "seconds": 1.0, "trainings": 1, "attempts": 2})
    seen = []
    train_runs(runs, group, dataset=mnist, quiet=True, checkpoint_every=0,
                on_epoch=lambda run, row: seen.append(
                    RunStore(tmp_path / run["run_id"]).read_status()))
    for status in seen:  # while training
        assert status["state"] == "running" and status["trainings"] == 2
        assert not {"error", "traceback", "failed_at", "finished", "seconds"} & set(status)
        assert status["attempts"] == 2  # the executors' count is not the trainer's
    for s in group:
        final = s.read_status()
        assert final["state"] == "finished" and "traceback" not in final
        assert "failed_at" not in final and "error" not in final


@needs_mnist
def test_a_group_takes_a_dead_runners_run_over_and_says_so(mnist, tmp_path):
    """As a run alone does (the same executors.run_jobs): the note names the dead owner."""
    import json
    import socket
    import subprocess
    import time
    from experiments.results import claims
    from experiments.grid.executors import Job, run_jobs
    runs = make_runs(dict(LOGREG, epochs=1), MIXED[:2])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / runs[1]["run_id"]
    run_dir.mkdir()
    (run_dir / "claim.json").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "pidns": claims._pidns(),
         "token": "t", "started": time.time(), "heartbeat": time.time()}))
    events = []
    outcomes = run_jobs([Job(r, str(tmp_path / r["run_id"])) for r in runs], mnist,
                         on_event=lambda rid, kind, payload: events.append((rid, kind, payload)))
    assert [o["result"] for o in outcomes] == ["trained", "trained"]
    notes = [(rid, p) for rid, kind, p in events if kind == "note"]
    assert len(notes) == 1 and notes[0][0] == runs[1]["run_id"]
    assert f"took the run over from {socket.gethostname()}:{dead.pid}" in notes[0][1]
