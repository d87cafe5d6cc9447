"""``scripts/benchmark.py engine`` as a user runs it: one table, a column per engine
importable in this Python (Theano in the Theano environment, PyTorch where installed),
and one error line for each mistake. Times are not checked, only the table's shape and
its arithmetic."""
import csv
import math
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from experiments import models
from experiments.benchmarks import engine as bench

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.py"

#: The engines the default run must time here (a Theano that is installed but does not
#: import is a failure, not a missing column).
EXPECTED = ["jax"] + [e for e in ("theano", "torch") if find_spec(e) is not None]


def cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), "engine", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def assert_one_error_line(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("benchmark engine: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_columns_put_ratios_against_the_first_engine():
    assert bench.columns(["theano", "jax"]) == [
        "model", "params", "steps", "theano ms/step", "jax ms/step", "jax/theano",
        "theano compile s", "jax compile s"]


def test_table_has_a_row_per_model_and_a_column_per_engine(tmp_path):
    out = tmp_path / "engine.csv"
    result = cli("--models", "logreg", "cifarnet", "--steps", 2, "--batch", 8,
                 "--repeats", 1, "--quiet", "--csv", out)
    assert result.returncode == 0, result.stderr
    names = (["model", "params", "steps"] + [f"{e} ms/step" for e in EXPECTED]
             + [f"{e}/jax" for e in EXPECTED[1:]] + [f"{e} compile s" for e in EXPECTED])

    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == names
        rows = list(reader)
    assert [r["model"] for r in rows] == ["logreg", "cifarnet"]
    # logreg: 784 x 10 weights + 10 biases
    assert [int(r["params"]) for r in rows] == [
        7850, models.count_params(models.get_model("cifarnet"))]
    assert [int(r["steps"]) for r in rows] == [2, 2]
    for r in rows:
        for e in EXPECTED:
            step, compile_s = float(r[f"{e} ms/step"]), float(r[f"{e} compile s"])
            assert math.isfinite(step) and step > 0
            assert math.isfinite(compile_s) and compile_s >= 0
        for e in EXPECTED[1:]:  # the ratio is of the two ms/step columns
            assert float(r[f"{e}/jax"]) == pytest.approx(
                float(r[f"{e} ms/step"]) / float(r["jax ms/step"]), rel=1e-4)

    # the printed table: the same header and rows, one line each, after the info lines
    lines = result.stdout.splitlines()
    assert lines[0].startswith("jax ")
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert " ".join(lines[header].split()) == " ".join(names)
    table = [line.split() for line in lines[header + 1:]]
    assert [cells[0] for cells in table] == ["logreg", "cifarnet"]
    # the multi-word column names are one cell each in the rows
    assert all(len(cells) == len(names) for cells in table)


@pytest.mark.parametrize("args, fragments", [
    (["--engines", "jax,nope"], ["--engines 'jax,nope'", "jax, theano, torch"]),
    (["--engines", "jax,jax"], ["distinct"]),
    (["--steps", 0], ["--steps"]),
    (["--batch", -1], ["--batch"]),
    (["--csv", "no/such/dir/out.csv"], ["--csv no/such/dir/out.csv", "no such directory"]),
])
def test_bad_input_is_one_error_line(args, fragments):
    assert_one_error_line(cli("--models", "logreg", *args), *fragments)


@pytest.mark.skipif(find_spec("theano") is not None, reason="Theano is installed here")
def test_asking_for_an_engine_that_does_not_import_names_it():
    assert_one_error_line(cli("--models", "logreg", "--engines", "jax,theano"),
                          "--engines theano", "not importable")
