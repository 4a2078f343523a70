"""The store scenarios on file and S3 stores alike, and what only S3 has:
metadata, multipart uploads with bounded memory, interrupted uploads,
signatures, unreachable servers and missing buckets.

The S3 server is s3s-fs: its bucket is a folder, so objects are inspected
and corrupted as files there (world.location gives the folder of a store)."""

import base64
import hashlib
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pymysql
import pytest

from conftest import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, attach_hash, md5

BLOB_3 = bytes.fromhex("646a30000d0000000000000840")  # dj.blob.pack(3.0)
MiB = 1 << 20

KINDS = {
    "file": {"attach": "localattach", "blob": "main", "data": "data"},
    "s3": {"attach": "s3attach", "blob": "s3blobs", "data": "s3data"},
    # location '/dj/slash': objects go under 'dj/slash/...'
    "s3slash": {"attach": "s3slash", "blob": "s3slash", "data": "s3slash"},
}


class Kind:
    def __init__(self, name, stores):
        self.name = name
        self.s3 = name != "file"
        self.attach, self.blob, self.data = stores["attach"], stores["blob"], stores["data"]


@pytest.fixture(params=list(KINDS))
def kind(request, world):
    if request.param != "file":
        request.getfixturevalue("s3")
    return Kind(request.param, KINDS[request.param])


def attach_path(world, store, schema, h, name):
    hx = h.hex()
    return world.location(store) / schema / hx[:2] / hx[2:4] / f"{hx}.{name}"


def blob_path(world, store, schema, h):
    hx = h.hex()
    return world.location(store) / schema / hx[:2] / hx[2:4] / hx


def s3_key(world, store, relative):
    return str(world.location(store).relative_to(world.dirs["s3root"] / S3_BUCKET) / relative)


def s3_metadata(world, store, relative):
    """The user metadata s3s-fs keeps for an object, in its own file."""
    enc = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")  # noqa: E731
    name = f".bucket-{enc(S3_BUCKET)}.object-{enc(s3_key(world, store, relative))}.metadata.json"
    return json.loads((world.dirs["s3root"] / name).read_text()).get("user_metadata", {})


def unfinished_uploads(world):
    return sorted(p.name for p in world.dirs["s3root"].glob(".upload_id-*"))


def leftovers(world, kind, store, schema):
    """Temporary files a put may have left: .saving files, or S3 upload parts."""
    if kind.s3:
        return unfinished_uploads(world)
    return [p for p in (world.location(store) / schema).rglob("*.saving")]


def test_attach_from_client_bytes(db, world, kind):
    s, st = db.schema, kind.attach
    db.sql(f"""CREATE TABLE `{s}`.scan (id int PRIMARY KEY, img binary(16) NOT NULL COMMENT ':attach@{st}:scan',
        FOREIGN KEY (img) REFERENCES `{s}`.`~external_{st}` (hash))""")
    data = os.urandom(300_000)
    h = db.call_out("dj_udf.attach_put", st, s, "scan 1.png", data)
    db.sql(f"INSERT INTO `{s}`.scan VALUES (1, %s)", (h,))
    assert h == attach_hash("scan 1.png", data)
    obj = attach_path(world, st, s, h, "scan 1.png")
    assert obj.read_bytes() == data
    assert db.tracking(st) == ((h, len(data), "scan 1.png", None, None),)
    rows = db.sql(f"""SELECT a.id, x.attachment_name, dj_udf.attach_get(%s, %s, a.img, x.attachment_name)
        FROM `{s}`.scan a JOIN `{s}`.`~external_{st}` x ON x.hash = a.img""", (st, s))
    assert rows == ((1, "scan 1.png", data),)
    # the same content again: one object, one row, nothing rewritten
    before = obj.stat().st_ino
    assert db.call_out("dj_udf.attach_put", st, s, "scan 1.png", data) == h
    assert len(db.tracking(st)) == 1 and obj.stat().st_ino == before


