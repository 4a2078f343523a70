"""Objects of any size from any SQL client: chunked uploads (parts in any
order, resent, missing, mismatching; the account an upload belongs to;
expiry; a restart in the middle; the configured limits), ranged verified
reads, the example clients, DataJoint 0.14.9 reading what came in chunks,
and the acceptance run: DJ_UDF_CHUNKED_BYTES (3 GiB unless set) in and out
in 64 MiB parts through max_allowed_packet=64M on a file and an S3 store,
with the server's peak memory growing by at most two parts."""

import hashlib
import importlib.util
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time

import pymysql
import pytest

from conftest import (MiB, ROOT, attach_hash, attach_path, blob_path, import_needed, md5, need, reset_peak,
                      unfinished_uploads, vm)

CLIENT = ROOT / "examples" / "dj_chunked.py"
SHELL_CLIENT = ROOT / "examples" / "dj_chunked.sh"
# S3 stores take parts of at least 5 MiB (S3's rule), file stores any size.
S3_PART = 5 * MiB
BIG = int(os.environ.get("DJ_UDF_CHUNKED_BYTES", str(3 << 30)))
BIG_PART = 64 * MiB
FILE_S3 = pytest.mark.parametrize("kind", ["file", "s3"], indirect=True)


def part_size(kind):
    return S3_PART if kind.s3 else 1000


def sample(n, seed=0):
    return random.Random(seed).randbytes(n)


def cut(data, size):
    return [data[i:i + size] for i in range(0, max(len(data), 1), size)]


def upload(db, store, name, data, size, order=None, resend=(), md5s=True, expected="auto", schema=None):
    """Opens an upload through the routines, sends the parts in `order`
    (1-based; all by default), sends the parts in `resend` again, finishes
    it and returns the hash; the finish's error propagates."""
    schema = schema or db.schema
    db.sql("CALL dj_udf.upload_open(%s, %s, %s, %s, @u)", (store, schema, name, size))
    uid = db.one("SELECT @u")
    parts = cut(data, size)
    for n in list(order or range(1, len(parts) + 1)) + list(resend):
        db.sql("CALL dj_udf.upload_part(%s, %s, %s, @m)", (uid, n, parts[n - 1]))
        assert db.one("SELECT @m") == hashlib.md5(parts[n - 1]).hexdigest()
    if expected == "auto":
        expected = attach_hash(name, data) if name is not None else md5(data)
    listed = ",".join(hashlib.md5(p).hexdigest() for p in parts) if md5s else None
    db.sql("CALL dj_udf.upload_finish(%s, %s, %s, %s, @h)", (uid, len(parts), listed, expected))
    return db.one("SELECT @h")


def tracking_row(db, store, h, schema=None):
    return db.one(f"SELECT hash, size, attachment_name, filepath, contents_hash FROM `{schema or db.schema}`.`~external_{store}` "
                  "WHERE hash = %s", (h,))


def other_account(world):
    """A connection of another account ('dj'@'%', over TCP)."""
    return pymysql.connect(host="127.0.0.1", port=world.port, user="dj", password="dj", autocommit=True, charset="utf8mb4")


def sql(conn, q, args=None):
    with conn.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall()


def blob_bytes(n, seed=0):
    """n bytes that DataJoint's blob header opens (the rest need not unpack for these tests)."""
    return b"dj0\0" + sample(n - 4, seed)


# ---------------------------------------------------------------------------
# Chunked uploads: the same object as a whole put, whatever the order
# ---------------------------------------------------------------------------

