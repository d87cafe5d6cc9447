"""How far a grid has got: the runs of its plan, the runs on disk by state, what is
missing and which settings are incomplete -- what a report says first when a grid is
unfinished.

The plan is ``planned_runs`` in the grid's ``grid.yaml`` (the run ids the runner means to
train), when the runner wrote one; without it only the runs on disk can be counted, and
runs that were never started cannot be seen.
"""
import os
import re

import yaml

from experiments.analysis.readable import plural
from experiments.analysis.records import is_complete
from experiments.results.store import GRID_FILE, PLAN_KEY

__all__ = ["PLAN_KEY", "planned_runs", "setting_label", "grid_progress", "progress_lines"]

SHOWN = 8  # incomplete settings named in the Markdown (all of them in the JSON)


def planned_runs(grid_dir):
    """The run ids ``grid.yaml``'s ``planned_runs`` lists, or None when the file or the
    key is missing or unreadable (a grid written before the runner kept its plan)."""
    try:
        with open(os.path.join(os.fspath(grid_dir), GRID_FILE), encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    plan = data.get(PLAN_KEY) if isinstance(data, dict) else None
    if not isinstance(plan, list):
        return None
    return [str(run_id) for run_id in plan]


def setting_label(run_id):
    """A run id without its seed: ``adam_lr=0.001_b2=0.99_bc=on_seed=3`` ->
    ``adam_lr=0.001_b2=0.99_bc=on`` (the id of its setting)."""
    return re.sub(r"_seed=-?\d+$", "", run_id)


def _state(run):
    return run.state or "not started"


def grid_progress(runs, grid_dir=None):
    """Where the grid of ``runs`` stands.

    Returns a dict: ``planned`` (the number of planned runs, or None without a plan),
    ``on_disk`` (runs found), ``done`` (finished or diverged), ``states`` (``{state:
    count}`` of the runs on disk; ``not started`` for a run folder without a status),
    ``absent`` (planned run ids with no folder yet), ``not_done`` (run ids of the plan,
    else of the disk, that are not done), ``unplanned`` (run ids on disk the plan does
    not list) and ``incomplete`` (``[{'setting', 'done', 'total'}]``: each setting with a
    run not done, ``total`` its runs in the plan, else on disk).
    """
    if grid_dir is None:
        grid_dir = os.path.dirname(runs[0].path) if runs else "."
    plan = planned_runs(grid_dir)
    by_id = {os.path.basename(r.path): r for r in runs}
    done_ids = {rid for rid, r in by_id.items() if is_complete(r)}
    states = {}
    for r in runs:
        states[_state(r)] = states.get(_state(r), 0) + 1
    ids = plan if plan is not None else sorted(by_id)
    totals, done_per = {}, {}
    for rid in ids:
        label = setting_label(rid)
        totals[label] = totals.get(label, 0) + 1
        done_per[label] = done_per.get(label, 0) + (rid in done_ids)
    return {"planned": None if plan is None else len(plan), "on_disk": len(runs),
            "done": len(done_ids & set(ids)) if plan is not None else len(done_ids),
            "states": dict(sorted(states.items())),
            "absent": [rid for rid in plan if rid not in by_id] if plan is not None else [],
            "not_done": [rid for rid in ids if rid not in done_ids],
            "unplanned": sorted(set(by_id) - set(plan)) if plan is not None else [],
            "incomplete": [{"setting": s, "done": done_per[s], "total": totals[s]}
                           for s in totals if done_per[s] < totals[s]]}


def _counts(progress):
    """``'8 running, 2 failed'``: the runs on disk that are not done, by state."""
    states = {s: n for s, n in progress["states"].items() if s not in ("finished", "diverged")}
    return ", ".join(f"{n} {s}" for s, n in states.items())


def _incomplete(progress):
    rows = progress["incomplete"]
    named = "; ".join(f"`{r['setting']}` ({r['done']} of {r['total']} done)"
                      for r in rows[:SHOWN])
    more = f"; and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return f"Incomplete settings ({len(rows)}): {named}{more}."


def progress_lines(progress):
    """The report's first words on the grid: complete or not, and what is missing."""
    planned, not_done = progress["planned"], progress["not_done"]
    done_states = ", ".join(f"{progress['states'][s]} {s}" for s in ("finished", "diverged")
                            if progress["states"].get(s))
    if planned is not None and not not_done:
        return [f"All {plural(planned, 'planned run')} are done ({done_states or 'none'})."]
    if planned is not None:
        parts = [f"{len(progress['absent'])} not on disk yet"] if progress["absent"] else []
        parts += [_counts(progress)] if _counts(progress) else []
        head = (f"**Unfinished grid: {len(not_done)} of the {plural(planned, 'planned run')} "
                f"{'is' if len(not_done) == 1 else 'are'} not done** ({', '.join(parts)}).")
    else:
        unknown = (f"grid.yaml lists no plan (`{PLAN_KEY}`), so runs not started yet "
                   "cannot be counted")
        if not not_done:
            return [f"{plural(progress['on_disk'], 'run')} on disk, all done "
                    f"({done_states or 'none'}); {unknown}."]
        verb = "is" if len(not_done) == 1 else "are"
        head = (f"**Unfinished grid: {len(not_done)} of the "
                f"{plural(progress['on_disk'], 'run')} on disk {verb} not done** "
                f"({_counts(progress)}); {unknown}.")
    return [head, "", _incomplete(progress)]
