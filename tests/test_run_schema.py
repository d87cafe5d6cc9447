"""The run schema: one table of keys, and grids over every rule of the library."""
import dataclasses

import pytest
import yaml

from experiments import optimizers
from experiments.config import run_keys
from experiments.training import grouping
from experiments.config import ConfigError, parse_config
from experiments.optimizers import Optimizer
from experiments.config.runs import expand_grid, select
from experiments.training.grouping import check_group, group_runs
from experiments.config.run_keys import RunConfig
from experiments.training import config_hash
from test_grid import FakeTrainer, _run

BASE = {"name": "mix", "model": "logreg", "epochs": 2}
#: Adam and AMSGrad on the post's axes; AdamW with its own decays; momentum with its
#: own learning rates and momenta.
MIXED = dict(BASE, grid={"updater": ["adam", "amsgrad", "adamw", "momentum"],
                         "learning_rate": [0.001, 0.0001], "beta2": [0.99, 0.999]},
             rules={"adamw": {"weight_decay": [0.1, 0.01]},
                    "momentum": {"learning_rate": [0.1, 0.05], "momentum": 0.5}},
             seeds=2)
#: The rules of the amsgrad library, in the registry's order.
LIBRARY = ("adam", "amsgrad", "sgd", "momentum", "nesterov_momentum", "adamw")
ADAM_KEYS = {"learning_rate", "beta1", "beta2", "epsilon", "bias_correction", "variant"}


# -- the table --------------------------------------------------------------------------

def test_the_table_keeps_the_run_id_order_and_labels_of_before():
    assert run_keys.AXES[:6] == ("updater", "learning_rate", "beta1", "beta2", "epsilon",
                                   "bias_correction")
    # the library's rules come first; rules registered later (optax's) add keys after them
    assert list(run_keys.ID_LABELS.items())[:10] == [
        ("updater", None), ("learning_rate", "lr"), ("beta1", "b1"), ("beta2", "b2"),
        ("epsilon", "eps"), ("bias_correction", "bc"), ("variant", "variant"),
        ("momentum", "mom"), ("weight_decay", "wd"), ("amsgrad", "ams")]
    labels = [label for label in run_keys.ID_LABELS.values() if label]
    assert len(set(labels)) == len(labels)
    per_run = grouping.per_run_keys()
    assert "variant" not in per_run  # compiled in: one per group
    assert {"learning_rate", "momentum", "weight_decay", "seed"} <= set(per_run)


@pytest.mark.parametrize("key, value, message", [
    ("learning_rate", 0, "expected a number > 0, got 0.0"),
    ("beta2", 1.0, "expected a number in [0, 1), got 1.0"),
    ("momentum", -0.1, "expected a number in [0, 1), got -0.1"),
    ("weight_decay", "lots", "expected a number, got 'lots'"),
    ("variant", "keras", "unknown variant 'keras'; choose from lasagne, pytorch, optax"),
    ("updater", "nesterov", "unknown updater 'nesterov' (did you mean 'nesterov_momentum'?)"),
    ("bias_correction", 1, "expected true or false, got 1"),
    ("precision", "fp32", "unknown precision 'fp32' (did you mean 'tf32'?); choose from "
                          "default, highest, tf32, bf16, tf32_emulated, bf16_emulated"),
    ("learning_rate", float("nan"), "expected a number > 0, got nan"),
])
def test_each_key_is_checked_by_its_row(key, value, message):
    with pytest.raises(ValueError) as error:
        run_keys.check(key, value)
    assert str(error.value).startswith(message)
    assert run_keys.check("epsilon", "1e-7") == 1e-7  # YAML 1.1's string


def test_which_rules_take_which_keys():
    takes = {rule: {k for k in run_keys.OPTIMIZER_KEYS if run_keys.takes(rule, k)}
             - {"updater"} for rule in LIBRARY}
    assert takes == {"adam": ADAM_KEYS, "amsgrad": ADAM_KEYS,
                     "adamw": ADAM_KEYS | {"weight_decay", "amsgrad"}, "sgd": {"learning_rate"},
                     "momentum": {"learning_rate", "momentum"},
                     "nesterov_momentum": {"learning_rate", "momentum"}}
    # Adam, AMSGrad and AdamW share a program; both momentum rules a family (Nesterov's
    # flag compiled in)
    adam = ("adam_family", ("variant", "lasagne"))
    assert [optimizers.Optimizer.of(r).program_key() for r in LIBRARY] == [
        adam, adam, ("sgd",), ("momentum", ("nesterov", False)),
        ("momentum", ("nesterov", True)), adam]


