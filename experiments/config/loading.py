"""Reading a config file: YAML, its kind, and one clear error per mistake.

:func:`load_config` reads a YAML file and :func:`parse_config` validates its data as
its ``kind`` says (:mod:`experiments.config.kinds`: ``train``, the default, a grid of
training runs; ``synthetic``, the paper's synthetic problem). A mistake is a
:class:`ConfigError` whose message is one line naming the file, the key and the problem,
e.g. ``configs/x.yaml: key 'grid.betta2': unknown axis (did you mean 'beta2'?)``.
"""
import os

import yaml

from experiments.config import kinds
from experiments.config.checks import Bad, did_you_mean, folder_name, shown

__all__ = ["ConfigError", "Checker", "UniqueKeyLoader", "read_config", "load_config",
           "parse_config"]


class ConfigError(ValueError):
    """A mistake in a config: the message is one line naming file, key and problem;
    ``key`` (e.g. ``'grid.beta2'``) and ``problem`` are those parts, when there is a key."""

    def __init__(self, message, key=None, problem=None):
        super().__init__(message)
        self.key, self.problem = key, problem


class Checker:
    """Checks the keys of the config at ``path``, each mistake one :class:`ConfigError`."""

    def __init__(self, path):
        self.path = path

    def fail(self, key, message):
        raise ConfigError(f"{self.path}: key {key!r}: {message}", key=key, problem=message)

    def check(self, checker, value, key):
        """``checker(value)``, its :class:`~experiments.config.checks.Bad` said of ``key``."""
        try:
            return checker(value)
        except Bad as e:
            self.fail(key, str(e))

    def known_keys(self, data, allowed):
        """Fail on the first key of ``data`` that is not in ``allowed``."""
        for key in data:
            if key not in allowed:
                self.fail(key, "unknown key" + did_you_mean(key, allowed))


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(problem=f"key {key!r} given twice",
                                           problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path):
    """Read and validate the config at ``path``; raises :class:`ConfigError`."""
    path = os.fspath(path)
    default_name = os.path.splitext(os.path.basename(path))[0]
    return parse_config(read_config(path), path=path, default_name=default_name)


def read_config(path):
    """The YAML data of the config at ``path``, not yet validated; raises
    :class:`ConfigError` if it cannot be read or is not YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where} bad YAML: {problem}") from None
    return data


def parse_config(data, path="<config>", default_name=None):
    """Validate config data (as loaded from YAML) as its kind says: a
    :class:`~experiments.config.grid_config.GridConfig` for ``kind: train`` (the
    default), a :class:`~experiments.config.synthetic_keys.SyntheticConfig` for
    ``kind: synthetic``."""
    checker = Checker(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, "
                          f"got {shown(data)}")
    kind = checker.check(kinds.check_kind, data.get("kind", kinds.DEFAULT), "kind")
    name = data.get("name", default_name)
    if name is None:
        checker.fail("name", "missing: name the experiment (its results folder)")
    name = checker.check(folder_name, name, "name")
    return kinds.get_kind(kind).parse(data, name, checker)