@pytest.mark.parametrize("size", [2_500_000, 20 * MiB])
def test_attach_from_server_file(db, world, kind, size):
    s, st = db.schema, kind.attach
    src = world.dirs["import"] / f"{s}-{size}" / "Ströme data.tar.gz"
    src.parent.mkdir()
    data = os.urandom(size)
    src.write_bytes(data)
    h = db.call_out("dj_udf.attach_put_file", st, s, str(src))
    assert h == attach_hash("Ströme data.tar.gz", data)
    assert attach_path(world, st, s, h, "Ströme data.tar.gz").read_bytes() == data
    assert db.tracking(st) == ((h, size, "Ströme data.tar.gz", None, None),)
    assert db.one("SELECT dj_verify(%s, %s, %s, %s, 'Ströme data.tar.gz', NULL, NULL)", (st, s, h, size)) == b"ok"
    assert not leftovers(world, kind, st, s)
    src.unlink()


def test_blob_put_get_verify_and_repair(db, world, kind):
    s, st = db.schema, kind.blob
    h = db.call_out("dj_udf.blob_put", st, s, BLOB_3)
    assert h.hex() == "676de6356c1b33e8084921c02b8cdea6"
    p = blob_path(world, st, s, h)
    assert p.read_bytes() == BLOB_3
    assert db.tracking(st) == ((h, len(BLOB_3), None, None, None),)
    assert db.one("SELECT dj_udf.blob_get(%s, %s, %s)", (st, s, h)) == BLOB_3
    assert db.one("SELECT dj_verify(%s, %s, %s, %s, NULL, NULL, NULL)", (st, s, h, len(BLOB_3))) == b"ok"
    p.write_bytes(BLOB_3[:-1] + b"\x41")
    msg = db.error("SELECT dj_udf.blob_get(%s, %s, %s)", (st, s, h))
    assert "checksum mismatch" in msg
    if kind.s3:
        assert f"in bucket '{S3_BUCKET}' of store '{st}'" in msg and s3_key(world, st, f"{s}/67/6d/{h.hex()}") in msg, msg
    # putting the same blob again repairs a truncated object
    p.write_bytes(BLOB_3[:5])
    db.call_out("dj_udf.blob_put", st, s, BLOB_3)
    assert p.read_bytes() == BLOB_3


def test_filepath_put_get_and_versions(db, world, kind):
    s, st = db.schema, kind.data
    stage, loc = world.stage(st), world.location(st)
    db.sql(f"""CREATE TABLE `{s}`.img (id int PRIMARY KEY, p binary(16) NOT NULL COMMENT ':filepath@{st}:file',
        FOREIGN KEY (p) REFERENCES `{s}`.`~external_{st}` (hash))""")
    rel = f"{s}/sub/dir/file.dat"
    f = stage / rel
    f.parent.mkdir(parents=True)
    f.write_bytes(b"version one")
    h = db.call_out("dj_udf.filepath_put", st, s, str(f))
    db.sql(f"INSERT INTO `{s}`.img VALUES (1, %s)", (h,))
    assert h == md5(rel.encode())
    assert (loc / rel).read_bytes() == b"version one"
    assert db.tracking(st) == ((h, 11, None, rel, md5(b"version one")),)
    if kind.s3:
        # DataJoint's metadata: the contents MD5 as UUID text
        assert s3_metadata(world, st, rel) == {"contents_hash": str(uuid.UUID(bytes=md5(b"version one")))}
    assert db.call_out("dj_udf.filepath_put", st, s, str(f)) == h
    f.write_bytes(b"version two!")
    assert db.error("CALL dj_udf.filepath_put(%s, %s, %s, @h)", (st, s, str(f))) == \
        f"A different version of '{rel}' has already been placed."
    assert db.one("SELECT dj_filepath_put(%s, %s)", (st, str(f))) is None
    assert "different version" in db.last_error()
    assert (loc / rel).read_bytes() == b"version one"
    q = f"""SELECT dj_udf.filepath_get(%s, x.filepath, x.contents_hash, x.size) FROM `{s}`.img i
            JOIN `{s}`.`~external_{st}` x ON x.hash = i.p"""
    assert "it is kept" in db.error(q, (st,)) and f.read_bytes() == b"version two!"
    assert db.one("SELECT dj_filepath_get(%s, %s, %s, 11, 1)", (st, rel, md5(b"version one"))) == str(f).encode()
    assert f.read_bytes() == b"version one"
    f.unlink()
    assert db.one(q, (st,)) == str(f) and f.read_bytes() == b"version one"
    (loc / rel).write_bytes(b"version ONE")
    f.unlink()
    assert "did not pass checksum" in db.error(q, (st,))
    assert not f.exists()


