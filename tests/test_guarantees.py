"""Guarantees that a deliberate bug once slipped past: each test here fails
with its bug in place (Content-MD5 on every S3 body, the exact purge key, a
file that changes between the two S3 passes, small per-call leaks,
concurrent writers of one object, the two filepath checksum limits at their
boundary, and the audit of a filepath row whose hash is wrong).

Independent functions on the shared fixtures, to be moved into the feature
files. The S3 ones use the `gate` fixture: the checking proxy of
tests/s3_gate.py that every S3 store of the test config goes through."""

import base64
import hashlib
import http.client
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pymysql
import pytest

from conftest import LIBRARY, PURGE_KEY, ROOT, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, attach_hash, md5
from s3_gate import presign

MiB = 1 << 20


def attach_path(world, store, schema, h, name):
    hx = h.hex()
    return world.location(store) / schema / hx[:2] / hx[2:4] / f"{hx}.{name}"


def unfinished_uploads(world):
    return {p.name for p in world.dirs["s3root"].glob(".upload_id-*")}


def temporaries(folder):
    """Temporary files of writes (.saving, .copying) below a folder."""
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith((".saving", ".copying"))]


def rss(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------------------
# Content-MD5 on every S3 request body (README: S3 stores)
# ---------------------------------------------------------------------------

def test_gate_refuses_bodies_without_a_matching_content_md5(s3, gate):
    """The gate itself: a signed PUT without Content-MD5, or with a wrong one,
    is refused with S3's error and never stored; a right one is stored; a
    wrong Content-MD5 on another request is refused too. It keeps working
    across a restart of s3s-fs."""
    world = s3
    host = f"127.0.0.1:{gate.port}"
    key = f"gate-check/{os.urandom(4).hex()}.bin"
    stored = world.dirs["s3root"] / S3_BUCKET / key
    body = os.urandom(100_000)
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    bad = base64.b64encode(hashlib.md5(body + b"x").digest()).decode()

    def send(method, headers=None, data=b""):
        url = presign(method, host, f"/{S3_BUCKET}/{key}", S3_ACCESS_KEY, S3_SECRET_KEY)
        c = http.client.HTTPConnection("127.0.0.1", gate.port, timeout=10)
        try:
            c.request(method, url, body=data, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    status, text = send("PUT", data=body)
    assert status == 400 and b"<Error><Code>InvalidDigest</Code>" in text, (status, text)
    status, text = send("PUT", {"Content-MD5": bad}, body)
    assert status == 400 and b"<Code>BadDigest</Code>" in text, (status, text)
    assert not stored.exists()
    status, text = send("GET", {"Content-MD5": bad})
    assert status == 400 and b"<Code>BadDigest</Code>" in text, (status, text)
    assert send("PUT", {"Content-MD5": good}, body)[0] == 200  # signature verified by s3s-fs
    assert stored.read_bytes() == body
    assert [(m, c) for m, _, c in gate.rejected] == [("PUT", "InvalidDigest"), ("PUT", "BadDigest"), ("GET", "BadDigest")]
    assert [(r.method, r.status) for r in gate.log] == [("PUT", 400), ("PUT", 400), ("GET", 400), ("PUT", 200)]
    # s3s-fs down: the connection is cut (an unreachable server); back up: answers again
    world.s3_stop(kill=True)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        send("GET")
    world.s3_start()
    assert send("GET") == (200, body)
    stored.unlink()


def test_every_s3_upload_carries_content_md5(db, s3, gate):
    """A single PUT (up to 8 MiB) and every part of a multipart upload go
    through the gate, which refuses a body without a matching Content-MD5."""
    world, s = s3, db.schema
    small = os.urandom(1_000_000)
    h = db.call_out("dj_udf.attach_put", "s3attach", s, "small.bin", small)
    assert h == attach_hash("small.bin", small)
    src = world.dirs["import"] / f"{s}-md5" / "parts.bin"
    src.parent.mkdir()
    big = os.urandom(20 * MiB)
    src.write_bytes(big)
    hb = db.call_out("dj_udf.attach_put_file", "s3attach", s, str(src))
    assert hb == attach_hash("parts.bin", big)
    puts = [r for r in gate.log if r.method == "PUT"]
    singles = [r for r in puts if "partNumber" not in r.params() and "/.dj-uploads/" not in r.path]
    parts = [r for r in puts if "partNumber" in r.params()]
    assert [r.path.rsplit("/", 1)[1] for r in singles] == [f"{h.hex()}.small.bin"]
    assert len(parts) == 2 and all(hb.hex() in r.path for r in parts)
    assert all(r.content_md5 and r.status == 200 for r in puts), puts
    assert gate.rejected == []
    assert attach_path(world, "s3attach", s, hb, "parts.bin").read_bytes() == big
    src.unlink()


# ---------------------------------------------------------------------------
# Deleting needs the exact purge key
# ---------------------------------------------------------------------------

def test_delete_needs_the_exact_purge_key(db, world):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "guarded.bin", b"guarded" * 100)
    obj = attach_path(world, "localattach", s, h, "guarded.bin")
    k = PURGE_KEY
    flip = lambda c: chr(ord(c) ^ 1)  # noqa: E731
    wrong = {
        "empty": "",
        "NULL": None,
        "first character": k[:1],
        "prefix": k[:-1],
        "one character more": k + "x",
        "last byte differs": k[:-1] + flip(k[-1]),
        "first byte differs": flip(k[0]) + k[1:],
    }
    q = "SELECT dj_delete_object('localattach', %s, %s, 'guarded.bin', NULL, %s)"
    for what, key in wrong.items():
        assert db.one(q, (s, h, key)) is None, what
        assert "wrong purge key" in db.last_error(), (what, db.last_error())
        assert obj.exists(), what
    assert db.one(q, (s, h, k)) == b"deleted"
    assert not obj.exists()


# ---------------------------------------------------------------------------
# A file that changes between the two S3 passes is never stored
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1_000_000, 20 * MiB])
def test_file_changed_between_the_s3_passes_is_not_stored(db, s3, gate, size):
    """attach_put_file on S3 hashes the file, looks the object up, then
    rewinds and uploads it: the gate rewrites the file (same size, other
    bytes) when the lookup arrives. The upload must fail its check, and
    nothing may be stored under either hash, nor an unfinished upload stay."""
    world, s = s3, db.schema
    name = "moving.bin"
    src = world.dirs["import"] / f"{s}-moving-{size}" / name
    src.parent.mkdir()
    first, second = os.urandom(size), os.urandom(size)
    src.write_bytes(first)
    old, new = attach_hash(name, first), attach_hash(name, second)

    def rewrite(_request):
        with open(src, "r+b") as f:  # in place: the plugin holds the file open
            f.write(second)

    hook = gate.once(lambda r: old.hex() in r.path, rewrite)
    before = unfinished_uploads(world)
    msg = db.error("CALL dj_udf.attach_put_file('s3attach', %s, %s, @h)", (s, str(src)))
    assert hook.fired.is_set() and hook.error is None, hook.error
    assert hook.request.method == "HEAD", hook.request
    assert "checksum mismatch" in msg, msg
    assert not attach_path(world, "s3attach", s, old, name).exists()
    assert not attach_path(world, "s3attach", s, new, name).exists()
    assert unfinished_uploads(world) == before
    assert db.tracking("s3attach") == ()
    assert db.one("SELECT dj_object_size('s3attach', %s, %s, %s, NULL)", (s, old, name)) is None
    # the file as it is now stores fine
    assert db.call_out("dj_udf.attach_put_file", "s3attach", s, str(src)) == new
    src.unlink()


