"""Transparent huge pages for the large host buffers that XLA:CPU allocates afresh at every step.

XLA's CPU runtime allocates each executable's temporaries as one buffer per call (`malloc`; MAE ViT-B/16's train step
at batch 8: 1.42 GB) and frees it when the call ends. glibc serves a request that large with a fresh `mmap` and
returns it with `munmap`, so every step the kernel maps, zeroes and faults in the whole buffer again, one 4 KiB page
at a time: 354,000 page faults and 0.5 s of system time per MAE ViT-B step on a 2-core machine
(benchmarks/README.md). With glibc's `glibc.malloc.hugetlb=1` tunable, malloc marks its mmapped chunks
`MADV_HUGEPAGE`, the kernel backs them with 2 MiB pages, and the same step takes ~1,300 faults and runs ~6% faster
(the tiny MAE's: 16%). PyTorch on CPU is unaffected either way (measured in the same run).

glibc reads `GLIBC_TUNABLES` only when a process starts, so `restart_with_huge_pages` re-executes the running program
(same interpreter, same arguments, same process id) with the tunable added — main.py and the speed benchmarks call it
first thing. It does nothing where it cannot help: not Linux, not glibc >= 2.35, transparent huge pages not in
`madvise` mode (`always` already gives mmapped memory huge pages; `never` forbids them), or `glibc.malloc.hugetlb`
already set in `GLIBC_TUNABLES` (which is also how to opt out: `GLIBC_TUNABLES=glibc.malloc.hugetlb=0`).
"""

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library if it is glibc, else None (musl, macOS, Windows)."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()   # "glibc 2.36"
    return (int(version.split(".")[0]), int(version.split(".")[1])) if name == "glibc" else None
  except (AttributeError, ValueError, OSError, IndexError):
    return None


def thp_mode(path: str = THP_SETTING) -> str | None:
  """The kernel's transparent-huge-page mode ("always", "madvise" or "never"; the bracketed word of `path`), or
  None where there is no such file."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


def wants_restart(environ, platform: str, libc: tuple[int, int] | None, thp: str | None) -> bool:
  """Whether re-executing with `TUNABLE` would change anything (see the module docstring)."""
  tunables = environ.get("GLIBC_TUNABLES", "")
  return (platform.startswith("linux") and libc is not None and libc >= (2, 35) and thp == "madvise"
          and "glibc.malloc.hugetlb" not in tunables)


def restart_with_huge_pages() -> None:
  """Re-executes this process with `glibc.malloc.hugetlb=1` added to `GLIBC_TUNABLES` where that helps; returns
  (doing nothing) otherwise. Call it before anything else happens in the process: it never returns when it restarts.
  """
  if not sys.executable or not wants_restart(os.environ, sys.platform, glibc_version(), thp_mode()):
    return
  tunables = os.environ.get("GLIBC_TUNABLES")
  environ = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{TUNABLE}" if tunables else TUNABLE)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    # sys.orig_argv: the interpreter's own command line, with its options (-m, -X, -u, ...), as it was started.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
  except OSError:   # the interpreter cannot be re-executed (unusual sandboxes): run on, with glibc's defaults
    return


def describe(environ=None, thp: str | None = None) -> str:
  """How this process's large host buffers are paged, for benchmark reports (`thp`: the kernel's mode, read from
  the system when None)."""
  environ = os.environ if environ is None else environ
  thp = thp or thp_mode()
  if thp == "always":
    return "huge pages (transparent: always)"
  if thp == "madvise" and TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":"):
    return f"huge pages ({TUNABLE})"
  return "base pages (no huge pages)"
