"""Claims: one owner per run, heartbeats, stale claims taken over exactly once."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.results import claims
from experiments.results.claims import ClaimLost, acquire, read_claim, stale_reason
from experiments.results.store import RunStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for(predicate, seconds=30.0):
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, "gave up waiting"
        time.sleep(0.01)


def _write_claim(path, age=0.0, **fields):
    info = {"pid": 1, "host": "elsewhere", "pidns": None, "token": "old",
            "started": time.time() - age, "heartbeat": time.time() - age, **fields}
    path.write_text(json.dumps(info))
    os.utime(path, (time.time() - age, time.time() - age))
    return info


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid is free
    return proc.pid


def test_claim_file_names_its_owner_and_excludes_others(tmp_path):
    path = tmp_path / "claim.json"
    with acquire(path, heartbeat=None) as claim:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["token"] == claim.info["token"] and info["heartbeat"] == info["started"]
        assert acquire(path, heartbeat=None) is None  # held by a live claim of ours
        assert stale_reason(read_claim(path)) is None
        claim.verify()
    assert not path.exists()
    again = acquire(path, heartbeat=None)
    assert again is not None and again.info["token"] != info["token"]
    again.release()
    again.release()  # twice is harmless


def test_heartbeat_refreshes_content_and_mtime(tmp_path):
    path = tmp_path / "claim.json"
    with acquire(path, heartbeat=0.02) as claim:
        os.utime(path, (1, 1))  # as if long silent
        first = json.loads(path.read_text())["heartbeat"]
        _wait_for(lambda: json.loads(path.read_text())["heartbeat"] > first)
        assert os.stat(path).st_mtime > 1000
        assert len(path.read_bytes()) == 512 and json.loads(path.read_text())["token"] \
            == claim.info["token"]


def test_dead_owner_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "claim.json"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from experiments.results.claims import acquire; "
         "c = acquire(sys.argv[1], heartbeat=None); print(c is not None, flush=True); "
         "time.sleep(60)", str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "True"
        assert acquire(path, heartbeat=None) is None  # alive: its claim stands
        seen = []
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        owner.stdout.close()
    claim = acquire(path, heartbeat=None, on_takeover=lambda info, why: seen.append((info, why)))
    assert claim is not None
    (info, why), = seen
    assert info["pid"] == owner.pid and why == f"its owner, process {owner.pid}, is dead"
    assert json.loads(path.read_text())["pid"] == os.getpid()
    claim.release()
    assert os.listdir(tmp_path) == []  # the stale file went too


@pytest.mark.parametrize("age, fields, stale", [
    (10, {}, False),                         # another host, recent heartbeat
    (500, {}, "its heartbeat is 500 s old"),  # another host, silent too long
    (1, {"host": socket.gethostname(), "pidns": claims._pidns()}, "is dead"),
])
def test_stale_rules(tmp_path, age, fields, stale):
    path = tmp_path / "claim.json"
    _write_claim(path, age=age, **dict(fields, pid=_dead_pid()))
    reason = stale_reason(read_claim(path), stale_after=180)
    assert (reason is None) if stale is False else (stale in reason)
    claim = acquire(path, stale_after=180, heartbeat=None)
    assert (claim is None) == (stale is False)
    if claim:
        claim.release()


def test_same_pid_in_another_pid_namespace_is_not_judged_by_pid(tmp_path):
    path = tmp_path / "claim.json"
    _write_claim(path, age=1, host=socket.gethostname(), pidns="pid:[other]", pid=_dead_pid())
    assert acquire(path, heartbeat=None) is None


def test_unreadable_claim_is_live_while_fresh_then_stale(tmp_path):
    path = tmp_path / "claim.json"
    path.write_text("")  # its creator is between create and write
    assert acquire(path, heartbeat=None) is None
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert stale_reason(read_claim(path)) == "it is unreadable and 60 s old"
    claim = acquire(path, heartbeat=None)
    assert claim is not None
    claim.release()


def test_a_taken_over_owner_can_no_longer_write(tmp_path):
    path = tmp_path / "run" / "claim.json"
    path.parent.mkdir()
    old = acquire(path, heartbeat=None)
    store = RunStore(path.parent, claim=old)
    store.write_status({"state": "running", "by": "old"})
    time.sleep(0.05)
    new = acquire(path, stale_after=0.01, heartbeat=None)  # old judged stale (e.g. frozen)
    assert new is not None
    assert not old.owned() and old.lost
    with pytest.raises(ClaimLost, match="taken over by another process"):
        store.write_status({"state": "failed", "by": "old"})
    with pytest.raises(ClaimLost):
        store.write_curves([])
    assert store.read_status() == {"state": "running", "by": "old"}
    assert not old.beat()  # its heartbeat stops instead of touching the new claim
    old.release()  # leaves the new owner's file alone
    assert json.loads(path.read_text())["token"] == new.info["token"]
    RunStore(path.parent, claim=new).write_status({"state": "running", "by": "new"})
    new.release()


RACER = """
import sys, time
from experiments.results.claims import acquire
path, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(start - time.time() - 0.02, 0))
while time.time() < start:
    pass
claim = acquire(path, stale_after=1000, heartbeat=None)
print("won" if claim else "lost", flush=True)
sys.stdin.read()  # the winner holds the claim until every racer has answered
if claim:
    claim.release()
"""


def test_racing_takeovers_of_one_stale_claim_have_one_winner(tmp_path):
    for round_ in range(3):
        path = tmp_path / f"claim{round_}.json"
        _write_claim(path, age=1, host=socket.gethostname(), pidns=claims._pidns(),
                     pid=_dead_pid())
        start = time.time() + 1.5  # every racer imports first, then all go at once
        racers = [subprocess.Popen([sys.executable, "-c", RACER, str(path), str(start)],
                                   cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
                  for _ in range(4)]
        results = [r.stdout.readline().strip() for r in racers]
        for r in racers:
            r.communicate(timeout=60)  # closes stdin: the winner releases
        assert sorted(results) == ["lost", "lost", "lost", "won"]
        assert not path.exists()
        assert os.listdir(tmp_path) == []  # no stale files left behind


def test_full_disk_while_claiming_leaves_no_claim(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(claims.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        acquire(tmp_path / "claim.json", heartbeat=None)
    assert os.listdir(tmp_path) == []


def test_outlive_tells_a_beating_owner_from_a_silent_one(tmp_path):
    path = tmp_path / "claim.json"
    with acquire(path, heartbeat=0.1):  # a live owner: its next beat ends the watch
        start = time.time()
        assert claims.outlive(path, stale_after=30, poll=0.02) is False
        assert time.time() - start < 5
    assert claims.outlive(path, stale_after=30, poll=0.02) is True  # released: none left
    _write_claim(path)  # an owner on another host that has stopped beating
    start = time.time()
    assert claims.outlive(path, stale_after=0.5, poll=0.02) is True
    assert 0.5 <= time.time() - start < 5
    assert stale_reason(read_claim(path), 0.5) == "its heartbeat is 1 s old"