def test_verify_audits_a_whole_table(db, world, kind):
    s, st = db.schema, kind.attach
    names = ["ok.bin", "corrupt.bin", "short.bin", "gone.bin"]
    hashes = {n: db.call_out("dj_udf.attach_put", st, s, n, n.encode() * 100) for n in names}

    def path(n):
        return attach_path(world, st, s, hashes[n], n)

    b = bytearray(path("corrupt.bin").read_bytes())
    b[10] ^= 1
    path("corrupt.bin").write_bytes(bytes(b))
    path("short.bin").write_bytes(b"short")
    path("gone.bin").unlink()
    status = {r[2]: r[4] for r in db.sql("CALL dj_udf.verify(%s, %s)", (s, st))}
    assert status == {"ok.bin": "ok", "corrupt.bin": "checksum mismatch", "short.bin": "size mismatch", "gone.bin": "missing"}
    for n, why in [("corrupt.bin", "checksum mismatch"), ("gone.bin", "does not exist")]:
        msg = db.error("SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, s, hashes[n], n))
        assert why in msg and msg.startswith("dj_udf.attach_get: dj_attach_get:"), msg
        if kind.s3:
            assert f"bucket '{S3_BUCKET}'" in msg and f"store '{st}'" in msg, msg


def test_cleanup_removes_unused_objects_only(db, world, kind):
    s, st = db.schema, kind.attach
    db.sql(f"""CREATE TABLE `{s}`.doc (id int PRIMARY KEY, att binary(16) DEFAULT NULL COMMENT ':attach@{st}:optional',
        FOREIGN KEY (att) REFERENCES `{s}`.`~external_{st}` (hash))""")
    keep = db.call_out("dj_udf.attach_put", st, s, "keep.txt", b"keep")
    drop = db.call_out("dj_udf.attach_put", st, s, "drop.txt", b"drop")
    db.sql(f"INSERT INTO `{s}`.doc VALUES (1, %s), (2, NULL)", (keep,))
    db.sql("CALL dj_udf.cleanup(%s, %s, @rows, @objs, @fails)", (s, st))
    assert db.one("SELECT CONCAT_WS(',', @rows, @objs, @fails)") == "1,1,0"
    assert [r[2] for r in db.tracking(st)] == ["keep.txt"]
    assert attach_path(world, st, s, keep, "keep.txt").exists()
    assert not attach_path(world, st, s, drop, "drop.txt").exists()
    # a purge of an object already gone counts as done, not as a failure
    back = db.call_out("dj_udf.attach_put", st, s, "back.txt", b"back")
    db.sql("CALL dj_udf.delete_unused(%s, %s, @rows)", (s, st))
    attach_path(world, st, s, back, "back.txt").unlink()
    db.sql("CALL dj_udf.purge(%s, %s, @objs, @fails)", (s, st))
    assert db.one("SELECT CONCAT_WS(',', @objs, @fails)") == "0,0"


def test_attach_export_alias_rule(db, world, kind):
    s, st = db.schema, kind.attach
    data = b"contents A"
    h = db.call_out("dj_udf.attach_put", st, s, "data.tar.gz", data)
    out = world.dirs["export"] / f"{s}-{kind.name}"
    q = "SELECT dj_udf.attach_export(%s, %s, %s, 'data.tar.gz', %s)"
    first = db.one(q, (st, s, h, str(out)))
    assert first == str(out / "data.tar.gz") and pathlib.Path(first).read_bytes() == data
    assert db.one(q, (st, s, h, str(out))) == first
    (out / "data.tar.gz").write_bytes(b"someone else's file")
    assert db.one(q, (st, s, h, str(out))) == str(out / "data.tar_0000.gz")
    assert (out / "data.tar.gz").read_bytes() == b"someone else's file"
    (out / "data.tar_0000.gz").write_bytes(b"other")
    assert db.one(q, (st, s, h, str(out))) == str(out / "data.tar_0001.gz")
    # a corrupted stored object is never exported
    attach_path(world, st, s, h, "data.tar.gz").write_bytes(b"contents B")
    assert "checksum mismatch" in db.error(q, (st, s, h, str(world.dirs["export"] / f"{s}-{kind.name}-2")))
    assert not list((world.dirs["export"] / f"{s}-{kind.name}-2").iterdir())


def test_results_over_255_bytes_are_not_truncated(db, kind):
    s, st = db.schema, kind.attach
    data = os.urandom(100_000)
    h = db.call_out("dj_udf.attach_put", st, s, "big.bin", data)
    got = db.one("SELECT x FROM (SELECT dj_attach_get(%s, %s, %s, 'big.bin') AS x) AS sub", (st, s, h))
    assert got == data
    db.sql(f"CREATE TABLE `{s}`.copy AS SELECT dj_attach_get(%s, %s, %s, 'big.bin') AS x", (st, s, h))
    assert db.one(f"SELECT LENGTH(x) FROM `{s}`.copy") == len(data)


# ---------------------------------------------------------------------------
# S3 only
# ---------------------------------------------------------------------------

def test_empty_and_multipart_client_bytes(db, s3):
    world, s = s3, db.schema
    for name, data in [("empty.bin", b""), ("nine.bin", os.urandom(9 * MiB)), ("sixteen.bin", os.urandom(16 * MiB))]:
        h = db.call_out("dj_udf.attach_put", "s3attach", s, name, data)
        assert h == attach_hash(name, data)
        assert attach_path(world, "s3attach", s, h, name).read_bytes() == data
        assert db.one("SELECT dj_udf.attach_get('s3attach', %s, %s, %s)", (s, h, name)) == data
    assert not unfinished_uploads(world)


@pytest.mark.parametrize("size", [1000, 20 * MiB])
def test_filepath_metadata_and_refused_wrong_hash(db, s3, size):
    """A filepath object carries contents_hash whatever its size; a put whose
    bytes do not hash as claimed leaves nothing, single PUT or multipart."""
    world, s = s3, db.schema
    stage, loc = world.stage("s3data"), world.location("s3data")
    rel = f"{s}/f-{size}.dat"
    data = os.urandom(size)
    (stage / s).mkdir(exist_ok=True)
    (stage / rel).write_bytes(data)
    assert db.one("SELECT dj_filepath_put('s3data', %s, %s)", (str(stage / rel), md5(b"something else"))) is None
    assert "checksum mismatch" in db.last_error() and f"bucket '{S3_BUCKET}'" in db.last_error()
    assert not (loc / rel).exists() and not unfinished_uploads(world)
    # without a given hash the plugin hashes the file for the metadata
    h = db.one("SELECT dj_filepath_put('s3data', %s)", (str(stage / rel),))
    assert h == md5(rel.encode())
    assert (loc / rel).read_bytes() == data
    assert s3_metadata(world, "s3data", rel) == {"contents_hash": str(uuid.UUID(bytes=md5(data)))}


def test_slash_location_writes_the_stripped_key_and_misses_quickly(db, s3):
    world, s = s3, db.schema
    h = db.call_out("dj_udf.blob_put", "s3slash", s, BLOB_3)
    assert (world.dirs["s3root"] / S3_BUCKET / "dj" / "slash" / s / "67" / "6d" / h.hex()).read_bytes() == BLOB_3
    # a miss also tries the '/dj/slash/...' form, which s3s-fs answers with
    # HTTP 500: that second chance is not retried
    t = time.monotonic()
    assert db.one("SELECT dj_verify('s3slash', %s, %s, 4, NULL, NULL, NULL)", (s, md5(b"nothing"))) == b"missing"
    assert time.monotonic() - t < 1.0


def test_wrong_secret_is_rejected_by_the_server(db, s3):
    """s3s-fs checks signatures: a request signed with another secret fails
    with a clear message and writes nothing."""
    world, s = s3, db.schema
    t = time.monotonic()
    msg = db.error("CALL dj_udf.attach_put('s3badkey', %s, 'x.txt', 'payload', @h)", (s,))
    assert time.monotonic() - t < 2.0
    h = attach_hash("x.txt", b"payload")
    key = s3_key(world, "s3badkey", f"{s}/{h.hex()[:2]}/{h.hex()[2:4]}/{h.hex()}.x.txt")
    assert msg == (
        "dj_udf.attach_put: dj_attach_put: store 's3badkey': bad credentials: the S3 server rejected the request signature or access key "
        "(SignatureDoesNotMatch); check access_key and secret_key in the config file; "
        f"bucket '{S3_BUCKET}', key '{key}'"), msg
    assert not attach_path(world, "s3attach", s, h, "x.txt").exists()
    # the same call with the right secret works
    assert db.call_out("dj_udf.attach_put", "s3attach", s, "x.txt", b"payload") == h


FAULTS = {
    # store: (message, most seconds a call may take)
    "s3down": ("S3 endpoint 127.0.0.1:{down} is unreachable (connection refused; 2 attempts)", 2.0),
    "s3silent": ("HEAD timed out: the S3 server sent nothing for 2 s (config key 'timeout')", 3.5),
    "s3nobucket": ("the bucket does not exist on S3 endpoint 127.0.0.1:{s3} (NoSuchBucket)", 1.0),
    "s3badkey": ("bad credentials: the S3 server rejected the request signature or access key (SignatureDoesNotMatch)", 1.0),
}


@pytest.mark.parametrize("store", list(FAULTS))
def test_fault_cases_fail_clearly_and_in_time(db, s3, store, capsys):
    world, s = s3, db.schema
    want, limit = FAULTS[store]
    want = want.format(down=world.down_port, s3=world.s3_port)
    h = attach_hash("f.txt", b"data")
    calls = [
        ("put", lambda: db.error("CALL dj_udf.attach_put(%s, %s, 'f.txt', 'data', @h)", (store, s))),
        ("get", lambda: db.error("SELECT dj_udf.attach_get(%s, %s, %s, 'f.txt')", (store, s, h))),
        ("verify", lambda: db.one("SELECT dj_verify(%s, %s, %s, 4, 'f.txt', NULL, NULL)", (store, s, h)).decode()),
    ]
    timings = []
    for what, call in calls:
        t = time.monotonic()
        msg = call()
        took = time.monotonic() - t
        timings.append(f"{what} {took:.2f} s")
        assert want in msg, (what, msg)
        assert f"store '{store}'" in msg and "bucket '" in msg and "key '" in msg, msg
        assert took < limit, (what, took)
        assert S3_SECRET_KEY not in msg and S3_ACCESS_KEY not in msg and "not-the-secret" not in msg
    assert want in db.last_error()
    with capsys.disabled():
        print(f"\n  {store}: {', '.join(timings)} (limit {limit} s)")


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 whose certificate no system trusts."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not found")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.settimeout(5)
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield sock.getsockname()[1]
    stop.set()
    th.join()
    sock.close()


