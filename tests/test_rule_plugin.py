"""A rule is one registry entry: a rule registered from this file (not from the package)
trains in a grid, grouped and alone, with checkpoints and a resume; any rule optax ships
is a rule by name; a name neither holds reaches no engine; the Theano engine refuses a
rule without a Lasagne-style face in one line."""
import io
import textwrap
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import optimizers
from experiments.config import ConfigError, load_config, parse_config
from experiments.config.run_keys import RunConfig
from experiments.config.runs import expand_grid
from experiments.grid.runner import run_grid
from experiments.results.store import RunStore
from experiments.training import train_runs
from test_run_grid_cli import REAL, needs_mnist


class SignState(NamedTuple):
    m: Any


def sign_momentum(learning_rate, beta=0.9):
    """A user's rule, optax-style: momentum of the gradient, a step of its sign
    (signSGD with momentum, Bernstein et al. 2018)."""
    def init(params):
        return SignState(m=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        m = jax.tree_util.tree_map(lambda m, g: beta * m + (1 - beta) * g, state.m, grads)
        return jax.tree_util.tree_map(lambda m: -learning_rate * jnp.sign(m), m), SignState(m)
    return optax.GradientTransformation(init, update)


# the one entry that makes it a rule of every grid
optimizers.register_rule(optimizers.rule_from_function("sign_momentum", sign_momentum,
                                                      label="Sign momentum"), replace=True)

GRID = textwrap.dedent("""\
    name: plugin
    model: logreg
    epochs: 3
    train_subset: 1024
    val_subset: 512
    lr_schedule: linear
    grid:
      updater: [sign_momentum]
      learning_rate: [0.001, 0.0003]
      beta: [0.9, 0.5]
    seeds: 2
    """)


def _config(tmp_path, text=GRID):
    path = tmp_path / "plugin.yaml"
    path.write_text(text)
    return load_config(path)


def test_the_plugin_is_a_rule_of_the_key_table():
    config = parse_config({"name": "p", "model": "logreg", "updater": "sign_momentum",
                           "grid": {"beta": [0.9, 0.5]}})
    runs = expand_grid(config)
    assert [r["run_id"] for r in runs] == ["beta=0.9_seed=0", "beta=0.5_seed=0"]
    assert runs[0]["learning_rate"] == 0.001 and runs[0]["beta"] == 0.9
    optimizer = RunConfig.from_run(runs[1]).optimizer()
    assert optimizer.state_shapes({"w": (2, 3)}) == {"m:w": (2, 3)}
    assert optimizer.rule.label == "Sign momentum" and optimizer.family.lasagne is None
    with pytest.raises(ConfigError, match="key 'beta': expected a number, got 'x'"):
        parse_config({"name": "p", "model": "logreg", "updater": "sign_momentum", "beta": "x"})


def _curves(results, config):
    return {r["run_id"]: RunStore(results / config.name / r["run_id"]).read_curves()
            for r in expand_grid(config)}


def _close(a, b):
    for rid in a:
        for x, y in zip(a[rid], b[rid]):
            for key in ("loss", "acc", "val_loss", "val_acc", "lr"):
                np.testing.assert_allclose(x[key], y[key], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{rid} epoch {x['epoch']} {key}")


@needs_mnist
@pytest.mark.slow
def test_a_plugin_rule_trains_grouped_and_alone_alike_and_resumes(tmp_path):
    config = _config(tmp_path)
    common = dict(data_dir=REAL, quiet=True, out=io.StringIO())
    grouped = run_grid(config, results_dir=tmp_path / "grouped", group_size=8, **common)
    alone = run_grid(config, results_dir=tmp_path / "alone", group_size=1, **common)
    assert len(grouped["trained"]) == len(alone["trained"]) == 8
    a, b = _curves(tmp_path / "grouped", config), _curves(tmp_path / "alone", config)
    assert all(len(rows) == 3 for rows in a.values())
    _close(a, b)
    assert len({rows[-1]["val_loss"] for rows in a.values()}) == 8  # the values matter

    # a group stopped after its second epoch resumes from its checkpoints
    runs = expand_grid(config)
    stores = [RunStore(tmp_path / "resumed" / r["run_id"]) for r in runs]

    def stop(run, row):
        if row["epoch"] == 2 and run is runs[-1]:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_runs(runs, stores, data_dir=REAL, quiet=True, on_epoch=stop,
                   checkpoint_every=0)
    arrays, meta = stores[0].load_checkpoint()
    assert meta["epochs_done"] == 2 and set(arrays) >= {"opt:t", "opt:m:out.W", "opt:m:out.b"}
    train_runs(runs, stores, data_dir=REAL, quiet=True)
    _close({r["run_id"]: s.read_curves() for r, s in zip(runs, stores)}, a)


@needs_mnist
@pytest.mark.slow
def test_an_optax_rule_by_name_trains_grouped_and_alone_alike(tmp_path):
    config = _config(tmp_path, GRID.replace("updater: [sign_momentum]", "updater: [lion]")
                     .replace("beta: [0.9, 0.5]", "beta2: [0.999, 0.99]"))
    assert "lion" not in optimizers.rule_names() or \
        optimizers.get_rule("lion").reference.startswith("optax.lion")
    assert optimizers.get_rule("lion").family.groups == "vmap"
    assert expand_grid(config)[0]["weight_decay"] == 1e-3  # lion's own default
    common = dict(data_dir=REAL, quiet=True, out=io.StringIO())
    run_grid(config, results_dir=tmp_path / "grouped", group_size=8, **common)
    run_grid(config, results_dir=tmp_path / "alone", group_size=1, **common)
    _close(_curves(tmp_path / "grouped", config), _curves(tmp_path / "alone", config))


def test_a_name_no_registry_holds_reaches_no_engine(tmp_path):
    run = {"name": "x", "run_id": "r", "model": "logreg", "updater": "adamz", "seed": 0}
    with pytest.raises(ValueError, match="unknown updater 'adamz' \\(did you mean 'adam"):
        RunConfig.from_run(run)
    with pytest.raises(ValueError, match="unknown updater 'adamz'"):
        train_runs([run], [RunStore(tmp_path / "r")], quiet=True)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="unknown updater 'adamz'"):
        optimizers.Optimizer.of("adamz")


def test_the_theano_engine_refuses_a_rule_it_has_no_face_for(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(ConfigError) as error:
        run_grid(config, results_dir=tmp_path, engine="theano", quiet=True,
                 out=io.StringIO(), load_fn=lambda *a, **k: None)
    assert str(error.value) == (f"{config.path}: updater 'sign_momentum' has no Lasagne-style "
                                f"face, which the Theano engine steps; use --engine jax")
