"""Claims: at most one live process trains a run, across processes and hosts.

A run is claimed by creating its lock file with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFSv3+): whoever creates it owns the run. The file holds JSON::

    {"pid": 4242, "host": "gpu-3", "pidns": "pid:[4026531836]", "token": "9f0c...",
     "started": 1718000000.0, "heartbeat": 1718000042.5}

The owner keeps the file open and a daemon thread rewrites it in place every
``heartbeat`` seconds (content and mtime). A claim is *stale*, and may be taken over,
when its owner is on this host (same host name and pid namespace) and its pid is dead,
or when its heartbeat is older than ``stale_after`` seconds (any host: clocks must
agree to within a fraction of that).

Takeovers of the claims in one folder take turns under an ``flock`` of the folder,
and each re-reads the claim there: one that judged a claim stale before another
process replaced it sees the fresh claim instead, and leaves it alone (without the
lock, that late process moved the fresh claim away, and two processes held the run
until the first :meth:`Claim.verify`). The stale file is renamed to a private name
(only one rename of a given file can succeed; the safeguard where ``flock`` is not
available), checked to be the claim judged stale (else put back) and deleted; the
taker then competes for a fresh ``O_EXCL`` create like everyone else. An owner holds its
claim for as long as the claim path is its file (same inode): :meth:`Claim.verify` checks
that before every write of the run (see :class:`experiments.results.store.RunStore`), so a
process that lost its claim, e.g. after being frozen past ``stale_after``, raises
:class:`ClaimLost` instead of writing.
"""
import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid

HEARTBEAT = 15.0     # seconds between heartbeats
STALE_AFTER = 180.0  # a heartbeat older than this is a dead owner (> NFS attribute caching)
_RECORD_SIZE = 512   # fixed-size record: an in-place rewrite never leaves a longer tail
_UNFINISHED = 5.0    # a claim still unreadable this long after its last write was abandoned

__all__ = ["Claim", "ClaimLost", "acquire", "outlive", "read_claim", "stale_reason",
           "HEARTBEAT", "STALE_AFTER"]


class ClaimLost(RuntimeError):
    """This process no longer owns the run: another process took the claim over."""


def _pidns():
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid):
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; go by heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def read_claim(path):
    """The claim at ``path`` as a dict (``pid``, ``host``, ``pidns``, ``token``,
    ``started``, ``heartbeat``, ``age`` in seconds, ``ino``), or ``None`` if there is none.

    A file that does not parse (being created right now, or damaged) gives a dict with
    only ``age`` (from its mtime) and ``ino``.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
        beat = float(info.get("heartbeat") or 0)
    except (ValueError, TypeError, AttributeError):  # not (yet) a whole claim
        info, beat = {}, 0.0
    # The freshest sign of life: the heartbeat in the file, or its mtime.
    beat = max(st.st_mtime, beat)
    info.update(age=max(time.time() - beat, 0.0), ino=st.st_ino)
    return info


def stale_reason(info, stale_after=STALE_AFTER):
    """Why the claim ``info`` (from :func:`read_claim`) is stale, or ``None`` if it is live."""
    if info.get("host") == socket.gethostname() and info.get("pidns") == _pidns() \
            and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"]):
            return f"its owner, process {info['pid']}, is dead"
        if info["pid"] == os.getpid() and info.get("token") not in Claim._held:
            return "it was left by an earlier claim of this process"
    if info["age"] > stale_after:
        return f"its heartbeat is {info['age']:.0f} s old"
    if "token" not in info and info["age"] > _UNFINISHED:  # its creator died writing it
        return f"it is unreadable and {info['age']:.0f} s old"
    return None


def _record(info):
    text = json.dumps(info)
    if len(text) >= _RECORD_SIZE:
        raise ValueError("claim record too long")
    return (text + " " * (_RECORD_SIZE - 1 - len(text)) + "\n").encode("utf-8")


class Claim:
    """A claim this process holds; use as a context manager or call :meth:`release`."""

    _held = set()  # tokens held by this process

    def __init__(self, path, fd, info, heartbeat):
        self.path, self.info = path, info
        self._fd, self._ino = fd, os.fstat(fd).st_ino
        self._lost = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        if heartbeat:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat,),
                                            name=f"claim {path}", daemon=True)
            self._thread.start()

    def __repr__(self):
        return f"Claim({self.path!r}, pid={self.info['pid']}, host={self.info['host']!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    @property
    def lost(self):
        """Whether the claim was found taken over (by the last check)."""
        return self._lost

    def owned(self):
        """Check now whether the claim path is still this claim's file."""
        if self._lost or self._fd is None:
            return False
        for _ in range(5):  # a takeover that puts our file back leaves a short gap
            try:
                self._lost = os.stat(self.path).st_ino != self._ino
                return not self._lost
            except FileNotFoundError:
                time.sleep(0.02)
        self._lost = True
        return False

    def verify(self):
        """Raise :class:`ClaimLost` unless this process still owns the claim."""
        if not self.owned():
            now = read_claim(self.path)
            who = f" (now {now.get('host')}:{now.get('pid')})" if now and "pid" in now else ""
            raise ClaimLost(f"{self.path}: claim taken over by another process{who}")

    def beat(self):
        """Refresh the heartbeat now (content and mtime); returns whether still owned."""
        with self._lock:
            if not self.owned():
                return False
            self.info["heartbeat"] = time.time()
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, _record(self.info))  # same size: an in-place overwrite
            os.fsync(self._fd)
            return True

    def _beat(self, interval):
        while not self._stop.wait(interval):
            try:
                if not self.beat():
                    return
            except OSError:
                pass  # e.g. a full disk or a hiccup of a network file system: try again

    def release(self):
        """Stop the heartbeat and remove the claim file (if it is still ours)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._fd is None:
                return
            try:
                if self.owned():
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            finally:
                os.close(self._fd)
                self._fd = None
                Claim._held.discard(self.info["token"])


def _create(path, info):
    """``O_EXCL``-create the claim file; the open descriptor, or ``None`` if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, _record(info))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)  # e.g. disk full: leave no empty claim behind
        raise
    return fd