def test_a_run_config_is_typed_frozen_and_holds_its_rules_keys():
    run = expand_grid(parse_config(dict(BASE, updater="momentum", learning_rate=0.1)))[0]
    config = RunConfig.from_run(run)
    assert (config.updater, config.learning_rate, config.momentum) == ("momentum", 0.1, 0.9)
    assert config.beta2 is None and config.variant is None  # not momentum's
    assert config.dataset == "mnist" and config.setup_keys().subtract_mean is True
    assert config.as_run() == run
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 1.0
    with pytest.raises(ValueError, match="unknown run key 'lr'"):
        RunConfig.from_run(dict(run, lr=0.1))
    with pytest.raises(ValueError, match="momentum: expected a number in"):
        RunConfig.from_run(dict(run, momentum=1.5))
    # the engine's view: the rule's values, the other rules' at their defaults
    assert config.optimizer() == Optimizer.of("momentum", momentum=0.9)
    # AMSGrad's maximum: the amsgrad rule's, and adamw's where it asks for it
    assert [Optimizer.of(u).family_values()["amsgrad"] for u in ("amsgrad", "adam", "adamw")] \
        == [True, False, False]
    assert Optimizer.of("adamw", amsgrad=True).family_values()["amsgrad"] is True
    with pytest.raises(ValueError, match="adam does not take 'amsgrad'"):
        Optimizer.of("adam", amsgrad=True)
    with pytest.raises(ValueError, match="variant: unknown variant"):
        Optimizer.of("adam", variant="keras")


# -- a grid over several rules ----------------------------------------------------------

def test_a_mixed_grid_gives_each_run_the_keys_of_its_rule():
    runs = expand_grid(parse_config(MIXED, path="mix.yaml"))
    per_seed = {"adam": 4, "amsgrad": 4, "adamw": 8, "momentum": 2}
    assert len(runs) == 2 * sum(per_seed.values())
    assert [r["updater"] for r in runs[:18]] == [u for u, n in per_seed.items()
                                                for _ in range(n)]
    assert len({r["run_id"] for r in runs}) == len(runs)
    by_id = {r["run_id"]: r for r in runs}
    adam = by_id["adam_lr=0.001_b2=0.99_seed=0"]
    adamw = by_id["adamw_lr=0.0001_b2=0.999_wd=0.01_seed=1"]
    momentum = by_id["momentum_lr=0.05_seed=0"]
    settings = {k for k in adam if k not in ADAM_KEYS}
    assert set(adam) == settings | ADAM_KEYS
    assert set(adamw) == settings | ADAM_KEYS | {"weight_decay", "amsgrad"}
    assert set(momentum) == settings | {"learning_rate", "momentum"}
    assert (momentum["learning_rate"], momentum["momentum"]) == (0.05, 0.5)
    assert (adamw["weight_decay"], adamw["beta1"], adamw["variant"]) == (0.01, 0.9, "lasagne")


def test_a_mixed_grid_writes_only_the_rules_keys_and_records_its_rules(tmp_path):
    config = parse_config(MIXED, path="mix.yaml")
    trainer = FakeTrainer()
    summary, _ = _run(config, tmp_path, trainer, only=["updater=momentum", "seed=1"])
    assert summary["trained"] == ["momentum_lr=0.1_seed=1", "momentum_lr=0.05_seed=1"]
    written = yaml.safe_load((tmp_path / "mix" / "momentum_lr=0.1_seed=1" / "config.yaml")
                             .read_text())
    assert "beta2" not in written and "variant" not in written and written["momentum"] == 0.5
    settings = yaml.safe_load((tmp_path / "mix" / "grid.yaml").read_text())["settings"]
    assert settings["rules"] == {"adamw": {"weight_decay": [0.1, 0.01]},
                                 "momentum": {"learning_rate": [0.1, 0.05], "momentum": 0.5}}
    # the same grid with other own values is another experiment
    other = dict(MIXED, rules={**MIXED["rules"], "adamw": {"weight_decay": [0.2]}})
    with pytest.raises(ConfigError, match="holds a grid with other fixed settings"):
        _run(parse_config(other, path="mix.yaml"), tmp_path, FakeTrainer())


def test_only_selects_on_any_rules_axis():
    config = parse_config(MIXED, path="mix.yaml")
    runs = expand_grid(config)
    assert {r["run_id"] for r in select(runs, config, ["wd=0.1", "seed=0", "b2=0.99"])} == {
        "adamw_lr=0.001_b2=0.99_wd=0.1_seed=0", "adamw_lr=0.0001_b2=0.99_wd=0.1_seed=0"}
    assert [r["run_id"] for r in select(runs, config, ["lr=0.05", "seed=1"])] == [
        "momentum_lr=0.05_seed=1"]
    with pytest.raises(ConfigError, match=r"--only 'mom=0.9': 'momentum' is fixed to 0.5"):
        select(runs, config, ["mom=0.9"])