def test_secure_stores_speak_tls_and_verify_certificates(db, s3, tls_server):
    world, s = s3, db.schema
    cfg = json.loads(json.dumps(world.base_config))
    base = dict(cfg["stores"]["s3attach"], secure=True, retries=0)
    cfg["stores"]["s3tls"] = dict(base, endpoint=f"127.0.0.1:{tls_server}")
    cfg["stores"]["s3plain"] = dict(base)  # s3s-fs speaks plain HTTP only
    world.write_config(cfg)
    for store, want in [("s3tls", "TLS: invalid peer certificate: UnknownIssuer"), ("s3plain", "TLS: ")]:
        t = time.monotonic()
        msg = db.error("CALL dj_udf.attach_put(%s, %s, 'f.txt', 'data', @h)", (store, s))
        assert time.monotonic() - t < 2.0
        assert f"store '{store}': S3 endpoint 127.0.0.1:" in msg and want in msg, msg


def vm(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def big_file(path, size, seed):
    """Writes `size` bytes made of one random MiB and a seed, returns their MD5 as an attachment."""
    block = os.urandom(MiB)
    h = hashlib.md5(path.name.encode() + b"\0")
    with open(path, "wb") as f:
        for i in range(size // MiB):
            chunk = block if i else seed + block[len(seed):]
            f.write(chunk)
            h.update(chunk)
    return h.digest()


def test_300_mib_object_multipart_with_bounded_server_memory(db, s3, capsys):
    world, s = s3, db.schema
    size = 300 * MiB
    d = world.dirs["import"] / f"{s}-big"
    d.mkdir()
    src = d / "big.bin"
    want = big_file(src, size, s.encode())
    pid = world.server_pid()
    exact = reset_peak(pid)
    before = vm(pid)
    base = before["VmRSS"] if exact else before["VmHWM"]
    t = time.monotonic()
    h = db.call_out("dj_udf.attach_put_file", "s3attach", s, str(src))
    t_put = time.monotonic() - t
    assert h == want
    obj = attach_path(world, "s3attach", s, h, "big.bin")
    assert obj.stat().st_size == size and not unfinished_uploads(world)
    t = time.monotonic()
    assert db.one("SELECT dj_verify('s3attach', %s, %s, %s, 'big.bin', NULL, NULL)", (s, h, size)) == b"ok"
    t_verify = time.monotonic() - t
    out = world.dirs["export"] / s
    t = time.monotonic()
    path = db.one("SELECT dj_udf.attach_export('s3attach', %s, %s, 'big.bin', %s)", (s, h, str(out)))
    t_export = time.monotonic() - t
    after = vm(pid)
    growth = after["VmHWM"] - base
    with capsys.disabled():
        print(f"\n  300 MiB via S3: put {t_put:.1f} s, verify {t_verify:.1f} s, export {t_export:.1f} s; "
              f"server RSS {before['VmRSS'] / MiB:.0f} MiB before, peak {after['VmHWM'] / MiB:.0f} MiB, "
              f"growth {growth / MiB:.1f} MiB ({'peak reset' if exact else 'against earlier peak'})")
    exported = pathlib.Path(path)
    assert exported.stat().st_size == size
    hx = hashlib.md5(b"big.bin\0")
    with open(exported, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MiB), b""):
            hx.update(chunk)
    assert hx.digest() == h
    assert growth < 100 * MiB
    for p in (src, exported, obj):
        p.unlink()


def test_interrupted_upload_leaves_no_object(db, s3, capsys):
    world, s = s3, db.schema
    size = 200 * MiB
    d = world.dirs["import"] / f"{s}-cut"
    d.mkdir()
    src = d / "cut.bin"
    h = big_file(src, size, s.encode())
    result = {}

    def upload():
        conn = world.connect()
        t = time.monotonic()
        try:
            with conn.cursor() as cur:
                cur.execute("CALL dj_udf.attach_put_file('s3attach', %s, %s, @h)", (s, str(src)))
            result["ok"] = True
        except pymysql.err.MySQLError as e:
            result["error"] = e.args[1]
        result["took"] = time.monotonic() - t
        conn.close()

    before = set(unfinished_uploads(world))
    th = threading.Thread(target=upload)
    th.start()
    deadline = time.monotonic() + 60
    while not set(unfinished_uploads(world)) - before:
        assert th.is_alive() and time.monotonic() < deadline, result
        time.sleep(0.005)
    world.s3_stop(kill=True)
    th.join(120)
    assert not th.is_alive()
    assert "error" in result, result
    msg = result["error"]
    assert msg.startswith("dj_udf.attach_put_file: dj_attach_put_file: store 's3attach': S3 endpoint"), msg
    assert "is unreachable" in msg and f"bucket '{S3_BUCKET}'" in msg and "cut.bin" in msg, msg
    # retries 3 with 0.5, 1 and 2 s between them, for the part and the abort
    assert result["took"] < 20, result
    with capsys.disabled():
        print(f"\n  upload cut after its first part arrived: error after {result['took']:.1f} s: {msg[:110]}")
    world.s3_start()
    assert not attach_path(world, "s3attach", s, h, "cut.bin").exists()
    assert db.one("SELECT dj_object_size('s3attach', %s, %s, 'cut.bin', NULL)", (s, h)) is None
    assert db.tracking("s3attach") == ()
    # The parts of the killed upload stay on the server, invisible, until a
    # lifecycle rule removes them; here the test removes them.
    for p in set(unfinished_uploads(world)) - before:
        (world.dirs["s3root"] / p).unlink()
    src.unlink()


def test_s3_settings_shown_and_secrets_never(db, s3):
    world = s3
    stores = json.loads(db.one("SELECT dj_stores()"))["stores"]
    assert stores["s3attach"] == {
        "protocol": "s3", "endpoint": f"127.0.0.1:{world.s3_port}", "bucket": S3_BUCKET, "access_key": "<redacted>",
        "secret_key": "<redacted>", "secure": False, "region": "us-east-1", "connect_timeout": 5.0, "timeout": 60.0,
        "transfer_timeout": 14400.0, "retries": 3, "location": "dj/attach", "subfolding": [2, 2], "stage": None,
    }
    assert stores["s3down"]["connect_timeout"] == 2.0 and stores["s3down"]["retries"] == 1
    text = db.one("SELECT dj_stores()").decode()
    log = world.error_log()
    for secret in [S3_SECRET_KEY, S3_ACCESS_KEY, "not-the-secret"]:
        assert secret not in text and secret not in log
