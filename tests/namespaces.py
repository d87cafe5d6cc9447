"""Linux namespaces for the fault tests (as root, util-linux's unshare/nsenter).

A :class:`Namespace` is held open by a sleeping process; commands run in it with
``nsenter``. A private *mount* namespace gets a small tmpfs that fills up, or a
read-only bind mount (chmod does not stop root); its files stay reachable from the
test through ``/proc/<holder>/root``. A private *network* namespace has only its own
loopback: a Ray cluster there can talk to nothing else. :func:`listening` says where
processes accept connections (:func:`assert_on_loopback`: only on 127.0.0.0/8).
"""
import ipaddress
import os
import shutil
import signal
import subprocess
import time

_FLAGS = {"mnt": "-m", "net": "-n"}


def unavailable(*command):
    """Why ``command`` (e.g. ``unshare -m true``) cannot run here, or None if it can."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not installed"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError as e:
        return f"{' '.join(command)}: {e}"
    if result.returncode != 0:
        return f"{' '.join(command)} fails here: {result.stderr.strip()[:200]}"
    return None


def _ns(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


class Namespace:
    """A new namespace of ``kind`` ('mnt' or 'net'); :meth:`close` kills everything in it."""

    def __init__(self, kind):
        self.kind = kind
        self.holder = subprocess.Popen(["unshare", _FLAGS[kind], "sleep", "3600"],
                                       start_new_session=True)
        self.pid = self.holder.pid
        deadline = time.time() + 10
        while _ns(self.pid, kind) == _ns("self", kind):  # unshare has not run yet
            if time.time() > deadline or self.holder.poll() is not None:
                self.close()
                raise RuntimeError(f"unshare {_FLAGS[kind]} did not make a namespace")
            time.sleep(0.01)
        self.id = _ns(self.pid, kind)
        if kind == "net":  # a new network namespace starts with lo down
            try:
                self.run(["ip", "link", "set", "lo", "up"], check=True)
            except BaseException:
                self.close()
                raise

    def command(self, cmd):
        """``cmd`` run inside the namespace."""
        return ["nsenter", "-t", str(self.pid), _FLAGS[self.kind], "--", *map(str, cmd)]

    def run(self, cmd, **kwargs):
        kwargs.setdefault("timeout", 300)
        return subprocess.run(self.command(cmd), **kwargs)

    def popen(self, cmd, **kwargs):
        return subprocess.Popen(self.command(cmd), **kwargs)

    def path(self, path):
        """``path`` as the namespace sees it (its mounts), seen from here."""
        return f"/proc/{self.pid}/root{os.path.abspath(path)}"

    def tmpfs(self, folder, size):
        """Mount a tmpfs of ``size`` (e.g. '1m') on ``folder``, in the namespace only."""
        self.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], check=True)

    def read_only(self, folder):
        """Make ``folder`` read-only in the namespace (a read-only bind mount on itself)."""
        self.run(["mount", "--bind", folder, folder], check=True)
        self.run(["mount", "-o", "remount,bind,ro", folder], check=True)

    def members(self):
        """The pids of every process in the namespace (the holder included)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/{self.kind}") == self.id:
                        pids.append(int(entry))
                except OSError:
                    pass  # gone meanwhile, or not ours to read
        return pids

    def close(self):
        """SIGKILL every process in the namespace (so it ends) and reap the holder."""
        for _ in range(100):
            pids = [p for p in self.members() if p != self.pid] if hasattr(self, "id") else []
            if self.holder.poll() is None:
                pids.append(self.pid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.holder.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _address(hex_address):
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)  # /proc/net/tcp*: 32-bit words in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return (getattr(ip, "ipv4_mapped", None) or ip), int(port, 16)


def listening(pids):
    """``[(ip, port)]``: the TCP sockets the processes ``pids`` listen on, and their
    bound UDP sockets (read from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass  # ended meanwhile
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pids[0]}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and (fields[3] == "0A" or table.startswith("udp")):
                    found.append(_address(fields[1]))
    return found


def assert_on_loopback(pids):
    """Every socket the processes ``pids`` listen on is bound to 127.0.0.0/8."""
    sockets = listening(pids)
    assert sockets, "no listening sockets found"
    assert [s for s in sockets if not s[0].is_loopback] == []


def descendants(pid):
    """``pid`` and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found
