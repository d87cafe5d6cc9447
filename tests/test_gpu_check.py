"""The prepared GPU check runs end to end at tiny sizes on a CPU (as CI runs it), writes
its figures where docs/benchmarks.md takes them, keeps to its time budget, and keeps
the rates the grids' cost lines read."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import models
from experiments.benchmarks import gpu
from experiments.engines import devices

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path),
               AMSGRAD_CACHE_DIR=str(tmp_path / "cache"))
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
    # auto's choice from this CPU's memory: logreg's 120 runs in one group, a conv net alone
    assert re.search(r"^auto logreg: K=120 of 120 runs, from [\d.]+ GiB free x 0.6 .*: fits$",
                     text, re.M)
    assert re.search(r"^auto cifarnet: K=1 of 120 runs, .*: fits$", text, re.M)
    assert re.search(r"^one cifarnet epoch, 1 run \(8 steps of 8, 32 validation images\): "
                     r"highest [\d.]+ s, tf32 [\d.]+ s: tf32 [\d.]+x as fast$", text, re.M)
    table = (tmp_path / "gpu_check.md").read_text().splitlines()
    assert table[2] == ("| model | K | precision | images/s | TFLOP/s | GiB | s/epoch (group) "
                        "| full grid |")
    assert any(line.startswith("| cifarnet | 1 | highest (full epoch) | ") for line in table)
    assert any(line.startswith("- one cifarnet epoch, 1 run") for line in table)
    assert not (tmp_path / "rates.json").exists()  # tiny batches keep no rate


def _args(**changes):
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in changes.items()])


def test_a_measurement_predicted_past_the_budget_is_not_started():
    session = gpu._Session(_args(budget=60))
    session.device_name = "NVIDIA H200"  # 67 TFLOP/s float32, 495 TF32
    session.compiles["vgg"] = 12.0
    c = models.costs(models.get_model("vgg"))
    flops = 120 * (391 * 128 * c["train_flops"] + 10000 * c["forward_flops"])
    assert session.predicted("vgg", 120, "highest", 391, 10000) == \
        2 * flops / (0.3 * 67e12) + 12.0  # ~ 2,900 s
    assert session.attempt("vgg", 120, "highest", "auto", 391, 10000) is None
    assert session.skipped == ["vgg K=120 highest auto"] and session.results == {}
    # on a CPU no peak is known: only the compile time so far counts
    session.device_name = devices.device_name(None)
    assert session.predicted("vgg", 120, "highest", 391, 10000) == 12.0


def test_sigint_stops_the_check_and_what_was_measured_is_summarised(monkeypatch, capsys,
                                                                    tmp_path):
    monkeypatch.setenv("AMSGRAD_CACHE_DIR", str(tmp_path))
    calls = []

    def measure(model, size, precision, layout, *rest):
        calls.append(model)
        if len(calls) > 1:
            raise KeyboardInterrupt  # as timeout --signal=INT delivers it
        return {"compile": 1.0, "step": 0.01, "val": 0.5, "images": 12800.0, "tflops": 0.5,
                "memory": 2 ** 30, "epoch": 4.41, "grid": 4.41 * 150, "finite": True,
                "layout": "shared", "steps": 20}
    monkeypatch.setattr(gpu, "measure", measure)
    assert gpu.run(_args(models="logreg,cifarnet", phases="sweep", group_sizes="120,8",
                         markdown=tmp_path / "t.md")) == 0
    out = capsys.readouterr().out
    assert "stopped by SIGINT (the time limit): what was measured follows" in out
    assert "  logreg    tf32 11.0 min (K=120)" in out
    assert "| logreg | 120 | tf32 | 12800 | 0.50 | 1.00 | 4.4 | 11.0 min |" in \
        (tmp_path / "t.md").read_text()
    # the rate kept: 120 runs' epoch FLOPs (full data) over the measured 4.41 s
    entry, = json.loads((tmp_path / "rates.json").read_text())["rates"]
    spec = models.get_model("logreg")
    assert entry["flops_per_s"] == pytest.approx(
        120 * sum(models.epoch_flops(spec, 50000, 10000, 128, 1024)) / 4.41, rel=1e-12)
    assert (entry["model"], entry["precision"], entry["group_size"], entry["by"]) == \
        ("logreg", "default", 120, "benchmark.py gpu")