def test_a_mixed_grid_groups_by_rule_and_variant():
    config = parse_config(dict(BASE, grid={"updater": ["adam", "amsgrad", "sgd"],
                                           "variant": ["lasagne", "pytorch"]}))
    runs = expand_grid(config)
    assert [r["run_id"] for r in runs] == [
        "adam_variant=lasagne_seed=0", "adam_variant=pytorch_seed=0",
        "amsgrad_variant=lasagne_seed=0", "amsgrad_variant=pytorch_seed=0", "sgd_seed=0"]
    groups = group_runs(runs, 10)
    assert sorted([r["run_id"] for r in g] for g in groups) == [
        ["adam_variant=lasagne_seed=0", "amsgrad_variant=lasagne_seed=0"],
        ["adam_variant=pytorch_seed=0", "amsgrad_variant=pytorch_seed=0"], ["sgd_seed=0"]]
    with pytest.raises(ValueError, match="differ in 'variant'"):
        check_group(runs[:2])


@pytest.mark.parametrize("extra, message", [
    ({"updater": "adam", "momentum": 0.9},
     "key 'momentum': no rule of this grid (adam) takes it (momentum, nesterov_momentum"),
    ({"grid": {"updater": ["adam", "sgd"], "weight_decay": [0.1]}},
     "key 'grid.weight_decay': no rule of this grid (adam, sgd) takes it (adamw"),
    ({"updater": "sgd", "variant": "pytorch"},
     "key 'variant': no rule of this grid (sgd) takes it (adam, amsgrad, adamw"),
    ({"updater": "adam", "rules": {"sgd": {"learning_rate": 0.1}}},
     "key 'rules.sgd': not a rule of this grid (adam)"),
    ({"grid": {"updater": ["adam", "sgd"]}, "rules": {"sgd": {"beta2": [0.9]}}},
     "key 'rules.sgd.beta2': sgd does not take it; it takes learning_rate"),
    ({"updater": "adam", "rules": {"adam": {"learning_rate": []}}},
     "key 'rules.adam.learning_rate': expected a non-empty list, got a list"),
    ({"updater": "adam", "rules": ["adam"]},
     "key 'rules': expected a mapping of rule: {key: value or [values]}, got a list"),
    ({"updater": "nesterov"}, "key 'updater': unknown updater 'nesterov' (did you mean "
                              "'nesterov_momentum'?)"),
])
def test_a_key_no_rule_of_the_grid_takes_is_a_one_line_error(extra, message):
    # (the rules that take a key: the library's first, then any registered since)
    with pytest.raises(ConfigError) as error:
        parse_config(dict(BASE, **extra), path="c.yaml")
    assert str(error.value).startswith(f"c.yaml: {message}")
    assert "\n" not in str(error.value)


# -- results of before ------------------------------------------------------------------

def test_a_new_key_at_its_default_keeps_ids_and_hashes_another_value_does_not():
    post = dict(BASE, grid={"updater": ["adam", "amsgrad"], "learning_rate": [0.01, 0.001]})
    plain = expand_grid(parse_config(post))
    said = expand_grid(parse_config(dict(post, variant="lasagne")))
    other = expand_grid(parse_config(dict(post, variant="pytorch")))
    assert [r["run_id"] for r in said] == [r["run_id"] for r in plain] \
        == [r["run_id"] for r in other]
    assert [config_hash(r) for r in said] == [config_hash(r) for r in plain]
    assert not {config_hash(r) for r in other} & {config_hash(r) for r in plain}
    # a run config stored without the key reads as the default
    stored = {k: v for k, v in plain[0].items() if k != "variant"}
    assert run_keys.resolve(stored) == plain[0]
    assert config_hash(stored) == config_hash(plain[0])


def test_set_changes_a_rules_own_values_under_a_name_of_its_own(tmp_path):
    from experiments.config.overrides import load_with_overrides
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(MIXED))
    config = load_with_overrides(str(path), [])
    changed = load_with_overrides(str(path), ["rules.momentum.learning_rate=[0.2]"])
    assert changed.rules["momentum"]["learning_rate"] == (0.2,)
    assert changed.name.startswith("mix_rules.momentum.learning_rate=0.2_")
    assert config.name == "mix"
    with pytest.raises(ConfigError) as error:
        load_with_overrides(str(path), ["rules.adam.momentum=0.9"])
    assert "rules.adam.momentum" in str(error.value) and "adam does not take it" \
        in str(error.value) and "\n" not in str(error.value)
