"""The runs a grid config asks for: expansion, run ids, ``--only``.

A grid config (:mod:`experiments.config.grid_config`) expands into one run per seed and
combination of axis values. Run ids name the axes of the config's ``grid:`` (even an
axis with a single value, so that adding values later keeps the ids) and the seed, in
the order of the key table (:mod:`experiments.config.keys`):
``amsgrad_lr=0.001_b2=0.999_bc=on_seed=3``. ``--epochs`` (``--set epochs=N``) changes
the learning-rate schedule, so its results go to another grid
(:mod:`experiments.config.overrides`).
"""
import itertools

import yaml

from experiments.config import run_keys
from experiments.config.checks import did_you_mean
from experiments.config.loading import ConfigError

__all__ = ["expand_grid", "run_id", "id_value", "select"]


def id_value(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


def run_id(run, axes):
    """The id of ``run``: its values on ``axes`` (in the key table's order) and its
    seed, e.g. ``amsgrad_lr=0.001_b2=0.999_bc=on_seed=3``."""
    table = run_keys.table()
    parts = [id_value(run[a]) if table.labels[a] is None
             else f"{table.labels[a]}={id_value(run[a])}" for a in table.axes if a in axes]
    return "_".join(parts + [f"seed={run['seed']}"])


def expand_grid(config):
    """One run dict per seed and combination of axis values, seeds outermost (so the
    first runs cover every setting once), then rule by rule
    (:meth:`~experiments.config.GridConfig.rule_settings`).

    A run dict is the resolved run config: ``name`` (the grid), ``run_id``, every key of
    :data:`~experiments.run_keys.TABLE` its rule takes (the setup keys too) and
    ``seed``. Its id names the grid's axes its rule takes and the rule's own axes.
    """
    rules = config.updaters()
    per_rule = {rule: config.rule_settings(rule) for rule in rules}
    runs = []
    for seed in config.seeds:
        for rule in rules:
            fixed, axes = per_rule[rule]
            id_axes = ["updater"] * ("updater" in config.grid) + list(axes)
            for values in itertools.product(*axes.values()):
                settings = {**fixed, **dict(zip(axes, values)), "updater": rule}
                run = {"name": config.name,
                       "run_id": run_id(dict(settings, seed=seed), id_axes)}
                run.update((k, settings[k]) for k in run_keys.table().keys if k in settings)
                run["seed"] = seed
                runs.append(run)
    return runs


def select(runs, config, only):
    """The runs matching every ``key=value`` of ``only`` (a key given twice: either value).

    Keys are the grid's axes (or their labels in run ids: ``b2``, ``bc``) and ``seed``;
    values are read as YAML (``bc=off``, ``lr=1e-3``). A key or value the grid does not
    have raises :class:`ConfigError`.
    """
    table, choices, fixed = run_keys.table(), {}, {}
    for rule in config.updaters():
        rule_fixed, axes = config.rule_settings(rule)
        for key, values in axes.items():
            choices[key] = tuple(dict.fromkeys(choices.get(key, ()) + tuple(values)))
        fixed = {**rule_fixed, **fixed}
    choices = {**{k: choices[k] for k in table.axes if k in choices}, "seed": config.seeds}
    if "updater" in config.grid:
        choices = {"updater": config.grid["updater"], **choices}
    aliases = {label: axis for axis, label in table.labels.items() if label}
    wanted = {}
    for item in only or ():
        key, sep, text = (s.strip() for s in item.partition("="))
        if not sep or not key or not text:
            raise ConfigError(f"--only {item!r}: expected key=value, e.g. lr=0.001")
        key = aliases.get(key, key)
        if key not in choices:
            why = (f"{key!r} is fixed to {fixed[key]!r} in this grid" if key in fixed
                   else f"unknown key {key!r}{did_you_mean(key, choices)}")
            raise ConfigError(f"--only {item!r}: {why}; choose from {', '.join(choices)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        try:
            if key == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"expected an integer, got {text!r}")
            else:
                value = run_keys.check(key, value)
        except ValueError as e:
            raise ConfigError(f"--only {item!r}: {e}") from None
        if value not in choices[key]:
            shown = ", ".join(id_value(v) for v in choices[key])
            raise ConfigError(f"--only {item!r}: not in this grid; {key} is one of {shown}")
        wanted.setdefault(key, []).append(value)
    return [r for r in runs if all(r.get(k) in vs for k, vs in wanted.items())]
