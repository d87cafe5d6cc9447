"""A training config's axes (``grid:``) and the rules' own values (``rules:``), read
on the run schema (:mod:`experiments.run_schema`) for :func:`experiments.config.parse_config`.

The rules of a grid are its ``updater`` axis (or its fixed ``updater``). A key a rule
takes (:func:`~experiments.run_keys.takes`) may be fixed or an axis for the whole grid,
and given again under ``rules: {<rule>: {<key>: value or [values]}}`` for that rule
alone; a key no rule of the grid takes is an error naming it. The functions take the
config's ``fail(key, message)`` (raises its one-line error) and ``check(checker, value,
key)``.
"""
from experiments.config import run_keys
from experiments.config import setup_keys
from experiments.config.run_keys import (AXES, KEYS, REQUIRED, RULES, did_you_mean, list_of, shown,
                                    takes)

__all__ = ["grid_rules", "grid_axes", "grid_fixed"]


def grid_rules(data, grid):
    """The rules of a grid: its updater axis, or the fixed updater."""
    if "updater" in grid:
        return grid["updater"]
    return (data["updater"],) if data.get("updater") in RULES else RULES


def grid_fixed(data, grid, rules, fail, check):
    """The grid's fixed settings but the setup keys, defaults filled in: every key that
    is not an axis and that a rule of the grid takes without a value of its own."""
    fixed, all_rules = {}, grid_rules(data, grid)
    for key in KEYS:
        takers = [r for r in all_rules if takes(r, key)]
        if key in grid or key in setup_keys.KEYS or not takers:
            continue
        if all(key in rules.get(r, ()) for r in takers):  # each has its own value
            if key in data:
                fail(key, f"every rule that takes it ({', '.join(takers)}) has its own "
                          f"value under rules:; leave it out")
            continue
        if key in data:
            fixed[key] = check(KEYS[key].check, data[key], key)
        elif KEYS[key].default is REQUIRED:
            fail(key, "missing: give it fixed, or as a list under grid:")
        else:
            fixed[key] = KEYS[key].default
    return fixed


def _takers(key, rules):
    """Why no rule of ``rules`` takes ``key``, or None."""
    if any(takes(r, key) for r in rules):
        return None
    takers = run_keys.rules_taking(key)
    return (f"no rule of this grid ({', '.join(rules)}) takes it ({', '.join(takers)} "
            f"do{'es' if len(takers) == 1 else ''})")


def grid_axes(data, fail, check):
    """The grid's axes (``grid:``) and the rules' own values (``rules:``), checked:
    ``({key: values}, {rule: {key: value or (values,)}})``, both in run-id order."""
    raw = data.get("grid", {})
    if not isinstance(raw, dict):
        fail("grid", f"expected a mapping of axis: [values], got {shown(raw)}")
    grid = {}
    for key in sorted(raw, key=lambda k: k != "updater"):  # the rules first
        values, k = raw[key], f"grid.{key}"
        if key not in AXES:
            why = "not something a grid can vary" if key in KEYS else \
                "unknown axis" + did_you_mean(key, AXES)
            fail(k, f"{why}; axes are {', '.join(AXES)}")
        if key in data:
            fail(k, f"given both fixed ({key}: ...) and as an axis; keep one")
        if not isinstance(values, list):
            fail(k, f"expected a list of values, got {shown(values)}")
        if not values:
            fail(k, "empty axis: give at least one value")
        grid[key] = tuple(check(list_of(KEYS[key].check), values, k))
    if "updater" not in grid and "updater" in data:
        check(KEYS["updater"].check, data["updater"], "updater")
    rules = grid_rules(data, grid)
    for key in [*data, *grid]:
        why = key in KEYS and KEYS[key].rules is not None and _takers(key, rules)
        if why:
            fail(key if key in data else f"grid.{key}", why)

    raw_rules = data.get("rules", {})
    if not isinstance(raw_rules, dict):
        fail("rules", f"expected a mapping of rule: {{key: value or [values]}}, "
                      f"got {shown(raw_rules)}")
    own = {}
    for rule, values in raw_rules.items():
        k = f"rules.{rule}"
        if rule not in rules:
            fail(k, f"not a rule of this grid ({', '.join(rules)})"
                    + did_you_mean(rule, rules))
        if not isinstance(values, dict) or not values:
            fail(k, f"expected a mapping of key: value or [values], got {shown(values)}")
        mine = [key for key in run_keys.OPTIMIZER_KEYS if key != "updater"
                and takes(rule, key)]
        for key, value in values.items():
            if key not in mine:
                fail(f"{k}.{key}", f"{rule} does not take it; it takes {', '.join(mine)}"
                     + did_you_mean(key, mine))
        own[rule] = {key: tuple(check(list_of(KEYS[key].check), values[key], f"{k}.{key}"))
                     if isinstance(values[key], list) else
                     check(KEYS[key].check, values[key], f"{k}.{key}")
                     for key in AXES if key in values}
    grid = {k: grid[k] for k in AXES if k in grid}  # run-id order
    return grid, {r: own[r] for r in rules if r in own}
