"""A grid's cost before it runs: FLOPs counted on hand-countable models, the dry run's
cost and time lines with a measured rate and without one, the peaks of known GPUs, and
the rates file the benchmark writes."""
import json
import os
import subprocess
import sys
import warnings

import pytest

from experiments import models
from experiments.config import load_config
from experiments.config.runs import expand_grid
from experiments.engines import devices
from experiments.grid import cost

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.environ.get("AMSGRAD_REAL_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
needs_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "mnist", "train-images-idx3-ubyte.gz")),
    reason=f"real MNIST not found in {REAL} (set AMSGRAD_REAL_DATA)")

# logreg, 784 -> 10: forward 2 x 784 x 10 FLOP an example; training adds the weight
# gradient (as many) and no input gradient (the first layer's input is the data).
LOGREG_TRAIN = 391 * 128 * 2 * (2 * 784 * 10)  # 50,000 in 391 full batches of 128
LOGREG_VAL = 10 * 1024 * (2 * 784 * 10)  # 10,000 in 10 whole batches of 1,024
LOGREG_GRID = 120 * 150 * (LOGREG_TRAIN + LOGREG_VAL)


def test_flops_of_hand_countable_models():
    logreg = models.get_model("logreg")
    assert models.epoch_flops(logreg, 50000, 10000, 128, 1024) == (LOGREG_TRAIN, LOGREG_VAL)
    assert (LOGREG_TRAIN, LOGREG_VAL) == (1_569_505_280, 160_563_200)
    # conv 3x3 'same', 3 -> 4 channels on 6x6, pool to 3x3, dense 36 -> 10
    tiny = models.ModelSpec("tiny", "cifar10", (3, 6, 6), (
        models.Conv2DLayer("conv", 4, 3, "same"), models.MaxPool2DLayer("pool"),
        models.DenseLayer("out", 10, nonlinearity="softmax")))
    conv, dense = 2 * 3 * 9 * 4 * 36, 2 * 36 * 10
    c = models.costs(tiny)
    # forward, both weight gradients, the dense layer's input gradient
    assert (c["forward_flops"], c["train_flops"]) == (conv + dense, 2 * (conv + dense) + dense)
    assert models.epoch_flops(tiny, 10, 3, 4, 2) == (12 * c["train_flops"], 4 * (conv + dense))


def test_grid_flops_of_the_logreg_grid():
    runs = expand_grid(load_config(os.path.join(REPO, "configs", "logreg.yaml")))
    flops = cost.grid_flops(runs, {r["run_id"]: 150 for r in runs})
    assert flops == (120 * 150 * LOGREG_TRAIN, 120 * 150 * LOGREG_VAL)
    assert sum(flops) == LOGREG_GRID == 31_141_232_640_000