@contextlib.contextmanager
def _takeover_lock(path):
    """Hold an exclusive ``flock`` of the folder of ``path`` (where the file system
    offers none, go on unlocked: :func:`_remove_stale` still checks the inode)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale(path, seen):
    """Remove the stale claim ``seen`` (from :func:`read_claim`) if it is still there."""
    grave = f"{path}.{uuid.uuid4().hex}.stale"
    try:
        os.rename(path, grave)  # atomic: only one process moves a given file away
    except FileNotFoundError:
        return
    moved = read_claim(grave)
    if moved is not None and moved["ino"] != seen["ino"]:
        # Someone took over first and we moved their fresh claim: put it back.
        try:
            os.link(grave, path)
        except FileExistsError:
            pass  # a third process claimed meanwhile; the moved owner finds out on verify
        except OSError:
            os.rename(grave, path)  # no hard links here; the gap was a few microseconds
            return
    os.unlink(grave)


def acquire(path, stale_after=STALE_AFTER, heartbeat=HEARTBEAT, on_takeover=None):
    """Claim ``path``; returns a :class:`Claim`, or ``None`` if a live process holds it.

    Parameters
    ----------
    path : str
        The lock file; its folder must exist.
    stale_after : float
        Seconds without a heartbeat after which any claim is stale.
    heartbeat : float or None
        Seconds between heartbeats (``None``: no heartbeat thread).
    on_takeover : callable, optional
        Called with the stale claim's info and the reason before it is taken over.
    """
    path = os.fspath(path)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "pidns": _pidns(),
            "token": uuid.uuid4().hex, "started": time.time()}
    info["heartbeat"] = info["started"]
    Claim._held.add(info["token"])  # before the file exists: ours even while being made
    try:
        fd = None
        for _ in range(10):
            fd = _create(path, info)
            if fd is not None:
                return Claim(path, fd, info, heartbeat)
            seen = read_claim(path)
            if seen is None:
                continue  # released in the meantime
            reason = stale_reason(seen, stale_after)
            if reason is None:
                return None
            with _takeover_lock(path):
                now = read_claim(path)
                if now is None or now["ino"] != seen["ino"]:
                    continue  # replaced meanwhile: look again
                if stale_reason(now, stale_after) is None:
                    return None
                if on_takeover is not None:
                    on_takeover(seen, reason)
                _remove_stale(path, now)
        return None  # contended all along: leave the run to the others
    finally:
        if fd is None:
            Claim._held.discard(info["token"])


def outlive(path, stale_after=STALE_AFTER, poll=1.0):
    """Watch the claim at ``path`` until its owner shows it is alive, or it may be taken.

    Returns ``False`` as soon as the owner refreshes it (a live owner does so every
    heartbeat: leave the run to it), ``True`` once it is gone, replaced or stale (claim
    it now). So the wait for a live owner is at most a heartbeat, and a claim whose owner
    died where its pid cannot be checked (another host) is waited out until it is stale.
    """
    first = read_claim(path)
    while first is not None:
        time.sleep(poll)
        now = read_claim(path)
        if now is None or now["ino"] != first["ino"] or stale_reason(now, stale_after):
            break
        if now.get("heartbeat") != first.get("heartbeat"):
            return False
    return True
