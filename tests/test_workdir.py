"""The workdir lease (`ssl_jax.runtime.workdir`): one live run per workdir; dead holders free it (at once on their
host, after expiry where no lock reaches); paths given relative, with ~, or as URLs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ssl_jax.runtime import workdir


def test_absolute_paths():
  assert workdir.absolute("runs/a") == os.path.join(os.getcwd(), "runs", "a")
  assert workdir.absolute("~/x") == os.path.join(os.path.expanduser("~"), "x")
  assert workdir.absolute("gs://bucket/run") == "gs://bucket/run"
  assert workdir.absolute("/abs/./path/../p") == "/abs/p"


def test_second_holder_is_refused_naming_the_first(tmp_path):
  first = workdir.Lease.acquire(str(tmp_path))
  with pytest.raises(workdir.Busy) as e:
    workdir.Lease.acquire(str(tmp_path))
  message = str(e.value)
  assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
  assert "command: " in message and "Nothing was written" in message and "another --workdir" in message
  first.release()
  record = json.loads((tmp_path / workdir.LEASE_FILE).read_text())
  assert record["pid"] == os.getpid() and record["released"] >= record["started"]
  workdir.Lease.acquire(str(tmp_path)).release()      # a released lease is free


def _holder_process(path, *extra):
  """A process that takes the lease of `path` and sleeps; returns it once the lease is written."""
  code = ("import sys, time; from ssl_jax.runtime import workdir; "
          f"workdir.Lease.acquire(sys.argv[1]{''.join(', ' + x for x in extra)}); print('held', flush=True); "
          "time.sleep(600)")
  proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_killed_holder_frees_the_workdir_at_once(tmp_path):
  proc = _holder_process(tmp_path)
  with pytest.raises(workdir.Busy, match=f"pid {proc.pid} "):
    workdir.Lease.acquire(str(tmp_path))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  said = []
  lease = workdir.Lease.acquire(str(tmp_path), log=said.append)    # the kernel dropped the dead process's lock
  assert len(said) == 1 and "its process has ended" in said[0] and f"pid {proc.pid} " in said[0]
  lease.release()


def _foreign(path, *, host="other-host", pid=12345, age=0.0, expire_s=300.0):
  now = time.time()
  (path / workdir.LEASE_FILE).write_text(json.dumps(dict(
      host=host, pid=pid, started=now - age - 60, heartbeat=now - age, command="python main.py --workdir=x",
      token="theirs", heartbeat_s=30.0, expire_s=expire_s)))


@pytest.mark.parametrize("locking", [True, False])
def test_another_hosts_fresh_lease_is_respected_and_an_expired_one_taken_over(tmp_path, locking):
  """On shared storage a lock may not reach the other host (NFS without locks), and object stores have none: the
  heartbeat decides. A fresh one refuses; one older than expire_s is taken over, and that is logged."""
  _foreign(tmp_path, age=10)
  with pytest.raises(workdir.Busy, match="pid 12345 on host other-host.*heartbeat 10 s ago"):
    workdir.Lease.acquire(str(tmp_path), locking=locking)
  _foreign(tmp_path, age=301)
  said = []
  lease = workdir.Lease.acquire(str(tmp_path), locking=locking, log=said.append)
  assert "its heartbeat is 301 s old" in said[0] and "other-host" in said[0]
  lease.release()


def test_without_locks_a_dead_process_on_this_host_frees_it(tmp_path):
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()                                          # a pid that no longer runs
  _foreign(tmp_path, host=socket.gethostname(), pid=proc.pid, age=1)
  said = []
  workdir.Lease.acquire(str(tmp_path), locking=False, log=said.append).release()
  assert "its process has ended" in said[0]


def test_heartbeat_renews_and_a_takeover_is_noticed(tmp_path):
  lease = workdir.Lease.acquire(str(tmp_path), locking=False, heartbeat_s=0.05, expire_s=1.0)
  first = json.loads((tmp_path / workdir.LEASE_FILE).read_text())["heartbeat"]
  time.sleep(0.3)
  assert json.loads((tmp_path / workdir.LEASE_FILE).read_text())["heartbeat"] > first
  lease.check()                                        # still ours
  (tmp_path / workdir.LEASE_FILE).write_bytes(b'{"host": "other-host", "pi')   # a writer caught half-way
  time.sleep(0.3)
  lease.check()                                        # not taken for a loss: the next beats look again
  _foreign(tmp_path)                                   # another run took it over (ours looked expired to it)
  time.sleep(0.3)
  with pytest.raises(workdir.Lost, match="taken over by another run .*pid 12345"):
    lease.check()
  lease.release()
  assert json.loads((tmp_path / workdir.LEASE_FILE).read_text())["token"] == "theirs"   # not overwritten
  assert not list(tmp_path.glob("*.tmp"))              # each beat was renamed into place


def test_a_file_system_without_locks_falls_back_to_heartbeats(tmp_path, monkeypatch):
  import errno
  import fcntl

  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

  monkeypatch.setattr(fcntl, "flock", no_locks)
  first = workdir.Lease.acquire(str(tmp_path))
  with pytest.raises(workdir.Busy, match=f"pid {os.getpid()} "):     # the fresh heartbeat of a live process
    workdir.Lease.acquire(str(tmp_path))
  first.release()


def test_lease_must_outlive_two_heartbeats(tmp_path):
  with pytest.raises(ValueError, match="two heartbeats"):
    workdir.Lease.acquire(str(tmp_path), heartbeat_s=10, expire_s=15)