def _dry_run(tmp_path, *args):
    env = dict(os.environ, AMSGRAD_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "scripts/run_grid.py", "configs/logreg.yaml",
                             "--results", str(tmp_path / "r"), "--dry-run", *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


COST = ("cost: 120 runs x 150 epochs: 31.1 TFLOP (training 28.3 TFLOP, validation 2.89 "
        "TFLOP; 2 FLOP per multiply-add, training about 3x forward)")


def test_dry_run_states_the_cost_and_a_time_from_a_recorded_rate(tmp_path):
    device = devices.device_name(None)  # a CPU: JAX's device here
    devices.record_rate(device, "jax", "logreg", "default", 1e10, "benchmark.py grid",
                        path=tmp_path / "cache" / "rates.json", group_size=120)
    lines = _dry_run(tmp_path)
    today = json.loads((tmp_path / "cache" / "rates.json").read_text())["rates"][0]["measured"]
    assert lines[1] == COST
    # 31,141,232,640,000 FLOP / 1e10 FLOP/s = 3,114 s
    assert lines[2] == (f"time: {device}, engine jax, precision default: about 51.9 min at "
                        f"0.01 TFLOP/s (measured by benchmark.py grid on {today}, 120 runs "
                        f"per program)")
    # another precision has no rate of its own: no estimate on a CPU
    other = _dry_run(tmp_path, "--set", "precision=tf32_emulated")
    assert other[2].startswith(f"time: {device}, engine jax, precision tf32_emulated: no "
                               f"estimate: no known peak")


def test_dry_run_without_a_rate_on_a_cpu_gives_no_estimate(tmp_path):
    lines = _dry_run(tmp_path, "--only", "seed=0", "--epochs", "2")
    assert lines[1] == ("cost: 24 runs x 2 epochs: 83 GFLOP (training 75.3 GFLOP, validation "
                        "7.71 GFLOP; 2 FLOP per multiply-add, training about 3x forward)")
    assert lines[2] == (f"time: {devices.device_name(None)}, engine jax, precision default: "
                        f"no estimate: no known peak of this device at this precision and no "
                        f"rate measured here (scripts/benchmark.py grid --config "
                        f"configs/logreg.yaml measures one)")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


def test_a_time_from_a_known_gpus_peak_is_a_floor(tmp_path):
    vgg = expand_grid(load_config(os.path.join(REPO, "configs", "vgg.yaml")))
    flops = sum(cost.grid_flops(vgg, {r["run_id"]: 150 for r in vgg}))
    assert 1.39e18 < flops < 1.40e18  # 77 TFLOP an epoch of a run, 120 x 150 of them
    rates = tmp_path / "none.json"
    said = {(d, p): cost.estimate(flops, d, "jax", "vgg", p, rates)
            for d in ("NVIDIA H200", "NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-16GB",
                      "NVIDIA L4") for p in ("highest", "default", "bf16", "tf32_emulated")}
    assert said["NVIDIA H200", "highest"] == ("at least 5.8 h at the fp32 peak of about 67 "
                                              "TFLOP/s (no rate measured here yet)")
    assert said["NVIDIA H200", "default"].startswith("at least 46.9 min at the tf32 peak of "
                                                     "about 495 TFLOP/s")
    assert said["NVIDIA H200", "bf16"].startswith("at least 23.5 min at the bf16 peak")
    # emulated precisions compute in float32: the float32 peak
    assert said["NVIDIA H200", "tf32_emulated"] == said["NVIDIA H200", "highest"]
    assert said["NVIDIA A100-SXM4-80GB", "default"].startswith("at least 2.5 h at the tf32")
    # no TF32 units on a V100: XLA's default is float32 there; no bfloat16 peak known
    assert said["Tesla V100-SXM2-16GB", "default"] == said["Tesla V100-SXM2-16GB", "highest"]
    assert said["Tesla V100-SXM2-16GB", "bf16"].startswith("no estimate")
    assert all(said["NVIDIA L4", p].startswith("no estimate") for p in ("highest", "bf16"))


def test_the_rates_file_keeps_one_entry_per_key_and_survives_damage(tmp_path):
    path = tmp_path / "rates.json"
    key = ("NVIDIA H200", "jax", "vgg", "highest")
    devices.record_rate(*key, 3e13, "benchmark.py gpu", path=path, group_size=24)
    devices.record_rate(*key, 4e13, "benchmark.py gpu", path=path, group_size=48)
    devices.record_rate("NVIDIA H200", "jax", "vgg", "default", 2e14, "b", path=path)
    entries = json.loads(path.read_text())["rates"]
    assert len(entries) == 2
    assert devices.recorded_rate(*key, path=path)["flops_per_s"] == 4e13
    assert devices.recorded_rate("NVIDIA H100", "jax", "vgg", "highest", path=path) is None
    path.write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert devices.recorded_rate(*key, path=path) is None
    assert len(caught) == 1 and "rates.json: unreadable" in str(caught[0].message)
    assert devices.rates_path({"AMSGRAD_CACHE_DIR": str(tmp_path)}) == path


@needs_mnist
def test_the_grid_benchmark_records_the_rate_a_dry_run_uses(tmp_path):
    env = dict(os.environ, AMSGRAD_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    bench = subprocess.run([sys.executable, "scripts/benchmark.py", "grid", "--config",
                            "configs/smoke.yaml", "--set", "precision=highest",
                            "--group-sizes", "4", "--epochs", "1",
                            "--sequential", "0", "--engines", "", "--data-dir", REAL],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    entry, = json.loads((tmp_path / "cache" / "rates.json").read_text())["rates"]
    assert (entry["device"], entry["engine"], entry["model"], entry["precision"],
            entry["group_size"]) == (devices.device_name(None), "jax", "logreg", "highest", 4)
    assert f"rates kept in {tmp_path / 'cache' / 'rates.json'}" in bench.stdout
    plans = [subprocess.run([sys.executable, "scripts/run_grid.py", "configs/smoke.yaml",
                             "--results", str(tmp_path / "r"), "--dry-run", *more], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120).stdout
             for more in (["--set", "precision=highest"], [])]
    assert "precision highest: about " in plans[0].splitlines()[2]
    assert "measured by benchmark.py grid" in plans[0].splitlines()[2]
    assert "precision default: no estimate" in plans[1].splitlines()[2]  # not measured
