"""``--set key=value``: every config key, nested keys, one-line errors, derived grid
names (stable, valid, apart from the original), and the CLI's dry run."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from experiments.config import run_keys

from experiments.config import setup_keys
from experiments.config import ConfigError, load_config
from experiments.config.runs import expand_grid
from experiments.grid.plan import check_grid_dir
from experiments.config.overrides import apply_overrides, load_with_overrides, parse_item

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = """\
    name: tiny
    model: logreg
    epochs: 4
    beta1: 0.9
    lr_schedule: {name: cosine, final: 0.1}
    grid:
      updater: [adam, amsgrad]
      beta2: [0.99, 0.999]
    seeds: 2
    resources: {num_cpus: 1}
    """
FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(BASE))
    return p


def error_of(path, *items):
    with pytest.raises(ConfigError) as info:
        load_with_overrides(path, items)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_parse_item():
    assert parse_item("grid.beta2=[0.9,0.99]") == (("grid", "beta2"), [0.9, 0.99])
    assert parse_item("lr_schedule={name: step, every: 5}") == \
        (("lr_schedule",), {"name": "step", "every": 5})
    assert parse_item(" epochs = 5") == (("epochs",), 5)
    assert parse_item("train_subset=") == (("train_subset",), None)


@pytest.mark.parametrize("key", [*(k for k in run_keys.SETTING_KEYS + run_keys.OPTIMIZER_KEYS  # the Adam grid's
                                    if run_keys.takes("adam", k) or run_keys.takes(
                                        "amsgrad", k)), *setup_keys.NAMES])
def test_every_train_key_can_be_set(path, key):
    """Each key set to the value the config resolves it to (written as YAML) is
    accepted and is the same experiment; a mapping there is one line naming the item."""
    config = load_config(path)
    values = dict(config.fixed, **config.grid)
    if key in config.grid:  # an axis: as an axis
        item = f"grid.{key}={json.dumps(list(values[key]))}"
    else:
        item = f"{key}={json.dumps(values[key])}"
    same = load_with_overrides(path, [item])
    assert same == config and same.name == "tiny"
    message = error_of(path, item.partition("=")[0] + "={a: 1}")
    assert message.startswith(f"--set '{item.partition('=')[0]}={{a: 1}}': ")


def test_fixed_settings_axes_and_seeds(path):
    config = load_with_overrides(path, ["epochs=7", "grid.beta2=[0.9,0.99]", "beta1=0.5",
                                        "seeds=[3]", "train_subset=100"])
    assert config.fixed["epochs"] == 7 and config.fixed["beta1"] == 0.5
    assert config.fixed["train_subset"] == 100
    assert config.grid == {"updater": ("adam", "amsgrad"), "beta2": (0.9, 0.99)}
    assert config.seeds == (3,)
    assert [r["run_id"] for r in expand_grid(config)] == [
        "adam_b2=0.9_seed=3", "adam_b2=0.99_seed=3", "amsgrad_b2=0.9_seed=3",
        "amsgrad_b2=0.99_seed=3"]


def test_an_axis_made_fixed_and_a_fixed_key_made_an_axis(path):
    config = load_with_overrides(path, ["beta2=0.95", "grid.beta1=[0.8,0.9]"])
    assert config.grid == {"updater": ("adam", "amsgrad"), "beta1": (0.8, 0.9)}
    assert config.fixed["beta2"] == 0.95 and "beta1" not in config.fixed
    assert config.name.startswith("tiny_b2=0.95_b1=0.8-0.9_")  # fixed keys, then axes


def test_nested_keys(path):
    config = load_with_overrides(path, ["lr_schedule.final=0.5"])
    assert config.fixed["lr_schedule"] == {"name": "cosine", "final": 0.5}
    step = load_with_overrides(path, ["lr_schedule={name: step, every: 2}"])
    assert step.fixed["lr_schedule"] == {"name": "step", "factor": 0.1, "every": 2}
    assert step.name.startswith("tiny_lr_schedule=step_")
    assert load_with_overrides(path, ["resources.num_gpus=0.5"]).resources == \
        {"num_cpus": 1.0, "num_gpus": 0.5}


def test_the_data_given_is_left_as_it_was():
    data = {"model": "logreg", "grid": {"beta2": [0.9]}, "resources": {"num_gpus": 1}}
    before = json.dumps(data)
    out = apply_overrides(data, ["beta2=0.5", "resources.num_cpus=2"])
    assert json.dumps(data) == before
    assert out == {"model": "logreg", "grid": {}, "resources": {"num_gpus": 1, "num_cpus": 2},
                   "beta2": 0.5}


@pytest.mark.parametrize("items, message", [
    (["foo"], "--set 'foo': expected key=value, e.g. epochs=20"),
    (["=3"], "--set '=3': expected key=value"),
    (["grid..beta2=[1]"], "--set 'grid..beta2=[1]': expected key=value"),
    (["grid.beta2=[0.9,"], "--set 'grid.beta2=[0.9,': bad YAML value: expected the node "
                           "content"),
    (["lr_schedule={name: step, name: cosine}"], "bad YAML value: key 'name' given twice"),
    (["betta2=0.9"], "--set 'betta2=0.9': unknown key (did you mean 'beta2'?)"),
    (["lr=0.1"], "--set 'lr=0.1': unknown key (did you mean 'learning_rate'?)"),
    (["grid.betta2=[0.9]"], "--set 'grid.betta2=[0.9]': unknown axis (did you mean 'beta2'?)"),
    (["grid.epochs=[1,2]"], "--set 'grid.epochs=[1,2]': not something a grid can vary"),
    (["resources.gpus=1"], "--set 'resources.gpus=1': unknown resource (did you mean "
                           "'num_gpus'?)"),
    (["lr_schedule.finl=0.2"], "--set 'lr_schedule.finl=0.2': key 'lr_schedule': cosine "
                               "takes final, not 'finl' (did you mean 'final'?)"),
    (["epochs.x=1"], "--set 'epochs.x=1': epochs is 4, not a mapping; set epochs as a whole"),
    (["epochs=0"], "--set 'epochs=0': expected an integer >= 1, got 0"),
    (["epochs=many"], "--set 'epochs=many': expected an integer, got 'many'"),
    (["grid.beta2=[0.9,1.5]"], "--set 'grid.beta2=[0.9,1.5]': expected a number in [0, 1), "
                               "got 1.5"),
    (["lr_schedule=cosin"], "--set 'lr_schedule=cosin': unknown schedule 'cosin' (did you "
                            "mean 'cosine'?)"),
    (["epochs=5", "epochs=6"], "--set 'epochs=5': epochs is set more than once"),
    (["maxpool_tie_gradient=first"], "--set 'maxpool_tie_gradient=first': model 'logreg' "
                                     "has no max-pooling; leave the key out"),
])
def test_mistakes_are_one_line_naming_the_item(path, items, message):
    assert message in error_of(path, *items)


def test_a_key_inside_a_named_schedule_hints_a_form_that_works(tmp_path):
    logreg = os.path.join(REPO, "configs", "logreg.yaml")  # lr_schedule: linear
    for item, form in (("lr_schedule.factor=0.5", "{name: step, every: 50, factor: 0.5}"),
                       ("lr_schedule.final=0.1", "{name: cosine, final: 0.1}")):
        assert error_of(logreg, item) == (
            f"--set '{item}': lr_schedule is 'linear', not a mapping; set lr_schedule as a "
            f"whole, e.g. --set 'lr_schedule={form}'")
        config = load_with_overrides(logreg, [f"lr_schedule={form}"])  # the hint works
        assert config.fixed["lr_schedule"]["name"] in form
    # a parameter no schedule takes, or a value none accepts: no example
    assert error_of(logreg, "lr_schedule.x=1").endswith("set lr_schedule as a whole")
    assert error_of(logreg, "lr_schedule.factor=5").endswith("set lr_schedule as a whole")


def test_the_files_own_mistake_is_the_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: logreg\nepochs: 0\n")
    assert error_of(bad, "seeds=2") == f"{bad}: key 'epochs': expected an integer >= 1, got 0"
    # a mistake of the file and an item together: both named
    pooled = tmp_path / "pooled.yaml"
    pooled.write_text("model: cifarnet\nmaxpool_tie_gradient: first\nupdater: adam\n")
    assert error_of(pooled, "model=logreg") == (
        f"{pooled}: key 'maxpool_tie_gradient': model 'logreg' has no max-pooling; leave the "
        f"key out (with --set model=logreg)")


def test_derived_names(path):
    name = lambda *items: load_with_overrides(path, items).name  # noqa: E731
    wide = name("grid.beta2=[0.9,0.99]", "epochs=10")
    assert wide == name("epochs=10", "grid.beta2=[0.9, 0.99]")  # order, spacing: same
    assert wide.startswith("tiny_epochs=10_b2=0.9-0.99_") and len(wide.split("_")[-1]) == 8
    assert name("learning_rate=1e-3") == name("learning_rate=0.001") != name(
        "learning_rate=0.002")
    assert name("grid.beta2=[0.9]") != name("beta2=0.9")  # an axis or fixed: other run ids
    # nothing of the experiment changed: the file's grid
    assert name("resources.num_gpus=1") == name("epochs=4") == name("beta1=0.9") == "tiny"
    assert name("analysis.baseline=amsgrad", "analysis.candidates=[adam]") == "tiny"
    assert name("name=mine", "epochs=5") == "mine"
    long = name("grid.learning_rate=[0.1,0.01,0.001,0.0001,0.00001]", "seeds=[0,1,2,3,4,5]",
                "lr_schedule={name: step, at: [1, 2]}")
    for derived in (wide, long, name("grid.bias_correction=[true,false]")):
        assert FOLDER.fullmatch(derived) and len(derived) <= 60, derived
        assert load_with_overrides(path, [f"name={derived}"]).name == derived
    assert name("grid.bias_correction=[true,false]").startswith("tiny_bc=on-off_")


def test_derived_names_are_stable():
    # pinned: the same change lands in the same folder in every version of the suite
    config = os.path.join(REPO, "configs", "logreg.yaml")
    assert load_with_overrides(config, ["grid.beta2=[0.9,0.99]"]).name == \
        "logreg_b2=0.9-0.99_21e97ccb"
    assert load_with_overrides(config, ["epochs=5"]).name == "logreg_epochs=5_db96eef5"


def test_an_earlier_epochs_folder_is_found_in_the_results(tmp_path):
    from experiments.config.overrides import former_names
    config = os.path.join(REPO, "configs", "logreg.yaml")
    items = ["grid.beta2=[0.9,0.99]", "epochs=5"]
    changed = load_with_overrides(config, items)
    # as --set grid.beta2=... --epochs 5 named it before --epochs was --set epochs=5
    former = "logreg_b2=0.9-0.99_21e97ccb_epochs=5"
    assert former_names(load_config(config), changed) == [former]
    assert former_names(load_config(config), load_with_overrides(config, ["epochs=5"])) == [
        "logreg_epochs=5"]
    assert former_names(load_config(config), load_with_overrides(config, items[:1])) == []
    results = tmp_path / "results"
    assert load_with_overrides(config, items, results_dir=results).name == changed.name
    (results / former).mkdir(parents=True)  # not a grid (no grid.yaml): not taken
    assert load_with_overrides(config, items, results_dir=results).name == changed.name
    (results / former / "grid.yaml").write_text("name: x\n")
    assert load_with_overrides(config, items, results_dir=results).name == former
    (results / changed.name).mkdir()  # both there: the name of now
    assert load_with_overrides(config, items, results_dir=results).name == changed.name
    assert load_with_overrides(config, items + ["name=mine"], results_dir=results).name == \
        "mine"


def test_resources_stay_out_of_grid_yaml(path, tmp_path):
    plain, gpus = load_config(path), load_with_overrides(path, ["resources.num_gpus=1"])
    check_grid_dir(plain, tmp_path / "a", write=True)
    check_grid_dir(gpus, tmp_path / "b", write=True)
    a, b = ((tmp_path / d / "grid.yaml").read_text() for d in "ab")
    assert a == b and "num_gpus" not in b
    changed = load_with_overrides(path, ["epochs=9"])
    check_grid_dir(changed, tmp_path / "c", write=True)
    assert yaml.safe_load((tmp_path / "c" / "grid.yaml").read_text())["settings"]["epochs"] == 9


def cli(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "run_grid.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_cli_dry_run(tmp_path):
    result = cli("configs/logreg.yaml", "--results", tmp_path, "--dry-run",
                 "--set", "grid.beta2=[0.9,0.99]", "--set", "resources.num_gpus=1",
                 "--only", "b2=0.9", "--only", "seed=0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"logreg_b2=0.9-0.99_21e97ccb: 12 runs in "
                        f"{tmp_path}/logreg_b2=0.9-0.99_21e97ccb: 0 done, 12 to do (12 new)")
    assert lines[1].startswith("cost: 12 runs x 150 epochs: ")
    assert lines[3].split() == ["new", "adam_lr=0.01_b2=0.9_bc=on_seed=0"]
    assert os.listdir(tmp_path) == []
    both = cli("configs/logreg.yaml", "--results", tmp_path, "--dry-run", "--set",
               "epochs=5", "--epochs", "6")
    assert both.returncode == 2 and both.stderr == \
        "error: --epochs and --set epochs=...: give the number of epochs once\n"
    bad = cli("configs/logreg.yaml", "--results", tmp_path, "--dry-run", "--set", "betta2=1")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr == \
        "error: --set 'betta2=1': unknown key (did you mean 'beta2'?)\n"


def test_synthetic_keys():
    path = os.path.join(REPO, "configs", "synthetic.yaml")
    config = load_with_overrides(path, ["steps=1000", "lr_decay=sqrt", "rules=[amsgrad]"])
    assert (config.settings["steps"], config.settings["lr_decay"], config.settings["rules"]) == \
        (1000, "sqrt", ["amsgrad"])
    assert config.name.startswith("synthetic_rules=amsgrad_steps=1000_lr_decay=sqrt_")
    assert error_of(path, "lr_decay=linear") == (
        "--set 'lr_decay=linear': unknown lr_decay 'linear'; choose from constant, sqrt")
