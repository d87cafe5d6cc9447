"""Downloads against a loopback HTTP server: verification, retries, atomic placement."""
import gzip
import http.server
import io
import os
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from experiments.data import cifar10, download
from experiments.data import mnist as mnist_files
from experiments.data import loading as data

from experiments.data import DataError, load_dataset
from experiments.results.faults import StorageError

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
MNIST = REAL / "mnist"
pytestmark = pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"real data not found in {REAL}")
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files[path]``; ``plan[path]`` lists how to answer successive requests
    ('ok', 'corrupt', 'cut', '500', '404'; the last one repeats)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.plan, self.hits = {}, {}, {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        n = srv.hits.get(self.path, 0)
        srv.hits[self.path] = n + 1
        plan = srv.plan.get(self.path, ["ok"])
        mode = plan[min(n, len(plan) - 1)]
        if mode in ("500", "404") or self.path not in srv.files:
            self.send_error(404 if mode == "404" or self.path not in srv.files else 500)
            return
        body = srv.files[self.path]
        if mode == "corrupt":  # a valid gzip of the wrong bytes: only the md5 can tell
            raw = bytearray(gzip.decompress(body))
            raw[-1] ^= 1
            body = gzip.compress(bytes(raw), 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # 'cut': announce the full length, send half, close the connection
        self.wfile.write(body[:len(body) // 2] if mode == "cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    srv = Server()
    for name in NAMES:
        srv.files[f"/mnist/{name}"] = (MNIST / name).read_bytes()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(download, "BACKOFF", 0.001)
    monkeypatch.setattr(download, "TIMEOUT", 5.0)
    monkeypatch.setattr(mnist_files, "MNIST_MIRRORS", (srv.url + "/mnist/",))
    monkeypatch.delenv("AMSGRAD_MNIST_MIRRORS", raising=False)
    monkeypatch.delenv("AMSGRAD_CIFAR10_URL", raising=False)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def reference():
    return load_dataset("mnist", REAL, download=False)


def leftovers(root):
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_mnist_download_into_empty_dir(tmp_path, server, reference):
    d = load_dataset("mnist", tmp_path / "new", quiet=True)
    np.testing.assert_array_equal(d.x_val, reference.x_val)
    np.testing.assert_array_equal(d.y_train, reference.y_train)
    assert leftovers(tmp_path) == sorted(NAMES)  # in <data_dir>/mnist, no temp files
    for name in NAMES:
        assert (tmp_path / "new" / "mnist" / name).read_bytes() == (MNIST / name).read_bytes()
    # a second load uses the files: no new requests
    hits = dict(server.hits)
    load_dataset("mnist", tmp_path / "new", quiet=True)
    assert server.hits == hits == {f"/mnist/{n}": 1 for n in NAMES}


def test_stale_temporaries_are_swept(tmp_path, server):
    folder = tmp_path / "mnist"
    folder.mkdir()
    old, fresh = folder / f".{NAMES[0]}.1.ab.part", folder / f".{NAMES[0]}.2.cd.part"
    old.write_bytes(b"left by a killed process")
    fresh.write_bytes(b"another process, still downloading")
    os.utime(old, (1e9, 1e9))
    load_dataset("mnist", tmp_path, quiet=True)
    assert not old.exists() and fresh.exists()


def test_mirrors_from_environment_skip_a_dead_one(tmp_path, server, monkeypatch):
    monkeypatch.setenv("AMSGRAD_MNIST_MIRRORS", f"{server.url}/gone, {server.url}/mnist")
    load_dataset("mnist", tmp_path, quiet=True)
    # 404 is permanent: the dead mirror is asked once per file, not retried
    assert server.hits[f"/gone/{NAMES[0]}"] == 1 and server.hits[f"/mnist/{NAMES[0]}"] == 1


@pytest.mark.parametrize("plan", [["cut", "ok"], ["500", "ok"], ["corrupt", "ok"]])
def test_one_failure_then_success(tmp_path, server, plan):
    server.plan[f"/mnist/{NAMES[0]}"] = plan
    assert load_dataset("mnist", tmp_path, quiet=True).x_train.shape == (50000, 1, 28, 28)
    assert server.hits[f"/mnist/{NAMES[0]}"] == 2
    assert leftovers(tmp_path) == sorted(NAMES)


@pytest.mark.parametrize("mode, reason", [
    ("corrupt", "md5 of the uncompressed data is .*, expected 6bbc9ace898e44ae57da46a324031adb"),
    ("cut", r"incomplete transfer \(\d+ of \d+ bytes\)"),
    ("500", "HTTP 500"),
], ids=["corrupt", "cut", "500"])
def test_persistent_failure_leaves_nothing(tmp_path, server, mode, reason):
    server.plan[f"/mnist/{NAMES[0]}"] = [mode]
    with pytest.raises(DataError, match=reason) as e:
        load_dataset("mnist", tmp_path, quiet=True)
    msg = str(e.value)
    assert NAMES[0] in msg and "--data-dir" in msg and "\n" not in msg
    assert server.hits[f"/mnist/{NAMES[0]}"] == download.ATTEMPTS  # retried
    assert leftovers(tmp_path) == []


def test_offline(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(download, "BACKOFF", 0.001)
    monkeypatch.setenv("AMSGRAD_MNIST_MIRRORS", f"http://127.0.0.1:{port}/")
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path, quiet=True)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz not found" in msg and "refused" in msg
    assert "--data-dir" in msg and "\n" not in msg
    assert leftovers(tmp_path) == []


def test_no_download_means_no_request(tmp_path, server):
    with pytest.raises(DataError, match="downloads disabled"):
        load_dataset("mnist", tmp_path, download=False)
    assert server.hits == {}


def test_target_folder_cannot_be_made(tmp_path, server):
    (tmp_path / "mnist").write_text("not a folder")
    with pytest.raises(StorageError) as info:  # the folder's fault: one line, no retry
        load_dataset("mnist", tmp_path, quiet=True)
    assert str(info.value) == (f"{tmp_path}/mnist is a file, not a folder; choose another "
                               f"folder with --data-dir (or AMSGRAD_DATA_DIR)")
    assert server.hits == {}


# -- CIFAR-10 archive -----------------------------------------------------------------

class Link:
    def __init__(self, type):
        self.type = type


def make_archive(members):
    """A .tar.gz in memory from (name, file content or ``Link(tar type)``) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if not isinstance(content, Link):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.type, info.linkname = content.type, "/etc/passwd"
                tar.addfile(info)
    return buf.getvalue()


BATCHES = [(f"cifar-10-batches-py/{n}", n.encode() * 3) for n in cifar10.CIFAR10_BATCHES]


def test_cifar_archive_download_and_extract(tmp_path, server, monkeypatch):
    archive = make_archive(BATCHES)
    server.files["/cifar.tgz"] = archive
    monkeypatch.setenv("AMSGRAD_CIFAR10_URL", server.url + "/cifar.tgz")
    # the official checksum rejects this archive: nothing kept, nothing extracted
    with pytest.raises(DataError, match=r"md5 .* is not the official c58f3010"):
        cifar10.cifar10_folder(tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", download.md5sum(archive))
    folder = cifar10.cifar10_folder(tmp_path, quiet=True)
    assert folder == tmp_path / "cifar-10-batches-py"
    for name, content in BATCHES:
        assert (tmp_path / name).read_bytes() == content
    assert leftovers(tmp_path) == sorted(["cifar-10-python.tar.gz", *cifar10.CIFAR10_BATCHES])
    assert cifar10.cifar10_folder(tmp_path) == folder and server.hits["/cifar.tgz"] == 4


def test_hostile_archive_writes_only_inside_the_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_archive(BATCHES + [
        ("../evil", b"x"), ("cifar-10-batches-py/../evil", b"x"), ("/tmp/evil-abs", b"x"),
        ("cifar-10-batches-py/sub/x", b"x"), ("cifar-10-batches-py/link", Link(tarfile.SYMTYPE)),
        ("cifar-10-batches-py/hard", Link(tarfile.LNKTYPE)), ("./cifar-10-batches-py/extra", b"ok"),
    ]))
    (tmp_path / "out").mkdir()
    names = download.extract_folder(archive, "cifar-10-batches-py", tmp_path / "out")
    assert sorted(names) == sorted([*cifar10.CIFAR10_BATCHES, "extra"])
    assert leftovers(tmp_path / "out") == sorted(names)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-abs").exists()


def test_truncated_local_archive(tmp_path, monkeypatch):
    archive = make_archive(BATCHES)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive[:len(archive) // 2])
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", None)  # reach the extraction itself
    with pytest.raises(DataError, match="cannot extract .*cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path, download=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


def test_archive_without_the_batches(tmp_path, monkeypatch):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(make_archive(BATCHES[:3]))
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", None)
    with pytest.raises(DataError, match="no cifar-10-batches-py/data_batch_4 in the archive"):
        load_dataset("cifar10", tmp_path, download=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]
