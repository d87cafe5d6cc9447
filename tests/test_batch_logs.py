"""scripts/run_grid.py in a batch job: output to a file is a plain log (one line per run,
the grid's summary, no progress-bar control codes; without --quiet, a plain progress line
per group at a steady rhythm); progress bars only on a terminal, and not with --quiet."""
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest

import test_faults
from experiments.training.progress import duration
from test_run_grid_cli import REAL, REPO, SCRIPT, needs_mnist

RUN_LINE = re.compile(r"finished (adam|amsgrad)_bc=(on|off)_seed=0: "
                      r"val_loss \d+\.\d{4} val_acc \d\.\d{4} \((\d+m\d\ds|\d+s)\)")
PROGRESS_LINE = re.compile(r"logreg group of 2: epoch 2/2, 2 runs, best val_acc \d\.\d{4}, "
                           r"\d+\.\d s/epoch, ETA 0s")


def logged(tmp_path, name, *args):
    """The command's stdout and stderr, as a batch system writes them to one file."""
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as f:
        done = subprocess.run([sys.executable, SCRIPT, "configs/smoke.yaml", "--results",
                               str(tmp_path / name), "--data-dir", REAL, *args],
                              stdout=f, stderr=subprocess.STDOUT, cwd=REPO, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text
    return text


@needs_mnist
@pytest.mark.slow
def test_a_log_file_gets_one_line_per_run_and_the_summary_quiet_or_not(tmp_path):
    for name, args in (("plain", ("--only", "updater=adam")),
                       ("quiet", ("--only", "updater=amsgrad", "--quiet"))):
        text = logged(tmp_path, name, *args)
        assert "\r" not in text and "\x1b" not in text, repr(text)
        lines = text.splitlines()
        grid = tmp_path / name / "smoke"
        assert lines[0] == f"smoke: 2 runs in {grid}: 0 done, 2 to do (2 new)"
        # the group's progress: the last epoch's line (the first comes within 30 s)
        progress = [line for line in lines if PROGRESS_LINE.fullmatch(line)]
        assert len(progress) == (0 if "--quiet" in args else 1), text
        # then the best setting of each rule and the commands of the report and figures
        end = lines[-5:-1]
        assert end[0] == "best setting of each rule (final val_acc, mean ± sd over seeds):"
        assert lines[1].startswith("cost: 2 runs x 2 epochs: ") and lines[2].startswith("time: ")
        updater = args[1].split("=")[1]
        assert re.fullmatch(rf"  {updater}_bc=(on|off)  \d\d\.\d\d%  \(1 seed\)", end[1])
        assert end[2].startswith(f"report:  python {REPO}/scripts/report.py {grid}  (")
        assert end[3].startswith(f"figures: python {REPO}/scripts/plot.py {grid}    (")
        runs = [line for line in lines[3:-5] if line not in progress]
        assert len(runs) == 2 and all(RUN_LINE.fullmatch(line) for line in runs), text
        assert sorted(line.split(":")[0] for line in runs) == [
            f"finished {updater}_bc=off_seed=0", f"finished {updater}_bc=on_seed=0"]
        for line in runs:  # the time shown is the run's wall time in its status.json
            status = json.loads((grid / line.split()[1][:-1] / "status.json").read_text())
            assert RUN_LINE.fullmatch(line).group(3) == duration(status["wall_seconds"])
        assert lines[-1] == "smoke: 2 trained, 0 failed; 2/2 done"


def on_a_terminal(tmp_path, *args):
    """The toy grid (tests/test_faults.py) with stderr on a pseudo-terminal: (stdout,
    what the terminal got)."""
    tmp_path.mkdir()
    config = test_faults.toy_config(tmp_path, epochs=3)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 wide
    received = []

    def read():
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            received.append(chunk)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = subprocess.run([sys.executable, test_faults.__file__, str(config), "--results",
                               str(tmp_path / "r"), *args], stdout=subprocess.PIPE,
                              stderr=terminal, text=True, cwd=REPO, timeout=120)
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    assert done.returncode == 0
    return done.stdout, b"".join(received).decode("utf-8", "replace")


def test_progress_bars_on_a_terminal_but_not_with_quiet(tmp_path):
    out, terminal = on_a_terminal(tmp_path / "plain")
    assert "toy 2/2 runs" in terminal and "\r" in terminal  # the grid's bar, redrawn
    assert "logreg adam seed 0" in terminal  # a run's own bar
    assert out.splitlines()[-1] == "toy: 2 trained, 0 failed; 2/2 done"
    out_quiet, terminal = on_a_terminal(tmp_path / "quiet", "--quiet")
    assert terminal == ""
    # the plan, its cost (the toy dataset states no size), two runs, the best settings (a
    # heading, two rules, two commands), the end
    lines = out_quiet.splitlines()
    assert lines[1] == "cost: 2 runs x 3 epochs: unknown (dataset 'toy' states no size)"
    assert len(lines) == 10 and lines[-1] == "toy: 2 trained, 0 failed; 2/2 done"