@FILE_S3
def test_parts_in_any_order_and_resent_make_the_object_a_whole_put_makes(kind, db, world):
    size = part_size(kind)
    att = sample(2 * size + 123, 1)
    h = upload(db, kind.attach, "scan data.bin", att, size, order=[3, 1, 2], resend=[1, 3])
    assert h == attach_hash("scan data.bin", att)
    blob = blob_bytes(3 * size, 2)
    hb = upload(db, kind.blob, None, blob, size, order=[2, 3, 1])
    assert hb == md5(blob)
    # the same objects put whole, in a second schema
    whole = f"{db.schema}_whole"
    db.sql(f"CREATE DATABASE `{whole}`")
    try:
        for store in (kind.attach, kind.blob):
            db.sql("CALL dj_udf.create_tracking_table(%s, %s)", (whole, store))
        db.sql("CALL dj_udf.attach_put(%s, %s, 'scan data.bin', %s, @a)", (kind.attach, whole, att))
        db.sql("CALL dj_udf.blob_put(%s, %s, %s, @b)", (kind.blob, whole, blob))
        assert db.one("SELECT @a, @b") == (h, hb)
        for store, key in ((kind.attach, h), (kind.blob, hb)):
            assert tracking_row(db, store, key) == tracking_row(db, store, key, whole)
        chunked = attach_path(world, kind.attach, db.schema, h, "scan data.bin")
        assert chunked.read_bytes() == att == attach_path(world, kind.attach, whole, h, "scan data.bin").read_bytes()
        assert blob_path(world, kind.blob, db.schema, hb).read_bytes() == blob == blob_path(world, kind.blob, whole, hb).read_bytes()
        # nothing is left behind: only the records of finished uploads (for a
        # repeated finish), no bytes, no unfinished S3 upload, no temporary object
        ours = [d for d in world.dirs["uploads"].iterdir() if json.loads((d / "upload.json").read_text())["schema"] == db.schema]
        assert len(ours) == 2 and all(json.loads((d / "upload.json").read_text())["phase"] == "finished" for d in ours)
        assert [p.name for d in ours for p in d.iterdir()] == ["upload.json", "upload.json"]
        if kind.s3:
            records = [json.loads((d / "upload.json").read_text()) for d in ours]
            assert not any(r["s3_upload"] in " ".join(unfinished_uploads(world)) for r in records)
            for store in (kind.attach, kind.blob):
                temp = world.location(store) / ".dj-chunked"
                assert not [p for d in ours for p in temp.glob(f"{d.name}*")]
    finally:
        db.sql(f"DROP DATABASE `{whole}`")


