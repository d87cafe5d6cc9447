"""Faults of the file system, for real: a disk that fills up mid-grid, a read-only
folder, a folder this user may not write, a file where a folder should be.

As root, ``unshare -m`` gives a private mount namespace (see tests/namespaces.py) in
which a small tmpfs fills up (ENOSPC) and a read-only bind mount refuses writes
(EROFS); root without CAP_DAC_OVERRIDE (``setpriv``) meets a mode-0555 folder
(EACCES). Each fault must be one line naming the folder and what to do, exit status 3
(:data:`experiments.results.faults.EXIT_STATUS`), leave nothing half-written, and the next
run must finish with the curves of an undisturbed run.
"""
import errno
import json
import os
import subprocess
import sys
import time

import pytest

from namespaces import Namespace, unavailable
from test_faults import REPO, curves, run_dirs, status, toy_cmd, toy_config, toy_run

NO_MOUNT_NS = unavailable("unshare", "-m", "true")
needs_mount_ns = pytest.mark.skipif(NO_MOUNT_NS is not None,
                                    reason=f"no private mount namespace: {NO_MOUNT_NS}")
NO_SETPRIV = unavailable("setpriv", "--bounding-set=-dac_override,-dac_read_search", "true")


@pytest.fixture
def mnt():
    with Namespace("mnt") as ns:
        yield ns


def one_error_line(result, expected):
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == [f"error: {expected}"], result.stderr
    assert "Traceback" not in result.stderr


def leftovers(folder):
    """Temp files and claims anywhere below ``folder``."""
    return sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files
                  if f.startswith(".") or f == "claim.json")


