"""Fetch a file from a list of mirrors, verify it, and move it into place atomically.

A download goes into a temporary file beside its target, is checked (byte count and
a caller-supplied verification, e.g. an md5), then renamed over the target with
``os.replace``. A partial or corrupt download is deleted and never seen under the
target name, so a crash or a bad mirror cannot leave a file that later looks valid.
Archives are extracted the same way: into a temporary directory, then renamed.
"""
import hashlib
import http.client
import os
import secrets
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from experiments.results import faults

#: Rounds over the mirror list before giving up, and the pause before round k
#: (``BACKOFF * 2**(k-1)`` seconds). Tests make the backoff tiny.
ATTEMPTS = 3
BACKOFF = 1.0
#: Socket timeout per connection and read, in seconds.
TIMEOUT = 60.0
#: Temporary files untouched for this long (seconds) belong to a killed process.
STALE = 3600.0
CHUNK = 1 << 20


class DownloadError(Exception):
    """Every mirror failed; the message is one line with the last reason."""


class _BadCopy(Exception):
    """A download that arrived but is incomplete or fails verification."""


def one_line(exc):
    """``exc`` as a single line (URL errors may carry newlines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def md5sum(path_or_bytes):
    """Hex md5 of a file (read in chunks) or of a bytes object."""
    h = hashlib.md5()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        h.update(path_or_bytes)
        return h.hexdigest()
    with open(path_or_bytes, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(urls, target, verify=None, quiet=False):
    """Download ``target`` from the first of ``urls`` that delivers a good copy.

    Parameters
    ----------
    urls : sequence of str
        Mirrors of the same file, tried in order; the whole list is retried
        ``ATTEMPTS`` times with exponential backoff.
    target : path
        Final location; its directory is created. Never holds a partial file.
    verify : callable, optional
        ``verify(tmp_path)`` returns ``None`` if the download is good, else a short
        reason (e.g. a checksum mismatch); a bad copy counts as a failed attempt.
    quiet : bool
        No progress bar.

    Returns
    -------
    Path of the target.

    Raises
    ------
    DownloadError
        When no mirror delivered a good copy; names the last URL and reason.
    OSError
        A fault of the file system of ``target``'s folder (a full disk, a read-only
        folder, no permission, a file in the way: :func:`is_local_fault`): not the
        mirrors', so not retried.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target)
    urls = list(urls)
    if not urls:
        raise DownloadError(f"no download URL configured for {target.name}")
    dead = set()  # URLs that answered with a permanent HTTP error (e.g. 404)
    last = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF * 2 ** (attempt - 1))
        for url in urls:
            if url in dead:
                continue
            try:
                _fetch_once(url, target, verify, quiet)
                return target
            except urllib.error.HTTPError as e:
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    dead.add(url)
                last = f"{url}: HTTP {e.code} {one_line(e.reason)}"
            except (OSError, ValueError, http.client.HTTPException, _BadCopy) as e:
                if is_local_fault(e):
                    raise
                # URLError, timeouts, resets, malformed responses, bad copies
                last = f"{url}: {one_line(e)}"
        if len(dead) == len(urls):
            break
    raise DownloadError(f"could not download {target.name} ({last})")


def is_local_fault(error):
    """A fault of the file system written to (not of the network: urllib wraps those in
    ``URLError``, whose ``errno`` is None)."""
    return not isinstance(error, urllib.error.URLError) and faults.is_storage_fault(error)


def _fetch_once(url, target, verify, quiet):
    tmp = _temp_name(target)
    try:
        # O_EXCL: a fresh name of our own; mode 0o666 lets the umask decide, unlike mkstemp.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
                size = resp.headers.get("Content-Length")
                size = int(size) if size and size.isdigit() else None
                got = 0
                with tqdm(total=size, unit="B", unit_scale=True, desc=target.name,
                          disable=True if quiet else None, leave=False) as bar:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        out.write(block)
                        got += len(block)
                        bar.update(len(block))
            # http.client does not raise on a connection closed early: check the count.
            if size is not None and got != size:
                raise _BadCopy(f"incomplete transfer ({got} of {size} bytes)")
            out.flush()
            os.fsync(out.fileno())
        problem = verify(Path(tmp)) if verify is not None else None
        if problem:
            raise _BadCopy(problem)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _temp_name(target):
    """A hidden name beside ``target`` that no other process or attempt uses."""
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part"


def _sweep(target):
    """Remove temporaries of ``target`` left by a killed process (active ones keep
    their modification time fresh while data arrives)."""
    for stale in target.parent.glob(f".{target.name}.*.part"):
        try:
            if time.time() - stale.stat().st_mtime > STALE:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def extract_folder(archive, folder, dest_dir, required=()):
    """Extract the regular files of ``folder/`` in a tar archive to ``dest_dir/folder``.

    Only plain files directly inside ``folder`` are written, each by name through
    our own ``open`` (never ``tar.extract``), so links, devices and paths such as
    ``../x`` or ``/etc/x`` in a hostile archive cannot write outside the folder. The
    files go into a temporary directory renamed into place at the end; if the folder
    appeared meanwhile (another process), that one is kept.

    Returns the list of extracted file names. Raises ``tarfile.TarError``,
    ``OSError`` or ``EOFError`` for an unreadable archive, and ``tarfile.ReadError``
    if one of the ``required`` names is not in the folder (nothing is then kept).
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / folder
    _sweep(final)
    tmp = _temp_name(final)
    names = []
    tmp.mkdir()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                path = member.name
                while path.startswith("./"):
                    path = path[2:]
                head, _, name = path.partition("/")
                if (head != folder or not member.isfile() or not name or "/" in name
                        or name in (".", "..")):
                    continue
                src = tar.extractfile(member)
                with open(tmp / name, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                names.append(name)
        for name in required:
            if name not in names:
                raise tarfile.ReadError(f"no {folder}/{name} in the archive")
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names
