"""The run's directory: paths as the user gives them, and the lease that lets one live run write a workdir.

Paths. Every path a user passes (workdir, init_from, data directories, output files) may be relative, start with
`~`, or be an object-store URL (`gs://...`); `absolute` turns the local ones into absolute paths (Orbax refuses
relative ones) and leaves URLs alone.

The lease. Two runs writing one workdir (a second terminal, a scheduler that requeues a job whose first copy still
runs) would interleave their metrics and race on the same checkpoint steps. So a run takes `<workdir>/lease.json`
before it writes anything, and a second run on the same workdir is refused at once (`Busy`, naming the holder: host,
process id, start time, command). A holder that died must not lock the workdir forever:

* On a local file system the lease is an exclusive `flock` on that file, which the kernel drops when the holder's
  process ends, however it ends (kill -9 included): the next run takes the lease at once and logs whose it was.
* On shared storage where locks do not reach every host (NFS mounted without locking, object stores such as gs://,
  which have no locks at all) the lease is the file's content: the holder rewrites its `heartbeat` time every
  `heartbeat_s` seconds from a background thread, and a lease whose heartbeat is older than `expire_s` has expired;
  taking it over is logged. A holder that finds its lease taken over (it stalled past `expire_s`) learns it at its
  next `check()` and stops before writing another checkpoint (`Lost`). On object stores a lease is written, then read
  back after `settle_s` seconds: of two runs started within that window, the later writer holds it and the other is
  refused; runs started closer together than an object store's write-then-read can both start (no compare-and-swap
  through `etils.epath`).

With several processes only process 0 takes the lease (the caller broadcasts the outcome). A released lease stays
on disk, marked `released`, as the record of the last run.
"""

import datetime
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid

from etils import epath

LEASE_FILE = "lease.json"


def absolute(path: str | os.PathLike) -> str:
  """`path` as an absolute local path (`~` expanded, relative to the current directory), or unchanged if a URL."""
  path = os.fspath(path)
  if "://" in path:
    return path
  return os.path.abspath(os.path.expanduser(path))


class Busy(RuntimeError):
  """Another live run holds the workdir's lease."""


class Lost(RuntimeError):
  """This run's lease expired and another run took the workdir over."""


def _now() -> float:
  return time.time()


def _utc(t: float) -> str:
  return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:          # it exists, owned by another user
    return True
  return True


def describe(holder: dict, now: float | None = None) -> str:
  """'pid 1234 on host h, started 2026-11-30 15:02:11 UTC (heartbeat 4 s ago), command: python main.py ...'."""
  now = _now() if now is None else now
  if not holder:
    return "a run that has not yet written its record"
  return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {_utc(holder.get('started', 0))} "
          f"(heartbeat {now - holder.get('heartbeat', 0):.0f} s ago), command: {holder.get('command')}")


