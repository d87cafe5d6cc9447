"""Which runs share a group, group sizes, and the cost model behind 'auto'."""
import os

import pytest

from experiments import models
from experiments.training import grouping
from experiments.config import load_config
from experiments.config.runs import expand_grid
from experiments.engines import available_memory, eval_bytes, run_bytes
from experiments.models import costs as model_costs
from experiments.training.grouping import (auto_group_size, compatibility_key, group_runs,
                                           parse_group_size)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid(name="logreg"):
    return expand_grid(load_config(os.path.join(REPO, "configs", f"{name}.yaml")))


def ids(groups):
    return [[r["run_id"] for r in g] for g in groups]


def slots(group):
    """Slots the grouped engine allocates: seeds x the most runs of one seed."""
    seeds = [r["seed"] for r in group]
    return len(set(seeds)) * max(seeds.count(s) for s in seeds)


def test_runs_differing_only_in_hyperparameters_and_seed_are_compatible():
    runs = grid()
    assert len(runs) == 120 and len({compatibility_key(r) for r in runs}) == 1
    other = dict(runs[0], batch_size=64)
    assert compatibility_key(other) != compatibility_key(runs[0])
    assert compatibility_key(dict(runs[0], seed=9, beta1=0.5)) == compatibility_key(runs[0])


@pytest.mark.parametrize("size, shape", [
    (120, [120]),
    (200, [120]),
    (24, [24] * 5),            # one seed per group
    (48, [48, 48, 24]),        # two seeds per group, the rest in the last
    (100, [72, 48]),           # four seeds fit; two groups of about equal size
    (10, [8] * 15),            # a seed's 24 runs in three groups of 8
    (1, [1] * 120),            # the sequential path
])
def test_full_grid_splits_into_rectangular_groups(size, shape):
    runs = grid()
    groups = group_runs(runs, size)
    assert [len(g) for g in groups] == shape
    assert sorted(r["run_id"] for g in groups for r in g) == sorted(r["run_id"] for r in runs)
    assert all(slots(g) <= size for g in groups)
    assert all(slots(g) == len(g) for g in groups)  # no padding on a full grid
    for g in groups:
        for seed in {r["seed"] for r in g}:  # a seed's runs of a group stay together
            members = [i for i, r in enumerate(g) if r["seed"] == seed]
            assert members == list(range(members[0], members[-1] + 1))


def test_partial_grid_pads_uneven_seeds_within_the_size():
    runs = [r for r in grid() if r["seed"] != 1 or r["updater"] == "adam"]
    runs = [r for r in runs if r["seed"] != 2 or r["learning_rate"] == 0.01]  # 24,12,8,24,24
    groups = group_runs(runs, 50)
    assert [sorted({r["seed"] for r in g}) for g in groups] == [[0, 1], [2, 3], [4]]
    assert [len(g) for g in groups] == [36, 32, 24]
    assert [slots(g) for g in groups] == [48, 48, 24]


def test_incompatible_runs_and_other_rules_are_apart():
    runs = grid("smoke")  # 4 runs, one seed
    shorter = [dict(r, epochs=1, run_id=r["run_id"] + "_short") for r in runs[:2]]
    sgd = dict(runs[0], updater="sgd", run_id="sgd")
    groups = group_runs(runs[:2] + [sgd] + shorter + runs[2:], 8)
    assert ids(groups) == [[runs[0]["run_id"], runs[1]["run_id"], runs[2]["run_id"],
                            runs[3]["run_id"]], ["sgd"], [r["run_id"] for r in shorter]]


def test_group_size_is_checked():
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        group_runs(grid("smoke"), 0)
    assert parse_group_size("auto") == "auto" and parse_group_size(" AUTO ") == "auto"
    assert parse_group_size("24") == 24
    for bad in ("0", "-3", "x", "2.5"):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            parse_group_size(bad)


