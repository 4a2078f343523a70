"""Threads: a transfer longer than one read hashes on one scoped worker
thread while the calling thread reads and writes; that worker has ended
when the call returns (a thread alive when the server unloads the library
would crash it), and small objects start none. The functions are called
the way the server calls them, from a single-threaded process under strace
(tests/udf_direct.py)."""

import os
import re
import shutil
import subprocess
import sys

from conftest import LIBRARY, ROOT, need

STRACE = shutil.which("strace")

# Runs in its own process: every call, then the number of threads the
# process has (only the calling one may be left).
SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import ctypes, udf_direct as u
lib = ctypes.CDLL(sys.argv[2])
schema, size, stores = sys.argv[3].encode(), int(sys.argv[4]), sys.argv[5:]
data = os.urandom(size)
for store in stores:
    s = store.encode()
    h = u.call(lib, "dj_attach_put", s, schema, b"threads.bin", data)
    assert h is not None, u.call(lib, "dj_last_error")
    assert len(os.listdir("/proc/self/task")) == 1, "a thread outlived dj_attach_put"
    assert u.call(lib, "dj_attach_get", s, schema, h, b"threads.bin") == data
    assert len(os.listdir("/proc/self/task")) == 1, "a thread outlived dj_attach_get"
    assert u.call(lib, "dj_verify", s, schema, h, str(size).encode(), b"threads.bin", None, None) == b"ok"
    assert len(os.listdir("/proc/self/task")) == 1, "a thread outlived dj_verify"
print("ok")
"""


def run(world, db, tmp_path, size, stores):
    log = tmp_path / f"strace-{size}.txt"
    env = dict(os.environ, DJ_UDF_CONFIG=str(world.config_path))
    out = subprocess.run(
        [STRACE, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,exit", "-o", str(log), sys.executable, "-S", "-c", SCRIPT,
         str(ROOT / "tests"), str(LIBRARY), db.schema, str(size), *stores],
        env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
    return log.read_text()


def test_small_objects_start_no_thread(world, db, s3, tmp_path):
    need("strace", strict=True)  # installed by scripts/setup.sh --python
    traced = run(world, db, tmp_path, 100_000, ["localattach", "s3attach"])
    assert not re.search(r"\b(clone3?|v?fork)\(", traced), traced[:1000]


def test_large_transfers_hash_on_a_worker_that_ends_with_the_call(world, db, s3, tmp_path):
    need("strace", strict=True)
    traced = run(world, db, tmp_path, 20 << 20, ["localattach", "s3attach"])
    started = re.findall(r"\bclone3?\(.*= (\d+)$", traced, re.M)
    # put (file: one pass; S3: the hash pass), get and verify on each store
    assert len(started) >= 5, traced[:2000]
    for tid in started:
        assert re.search(rf"^{tid}\s+(\+\+\+ exited|exit\()", traced, re.M), f"thread {tid} never ended"


def test_an_unreachable_store_starts_no_thread(world, tmp_path):
    """A call that fails on an S3 endpoint nobody answers: an error, and no
    thread (name lookups and connects run on the calling thread)."""
    need("strace", strict=True)
    log = tmp_path / "strace-down.txt"
    env = dict(os.environ, DJ_UDF_CONFIG=str(world.config_path))
    out = subprocess.run(
        [STRACE, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(log), sys.executable, "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import udf_direct as u, ctypes; "
         "lib = ctypes.CDLL(sys.argv[2]); assert u.call(lib, 'dj_blob_get', b's3down', b'x', b'0' * 32) is None; "
         "print(u.call(lib, 'dj_last_error').decode())",
         str(ROOT / "tests"), str(LIBRARY)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "unreachable" in out.stdout, out.stdout
    assert not re.search(r"\b(clone3?|v?fork)\(", log.read_text())
