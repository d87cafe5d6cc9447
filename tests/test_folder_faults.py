"""Faults of the folders a grid writes besides its results: the data folder a download
goes into (``--data-dir`` / ``AMSGRAD_DATA_DIR``) and Theano's compile cache
(``AMSGRAD_CACHE_DIR``). Each is one line naming the folder and what moves it, exit
status 3, nothing trained, as a fault of the results folder is
(tests/test_storage_faults.py). Root writes a mode-0555 folder, so a full or read-only
folder is made in a private mount namespace (tests/namespaces.py), and a file where the
folder should be stands for the rest.
"""
import os
import subprocess
import sys
import threading

import pytest

from namespaces import Namespace
from test_storage_faults import NO_MOUNT_NS, needs_mount_ns, one_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_grid.py")
SMOKE = os.path.join(REPO, "configs", "smoke.yaml")
DATA = "--data-dir (or AMSGRAD_DATA_DIR)"


def grid(results, *args, env=None, ns=None):
    """run_grid.py on smoke.yaml (MNIST): its result, in ``ns`` if given."""
    cmd = [sys.executable, SCRIPT, SMOKE, "--results", str(results), "--quiet", *args]
    run = ns.run if ns is not None else subprocess.run
    return run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
               env=dict(os.environ, **(env or {})))


def test_a_file_where_the_data_folder_should_be(tmp_path):
    (tmp_path / "file").write_text("")
    line = f"{tmp_path}/file is a file, not a folder; choose another folder with {DATA}"
    for data_dir in (tmp_path / "file", tmp_path / "file" / "below"):
        one_error_line(grid(tmp_path / "r", "--data-dir", data_dir), line)
        one_error_line(grid(tmp_path / "r", env={"AMSGRAD_DATA_DIR": str(data_dir)}), line)
    assert not (tmp_path / "r").exists()  # the data is loaded before anything is written


@pytest.fixture
def mirror():
    """MNIST served on 127.0.0.1 (tests/test_download.py's server): the mirror the
    command downloads from, in a namespace too (it shares this network)."""
    from test_download import MNIST, NAMES, Server
    if not (MNIST / NAMES[0]).is_file():
        pytest.skip(f"real data not found in {MNIST}")
    server = Server()
    for name in NAMES:
        server.files[f"/mnist/{name}"] = (MNIST / name).read_bytes()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def mnt():
    with Namespace("mnt") as ns:
        yield ns


@needs_mount_ns
def test_a_full_data_folder_is_one_line_and_not_retried(tmp_path, mirror, mnt):
    data = tmp_path / "data"
    data.mkdir()
    mnt.tmpfs(data, "1m")  # MNIST's training images are 9.9 MB
    env = {"AMSGRAD_MNIST_MIRRORS": f"{mirror.url}/mnist/"}
    one_error_line(grid(tmp_path / "r", "--data-dir", data, env=env, ns=mnt),
                   f"{data}: no space left on its device; free some space or choose another "
                   f"folder with {DATA}, then run the same command again")
    assert sum(mirror.hits.values()) == 1  # the disk's fault, not the mirror's
    assert os.listdir(mnt.path(data / "mnist")) == []  # no partial download left
    assert not (tmp_path / "r").exists()


@needs_mount_ns
def test_a_read_only_data_folder_is_one_line(tmp_path, mirror, mnt):
    data = tmp_path / "data"
    data.mkdir()
    mnt.read_only(data)
    env = {"AMSGRAD_MNIST_MIRRORS": f"{mirror.url}/mnist/"}
    one_error_line(grid(tmp_path / "r", env=dict(env, AMSGRAD_DATA_DIR=str(data)), ns=mnt),
                   f"{data}: read-only file system; choose a writable folder with {DATA}")
    assert mirror.hits == {}  # nothing asked of the mirror
    assert not (tmp_path / "r").exists()


def _without_theano_flags(**env):
    base = {k: v for k, v in os.environ.items() if k != "THEANO_FLAGS"}
    return dict(base, THEANORC=os.devnull, PYTHONPATH=REPO, **env)


def test_the_compile_cache_is_checked_before_theano_imports(tmp_path):
    # in any environment: the cache is probed before `import theano` (which the modern
    # environment then lacks); a file where it should be is the fault here
    (tmp_path / "file").write_text("")
    code = ("from experiments.results.faults import StorageError\n"
            "try:\n    import experiments.engines.theano_env\n"
            "except StorageError as e:\n    print(e)\n"
            "except ImportError:\n    print('imported on')\n"  # no Theano here
            "else:\n    print('imported on')\n")
    for env, line in (
            ({"AMSGRAD_CACHE_DIR": str(tmp_path / "file")},
             f"{tmp_path}/file is a file, not a folder; choose another folder with "
             f"AMSGRAD_CACHE_DIR"),
            ({"THEANO_FLAGS": f"base_compiledir={tmp_path / 'file'}"},
             f"{tmp_path}/file is a file, not a folder; choose another folder with "
             f"base_compiledir in THEANO_FLAGS"),
            ({"AMSGRAD_CACHE_DIR": str(tmp_path / "cache")}, "imported on")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=_without_theano_flags(**env), cwd=tmp_path)
        assert done.stdout.strip() == line, done.stderr
    assert (tmp_path / "cache" / "theano").is_dir()  # made when it can be


def _theano_grid(tmp_path, cache, ns=None):
    cmd = [sys.executable, SCRIPT, SMOKE, "--results", str(tmp_path / "r"), "--quiet",
           "--engine", "theano", "--only", "seed=0"]
    run = ns.run if ns is not None else subprocess.run
    return run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
               env=_without_theano_flags(AMSGRAD_CACHE_DIR=str(cache)))


@pytest.mark.theano
def test_a_theano_grid_with_its_compile_cache_in_the_way_trains_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    one_error_line(_theano_grid(tmp_path, tmp_path / "file"),
                   f"{tmp_path}/file is a file, not a folder; choose another folder with "
                   f"AMSGRAD_CACHE_DIR")
    assert not (tmp_path / "r").exists()  # said before any run is claimed


@pytest.mark.theano
@pytest.mark.skipif(NO_MOUNT_NS is not None, reason=f"no mount namespace: {NO_MOUNT_NS}")
def test_a_read_only_compile_cache_is_one_line(tmp_path, mnt):
    cache = tmp_path / "cache"
    (cache / "theano").mkdir(parents=True)
    mnt.read_only(cache)
    one_error_line(_theano_grid(tmp_path, cache, ns=mnt),
                   f"{cache}/theano: read-only file system; choose a writable folder with "
                   f"AMSGRAD_CACHE_DIR")
    assert not (tmp_path / "r").exists()
