"""What made a grid's runs, summed up from their ``status.json`` (see
:mod:`experiments.provenance`): the command lines, the code (version, git commit, dirty)
and the library versions, each with the number of runs it made -- and what changed
between two grids.

A run's record is that of the training that wrote it last, so a grid resumed with other
code shows both commits, each with its runs.
"""
from experiments.analysis.readable import plural

__all__ = ["provenance", "provenance_lines", "provenance_changes"]


def _count(items):
    """``[(item, count)]``, the most frequent first (ties: in order of appearance)."""
    counts = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def provenance(runs):
    """The provenance of ``runs``: a dict with ``recorded`` and ``unrecorded`` (runs with
    and without a record: never started, or written before the suite kept one),
    ``commands`` (``[{'command', 'cwd', 'runs'}]``), ``code`` (``[{'version', 'commit',
    'dirty', 'runs'}]``; ``commit`` None where the suite did not run from a git
    checkout) and ``versions`` (``{library: [{'version', 'runs'}]}``)."""
    recorded = [r.status for r in runs if isinstance(r.status, dict) and "code" in r.status]
    code = [(c.get("version"), c.get("commit"), c.get("dirty"))
            for c in (s.get("code") or {} for s in recorded)]
    commands = [(s.get("command"), s.get("cwd")) for s in recorded]
    libraries = list(dict.fromkeys(k for s in recorded for k in (s.get("versions") or {})))
    return {
        "recorded": len(recorded), "unrecorded": len(runs) - len(recorded),
        "commands": [{"command": c, "cwd": d, "runs": n} for (c, d), n in _count(commands)],
        "code": [{"version": v, "commit": c, "dirty": d, "runs": n}
                 for (v, c, d), n in _count(code)],
        "versions": {lib: [{"version": v, "runs": n} for v, n in
                           _count((s.get("versions") or {}).get(lib) for s in recorded)]
                     for lib in libraries}}


def _code(entry):
    """``0.1.0, commit b74f3df`` (``, dirty``: tracked files differed from it)."""
    text = f"{entry['version'] or '?'}"
    if entry["commit"]:
        text += f", commit {entry['commit'][:7]}" + (
            ", dirty (tracked files changed)" if entry["dirty"] else ", clean")
    else:
        text += ", not from a git checkout"
    return text


def _command(entry):
    return f"`{entry['command']}`" + (f" in `{entry['cwd']}`" if entry["cwd"] else "")


def _several(entries, show, what):
    """One value: it alone; several: ``2 commits: a (80 runs), b (40 runs)``."""
    if len(entries) == 1:
        return show(entries[0])
    return f"{plural(len(entries), what)}: " + "; ".join(
        f"{show(e)} ({plural(e['runs'], 'run')})" for e in entries)


def provenance_lines(prov):
    """Markdown list items of :func:`provenance`'s summary (with a note on runs
    without a record)."""
    if not prov["recorded"]:
        return [f"- No run has a provenance record ({plural(prov['unrecorded'], 'run')}: "
                "not started yet, or written before the suite kept one)."]
    lines = [f"- Command: {_several(prov['commands'], _command, 'command')}",
             f"- Code: amsgrad-experiments {_several(prov['code'], _code, 'code version')}"]
    same = [f"{lib} {vs[0]['version']}" for lib, vs in prov["versions"].items()
            if len(vs) == 1 and lib != "executable"]
    if same:
        lines.append(f"- Libraries: {', '.join(same)}")
    for lib, vs in prov["versions"].items():  # what differs from run to run, and where
        if len(vs) > 1 or lib == "executable":
            label = "Python executable" if lib == "executable" else lib
            lines.append(f"- {label}: " + _several(vs, lambda e: f"{e['version']}", "version"))
    if prov["unrecorded"]:
        lines.append(f"- {plural(prov['unrecorded'], 'run')} without a record (not started "
                     "yet, or written before the suite kept one).")
    return lines


def _values(prov, key):
    if key == "code":
        return [_code(e) for e in prov["code"]]
    if key == "command":
        return [_command(e) for e in prov["commands"]]
    return [str(e["version"]) for e in prov["versions"].get(key, ())]


def provenance_changes(a, b):
    """What differs between the provenance summaries ``a`` and ``b`` of two grids:
    ``[(what, values in a, values in b)]`` for the code, the command and each library
    whose values differ (a library one grid lacks: an empty list)."""
    keys = ["code", "command"] + list(dict.fromkeys([*a["versions"], *b["versions"]]))
    return [(k, _values(a, k), _values(b, k)) for k in keys
            if set(_values(a, k)) != set(_values(b, k))]