def test_model_costs_by_hand():
    c = model_costs(models.get_model("cifarnet"))
    conv1 = 2 * 3 * 6 * 6 * 64 * 27 * 27
    conv2 = 2 * 64 * 6 * 6 * 64 * 8 * 8
    dense = 2 * (64 * 4 * 4 * 384 + 384 * 192 + 192 * 10)
    assert c["forward_flops"] == conv1 + conv2 + dense == 29_889_792
    # weight gradients everywhere, input gradients everywhere but the first layer
    assert c["train_flops"] == 2 * (conv1 + conv2 + dense) + conv2 + dense
    assert c["params"] == 623_946
    # evaluation holds the largest layer input + output: LRN1, 64x27x27 in and out
    assert c["widest_pair"] == 2 * 64 * 27 * 27
    assert eval_bytes(models.get_model("cifarnet"), 1024) == 4 * 2 * 1024 * 93312
    logreg = model_costs(models.get_model("logreg"))
    assert logreg["activations"] == 784 + 10 and logreg["train_flops"] == 2 * 2 * 784 * 10


def test_auto_group_size_by_hand_and_monotone_in_memory():
    spec = models.get_model("logreg")
    per_run = 4 * (12 * (784 * 10 + 10) + 3 * 128 * (784 + 10))
    assert run_bytes(spec) == per_run == 1_596_384
    assert auto_group_size(spec, memory=10 ** 9) == int(0.6 * 10 ** 9 // per_run) == 375
    assert auto_group_size(spec, memory=10 ** 9, data_bytes=10 ** 8) == 313
    assert auto_group_size(spec, memory=1000) == 1  # never below one run
    for name in models.model_names():
        spec = models.get_model(name)
        sizes = [auto_group_size(spec, memory=m) for m in range(0, 400 * 2 ** 30, 2 ** 29)]
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    vgg = models.get_model("vgg")
    assert auto_group_size(vgg, memory=139 * 2 ** 30) < auto_group_size(
        models.get_model("cifarnet"), memory=139 * 2 ** 30)


def test_auto_groups_follow_memory():
    runs = grid()
    memory = (24 * run_bytes(models.get_model("logreg")) + 1) / grouping.MEMORY_FRACTION
    assert [len(g) for g in group_runs(runs, "auto", memory=memory)] == [24] * 5
    assert [len(g) for g in group_runs(runs, "auto", memory=10 ** 12)] == [120]
    assert available_memory() > 0


def test_auto_chooses_by_model_engine_and_device():
    logreg, cifarnet = models.get_model("logreg"), models.get_model("cifarnet")
    choose = grouping.choose_group_size
    # a dense model on a CPU: as many as fit (logreg: 375 in 1 GB, see above)
    assert choose(logreg, "cpu", memory=10 ** 9) == 375
    # a conv net on a CPU: one run after another, whatever the memory
    assert choose(cifarnet, "cpu", memory=10 ** 12) == 1
    # on a GPU: as many as fit in the memory of the device that trains them
    per_run = run_bytes(cifarnet)
    assert choose(cifarnet, "gpu", memory=100 * per_run / grouping.MEMORY_FRACTION + 1) == 100
    assert choose(logreg, "gpu", memory=10 ** 9) == 375
    # the Theano engine and a custom trainer take one run at a time, even on a GPU
    assert choose(logreg, "cpu", memory=10 ** 9, engine="theano") == 1
    assert choose(cifarnet, "gpu", memory=10 ** 12, custom_trainer=True) == 1
    assert grouping.trains_groups("jax") and not grouping.trains_groups("theano")


def test_auto_groups_a_conv_grid_on_a_gpu_only():
    runs = grid("cifarnet")
    per_run = run_bytes(models.get_model("cifarnet"))
    memory = 24 * per_run / grouping.MEMORY_FRACTION + 1
    gpu = group_runs(runs, "auto", memory=memory, platform="gpu")
    assert [len(g) for g in gpu] == [24] * 5
    cpu = group_runs(runs, "auto", memory=memory, platform="cpu")
    assert [len(g) for g in cpu] == [1] * 120
    import jax
    platform, free = grouping.device_room()  # this host's JAX device
    assert platform == jax.devices()[0].platform and free > 0
