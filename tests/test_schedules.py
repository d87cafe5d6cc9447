"""Learning-rate schedules: hand-computed rates per schedule, the post's linear rule
bit for bit, config validation, and the trainer's lr column."""
import math
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.config import ConfigError, parse_config
from experiments.config.runs import expand_grid
from experiments.config.schedules import learning_rate, normalize, rates, step_decay
from experiments.training import config_hash

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
COSINE = {"name": "cosine", "final": 0.0}


def test_linear_is_the_posts_rule_bit_for_bit():
    # lr0 * (1 - e / epochs) in float64, as the trainer always computed it
    table = rates("linear", 0.001, 150)
    assert table.dtype == np.float64
    assert table.tolist() == [0.001 * (1.0 - e / 150) for e in range(150)]
    assert table[[0, 1, 75, 149]].tolist() == [0.001, 0.0009933333333333333, 0.0005,
                                               6.66666666666671e-06]
    assert [learning_rate(0.3, e, 3) for e in range(3)] == [0.3, 0.2, 0.1]
    assert learning_rate(0.01, 75, 150, {"name": "linear"}) == 0.005


def test_constant():
    assert rates("constant", 0.01, 4).tolist() == [0.01] * 4
    assert learning_rate(0.01, 149, 150, "constant") == 0.01


def test_inverse_sqrt_hand_computed():
    assert rates("inverse_sqrt", 0.01, 4).tolist() == [0.01, 0.01 / 2 ** 0.5, 0.01 / 3 ** 0.5,
                                                       0.005]
    assert learning_rate(0.01, 99, 150, "inverse_sqrt") == 0.001
    assert normalize({"name": "inverse_sqrt"}) == "inverse_sqrt"


def test_cosine_hand_computed():
    # lr0 * (final + (1 - final) * (1 + cos(pi e / epochs)) / 2)
    half = math.sqrt(2) / 4  # cos(pi / 4) / 2
    assert rates("cosine", 1.0, 4) == pytest.approx([1, 0.5 + half, 0.5, 0.5 - half],
                                                    rel=1e-15)
    assert rates({"name": "cosine", "final": 0.2}, 0.01, 4) == pytest.approx(
        [0.01, 0.01 * (0.2 + 0.8 * (0.5 + half)), 0.006, 0.01 * (0.2 + 0.8 * (0.5 - half))],
        rel=1e-15)
    assert learning_rate(0.001, 75, 150, "cosine") == 0.0005


