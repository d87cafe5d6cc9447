"""Config validation: every shipped config is valid, every mistake gets one clear line."""
import glob
import os
import textwrap

import pytest

from experiments.config import ConfigError, load_config, parse_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
BLOG = ("logreg", "cifarnet", "small_vgg", "vgg")
POOL = "first"  # the CIFAR configs' maxpool_tie_gradient, chosen by measurement


def test_the_shipped_configs_are_there():
    names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
    assert set(BLOG) | {"smoke", "synthetic"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_validates(path):
    config = load_config(path)
    assert config.name == os.path.splitext(os.path.basename(path))[0]


@pytest.mark.parametrize("name", BLOG)
def test_blog_grids_are_the_posts(name):
    config = load_config(os.path.join(REPO, "configs", f"{name}.yaml"))
    assert config.kind == "train"
    assert config.grid == {"updater": ("adam", "amsgrad"),
                           "learning_rate": (0.01, 0.001, 0.0001),
                           "beta2": (0.99, 0.999), "bias_correction": (True, False)}
    assert config.seeds == (0, 1, 2, 3, 4)
    dataset = "mnist" if name == "logreg" else "cifar10"
    # the published runs' setup (docs/reproduction/provenance.md)
    published = ({"subtract_mean": True, "he_gain": "relu", "val_average": "batches",
                  "maxpool_tie_gradient": "all", "precision": "default"} if name == "logreg"
                 else {"subtract_mean": True, "he_gain": 1.0 if name == "vgg" else "relu",
                       "val_average": "batches", "maxpool_tie_gradient": POOL,
                       "precision": "highest"})
    assert config.fixed == {
        "model": name, "dataset": dataset, "epochs": 150, "batch_size": 128,
        "val_batch_size": 1024, "lr_schedule": "linear",
        "augmentation": "none" if dataset == "mnist" else "flip",
        "train_subset": None, "val_subset": None, "beta1": 0.9, "epsilon": 1e-8,
        "variant": "lasagne", **published}


def test_smoke_is_small():
    config = load_config(os.path.join(REPO, "configs", "smoke.yaml"))
    assert config.fixed["model"] == "logreg" and config.fixed["epochs"] <= 2
    assert config.fixed["train_subset"] <= 5000


def test_synthetic_config_matches_the_paper():
    config = load_config(os.path.join(REPO, "configs", "synthetic.yaml"))
    assert config.kind == "synthetic"
    assert config.settings == {
        "problems": ["online", "stochastic"], "rules": ["adam", "amsgrad"],
        "steps": 9_000_000, "learning_rate": 0.001, "beta1": 0.9, "beta2": 0.99,
        "epsilon": 1e-8, "bias_correction": False, "lr_decay": "constant", "seed": 0,
        "record_every": 1000, "dtype": "float32"}


def test_defaults_and_shorthands():
    config = parse_config({"model": "cifarnet", "updater": "amsgrad", "epsilon": "1e-7",
                           "seeds": 3}, default_name="c")
    assert config.name == "c"
    assert config.fixed["epsilon"] == 1e-7  # YAML 1.1 reads 1e-7 as a string
    assert config.fixed["dataset"] == "cifar10" and config.fixed["augmentation"] == "flip"
    assert config.fixed["learning_rate"] == 0.001 and config.fixed["beta2"] == 0.999
    assert config.fixed["bias_correction"] is True and config.fixed["epochs"] == 150
    assert config.seeds == (0, 1, 2)
    assert list(parse_config({"name": "n", "model": "vgg", "grid": {"bias_correction": [False],
                                                       "updater": ["adam"]}}).grid) \
        == ["updater", "bias_correction"]  # axes in run-id order


BASE = {"name": "x", "model": "vgg", "updater": "adam"}
BAD = [
    ({"modle": "vgg"}, "key 'modle': unknown key (did you mean 'model'?)"),
    ({"grid": {"betta2": [0.9]}},
     "key 'grid.betta2': unknown axis (did you mean 'beta2'?); axes are updater, learning_rate, "
     "beta1, beta2, epsilon, bias_correction"),
    ({"lr": 0.1}, "key 'lr': unknown key (did you mean 'learning_rate'?)"),
    ({"grid": {"b2": [0.9]}}, "key 'grid.b2': unknown axis (did you mean 'beta2'?)"),
    ({"grid": {"epochs": [1, 2]}}, "key 'grid.epochs': not something a grid can vary"),
    ({"epochs": "many"}, "key 'epochs': expected an integer, got 'many'"),
    ({"epochs": 1.5}, "key 'epochs': expected an integer, got 1.5"),
    ({"epochs": 0}, "key 'epochs': expected an integer >= 1, got 0"),
    ({"learning_rate": "fast"}, "key 'learning_rate': expected a number, got 'fast'"),
    ({"learning_rate": 0}, "key 'learning_rate': expected a number > 0, got 0.0"),
    ({"beta2": 1.0}, "key 'beta2': expected a number in [0, 1), got 1.0"),
    ({"bias_correction": "yes please"}, "key 'bias_correction': expected true or false"),
    ({"grid": {"learning_rate": []}},
     "key 'grid.learning_rate': empty axis: give at least one value"),
    ({"grid": {"learning_rate": 0.1}},
     "key 'grid.learning_rate': expected a list of values, got 0.1"),
    ({"grid": {"learning_rate": [0.1, "x"]}},
     "key 'grid.learning_rate': expected a number, got 'x'"),
    ({"grid": {"learning_rate": [0.1, 0.1]}}, "key 'grid.learning_rate': 0.1 given twice"),
    ({"grid": {"updater": ["adam"]}}, "key 'grid.updater': given both fixed"),
    ({"model": "vggg"}, "key 'model': unknown model 'vggg' (did you mean 'vgg'?); choose from "
                        "logreg, cifarnet, small_vgg, vgg"),
    ({"dataset": "cifar100"}, "key 'dataset': unknown dataset 'cifar100' (did you mean "
                              "'cifar10'?); choose from mnist, cifar10"),
    ({"updater": "adamm"}, "key 'updater': unknown updater 'adamm' (did you mean 'adam'?)"),
    ({"grid": {"updater": ["adam", "rmsprob"]}, "updater": None},
     "key 'grid.updater': unknown updater 'rmsprob'"),
    ({"seeds": []}, "key 'seeds': expected a non-empty list, got a list"),
    ({"seeds": [0, -1]}, "key 'seeds': expected an integer >= 0, got -1"),
    ({"seeds": [1, 1]}, "key 'seeds': 1 given twice"),
    ({"name": "../elsewhere"}, "key 'name': expected a folder name"),
    ({"kind": "sweep"}, "key 'kind': unknown kind 'sweep'"),
    ({"kind": "synthetic", "model": None, "updater": None, "learning_rate": 0.1,
      "step": 5}, "key 'step': unknown key (did you mean 'steps'?)"),
    ({"kind": "synthetic", "model": None, "updater": None, "rules": ["adam", "sgdd"]},
     "key 'rules': unknown rule 'sgdd' (did you mean 'sgd'?); choose from adam, amsgrad, "
     "sgd, "),
    ({"kind": "synthetic", "model": None, "updater": None, "rules": ["amsgrad_torch"]},
     "key 'rules': unknown variant 'torch' (did you mean 'pytorch'?); choose from lasagne, "
     "pytorch, optax"),
    ({"resources": 1}, "key 'resources': expected a mapping such as {num_gpus: 1}, got 1"),
    ({"resources": {"gpus": 1}}, "key 'resources.gpus': unknown resource (did you mean "
                                 "'num_gpus'?); choose from num_cpus, num_gpus"),
    ({"resources": {"num_gpus": -0.5}}, "key 'resources.num_gpus': expected a number >= 0, "
                                        "got -0.5"),
    ({"resources": {"num_cpus": 0}}, "key 'resources.num_cpus': expected a number > 0, got 0.0"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0] + str(i)
                                                      for i, (_, m) in enumerate(BAD)])
