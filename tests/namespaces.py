"""Linux namespaces for the fault tests (as root, util-linux's unshare/nsenter).

A :class:`Namespace` is held open by a sleeping process; commands run in it with
``nsenter``. A private *mount* namespace gets a small tmpfs that fills up, or a
read-only bind mount (chmod does not stop root); its files stay reachable from the
test through ``/proc/<holder>/root``. A private *network* namespace has only its own
loopback: a Ray cluster there can talk to nothing else.
"""
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
            self.run(["ip", "link", "set", "lo", "up"], check=True)

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
