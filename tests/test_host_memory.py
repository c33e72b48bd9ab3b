"""The restart with glibc's huge-page tunable (ssl_jax/runtime/host_memory.py): when it applies, and that it
re-executes the same command line with the tunable added, exactly once."""

import os
import pathlib
import subprocess
import sys

import pytest

from ssl_jax.runtime import host_memory

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("environ, platform, libc, thp, expected", [
    ({}, "linux", (2, 36), "madvise", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "linux", (2, 35), "madvise", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "linux", (2, 36), "madvise", False),   # the user's opt-out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "linux", (2, 36), "madvise", False),   # already restarted
    ({}, "linux", (2, 34), "madvise", False),       # glibc without the tunable
    ({}, "linux", None, "madvise", False),          # musl
    ({}, "linux", (2, 36), "always", False),        # mmapped memory gets huge pages anyway
    ({}, "linux", (2, 36), "never", False),
    ({}, "linux", (2, 36), None, False),            # no THP support
    ({}, "darwin", None, None, False),
])
def test_wants_restart(environ, platform, libc, thp, expected):
  assert host_memory.wants_restart(environ, platform, libc, thp) is expected


def test_thp_mode_reads_the_bracketed_setting(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.thp_mode(str(setting)) == "madvise"
  setting.write_text("[always] madvise never\n")
  assert host_memory.thp_mode(str(setting)) == "always"
  assert host_memory.thp_mode(str(tmp_path / "missing")) is None


def test_describe():
  restarted = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
  assert host_memory.describe(restarted, "madvise") == "huge pages (glibc.malloc.hugetlb=1)"
  assert host_memory.describe(restarted, "never") == "base pages (no huge pages)"
  assert host_memory.describe({}, "madvise") == "base pages (no huge pages)"
  assert host_memory.describe({}, "always") == "huge pages (transparent: always)"


def test_restart_re_executes_the_same_command_once_with_the_tunable():
  # Whatever this machine's kernel and C library, make the restart apply, and see what the restarted process got.
  script = ("import os, sys\n"
            "from ssl_jax.runtime import host_memory\n"
            "host_memory.wants_restart = lambda environ, *a: 'glibc.malloc.hugetlb' not in environ.get("
            "'GLIBC_TUNABLES', '')\n"
            "print('run', os.getpid(), os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], flush=True)\n"
            "host_memory.restart_with_huge_pages()\n"
            "print('done', flush=True)\n")
  env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.arena_max=4")
  out = subprocess.run([sys.executable, "-u", "-c", script, "--flag=1", "x y"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
  assert len(out) == 3, out
  first, second = out[0].split(" ", 3), out[1].split(" ", 3)
  assert first[0] == second[0] == "run" and first[1] == second[1]            # the same process, restarted once
  assert first[2] == "glibc.malloc.arena_max=4"
  assert second[2] == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"      # the user's tunables kept
  assert first[3] == second[3] == "['--flag=1', 'x y']"                       # the same arguments
  assert out[2] == "done"