def test_each_mistake_gets_its_own_line(change, message):
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_config(data, path="configs/x.yaml")
    text = str(info.value)
    assert text.startswith("configs/x.yaml: " + message)
    assert "\n" not in text


def test_missing_keys_say_what_to_give():
    with pytest.raises(ConfigError, match=r"key 'updater': missing: give it fixed, or as a list"):
        parse_config({"name": "n", "model": "vgg"}, path="c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: key 'name': missing"):
        parse_config({"model": "vgg", "updater": "adam"}, path="c.yaml")


def _write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, """\
        model: vgg
        updater: adam
        grid:
          lr: [0.1, 0.01
        seeds: [0]
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: line 5, column 6: bad YAML: ")
    assert "\n" not in str(info.value)


def test_key_given_twice_is_refused(tmp_path):
    path = _write(tmp_path, "model: vgg\nupdater: adam\nepochs: 10\nepochs: 20\n")
    with pytest.raises(ConfigError, match=r"line 4, column 1: bad YAML: key 'epochs' given twice"):
        load_config(path)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"expected a mapping of keys at the top level, got a "
                                          r"list"):
        load_config(_write(tmp_path, "- model: vgg\n"))
    with pytest.raises(ConfigError, match=r"nope.yaml: no such config file"):
        load_config(str(tmp_path / "nope.yaml"))


def test_name_defaults_to_file_stem(tmp_path):
    config = load_config(_write(tmp_path, "model: logreg\nupdater: adam\n", "my_grid.yaml"))
    assert config.name == "my_grid"


def test_resources_are_where_runs_go_not_part_of_the_experiment():
    with_resources = parse_config({**BASE, "resources": {"num_gpus": 0.25, "num_cpus": 2}},
                                  path="r.yaml")
    assert with_resources.resources == {"num_gpus": 0.25, "num_cpus": 2.0}
    plain = parse_config(BASE, path="r.yaml")
    assert plain.resources == {} and plain == with_resources  # the same experiment
    assert with_resources.to_dict()["resources"] == {"num_gpus": 0.25, "num_cpus": 2.0}
    assert "resources" not in plain.to_dict()


def test_a_model_trains_on_any_registered_dataset_it_fits():
    """A model is built for its dataset's images and classes; one the images are too
    small for is the config's one-line error."""
    from experiments.data import DatasetEntry, register_dataset
    register_dataset(DatasetEntry("tiny_4x4", lambda root, download, quiet: None, (1, 4, 4),
                                  3), replace=True)
    config = parse_config({"name": "n", "model": "logreg", "dataset": "cifar10",
                           "updater": "adam"})
    assert config.fixed["augmentation"] == "flip" and config.fixed["subtract_mean"] is False
    from experiments import models
    assert models.get_model("logreg", "tiny_4x4").layers[0].num_units == 3
    with pytest.raises(ConfigError) as error:
        parse_config({"name": "n", "model": "cifarnet", "dataset": "tiny_4x4",
                      "updater": "adam"}, path="c.yaml")
    assert str(error.value).startswith("c.yaml: key 'dataset': model 'cifarnet' does not fit "
                                       "tiny_4x4's (1, 4, 4) images")
