"""A training config's axes (``grid:``) and the rules' own values (``rules:``), read
on the key table (:mod:`experiments.config.run_keys`) for
:func:`experiments.config.grid_config.parse_grid`.

The rules of a grid are its ``updater`` axis (or its fixed ``updater``). A key a rule
takes may be fixed or an axis for the whole grid, and given again under ``rules:
{<rule>: {<key>: value or [values]}}`` for that rule alone; a key no rule of the grid
takes is an error naming it. The functions take the config's
:class:`~experiments.config.loading.Checker`, which raises its one-line errors.
"""
from experiments import optimizers
from experiments.config import run_keys, setup_keys
from experiments.config.checks import REQUIRED, did_you_mean, list_of, shown

__all__ = ["grid_rules", "grid_axes", "grid_fixed"]


def grid_rules(data, grid):
    """The rules of a grid: its updater axis, or the fixed updater (every registered
    rule while it names none: the key is then missing)."""
    if "updater" in grid:
        return grid["updater"]
    named = data.get("updater")
    return (named,) if isinstance(named, str) and optimizers.is_rule(named) \
        else run_keys.table().rules


def grid_fixed(data, grid, rules, checker):
    """The grid's fixed settings but the setup keys, defaults filled in: every key that
    is not an axis and that a rule of the grid takes without a value of its own (a key
    whose default differs between the grid's rules is left to each rule's default)."""
    table, fixed, all_rules = run_keys.table(), {}, grid_rules(data, grid)
    for key, row in table.keys.items():
        takers = [r for r in all_rules if run_keys.takes(r, key)]
        if key in grid or key in setup_keys.NAMES or not takers:
            continue
        if all(key in rules.get(r, ()) for r in takers):  # each has its own value
            if key in data:
                checker.fail(key, f"every rule that takes it ({', '.join(takers)}) has "
                                  f"its own value under rules:; leave it out")
            continue
        defaults = {repr(run_keys.default(key, rule=r)) for r in takers}
        if key in data:
            fixed[key] = checker.check(_check_for(key, takers), data[key], key)
        elif row.default is REQUIRED:
            checker.fail(key, "missing: give it fixed, or as a list under grid:")
        elif len(defaults) == 1:
            fixed[key] = run_keys.default(key, rule=takers[0])
    return fixed


def _check_for(key, rules):
    """The check of ``key``'s values: each of ``rules`` that takes it checks them with
    its own (the table's row where none does, or the key is no rule's)."""
    row = run_keys.table().keys[key]
    takers = [r for r in rules if run_keys.takes(r, key)] \
        if row.rules is not None and key != "updater" else []
    checks = [optimizers.get_rule(r).hyperparameter(key).check for r in takers] or [row.check]

    def check(value):
        for one in checks:
            value = one(value)
        return value
    return check


def _takers(key, rules):
    """Why no rule of ``rules`` takes ``key``, or None."""
    if any(run_keys.takes(r, key) for r in rules):
        return None
    takers = run_keys.rules_taking(key)
    return (f"no rule of this grid ({', '.join(rules)}) takes it ({', '.join(takers)} "
            f"do{'es' if len(takers) == 1 else ''})")


def grid_axes(data, checker):
    """The grid's axes (``grid:``) and the rules' own values (``rules:``), checked:
    ``({key: values}, {rule: {key: value or (values,)}})``, both in run-id order."""
    table, raw = run_keys.table(), data.get("grid", {})
    if not isinstance(raw, dict):
        checker.fail("grid", f"expected a mapping of axis: [values], got {shown(raw)}")
    grid = {}
    if "updater" in raw:  # the rules first: the other axes are checked by theirs
        grid["updater"] = _axis(checker, data, "updater", raw["updater"], table)
    elif "updater" in data:
        checker.check(table.keys["updater"].check, data["updater"], "updater")
    rules = grid_rules(data, grid)
    for key in raw:
        if key != "updater":
            grid[key] = _axis(checker, data, key, raw[key], table, rules)
    for key in [*data, *grid]:
        why = key in table.keys and table.keys[key].rules is not None and key != "updater" \
            and _takers(key, rules)
        if why:
            checker.fail(key if key in data else f"grid.{key}", why)
    own = _own_values(data.get("rules", {}), rules, checker)
    grid = {k: grid[k] for k in table.axes if k in grid}  # run-id order
    return grid, {r: own[r] for r in rules if r in own}


def _axis(checker, data, key, values, table, rules=()):
    """The values of axis ``grid.<key>``, checked."""
    where = f"grid.{key}"
    if key not in table.axes:
        why = "not something a grid can vary" if key in table.keys else \
            "unknown axis" + did_you_mean(key, table.axes)
        checker.fail(where, f"{why}; axes are {', '.join(table.axes)}")
    if key in data:
        checker.fail(where, f"given both fixed ({key}: ...) and as an axis; keep one")
    if not isinstance(values, list):
        checker.fail(where, f"expected a list of values, got {shown(values)}")
    if not values:
        checker.fail(where, "empty axis: give at least one value")
    return tuple(checker.check(list_of(_check_for(key, rules)), values, where))


def _own_values(raw_rules, rules, checker):
    """``rules:``: each rule's own values, ``{rule: {key: value or (values,)}}``."""
    if not isinstance(raw_rules, dict):
        checker.fail("rules", f"expected a mapping of rule: {{key: value or [values]}}, "
                              f"got {shown(raw_rules)}")
    own, axes = {}, run_keys.table().axes
    for rule, values in raw_rules.items():
        where = f"rules.{rule}"
        if rule not in rules:
            checker.fail(where, f"not a rule of this grid ({', '.join(rules)})"
                                + did_you_mean(rule, rules))
        if not isinstance(values, dict) or not values:
            checker.fail(where, f"expected a mapping of key: value or [values], "
                                f"got {shown(values)}")
        mine = optimizers.get_rule(rule).keys
        for key in values:
            if key not in mine:
                checker.fail(f"{where}.{key}", f"{rule} does not take it; it takes "
                                               f"{', '.join(mine)}" + did_you_mean(key, mine))
        check = lambda key, v: checker.check(  # noqa: E731
            optimizers.get_rule(rule).hyperparameter(key).check, v, f"{where}.{key}")
        own[rule] = {key: tuple(checker.check(list_of(lambda v, key=key: check(key, v)),
                                              values[key], f"{where}.{key}"))
                     if isinstance(values[key], list) else check(key, values[key])
                     for key in axes if key in values}
    return own
