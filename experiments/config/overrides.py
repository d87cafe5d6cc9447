"""Command-line overrides of a config: ``--set key=value``.

Each override sets one key of the config's YAML data before it is validated, so every
key a config may hold can be set, and is checked as in the file::

    --set epochs=20                          # a fixed setting
    --set grid.beta2=[0.9,0.99]              # an axis (values as YAML)
    --set beta2=0.99                         # fixes what the file has as an axis ...
    --set grid.beta1=[0.8,0.9]               # ... and an axis of what it fixes
    --set 'lr_schedule={name: step, every: 50, factor: 0.5}'   # a mapping whole
    --set lr_schedule.factor=0.2             # a key inside it, where the file has one
    --set resources.num_gpus=1               # not part of the experiment: the same grid

A changed experiment is another grid: its results go to a derived name,
``<name>_<what changed>_<hash>``, e.g. ``logreg_b2=0.9-0.99_1c0d2f6a``: a short readable
form of the settings that differ from the file's, and the first 8 hex digits of
their SHA-256, so the same change (however written: ``lr=1e-3`` or ``0.001``) always
lands in the same folder and two different changes never share one. The name is
derived from the validated settings, so overrides that change nothing of the
experiment (``resources``, a value the file already has) keep the file's name; an
explicit ``--set name=...`` is used as it is (``grid.yaml`` still refuses a folder of
other settings). ``run_grid.py --epochs N`` is ``--set epochs=N``: one experiment, one
folder, however it is asked for.

Earlier versions named a change of ``epochs`` made by ``--epochs N`` otherwise,
``<name>_epochs=N`` (after the derived name of any other change): those are the
experiment's :func:`former_names`, and :func:`load_with_overrides` given the results
folder keeps using such a folder where it is there, so a grid of before resumes where it
is (its run ids, config hashes and ``grid.yaml`` name it).
"""
import dataclasses
import hashlib
import json
import os
import re

import yaml

from experiments.config import run_keys, schedules
from experiments.config.loading import (ConfigError, UniqueKeyLoader, load_config, parse_config,
                                        read_config)
from experiments.config.runs import id_value
from experiments.results.store import GRID_FILE

__all__ = ["parse_item", "apply_overrides", "derived_name", "former_names",
           "load_with_overrides"]

#: Longest readable part of a derived name (the hash follows it).
READABLE_CHARS = 40
_MISSING = object()


def parse_item(item):
    """``'grid.beta2=[0.9,0.99]'`` -> ``(('grid', 'beta2'), [0.9, 0.99])``; the value is
    read as YAML. Raises :class:`ConfigError` naming the item."""
    text, sep, value = item.partition("=")
    path = tuple(part.strip() for part in text.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. epochs=20 or "
                          f"grid.beta2=[0.9,0.99]")
    try:
        return path, yaml.load(value, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"--set {item!r}: bad YAML value: {problem}") from None