# ---------------------------------------------------------------------------
# No memory growth over many calls: a 1 KiB leak per call must show
# ---------------------------------------------------------------------------

DIRECT_CALLS = 15_000
DIRECT_BOUND = 2 * MiB  # a 1 KiB leak per call grows one case by 15 MiB; noise seen: up to 1 MiB


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


# ---------------------------------------------------------------------------
# Concurrent writers of one object
# ---------------------------------------------------------------------------

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
    assert not temporaries(world.location(store) / s)
    src.unlink()


# ---------------------------------------------------------------------------
# The two filepath checksum limits at their boundary
# ---------------------------------------------------------------------------

def test_filepath_insert_limit_skips_the_hash_only_above_it(db, world):
    """filepath_checksum_size_limit_insert = N: DataJoint stores no
    contents_hash when size > N, so a file of exactly N bytes gets one."""
    s, n = db.schema, 5000
    world.write_config(dict(world.base_config, filepath_checksum_size_limit_insert=n))
    stage = world.stage("data") / s
    stage.mkdir()
    at, above = stage / "at.dat", stage / "above.dat"
    at_data, above_data = os.urandom(n), os.urandom(n + 1)
    at.write_bytes(at_data)
    above.write_bytes(above_data)
    info = {p.name: json.loads(db.one("SELECT dj_filepath_info('data', %s)", (str(p),))) for p in (at, above)}
    assert info["at.dat"]["size"] == n and info["at.dat"]["contents_hash"] == md5(at_data).hex()
    assert info["above.dat"]["size"] == n + 1 and info["above.dat"]["contents_hash"] is None
    for p in (at, above):
        db.call_out("dj_udf.filepath_put", "data", s, str(p))
    rows = {r[3]: r for r in db.tracking("data")}
    assert rows[f"{s}/at.dat"][1:] == (n, None, f"{s}/at.dat", md5(at_data))
    assert rows[f"{s}/above.dat"][1:] == (n + 1, None, f"{s}/above.dat", None)


