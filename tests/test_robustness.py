"""Memory and concurrency: no leak per call, no copy of client bytes
beyond the server's own, no trouble with many connections calling at
once."""

import json
import os
import subprocess
import sys
import threading
import time

import pymysql
import pytest

from conftest import LIBRARY, MiB, ROOT, attach_hash, attach_path, leftovers, md5, reset_peak, rss, settled, vm


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


def test_a_put_of_client_bytes_costs_no_more_than_the_server_receiving_them(db, world):
    """48 MiB sent to a put: the function, passed the bytes as the README
    says, holds no more than `SELECT LENGTH` of them; the routines no more
    than an empty procedure with a longblob parameter. MariaDB copies a
    loadable function's constant string arguments (a statement parameter, a
    routine's variable), and a copy would show as a whole payload more."""
    # above 32 MiB, the most glibc's mmap threshold rises to: every copy
    # of the payload is a mapping of its own, never memory malloc kept
    s, pid, n = db.schema, world.server_pid(), 48 << 20
    db.sql(f"CREATE PROCEDURE `{s}`.takes(IN data longblob) BEGIN END")
    forms = {
        "received": ("SELECT LENGTH(%s)", ()),
        "dj_attach_put": (f"SELECT LENGTH(dj_attach_put('localattach', '{s}', %s, IF(RAND() >= 0, %s, NULL)))", ("f{}.bin",)),
        "dj_blob_put": (f"SELECT LENGTH(dj_blob_put('localattach', '{s}', IF(RAND() >= 0, %s, NULL)))", ()),
        "received by a routine": (f"CALL `{s}`.takes(%s)", ()),
        "dj_udf.attach_put": (f"CALL dj_udf.attach_put('localattach', '{s}', %s, %s, @h)", ("r{}.bin",)),
        "dj_udf.blob_put": (f"CALL dj_udf.blob_put('localattach', '{s}', %s, @h)", ()),
    }
    # The least of four rounds, the forms taken in turn: what a statement
    # finds already resident (memory malloc kept from earlier work) lowers
    # its peak by chance, while a copy of the payload (a mapping of its own)
    # is new memory every time.
    cost = {}
    for rnd in range(4):
        for what, (q, names) in forms.items():
            conn = world.connect()
            try:
                settled(pid)  # what the last connection freed is gone first
                base = reset_peak(pid)["VmRSS"]
                with conn.cursor() as cur:
                    cur.execute(q, tuple(name.format(rnd) for name in names) + (b"mYm\0" + os.urandom(n - 4),))
                cost[what] = min(cost.get(what, n << 10), vm(pid)["VmHWM"] - base)
            finally:
                conn.close()
    shown = ", ".join(f"{what} {c / n:.2f}x" for what, c in cost.items())
    print(f"\nserver peak, 48 MiB of client bytes: {shown}")
    for what, ref in [("dj_attach_put", "received"), ("dj_blob_put", "received"),
                      ("dj_udf.attach_put", "received by a routine"), ("dj_udf.blob_put", "received by a routine")]:
        assert cost[what] < cost[ref] + n / 2, f"{what} holds a copy of the bytes: {shown}"


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


# A 1 KiB leak per call grows one case by 15 MiB; noise seen: up to 1 MiB.
DIRECT_CALLS = 15_000
DIRECT_BOUND = 2 * MiB


def test_no_leak_per_row_or_statement_in_direct_calls(db, world):
    """The functions called the way the server calls them, from a small
    process of their own, 15 000 times per function and pattern (init, row,
    deinit each time; one init and many rows) after a warm-up: the process's
    memory may not grow by more than 2 MiB per case, under a seventh of what
    a leak of 1 KiB per call would add."""
    s = db.schema
    data = os.urandom(1000)
    h = db.call_out("dj_udf.attach_put", "localattach", s, "leak.bin", data)
    blob = bytes.fromhex("646a30000d0000000000000840")
    hb = db.call_out("dj_udf.blob_put", "main", s, blob)
    missing = md5(b"no such object")
    cases = {
        "checksum": ["dj_checksum", "some bytes to hash", "init"],
        "attach_put": ["dj_attach_put", "localattach", s, "leak.bin", {"hex": data.hex()}],
        "attach_get": ["dj_attach_get", "localattach", s, {"hex": h.hex()}, "leak.bin"],
        "blob_get": ["dj_blob_get", "main", s, {"hex": hb.hex()}],
        "verify": ["dj_verify", "localattach", s, {"hex": h.hex()}, str(len(data)), "leak.bin", None, None],
        "failing get": ["dj_attach_get", "localattach", s, {"hex": missing.hex()}, "gone.bin"],
        "last_error": ["dj_last_error"],
        "stores": ["dj_stores"],
        "!checksum without arguments": ["dj_checksum"],
    }
    env = dict(os.environ, DJ_UDF_CONFIG=str(world.config_path), PYTHONPATH=str(ROOT / "tests"))
    t = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "leak_direct.py"), str(LIBRARY), str(DIRECT_CALLS), json.dumps(cases)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    results, growth = report["results"], report["growth"]
    # each case did what it stands for
    assert results["checksum"] is not None and results["attach_put"] is not None
    assert results["attach_get"] == data.decode(errors="replace")[:1000]
    assert results["verify"] == "ok" and results["failing get"] is None
    assert "does not exist" in results["last_error"], results["last_error"]
    assert results["stores"].startswith("{")
    assert len(growth) == 2 * (len(cases) - 1) + 1
    grown = {k: v for k, v in growth.items() if v > DIRECT_BOUND}
    print(f"direct calls: {time.monotonic() - t:.1f} s, growth (bytes) {growth}")
    assert not grown, f"grew over {DIRECT_CALLS} calls (bytes): {grown}; all: {growth} ({time.monotonic() - t:.1f} s)"