class Lease:
  """The lease of one workdir; `Lease.acquire(workdir)` takes it or raises `Busy`. Use `release()` when done."""

  def __init__(self, path: epath.Path, holder: dict, fd: int | None, heartbeat_s: float, expire_s: float):
    self.path, self.holder, self._fd = path, holder, fd
    self._heartbeat_s, self.expire_s = heartbeat_s, expire_s
    self._stop = threading.Event()
    self._lost: str | None = None
    self._thread = threading.Thread(target=self._beat, name="ssl_jax workdir lease", daemon=True)

  @classmethod
  def acquire(cls, workdir: str, *, heartbeat_s: float = 30.0, expire_s: float = 300.0, locking: bool | None = None,
              settle_s: float | None = None, log=print) -> "Lease":
    """Takes the lease of `workdir` (which must exist) for this process.

    Args:
      workdir: an absolute local path or a URL.
      heartbeat_s: how often the holder rewrites its heartbeat.
      expire_s: a lease whose heartbeat is older than this is free (where no lock tells that its holder died).
      locking: use `flock` (default: for local paths). Off, the lease works by heartbeats alone, as on an object store.
      settle_s: seconds between writing the lease and reading it back where there is no lock (default: 2 on an
        object store, 0 on a file system, whose writes are seen at once).
      log: where a take-over is reported.

    Raises:
      Busy: a live run holds it (its lock is held, or its heartbeat is recent).
    """
    if expire_s <= 2 * heartbeat_s:
      raise ValueError(f"a lease must outlive two heartbeats: expire_s={expire_s}, heartbeat_s={heartbeat_s}.")
    local = "://" not in workdir
    locking = local if locking is None else locking
    settle_s = (0.0 if local else 2.0) if settle_s is None else settle_s
    path = epath.Path(workdir) / LEASE_FILE
    now = _now()
    holder = dict(host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now,
                  command=shlex.join(sys.orig_argv), token=uuid.uuid4().hex, heartbeat_s=heartbeat_s,
                  expire_s=expire_s)
    fd = None
    if locking:
      import fcntl
      fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        previous = _parse(os.pread(fd, 1 << 16, 0))
        os.close(fd)
        raise Busy(_busy_message(workdir, previous)) from None
      except OSError:              # a file system without locks (some FUSE and network mounts): heartbeats alone
        os.close(fd)
        fd, locking = None, False
    if locking:
      previous = _parse(os.pread(fd, 1 << 16, 0))
    else:
      previous = _parse(path.read_bytes()) if path.exists() else None
    # The lock (if any) is ours. A previous holder's record still holds the workdir only if it was not released and
    # its heartbeat is fresh, and either it is another host's (a lock that did not reach that host) or there is no
    # lock (then a holder on this host must also still be running).
    if previous and not previous.get("released"):
      age = now - previous.get("heartbeat", 0)
      same_host = previous.get("host") == holder["host"]
      alive = age < previous.get("expire_s", expire_s)
      if same_host and not locking:
        alive = alive and _pid_alive(int(previous.get("pid", -1)))
      if alive and (not locking or not same_host):
        if fd is not None:
          os.close(fd)
        raise Busy(_busy_message(workdir, previous))
      why = "its process has ended" if same_host else f"its heartbeat is {age:.0f} s old"
      log(f"workdir lease: taking over from a run that did not release it ({why}): {describe(previous, now)}")
    lease = cls(path, holder, fd, heartbeat_s, expire_s)
    lease._write()
    if fd is None:                 # no lock: the last writer holds it
      time.sleep(settle_s)
      current = _parse(path.read_bytes()) if path.exists() else None
      if not current or current.get("token") != holder["token"]:
        raise Busy(_busy_message(workdir, current or {}))
    lease._thread.start()
    return lease

  def _write(self) -> None:
    data = json.dumps(self.holder, indent=1).encode()
    if self._fd is not None:       # through the locked descriptor (the lock stays on this file), never left empty
      os.pwrite(self._fd, data, 0)
      os.ftruncate(self._fd, len(data))
      os.fsync(self._fd)
    elif "://" in str(self.path):  # an object store replaces an object whole
      self.path.write_bytes(data)
    else:                          # a file system without locks: renamed into place, so that no reader sees half
      partial = self.path.with_name(f"{self.path.name}.{self.holder['token']}.tmp")
      partial.write_bytes(data)
      os.replace(partial, self.path)

  def _beat(self) -> None:
    while not self._stop.wait(self._heartbeat_s):
      try:
        if self._fd is None:
          data = self.path.read_bytes() if self.path.exists() else None
          current = None if data is None else _parse(data)
          if data is not None and current is None:   # half written by a writer that does not rename: look again
            continue
          if not current or current.get("token") != self.holder["token"]:
            self._lost = describe(current) if current else "the lease file was removed"
            return
        self.holder["heartbeat"] = _now()
        self._write()
      except OSError:              # storage hiccup: the next beat tries again; expiry is many beats away
        continue

  def check(self) -> None:
    """Raises `Lost` if another run has taken the workdir over (this one's heartbeats stopped past expiry)."""
    if self._lost:
      raise Lost(f"the lease of {self.path.parent} was taken over by another run ({self._lost}) after this run's "
                 f"heartbeat stalled beyond {self.expire_s:.0f} s; stopping without writing more. The committed "
                 "checkpoints are intact.")

  def release(self) -> None:
    """Marks the lease released and drops the lock. Idempotent."""
    if self._stop.is_set():
      return
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join()
    try:
      if not self._lost:
        self.holder.update(released=_now())
        self._write()
    finally:
      if self._fd is not None:
        os.close(self._fd)         # drops the flock
        self._fd = None


def _parse(data: bytes) -> dict | None:
  try:
    value = json.loads(data.decode() or "null")
  except (ValueError, UnicodeDecodeError):
    return None
  return value if isinstance(value, dict) else None


def _busy_message(workdir: str, holder: dict | None) -> str:
  holder = holder or {}
  expire = holder.get("expire_s", 300)
  return (f"workdir {workdir} is in use by another run: {describe(holder)}. Nothing was written. Wait for that run "
          f"to end, or stop it (Ctrl-C or SIGTERM saves its current step), or use another --workdir. A run that died "
          f"frees the workdir at once on its own host; where locks do not reach (object stores, NFS without locks) "
          f"its lease expires {expire:.0f} s after its last heartbeat.")