def test_filepath_fetch_limit_skips_the_checksum_from_it_on(db, world):
    """filepath_checksum_size_limit = L: DataJoint skips the fetch checksum
    when size >= L. A stored file corrupted in place (same size) of exactly
    L bytes is fetched; with L one above its size it is refused."""
    s, size = db.schema, 4096
    stage = world.stage("data") / s
    stage.mkdir()
    f = stage / "fetch.dat"
    data = os.urandom(size)
    f.write_bytes(data)
    db.call_out("dj_udf.filepath_put", "data", s, str(f))
    stored = world.location("data") / s / "fetch.dat"
    corrupt = bytes([data[0] ^ 0xFF]) + data[1:]
    stored.write_bytes(corrupt)
    q = f"SELECT dj_udf.filepath_get('data', x.filepath, x.contents_hash, x.size) FROM `{s}`.`~external_data` x"
    f.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=size))
    assert db.one(q) == str(f)
    assert f.read_bytes() == corrupt
    f.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=size + 1))
    msg = db.error(q)
    assert "did not pass checksum" in msg, msg
    assert not f.exists()


# ---------------------------------------------------------------------------
# The audit flags a filepath row whose hash is not MD5(filepath)
# ---------------------------------------------------------------------------

def test_verify_flags_a_filepath_row_whose_hash_is_not_md5_of_filepath(db, world):
    s = db.schema
    stage = world.stage("data") / s
    stage.mkdir()
    good, other = stage / "good.dat", stage / "other.dat"
    good.write_bytes(b"good contents")
    other.write_bytes(b"other contents")
    for p in (good, other):
        db.call_out("dj_udf.filepath_put", "data", s, str(p))
    # a row for an existing, intact object, but under a hash that is not MD5(filepath)
    bad = md5(b"not the path")
    db.sql(f"INSERT INTO `{s}`.`~external_data` (hash, size, filepath, contents_hash) VALUES (%s, %s, %s, %s)",
           (bad, len(b"other contents"), f"{s}/other.dat", md5(b"other contents")))
    status = {r[0].lower(): r[4] for r in db.sql("CALL dj_udf.verify(%s, 'data')", (s,))}
    assert status == {
        md5(f"{s}/good.dat".encode()).hex(): "ok",
        md5(f"{s}/other.dat".encode()).hex(): "ok",
        bad.hex(): "bad row: hash is not the MD5 of filepath",
    }, status