@FILE_S3
def test_a_finish_names_the_missing_and_the_mismatching_parts_and_a_wrong_hash(kind, db, world):
    size = part_size(kind)
    data = sample(3 * size, 3)
    db.sql("CALL dj_udf.upload_open(%s, %s, 'x.bin', %s, @u)", (kind.attach, db.schema, size))
    uid = db.one("SELECT @u")
    parts = cut(data, size)
    for n in (1, 3):
        db.sql("CALL dj_udf.upload_part(%s, %s, %s, @m)", (uid, n, parts[n - 1]))
    finish = "CALL dj_udf.upload_finish(%s, %s, %s, %s, @h)"
    e = db.error(finish, (uid, 3, None, None))
    assert e.startswith("dj_udf.upload_finish: ") and "part 2 of 3 was never received" in e, e
    db.sql("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, sample(size, 99)))  # other bytes than the client means
    listed = ",".join(hashlib.md5(p).hexdigest() for p in parts)
    e = db.error(finish, (uid, 3, listed, None))
    assert "part 2 differs from your list" in e and hashlib.md5(parts[1]).hexdigest() in e, e
    e = db.error(finish, (uid, 3, None, attach_hash("x.bin", data)))
    assert "checksum mismatch" in e and attach_hash("x.bin", data).hex() in e, e
    if kind.s3:
        # the S3 upload was sealed to hash it: it is gone, and says so
        assert "upload the object again" in e, e
        assert unfinished_uploads(world) == []
        return
    # a file-store upload stays open: the right part, then the finish works
    db.sql("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, parts[1]))
    db.sql(finish, (uid, 3, listed, attach_hash("x.bin", data)))
    assert db.one("SELECT @h") == attach_hash("x.bin", data)
    assert not attach_path(world, kind.attach, db.schema, attach_hash("x.bin", sample(size, 99)), "x.bin").exists()


def test_a_wrong_expected_hash_with_parts_in_order_leaves_an_s3_upload_open(db, world, s3):
    data = sample(2 * S3_PART, 4)
    db.sql("CALL dj_udf.upload_open('s3attach', %s, 'y.bin', %s, @u)", (db.schema, S3_PART))
    uid = db.one("SELECT @u")
    for n, p in enumerate(cut(data, S3_PART), 1):
        db.sql("CALL dj_udf.upload_part(%s, %s, %s, @m)", (uid, n, p))
    e = db.error("CALL dj_udf.upload_finish(%s, 2, NULL, %s, @h)", (uid, md5(data)))  # the content MD5, not the attachment hash
    assert "checksum mismatch" in e and "upload the object again" not in e, e
    db.sql("CALL dj_udf.upload_finish(%s, 2, NULL, %s, @h)", (uid, attach_hash("y.bin", data)))
    assert db.one("SELECT @h") == attach_hash("y.bin", data)


def test_parts_are_checked_as_they_arrive(db, world):
    db.sql("CALL dj_udf.upload_open('main', %s, NULL, 100, @u)", (db.schema,))
    uid = db.one("SELECT @u")
    part = "CALL dj_udf.upload_part(%s, %s, %s, @m)"
    assert "not a serialized DataJoint blob" in db.error(part, (uid, 1, b"plain bytes"))
    assert "more than the upload's part size of 100 bytes" in db.error(part, (uid, 2, bytes(101)))
    assert "parts are numbered from 1 to 10000" in db.error(part, (uid, 0, b"x"))
    assert "part size" in db.error("CALL dj_udf.upload_open('s3attach', %s, 'a', %s, @u)", (db.schema, S3_PART - 1))
    assert "doesn't exist" in db.error("CALL dj_udf.upload_open('main', 'no_such_schema', NULL, 100, @u)")
    # a short part that is not the last
    db.sql(part, (uid, 1, blob_bytes(100)))
    db.sql(part, (uid, 2, bytes(50)))
    db.sql(part, (uid, 3, bytes(10)))
    e = db.error("CALL dj_udf.upload_finish(%s, 3, NULL, NULL, @h)", (uid,))
    assert "part 2 is not 100 bytes long" in e, e
    e = db.error("CALL dj_udf.upload_finish(%s, 2, NULL, NULL, @h)", (uid,))
    assert "part 3 was received, but the finish says the upload has 2 parts" in e, e
    status = json.loads(db.one("SELECT dj_udf.upload_status(%s)", (uid,)))
    assert [(p["part"], p["size"]) for p in status["parts"]] == [(1, 100), (2, 50), (3, 10)]
    assert status["received_bytes"] == 160 and status["attachment_name"] is None and 0 < status["expires_in"] <= 86400
    db.sql("CALL dj_udf.upload_abort(%s)", (uid,))
    assert "does not exist" in db.error(part, (uid, 1, blob_bytes(100)))
    assert not (world.dirs["uploads"] / uid).exists()


# ---------------------------------------------------------------------------
# The account an upload belongs to
# ---------------------------------------------------------------------------

@FILE_S3
def test_another_account_cannot_use_an_upload_id(kind, db, world):
    size = part_size(kind)
    data = sample(size + 10, 5)
    db.sql("CALL dj_udf.upload_open(%s, %s, 'mine.bin', %s, @u)", (kind.attach, db.schema, size))
    uid = db.one("SELECT @u")
    db.sql("CALL dj_udf.upload_part(%s, 1, %s, @m)", (uid, data[:size]))
    other = other_account(world)
    try:
        assert sql(other, "SELECT CURRENT_USER()")[0][0] == "dj@%"
        unknown = f"upload '{uid}' of account 'dj@%' does not exist"
        for q, args in [("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, data[size:])),
                        ("CALL dj_udf.upload_finish(%s, 2, NULL, NULL, @h)", (uid,)),
                        ("SELECT dj_udf.upload_status(%s)", (uid,)),
                        ("CALL dj_udf.upload_abort(%s)", (uid,))]:
            with pytest.raises(pymysql.err.MySQLError) as e:
                sql(other, q, args)
            assert unknown in e.value.args[1], e.value.args[1]
        # calling the function directly and claiming the owner's account does not help:
        # the library asks the server which account the connection has
        got = sql(other, "SELECT dj_upload_part(%s, 'root@localhost', 2, %s), CONVERT(dj_last_error() USING utf8mb4)",
                  (uid, data[size:]))[0]
        assert got[0] is None and "is not this connection's account 'dj@%'" in got[1], got
    finally:
        other.close()
    # untouched: the owner finishes it
    db.sql("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, data[size:]))
    db.sql("CALL dj_udf.upload_finish(%s, 2, NULL, NULL, @h)", (uid,))
    assert db.one("SELECT @h") == attach_hash("mine.bin", data)


# ---------------------------------------------------------------------------
# Limits, expiry, restart
# ---------------------------------------------------------------------------

def with_config(world, **keys):
    world.write_config(dict(world.base_config, **keys))


def abort_all_of_root(db, world):
    """Aborts root's unfinished uploads, whichever test (or fuzz) left them."""
    for d in world.dirs["uploads"].iterdir():
        rec = json.loads((d / "upload.json").read_text())
        if rec["account"] == "root@localhost" and rec["phase"] != "finished":
            db.sql("CALL dj_udf.upload_abort(%s)", (d.name,))


def test_configured_limits_hold(db, world):
    with_config(world, max_upload_bytes=2500, max_open_uploads=2)
    abort_all_of_root(db, world)
    db.sql("CALL dj_udf.upload_open('localattach', %s, 'a.bin', 1000, @u)", (db.schema,))
    uid = db.one("SELECT @u")
    e = db.error("CALL dj_udf.upload_part(%s, 3, %s, @m)", (uid, bytes(1000)))
    assert "beyond the largest object allowed, 2500 bytes (config key max_upload_bytes)" in e, e
    db.sql("CALL dj_udf.upload_part(%s, 3, %s, @m)", (uid, bytes(500)))
    db.sql("CALL dj_udf.upload_open('localattach', %s, 'b.bin', 1000, @u2)", (db.schema,))
    e = db.error("CALL dj_udf.upload_open('localattach', %s, 'c.bin', 1000, @u3)", (db.schema,))
    assert "has 2 unfinished uploads, the most allowed (config key max_open_uploads)" in e, e
    other = other_account(world)
    try:
        sql(other, "CALL dj_udf.upload_open('localattach', %s, 'c.bin', 1000, @u)", (db.schema,))  # a limit per account
    finally:
        other.close()
    db.sql("CALL dj_udf.upload_abort(@u2)")
    db.sql("CALL dj_udf.upload_open('localattach', %s, 'c.bin', 1000, @u3)", (db.schema,))
    world.write_config({k: v for k, v in world.base_config.items() if k != "upload_dir"})
    e = db.error("CALL dj_udf.upload_open('localattach', %s, 'd.bin', 1000, @u4)", (db.schema,))
    assert "chunked uploads are off" in e and "has no upload_dir" in e, e


@FILE_S3
def test_abandoned_uploads_expire_and_are_removed(kind, db, world):
    size = part_size(kind)
    with_config(world, upload_expiry=1)
    time.sleep(2.1)
    db.sql("CALL dj_udf.expire_uploads(@n)")  # what other tests left, all expired by now
    db.sql("CALL dj_udf.upload_open(%s, %s, 'old.bin', %s, @u)", (kind.attach, db.schema, size))
    uid = db.one("SELECT @u")
    db.sql("CALL dj_udf.upload_part(%s, 1, %s, @m)", (uid, sample(size)))
    if kind.s3:
        assert len(unfinished_uploads(world)) == 1
    db.sql("CALL dj_udf.expire_uploads(@n)")
    assert db.one("SELECT @n") == 0, "not yet expired"
    time.sleep(2.2)
    e = db.error("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, b"x"))
    assert "expired" in e and "upload_expiry" in e, e
    db.sql("CALL dj_udf.expire_uploads(@n)")
    assert db.one("SELECT @n") == 1
    assert not (world.dirs["uploads"] / uid).exists()
    if kind.s3:
        assert unfinished_uploads(world) == [], "the S3 multipart upload is aborted"
    assert "does not exist" in db.error("SELECT dj_udf.upload_status(%s)", (uid,))


def restart(world):
    subprocess.run([str(ROOT / "scripts" / "server.sh"), "stop", str(world.srv)], check=True)
    world.start()


@FILE_S3
def test_an_upload_survives_a_server_restart(kind, world, db):
    size = part_size(kind)
    data = sample(3 * size - 7, 6)
    db.sql("CALL dj_udf.upload_open(%s, %s, 'long.bin', %s, @u)", (kind.attach, db.schema, size))
    uid = db.one("SELECT @u")
    parts = cut(data, size)
    db.sql("CALL dj_udf.upload_part(%s, 1, %s, @m)", (uid, parts[0]))
    db.sql("CALL dj_udf.upload_part(%s, 3, %s, @m)", (uid, parts[2]))
    db.conn.close()
    restart(world)
    db.conn = world.connect()
    status = json.loads(db.one("SELECT dj_udf.upload_status(%s)", (uid,)))
    assert [p["part"] for p in status["parts"]] == [1, 3]
    db.sql("CALL dj_udf.upload_part(%s, 2, %s, @m)", (uid, parts[1]))
    db.sql("CALL dj_udf.upload_finish(%s, 3, NULL, %s, @h)", (uid, attach_hash("long.bin", data)))
    h = db.one("SELECT @h")
    assert attach_path(world, kind.attach, db.schema, h, "long.bin").read_bytes() == data
    assert tracking_row(db, kind.attach, h)[1:3] == (len(data), "long.bin")


# ---------------------------------------------------------------------------
# Ranged reads
# ---------------------------------------------------------------------------

def read_range(db, store, h, offset, length, schema=None):
    """dj_udf.read_range's one row: (size, data)."""
    with db.conn.cursor() as cur:
        cur.execute("CALL dj_udf.read_range(%s, %s, %s, %s, %s)", (store, schema or db.schema, h, offset, length))
        row = cur.fetchone()
        while cur.nextset():
            pass
    return row


def read_all(db, store, h, chunk):
    size, data = read_range(db, store, h, 0, chunk)
    got = [data]
    while sum(map(len, got)) < size:
        got.append(read_range(db, store, h, sum(map(len, got)), chunk)[1])
    return b"".join(got)


@FILE_S3
def test_ranged_reads_return_any_range_of_blobs_attachments_and_files(kind, db, world):
    att = sample(10_000, 7)
    db.sql("CALL dj_udf.attach_put(%s, %s, 'r.bin', %s, @a)", (kind.attach, db.schema, att))
    blob = blob_bytes(7_000, 8)
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @b)", (kind.blob, db.schema, blob))
    staged = world.stage(kind.data) / db.schema / "f.dat"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(att[:5000])
    db.sql("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, db.schema, str(staged)))
    a, b, f = db.one("SELECT @a, @b, @f")
    assert read_range(db, kind.attach, a, 0, 100) == (10_000, att[:100])
    assert read_range(db, kind.attach, a, 9_990, 100) == (10_000, att[9_990:])
    assert read_range(db, kind.attach, a, 10_000, 100) == (10_000, b"")
    assert read_range(db, kind.attach, a.hex(), 5, 5) == (10_000, att[5:10]), "the hash as hex"
    assert read_all(db, kind.attach, a, 3_000) == att
    assert read_all(db, kind.blob, b, 4_096) == blob
    assert read_all(db, kind.data, f, 999) == att[:5000]
    e = db.error("CALL dj_udf.read_range(%s, %s, %s, 10001, 5)", (kind.attach, db.schema, a))
    assert "past the end of the object" in e, e
    e = db.error("CALL dj_udf.read_range(%s, %s, %s, 0, 5)", (kind.attach, db.schema, md5(b"none")))
    assert "has no row for hash" in e, e


@FILE_S3
def test_the_read_of_the_last_bytes_fails_when_the_object_is_not_what_its_row_says(kind, db, world):
    att = sample(10_000, 9)
    db.sql("CALL dj_udf.attach_put(%s, %s, 'c.bin', %s, @a)", (kind.attach, db.schema, att))
    a = db.one("SELECT @a")
    path = attach_path(world, kind.attach, db.schema, a, "c.bin")
    path.write_bytes(att[:6000] + bytes([att[6000] ^ 1]) + att[6001:])  # one bit, same size
    # read in order: every range before the last is served, the last one fails
    assert read_range(db, kind.attach, a, 0, 4000)[1] == att[:4000]
    assert read_range(db, kind.attach, a, 4000, 4000)[1][:2000] == att[4000:6000]
    e = db.error("CALL dj_udf.read_range(%s, %s, %s, 8000, 4000)", (kind.attach, db.schema, a))
    assert "checksum mismatch" in e and a.hex() in e, e
    # out of order (no hash carried over): the last range fails as well
    e = db.error("CALL dj_udf.read_range(%s, %s, %s, 9000, 4000)", (kind.attach, db.schema, a))
    assert "checksum mismatch" in e, e
    path.write_bytes(att[:-1])
    e = db.error("CALL dj_udf.read_range(%s, %s, %s, 0, 4000)", (kind.attach, db.schema, a))
    assert "size mismatch" in e, e


# ---------------------------------------------------------------------------
# The example clients
# ---------------------------------------------------------------------------

def client(world, *args, stdin=None, user="dj"):
    """Runs examples/dj_chunked.py over TCP as a client machine would."""
    cmd = [sys.executable, str(CLIENT), "--host", "127.0.0.1", "--port", str(world.port), "--user", user, "--password", "dj", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=600)


@FILE_S3
@pytest.mark.parametrize("protocol", ["long-data", "text"])
def test_the_python_client_puts_and_gets_a_file(kind, protocol, db, world, tmp_path):
    size = part_size(kind)
    data = sample(3 * size + 5, 10)
    src = tmp_path / "in put.bin"
    src.write_bytes(data)
    extra = ["--text-protocol"] if protocol == "text" else []
    got = client(world, "--progress", "put", kind.attach, db.schema, str(src), "--part-size", str(size), *extra)
    assert got.returncode == 0, got.stderr.decode()
    h = got.stdout.decode().strip()
    assert h == attach_hash("in put.bin", data).hex()
    assert b"100.0%" in got.stderr, "the progress bar"
    assert attach_path(world, kind.attach, db.schema, bytes.fromhex(h), "in put.bin").read_bytes() == data
    out = tmp_path / "out.bin"
    got = client(world, "get", kind.attach, db.schema, h, str(out), "--chunk", str(size // 3 + 1))
    assert got.returncode == 0, got.stderr.decode()
    assert out.read_bytes() == data
    # a blob from standard input, and back to standard output
    blob = blob_bytes(2 * size, 11)
    got = client(world, "put", kind.blob, db.schema, "-", "--blob", "--part-size", str(size), *extra, stdin=blob)
    assert got.returncode == 0, got.stderr.decode()
    hb = got.stdout.decode().strip()
    assert hb == md5(blob).hex()
    got = client(world, "get", kind.blob, db.schema, hb, "-")
    assert got.returncode == 0 and got.stdout == blob


def test_the_python_client_refuses_what_does_not_hash_right_and_resumes(db, world, tmp_path):
    data = sample(5000, 12)
    src = tmp_path / "r.bin"
    src.write_bytes(data)
    h = attach_hash("r.bin", data)
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'r.bin', %s, @a)", (db.schema, data))
    attach_path(world, "localattach", db.schema, h, "r.bin").write_bytes(bytes(5000))
    out = tmp_path / "out.bin"
    got = client(world, "get", "localattach", db.schema, h.hex(), str(out), "--chunk", "1000")
    assert got.returncode != 0 and b"checksum mismatch" in got.stderr, got.stderr
    assert not out.exists() and not list(tmp_path.glob("out.bin.part*")), "nothing is left under any name"
    attach_path(world, "localattach", db.schema, h, "r.bin").unlink()
    # resume: the server has parts 1 and 3; the client sends what is missing
    other = other_account(world)
    try:
        sql(other, "CALL dj_udf.upload_open('localattach', %s, 'r.bin', 2000, @u)", (db.schema,))
        uid = sql(other, "SELECT @u")[0][0]
        for n in (1, 3):
            sql(other, "CALL dj_udf.upload_part(%s, %s, %s, @m)", (uid, n, data[(n - 1) * 2000:n * 2000]))
    finally:
        other.close()
    got = client(world, "put", "localattach", db.schema, str(src), "--resume", uid)
    assert got.returncode == 0, got.stderr.decode()
    assert got.stdout.decode().strip() == h.hex()
    assert attach_path(world, "localattach", db.schema, h, "r.bin").read_bytes() == data


@FILE_S3
def test_the_shell_client_puts_and_gets_a_file(kind, db, world, tmp_path):
    if not shutil.which("mariadb"):
        need("mariadb-client", strict=True)
    size = part_size(kind)
    data = sample(2 * size + 77, 13)
    src = tmp_path / "it's shell.bin"
    src.write_bytes(data)
    env = dict(os.environ, MARIADB_OPTS=f"--socket={world.socket} --user=root", PART_SIZE=str(size), CHUNK=str(size // 2 + 3))
    got = subprocess.run([str(SHELL_CLIENT), "put", kind.attach, db.schema, str(src)], env=env, capture_output=True, timeout=300)
    assert got.returncode == 0, got.stderr.decode()
    h = got.stdout.decode().strip()
    assert h == attach_hash("it's shell.bin", data).hex()
    out = tmp_path / "back.bin"
    got = subprocess.run([str(SHELL_CLIENT), "get", kind.attach, db.schema, h, str(out)], env=env, capture_output=True, timeout=300)
    assert got.returncode == 0, got.stderr.decode()
    assert out.read_bytes() == data
    assert list(tmp_path.iterdir()) == sorted([src, out]) or set(tmp_path.iterdir()) == {src, out}


# ---------------------------------------------------------------------------
# DataJoint 0.14.9 reads what came in chunks; the acceptance run
# ---------------------------------------------------------------------------

# The store keys DataJoint itself knows.
DJ_KEYS = ["protocol", "location", "subfolding", "stage", "endpoint", "bucket", "access_key", "secret_key", "secure"]


@pytest.fixture
def datajoint(world, db):
    """DataJoint 0.14.9 connected as 'dj' with the server's stores; a
    function that declares (in SQL, as DataJoint would) a table with one
    attachment and one blob column and returns DataJoint's view of it."""
    dj = import_needed("datajoint")
    from datajoint import settings
    conf = dj.config.instance._conf
    saved = dict(conf)
    conf.clear()
    conf.update(settings.default)
    conf.update({"database.host": "127.0.0.1", "database.port": world.port, "database.user": "dj", "database.password": "dj",
                 "database.use_tls": False, "safemode": False, "display.progress": False,
                 "stores": {n: {k: v for k, v in spec.items() if k in DJ_KEYS} for n, spec in world.base_config["stores"].items()
                            if n in ("localattach", "main", "s3attach", "s3blobs")}})
    conn = dj.Connection(f"127.0.0.1:{world.port}", "dj", "dj", use_tls=False)

    def table(attach_store, blob_store):
        s = db.schema
        db.sql(f"""CREATE TABLE `{s}`.`rec` (
            `rec_id` int NOT NULL COMMENT "",
            `data` binary(16) DEFAULT NULL COMMENT ":attach@{attach_store}:",
            `val` binary(16) DEFAULT NULL COMMENT ":blob@{blob_store}:",
            PRIMARY KEY (`rec_id`),
            FOREIGN KEY (`data`) REFERENCES `{s}`.`~external_{attach_store}` (`hash`) ON UPDATE RESTRICT ON DELETE RESTRICT,
            FOREIGN KEY (`val`) REFERENCES `{s}`.`~external_{blob_store}` (`hash`) ON UPDATE RESTRICT ON DELETE RESTRICT
            ) ENGINE=InnoDB, COMMENT "chunked" """)
        return dj.VirtualModule("vm", s, connection=conn).Rec

    yield dj, table
    conn.close()
    conf.clear()
    conf.update(saved)


@FILE_S3
def test_datajoint_fetches_objects_put_in_chunks(kind, db, world, datajoint, tmp_path):
    dj, table = datajoint
    size = part_size(kind)
    data = sample(2 * size + 3, 14)
    packed = dj.blob.pack({"samples": list(range(1000)), "name": "x" * (2 * size)})
    h = upload(db, kind.attach, "from sql.bin", data, size, order=[2, 3, 1])
    hb = upload(db, kind.blob, None, packed, size)
    Rec = table(kind.attach, kind.blob)
    db.sql(f"INSERT INTO `{db.schema}`.rec VALUES (1, %s, %s)", (h, hb))
    path, val = (Rec & "rec_id = 1").fetch1("data", "val", download_path=str(tmp_path))
    assert pathlib.Path(path).name == "from sql.bin" and pathlib.Path(path).read_bytes() == data
    assert val == {"samples": list(range(1000)), "name": "x" * (2 * size)}


@pytest.fixture
def packet_64m(world):
    """max_allowed_packet = 64M for the connections made meanwhile."""
    with world.connect() as c, c.cursor() as cur:
        cur.execute("SELECT @@global.max_allowed_packet")
        before = cur.fetchone()[0]
        cur.execute("SET GLOBAL max_allowed_packet = %s", (64 * MiB,))
    yield
    with world.connect() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL max_allowed_packet = %s", (before,))


def server_floor(world, pid, bare=False):
    """What MariaDB itself needs, beyond the library, to take one 64 MiB part
    into a loadable function on a new connection (dj_checksum, which only
    hashes its argument), passed as the example client passes it (or bare,
    which MariaDB copies), and to send one 64 MiB value out (a user variable
    that already holds it): the floor under the chunked transfer's peak."""
    data = sample(BIG_PART, 17)
    base = reset_peak(pid)["VmRSS"]
    conn = world.connect(user="dj", password="dj", autocommit=True)
    try:
        client = chunked_client()
        arg = "?" if bare else client.PART_SQL[client.PART_SQL.rindex("IF("):client.PART_SQL.rindex(")")]
        stmt = client.LongData(conn, f"SELECT dj_checksum({arg}) INTO @v")
        stmt.run([], data)
        stmt.close()
        into = vm(pid)["VmHWM"] - base
        with conn.cursor() as cur:
            cur.execute("SELECT @v")
            assert cur.fetchone()[0] == md5(data)
            cur.execute("SELECT @v := REPEAT('x', %s)", (BIG_PART,))
            cur.fetchall()
            base = reset_peak(pid)["VmRSS"]
            cur.execute("SELECT @v")
            assert len(cur.fetchone()[0]) == BIG_PART
        return into, vm(pid)["VmHWM"] - base
    finally:
        conn.close()


def chunked_client():
    """examples/dj_chunked.py as a module (for its LongData statement)."""
    spec = importlib.util.spec_from_file_location("dj_chunked", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated(total, seed):
    """`total` reproducible bytes, 8 MiB at a time, made on the fly (a
    multiplicative hash of each 8-byte word's position): never on disk."""
    import numpy as np  # DataJoint's own dependency

    step = 8 * MiB
    for at in range(0, total, step):
        n = min(step, total - at)
        words = np.arange(at // 8, (at + n + 7) // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(seed)
        yield words.tobytes()[:n]


def hash_stream(read, seed_name):
    h, n = hashlib.md5(seed_name.encode() + b"\0"), 0
    while chunk := read(8 * MiB):
        h.update(chunk)
        n += len(chunk)
    return h.digest(), n


@FILE_S3
def test_acceptance_a_large_object_in_and_out_in_64_mib_parts_through_a_64m_packet(kind, db, world, datajoint, packet_64m, tmp_path):
    """DJ_UDF_CHUNKED_BYTES (3 GiB by default) generated on the fly, put by
    the Python client over TCP in 64 MiB parts, read back in 64 MiB ranges,
    with the server's peak memory growing by at most two parts; then
    DataJoint 0.14.9 fetches it and gets the same bytes."""
    dj, table = datajoint
    name = "recording.bin"
    pid = world.server_pid()
    # one full part in and out first: what the server allocates once, on its
    # first transfer of this size, is not what grows with the object's size
    warm = sample(BIG_PART + 1000, 15)
    got = client(world, "put", kind.attach, db.schema, "-", "--name", "warm.bin", stdin=warm)
    assert got.returncode == 0, got.stderr.decode()
    assert client(world, "get", kind.attach, db.schema, got.stdout.decode().strip(), "-").stdout == warm
    base = reset_peak(pid)["VmRSS"]
    started = time.monotonic()

    cmd = [sys.executable, str(CLIENT), "--host", "127.0.0.1", "--port", str(world.port), "--user", "dj", "--password", "dj"]
    put = subprocess.Popen(cmd + ["put", kind.attach, db.schema, "-", "--name", name], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    want = hashlib.md5(name.encode() + b"\0")
    for chunk in generated(BIG, seed=16):
        want.update(chunk)
        put.stdin.write(chunk)
    put.stdin.close()
    out, err = put.stdout.read(), put.stderr.read()
    assert put.wait() == 0, err.decode()
    want = want.digest()
    assert out.decode().strip() == want.hex()
    put_s = time.monotonic() - started
    put_peak = vm(pid)["VmHWM"] - base
    base = reset_peak(pid)["VmRSS"]
    # every part was a full 64 MiB one: the packet limit, not less
    assert db.one(f"SELECT size FROM `{db.schema}`.`~external_{kind.attach}` WHERE hash = %s", (want,)) == BIG

    started = time.monotonic()
    get = subprocess.Popen(cmd + ["get", kind.attach, db.schema, want.hex(), "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got_hash, n = hash_stream(get.stdout.read, name)
    err = get.stderr.read()
    assert get.wait() == 0, err.decode()
    assert (got_hash, n) == (want, BIG)
    get_s = time.monotonic() - started
    get_peak = vm(pid)["VmHWM"] - base
    floor_in, floor_out = server_floor(world, pid)
    bare_in, _ = server_floor(world, pid, bare=True)
    print(f"\n{kind.name}: {BIG / MiB:.0f} MiB put in {put_s:.1f} s, got in {get_s:.1f} s; server peak "
          f"+{put_peak / MiB:.1f} MiB putting, +{get_peak / MiB:.1f} MiB getting; MariaDB's own cost of one part "
          f"into a loadable function +{floor_in / MiB:.1f} MiB (passed bare: +{bare_in / MiB:.1f} MiB), "
          f"of one part out +{floor_out / MiB:.1f} MiB")
    # In, one part: the statement's parameter (the client keeps MariaDB from
    # copying it for the function), plus what malloc's arena holds while the
    # parameter grows piece by piece (up to half a part the first time a
    # thread does it). Out, two: the function's result and the packet it is
    # copied into. The library's own buffers stay under 1 MiB.
    for what, peak in (("putting", put_peak), ("getting", get_peak)):
        assert peak <= 2 * BIG_PART + MiB, f"the server's peak memory grew by {peak / MiB:.1f} MiB {what}"

    Rec = table(kind.attach, "main")
    db.sql(f"INSERT INTO `{db.schema}`.rec VALUES (1, %s, NULL)", (want,))
    started = time.monotonic()
    path = pathlib.Path((Rec & "rec_id = 1").fetch1("data", download_path=str(tmp_path)))
    try:
        with open(path, "rb") as f:
            assert hash_stream(f.read, name) == (want, BIG)
    finally:
        path.unlink()
        attach_path(world, kind.attach, db.schema, want, name).unlink()
    print(f"{kind.name}: DataJoint fetched it in {time.monotonic() - started:.1f} s")


def test_the_chunked_routines_leave_the_session_as_they_found_it(db, world):
    names = ["dj_udf_n", "dj_udf_sz", "dj_udf_nm", "dj_udf_fp", "dj_udf_ch", "dj_udf_v", "u", "m", "h"]
    for n in names:
        db.sql(f"SET @{n} = 'caller''s'")
    db.sql("SET SESSION group_concat_max_len = 1234")
    snapshot = lambda: db.sql("SELECT " + ", ".join(f"@{n}" for n in names) + ", @@SESSION.group_concat_max_len")  # noqa: E731
    before = snapshot()
    data = sample(2500, 17)
    uid = db.call_out("dj_udf.upload_open", "localattach", db.schema, "s.bin", 1000)
    assert snapshot() == before
    for n in (1, 2, 3):
        db.call_out("dj_udf.upload_part", uid, n, data[(n - 1) * 1000:n * 1000])
    json.loads(db.one("SELECT dj_udf.upload_status(%s)", (uid,)))
    h = db.call_out("dj_udf.upload_finish", uid, 3, None, None)
    assert snapshot() == before
    assert read_range(db, "localattach", h, 0, 5000) == (2500, data)
    with pytest.raises(pymysql.err.MySQLError):
        read_range(db, "localattach", md5(b"nothing"), 0, 10)
    db.sql("CALL dj_udf.expire_uploads(@removed)")
    uid = db.call_out("dj_udf.upload_open", "localattach", db.schema, "t.bin", 1000)
    db.sql("CALL dj_udf.upload_abort(%s)", (uid,))
    assert snapshot() == before