SERVER_ROWS = 20_000
SERVER_LOOPS = 10_000
SERVER_BOUND = 8 * MiB


def test_no_server_memory_growth_over_many_rows_and_statements(db, world):
    """On the server: four functions over 20 000 rows of one statement
    (80 000 row calls), and a stored procedure running 10 000 times three
    statements that each call a function (30 000 inits and deinits). The
    server's memory may grow by 8 MiB at most, against 80 and 30 MiB for a
    leak of 1 KiB per row or per statement."""
    s = db.schema
    data = os.urandom(1000)
    h = db.call_out("dj_udf.attach_put", "localattach", s, "leak.bin", data)
    missing = md5(b"no such object")
    rows_q = f"""SELECT SUM(LENGTH(dj_checksum(seq))),
                        SUM(LENGTH(dj_attach_get('localattach', %s, IF(seq > 0, %s, NULL), 'leak.bin'))),
                        SUM(dj_verify('localattach', %s, IF(seq > 0, %s, NULL), {len(data)}, 'leak.bin', NULL, NULL) = 'ok'),
                        SUM(dj_attach_get('localattach', %s, IF(seq > 0, %s, NULL), 'gone.bin') IS NULL)
                   FROM `{s}`.seq_1_to_{{n}}"""
    args = (s, h, s, h, s, missing)
    db.sql(f"""CREATE PROCEDURE `{s}`.many(IN n int)
        BEGIN
          DECLARE i int DEFAULT 0;
          DECLARE a, b, c longblob;
          WHILE i < n DO
            SET a = dj_checksum(i);
            SET b = dj_attach_get('localattach', '{s}', UNHEX('{h.hex()}'), 'leak.bin');
            SET c = dj_attach_get('localattach', '{s}', UNHEX('{missing.hex()}'), 'gone.bin');
            SET i = i + 1;
          END WHILE;
        END""")

    def run(rows, loops):
        n = rows
        assert db.one(rows_q.format(n=n), args) == (16 * n, len(data) * n, n, n)
        db.sql(f"CALL `{s}`.many(%s)", (loops,))

    run(SERVER_ROWS // 4, SERVER_LOOPS // 4)  # warm-up
    pid = world.server_pid()
    before = rss(pid)
    t = time.monotonic()
    run(SERVER_ROWS, SERVER_LOOPS)
    growth = rss(pid) - before
    print(f"server: {time.monotonic() - t:.1f} s, growth {growth / MiB:.2f} MiB")
    assert growth < SERVER_BOUND, (f"server RSS grew {growth / MiB:.1f} MiB over {4 * SERVER_ROWS} row calls and "
                                   f"{3 * SERVER_LOOPS} statements ({time.monotonic() - t:.1f} s)")


@pytest.mark.parametrize("via", ["attach_put", "attach_put_file"])
def test_concurrent_writers_of_one_object(db, world, via):
    """8 connections put the very same attachment at once, 20 rounds; before
    each round the object is removed, so that every round is a real race of
    8 writers of one object (and one temporary folder)."""
    s, store, name = db.schema, "localattach", "same.bin"
    data = os.urandom(1_000_000)
    h = attach_hash(name, data)
    obj = attach_path(world, store, s, h, name)
    src = world.dirs["import"] / f"{s}-same" / name
    src.parent.mkdir()
    src.write_bytes(data)
    writers, rounds = 8, 20
    barrier = threading.Barrier(writers, action=lambda: obj.unlink(missing_ok=True), timeout=120)
    failures, done = [], []

    def writer():
        conn = world.connect()
        try:
            with conn.cursor() as cur:
                for _ in range(rounds):
                    barrier.wait()
                    try:
                        if via == "attach_put":
                            cur.execute("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)", (store, s, name, data))
                        else:
                            cur.execute("CALL dj_udf.attach_put_file(%s, %s, %s, @h)", (store, s, str(src)))
                        cur.execute("SELECT @h")
                        got = cur.fetchone()[0]
                        if got != h:
                            failures.append(f"wrong hash {got!r}")
                        done.append(1)
                    except pymysql.err.MySQLError as e:
                        failures.append(e.args[-1])
        finally:
            conn.close()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, f"{len(failures)} of {writers * rounds} calls failed: {failures[:3]}"
    assert len(done) == writers * rounds
    assert obj.read_bytes() == data
    assert db.tracking(store) == ((h, len(data), name, None, None),)
    assert not leftovers(world, store, s)
    src.unlink()