def fill(path):
    """Write ``path`` until its file system is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_the_line_for_each_fault(tmp_path):
    from experiments.results.faults import describe, is_storage_fault
    (tmp_path / "file").write_text("")
    d = "/r"
    cases = {
        OSError(errno.ENOSPC, "No space left on device"):
            "/r: no space left on its device; free some space or choose another folder "
            "with --results, then run the same command again",
        OSError(errno.EROFS, "Read-only file system", "/r/.grid.yaml.x1.tmp"):
            "/r: read-only file system; choose a writable folder with --results",
        PermissionError(errno.EACCES, "Permission denied", "/r/.grid.yaml.x1.tmp"):
            "/r: permission denied; choose a folder you may write with --results",
        NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "file" / "a" / "b")):
            f"{tmp_path}/file is a file, not a folder; choose another folder with --results",
        IsADirectoryError(errno.EISDIR, "Is a directory", "/r/report.md"):
            "/r/report.md is a folder, not a file; choose another path with --results",
    }
    for error, line in cases.items():
        assert is_storage_fault(error)
        assert describe(error, d, "--results") == line
    assert not is_storage_fault(OSError(errno.EIO, "I/O error"))
    assert not is_storage_fault(ValueError("x"))


def test_a_file_where_the_results_folder_should_be(tmp_path):
    config = toy_config(tmp_path)
    (tmp_path / "file").write_text("")
    for results in (tmp_path / "file", tmp_path / "file" / "below"):
        one_error_line(toy_run(config, results),
                       f"{tmp_path}/file is a file, not a folder; choose another folder "
                       f"with --results")


@needs_mount_ns
def test_disk_fills_up_mid_grid_then_the_rerun_resumes_exactly(tmp_path, mnt):
    config = toy_config(tmp_path, epochs=10, seeds="[0, 1]")  # 4 runs
    reference = tmp_path / "reference"
    assert toy_run(config, reference).returncode == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    mnt.tmpfs(disk, "2m")
    results = disk / "results"
    seen = mnt.path(results)  # the tmpfs, from here
    grid = mnt.popen(toy_cmd(config, results), cwd=REPO, text=True,
                     env=dict(os.environ, TOY_EPOCH_SECONDS="0.05"),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (os.path.isdir(os.path.join(seen, "toy")) and any(
                os.path.exists(os.path.join(d, "curves.csv")) and len(curves(d)) >= 2
                for d in run_dirs(seen).values())):
            assert grid.poll() is None and time.time() < deadline, grid.communicate()
            time.sleep(0.01)
        fill(mnt.path(disk / "filler"))
        out, err = grid.communicate(timeout=60)
    finally:
        if grid.poll() is None:
            grid.kill()
    one_error_line(subprocess.CompletedProcess(grid.args, grid.returncode, out, err),
                   f"{results}: no space left on its device; free some space or choose "
                   f"another folder with --results, then run the same command again")
    assert leftovers(seen) == []  # no temp file, no claim
    partial = {rid: d for rid, d in run_dirs(seen).items()
               if os.path.exists(os.path.join(d, "status.json"))}
    assert partial and len(partial) < 4
    for run_dir in partial.values():  # every file whole, no run blamed for the disk
        assert status(run_dir)["state"] in ("running", "finished")
        if os.path.exists(os.path.join(run_dir, "curves.csv")):
            curves(run_dir)  # parses, or raises
    os.remove(mnt.path(disk / "filler"))
    again = mnt.run(toy_cmd(config, results), cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    expected = {rid: curves(d) for rid, d in run_dirs(reference).items()}
    assert {rid: curves(d) for rid, d in run_dirs(seen).items()} == expected
    trainings = [status(d)["trainings"] for d in run_dirs(seen).values()]
    assert sorted(trainings)[-1] == 2 and trainings.count(1) >= 2  # resumed, once
    assert leftovers(seen) == []


@needs_mount_ns
def test_read_only_results_folder_changes_nothing(tmp_path, mnt):
    config = toy_config(tmp_path, epochs=3)
    results = tmp_path / "results"
    assert toy_run(config, results, "--only", "updater=adam").returncode == 0
    before = {p: open(p, "rb").read() for p in _files(results)}
    mnt.read_only(results)
    blocked = mnt.run(toy_cmd(config, results), cwd=REPO, capture_output=True, text=True)
    one_error_line(blocked, f"{results}: read-only file system; choose a writable folder "
                            f"with --results")
    assert {p: open(p, "rb").read() for p in _files(mnt.path(results))} == {
        mnt.path(p): data for p, data in before.items()}
    reference = tmp_path / "reference"
    assert toy_run(config, reference).returncode == 0
    assert toy_run(config, results).returncode == 0  # writable here: it goes on
    for rid, run_dir in run_dirs(results).items():
        assert curves(run_dir) == curves(reference / "toy" / rid)
        assert status(run_dir)["trainings"] == 1


def _files(folder):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs)


@pytest.mark.skipif(NO_SETPRIV is not None, reason=f"cannot drop root's rights: {NO_SETPRIV}")
def test_results_folder_without_permission(tmp_path):
    config = toy_config(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)  # whatever the umask
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    result = subprocess.run(as_user + toy_cmd(config, locked), cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    one_error_line(result, f"{locked}: permission denied; choose a folder you may write "
                           f"with --results")
    assert os.listdir(locked) == []


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """A finished toy grid (both updaters, two seeds) to draw and report on."""
    tmp = tmp_path_factory.mktemp("grid")
    config = toy_config(tmp, epochs=3, seeds="[0, 1]")
    assert toy_run(config, tmp / "results").returncode == 0
    return tmp / "results" / "toy"


def _tool(name, *args, ns=None):
    cmd = [sys.executable, os.path.join(REPO, "scripts", f"{name}.py"), *map(str, args)]
    cmd += ["--quiet"] if name == "plot" else []  # no progress bar around the line
    if ns is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    return ns.run(cmd, capture_output=True, text=True, cwd=REPO)


@needs_mount_ns
@pytest.mark.parametrize("tool", ["report", "plot"])
def test_report_and_plot_on_a_read_only_results_folder(finished_grid, tmp_path, mnt, tool):
    mnt.read_only(finished_grid)
    out = finished_grid if tool == "report" else finished_grid / "figures"
    one_error_line(_tool(tool, finished_grid, ns=mnt),
                   f"{out}: read-only file system; choose a writable folder with --out")
    elsewhere = tmp_path / "elsewhere"
    target = elsewhere / "report.md" if tool == "report" else elsewhere
    done = _tool(tool, finished_grid, "--out", target, ns=mnt)
    assert done.returncode == 0, done.stderr
    assert os.path.isfile(target) if tool == "report" else len(os.listdir(elsewhere)) > 2


@needs_mount_ns
@pytest.mark.parametrize("tool", ["report", "plot"])
def test_report_and_plot_on_a_full_disk(finished_grid, tmp_path, mnt, tool):
    disk = tmp_path / "disk"
    disk.mkdir()
    mnt.tmpfs(disk, "8m")  # room for every figure once the filler is gone
    fill(mnt.path(disk / "filler"))
    out = disk / "out"
    target = out / "report.md" if tool == "report" else out
    one_error_line(_tool(tool, finished_grid, "--out", target, ns=mnt),
                   f"{out}: no space left on its device; free some space or choose another "
                   f"folder with --out, then run the same command again")
    assert leftovers(mnt.path(disk)) == []
    os.remove(mnt.path(disk / "filler"))
    done = _tool(tool, finished_grid, "--out", target, ns=mnt)
    assert done.returncode == 0, done.stderr
    assert leftovers(mnt.path(disk)) == []
    if tool == "report":
        assert json.dumps(open(mnt.path(target)).read()).count("AMSGrad") > 0