def _copy(data):
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def apply_overrides(data, items):
    """A copy of config ``data`` (as loaded from YAML) with ``items`` (``key=value``
    strings) set. Setting a key the data has as an axis fixes it (the axis goes), and
    setting an axis of a fixed key makes it an axis. Raises :class:`ConfigError`."""
    data = _copy(data)
    parsed = [(item, *parse_item(item)) for item in items]
    paths = [path for _, path, _ in parsed]
    for item, path, value in parsed:
        if paths.count(path) > 1:
            raise ConfigError(f"--set {item!r}: {'.'.join(path)} is set more than once")
        node = data
        for depth, key in enumerate(path[:-1]):
            if node.get(key) is None:
                node[key] = {}
            if not isinstance(node[key], dict):
                where = ".".join(path[:depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is {node[key]!r}, not a mapping; "
                                  f"{_whole(where, path, value)}")
            node = node[key]
        node[path[-1]] = value
    grid = data.get("grid")
    for path in paths:  # the file's fixed value or axis of a key set the other way goes
        if len(path) == 1 and isinstance(grid, dict) and ("grid", path[0]) not in paths:
            grid.pop(path[0], None)
        elif len(path) == 2 and path[0] == "grid" and (path[1],) not in paths:
            data.pop(path[1], None)
    return data


def _whole(where, path, value):
    """How to set ``where`` as a whole instead of ``path`` inside it: for a schedule, a
    mapping that works as it stands."""
    example = schedules.example_with(path[-1], value) \
        if path[:-1] == ("lr_schedule",) else None
    if example is None:
        return f"set {where} as a whole"
    return f"set {where} as a whole, e.g. --set '{where}={example}'"


def _short(value):
    if value is _MISSING:
        return "unset"
    if isinstance(value, (list, tuple)):
        return "-".join(_short(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("name", "mapping"))
    return "null" if value is None else id_value(value)


def derived_name(original, changed):
    """The name of ``changed`` (a config from
    ``original`` with overrides): ``original``'s if the experiment is the same, else
    ``<name>_<what changed>_<hash>`` (letters, digits, ``_ . = -``)."""
    return _derived(original.name, original.experiment(), changed.experiment())


def _derived(name, before, after):
    keys = [k for k in after if before.get(k, _MISSING) != after[k]] + \
        [k for k in before if k not in after]
    if not keys:
        return name
    diff = {k: after.get(k, _MISSING) for k in keys}
    bare = {k: k[len("grid."):] if k.startswith("grid.") else k for k in keys}
    set_ = {bare[k] for k, v in diff.items() if v is not _MISSING}
    labels = run_keys.table().labels
    parts = [f"{labels.get(bare[k]) or bare[k]}={_short(v)}" for k, v in diff.items()
             if v is not _MISSING or bare[k] not in set_]  # an axis made fixed: once
    readable = re.sub(r"[^A-Za-z0-9.=_-]+", "-", "_".join(parts))[:READABLE_CHARS]
    digest = hashlib.sha256(json.dumps({k: "(unset)" if v is _MISSING else v
                                        for k, v in diff.items()},
                                       sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}_{readable.strip('_-=.')}_{digest[:8]}"


def former_names(original, changed):
    """The names earlier versions of the suite gave ``changed``, other than
    :func:`derived_name`: a change of ``epochs`` was ``--epochs N``'s,
    ``<derived name of the other changes>_epochs=N``."""
    before, after = original.experiment(), changed.experiment()
    if "epochs" not in before or before["epochs"] == after.get("epochs", _MISSING):
        return []
    rest = _derived(original.name, before, {**after, "epochs": before["epochs"]})
    return [f"{rest}_epochs={after['epochs']}"]


def _settled(original, changed, results_dir):
    """``changed`` under the name of the folder ``results_dir`` holds it in: its derived
    name, or else a former name whose folder holds a grid (``grid.yaml``)."""
    name = derived_name(original, changed)
    held = [n for n in former_names(original, changed)
            if os.path.isfile(os.path.join(os.fspath(results_dir), n, GRID_FILE))]
    if held and not os.path.exists(os.path.join(os.fspath(results_dir), name)):
        name = held[0]  # the folder an earlier version made for this experiment
    return dataclasses.replace(changed, name=name)


def _blame(error, items):
    """``error`` of the overridden config said of the ``--set`` item that set its key."""
    key = getattr(error, "key", None)
    if key is None:
        return error
    for item in reversed(items):
        path = ".".join(parse_item(item)[0])
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            where = "" if key == path else f"key {key!r}: "
            return ConfigError(f"--set {item!r}: {where}{error.problem}", key=key,
                               problem=error.problem)
    return error


def load_with_overrides(path, items=(), results_dir=None):
    """The config at ``path`` with ``items`` (``key=value``) set, validated like the
    file, under its derived name (:func:`derived_name`; given ``results_dir``, a former
    name whose folder is there, see the module docstring). Raises :class:`ConfigError`:
    for a key an item set, naming the item."""
    data = read_config(path)
    if not items or not isinstance(data, dict):
        return load_config(path)
    data = apply_overrides(data, items)  # its errors name the item already
    try:
        changed = parse_config(data, path=os.fspath(path),
                               default_name=os.path.splitext(os.path.basename(path))[0])
    except ConfigError as error:
        blamed = _blame(error, items)
        if blamed is error:  # the file's own mistake, or one of the file and an item
            load_config(path)
            blamed = ConfigError(f"{error} (with --set {' --set '.join(items)})")
        raise blamed from None
    if any(parse_item(item)[0] == ("name",) for item in items):
        return changed
    if results_dir is None:
        return dataclasses.replace(changed, name=derived_name(load_config(path), changed))
    return _settled(load_config(path), changed, results_dir)