def test_step_hand_computed():
    # every 2 epochs halved: exact in binary
    assert rates({"name": "step", "every": 2, "factor": 0.5}, 0.001, 5).tolist() == \
        [0.001, 0.001, 0.0005, 0.0005, 0.00025]
    assert rates({"name": "step", "every": 3}, 0.001, 7) == pytest.approx(
        [1e-3] * 3 + [1e-4] * 3 + [1e-5], rel=1e-14)
    # at given epochs: after epochs 1 and 3 (the rate of 0-based epochs 1.. and 3..)
    assert rates({"name": "step", "at": [1, 3]}, 0.001, 5) == pytest.approx(
        [1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rel=1e-14)
    # every: 50 is at: [50, 100] on 150 epochs
    assert rates({"name": "step", "every": 50}, 0.01, 150).tolist() == \
        rates({"name": "step", "at": [50, 100]}, 0.01, 150).tolist()


def test_epochs_out_of_range_are_refused():
    with pytest.raises(ValueError, match="epoch 150 is not one of the 150 epochs"):
        learning_rate(0.01, 150, 150)


@pytest.mark.parametrize("value, expected", [
    ("linear", "linear"), ({"name": "linear"}, "linear"), ("constant", "constant"),
    ("cosine", COSINE), ({"name": "cosine", "final": "1e-2"}, {"name": "cosine", "final": 0.01}),
    ({"every": 50, "name": "step"}, {"name": "step", "factor": 0.1, "every": 50}),
    ({"name": "step", "at": [100, 130], "factor": 0.5},
     {"name": "step", "factor": 0.5, "at": [100, 130]}),
])
def test_check_normalises(value, expected):
    assert normalize(value) == expected
    assert list(normalize(value)) == list(expected)  # one key order: one repr, one hash


@pytest.mark.parametrize("value, message", [
    ("cosin", "unknown schedule 'cosin' (did you mean 'cosine'?); choose from linear, "
              "constant, cosine, step"),
    (3, "unknown schedule 3;"),
    ({"every": 3}, "missing 'name';"),
    ("step", "step needs either every (epochs between decays) or at"),
    ({"name": "step", "every": 2, "at": [3]}, "step needs either every"),
    ({"name": "step", "every": 0}, "step's 'every': expected an integer >= 1, got 0"),
    ({"name": "step", "every": 2, "factor": 2}, "step's 'factor': expected a number in "
                                                "(0, 1], got 2.0"),
    ({"name": "step", "at": [3, 1]}, "step's 'at': expected increasing epochs, got [3, 1]"),
    ({"name": "cosine", "finl": 0.1}, "cosine takes final, not 'finl' (did you mean 'final'?)"),
    ({"name": "cosine", "final": 1.5}, "cosine's 'final': expected a number in [0, 1]"),
    ({"name": "linear", "factor": 0.1}, "linear takes no parameters, not 'factor'"),
])
def test_check_errors(value, message):
    with pytest.raises(ValueError) as info:
        normalize(value)
    assert message in str(info.value) and "\n" not in str(info.value)


def config(**keys):
    return parse_config({"model": "logreg", "epochs": 5, "grid": {"updater": ["adam"]},
                         **keys}, path="c.yaml", default_name="c")


def test_config_takes_a_name_or_a_mapping():
    assert config(lr_schedule={"name": "step", "every": 2}).fixed["lr_schedule"] == \
        {"name": "step", "factor": 0.1, "every": 2}
    assert config(lr_schedule="cosine").fixed["lr_schedule"] == COSINE
    with pytest.raises(ConfigError, match=r"^c.yaml: key 'lr_schedule': step's 'every': "
                                          r"expected an integer, got 'x'$"):
        config(lr_schedule={"name": "step", "every": "x"})


def test_linear_as_a_mapping_keeps_run_ids_and_hashes():
    plain = expand_grid(config())
    assert expand_grid(config(lr_schedule="linear")) == plain
    assert expand_grid(config(lr_schedule={"name": "linear"})) == plain
    assert [config_hash(r) for r in expand_grid(config(lr_schedule="cosine"))] != \
        [config_hash(r) for r in plain]


def test_synthetic_step_decay():
    import jax.numpy as jnp
    lr0 = jnp.float32(0.001)
    assert float(step_decay("sqrt", lr0)(jnp.float32(4.0))) == pytest.approx(0.0005, rel=1e-7)
    assert float(step_decay("constant", lr0)(jnp.float32(4.0))) == float(lr0)
    with pytest.raises(ValueError, match="unknown lr_decay 'linear'; choose from constant, sqrt"):
        step_decay("linear", lr0)


@pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST not found in {REAL}")
def test_trainer_writes_each_epochs_rate(tmp_path):
    """A group of two (different lr0) on a step schedule: each run's lr column is its
    own schedule, epoch by epoch."""
    pytest.importorskip("jax")
    from experiments.data import load_dataset
    from experiments.results.store import RunStore
    from experiments.training import train_runs
    mnist = load_dataset("mnist", REAL, download=False, quiet=True)
    base = dict(name="s", model="logreg", dataset="mnist", epochs=4, batch_size=128,
                val_batch_size=500, augmentation="none", train_subset=512, val_subset=500,
                updater="adam", beta1=0.9, beta2=0.999, epsilon=1e-8, bias_correction=True,
                seed=0, lr_schedule={"name": "step", "every": 2, "factor": 0.5})
    runs = [dict(base, run_id=f"lr={lr}", learning_rate=lr) for lr in (0.01, 0.002)]
    stores = [RunStore(tmp_path / r["run_id"]) for r in runs]
    train_runs(runs, stores, dataset=mnist, quiet=True)
    assert [r["lr"] for r in stores[0].read_curves()] == [0.01, 0.01, 0.005, 0.005]
    assert [r["lr"] for r in stores[1].read_curves()] == [0.002, 0.002, 0.001, 0.001]
