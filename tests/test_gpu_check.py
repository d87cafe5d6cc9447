"""The prepared GPU check runs end to end at tiny sizes on a CPU (as CI runs it)."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    result = subprocess.run(["bash", "scripts/gpu_check.sh", "--tiny"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = (tmp_path / "gpu_check.txt").read_text()  # the copy kept under $OUT
    assert text == result.stdout
    rows = [line.split() for line in text.splitlines() if re.match(r"^(logreg|cifarnet) +\d", line)]
    assert {r[0] for r in rows} == {"logreg", "cifarnet"}
    for row in rows:
        images_per_s, hours = float(row[6]), float(row[-2])
        assert images_per_s > 0 and hours > 0 and row[-1] == "h"
    assert re.search(r"best projected full grid per model", text)
