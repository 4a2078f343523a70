"""Memory and concurrency: no leak per call, no trouble with many
connections calling at once."""

import os
import shutil
import subprocess
import sys
import threading

from conftest import LIBRARY, MiB, ROOT, attach_hash, leftovers, need, rss


def test_no_memory_growth_over_many_calls(db, world):
    s = db.schema
    data = os.urandom(100_000)
    h = db.call_out("dj_udf.attach_put", "localattach", s, "leak.bin", data)
    db.sql(f"CREATE TABLE `{s}`.many (i int PRIMARY KEY, h binary(16))")
    db.sql(f"INSERT INTO `{s}`.many SELECT seq, %s FROM `{s}`.seq_1_to_500", (h,))
    q = f"SELECT SUM(LENGTH(dj_attach_get('localattach', %s, h, 'leak.bin'))) FROM `{s}`.many"
    assert db.one(q, (s,)) == 500 * len(data)  # warm up allocator and caches
    before = rss(world.server_pid())
    for _ in range(6):  # 3000 rows, 300 MB of results: a per-row leak shows
        assert db.one(q, (s,)) == 500 * len(data)
    for _ in range(400):  # 400 statements: a per-statement leak of the state shows
        assert db.one("SELECT dj_attach_get('localattach', %s, %s, 'leak.bin')", (s, h)) == data
        db.one("SELECT dj_attach_put('localattach', %s, 'leak.bin', %s)", (s, data))
    growth_mib = (rss(world.server_pid()) - before) / MiB
    assert growth_mib < 20, f"server RSS grew {growth_mib:.1f} MiB over 3800 calls"


def test_many_connections_at_once(db, world):
    s = db.schema
    failures = []

    def worker(n):
        try:
            conn = world.connect()
            with conn.cursor() as cur:
                for i in range(40):
                    name = f"w{n}-{i % 5}.bin"
                    data = f"{n}:{i % 5}".encode() * 1000
                    cur.execute("CALL dj_udf.attach_put('localattach', %s, %s, %s, @h)", (s, name, data))
                    cur.execute("SELECT @h")
                    h = cur.fetchone()[0]
                    assert h == attach_hash(name, data)
                    cur.execute("SELECT dj_udf.attach_get('localattach', %s, %s, %s)", (s, h, name))
                    assert cur.fetchone()[0] == data
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert len(db.tracking("localattach")) == 30
    assert not leftovers(world, "localattach", s)


def test_calls_start_no_threads(db, world, s3, tmp_path):
    """The library never starts a thread, not even briefly: its functions are
    called the way the server calls them from a single-threaded process under
    strace, on a file store, an S3 store (multipart) and an unreachable one."""
    need("strace", strict=True)  # installed by scripts/setup.sh --python
    strace = shutil.which("strace")
    log = tmp_path / "strace.txt"
    env = dict(os.environ, DJ_UDF_CONFIG=str(world.config_path))
    out = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(log),
         sys.executable, "-S", str(ROOT / "tests" / "udf_direct.py"), str(LIBRARY), db.schema, "localattach", "s3attach"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok 2 stores"
    traced = log.read_text()
    assert "clone" not in traced and "fork" not in traced, traced[:1000]
    # the failing endpoint: an error, and still no thread
    out = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(log), sys.executable, "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import udf_direct as u, ctypes; "
         "lib = ctypes.CDLL(sys.argv[2]); assert u.call(lib, 'dj_blob_get', b's3down', b'x', b'0' * 32) is None; "
         "print(u.call(lib, 'dj_last_error').decode())",
         str(ROOT / "tests"), str(LIBRARY)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "unreachable" in out.stdout or "connect" in out.stdout.lower(), out.stdout
    assert "clone" not in log.read_text()
