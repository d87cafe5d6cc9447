"""The synthetic problem's result file: ``trajectories.csv``, one row per recorded step
and lane (``step, problem, rule, x``), written atomically, numbers as the shortest
decimals that read back exactly."""
import csv
import io
import itertools

import numpy as np

from experiments.results.files import atomic_write_text

__all__ = ["TRAJECTORIES_FILE", "write_trajectories", "read_trajectories"]

TRAJECTORIES_FILE = "trajectories.csv"


def write_trajectories(path, traj):
    """Write ``traj`` (``steps``, ``lanes`` as (problem, rule) pairs, ``x`` (R, L)) as
    CSV, atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "problem", "rule", "x"])
    text = traj.x.astype(str)
    for (problem, rule), column in zip(traj.lanes, text.T):
        writer.writerows(zip(traj.steps.tolist(), itertools.repeat(problem),
                             itertools.repeat(rule), column))
    atomic_write_text(path, buf.getvalue())


def read_trajectories(path):
    """``{(problem, rule): (steps int array, x float array)}`` from a trajectories CSV."""
    series = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"step", "problem", "rule", "x"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            s, x = series.setdefault((row["problem"], row["rule"]), ([], []))
            s.append(int(row["step"]))
            x.append(float(row["x"]))
    return {k: (np.array(s), np.array(x)) for k, (s, x) in series.items()}
