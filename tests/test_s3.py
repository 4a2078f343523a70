"""What only S3 stores have: object metadata, multipart uploads with bounded
server memory, interrupted uploads, the leading-'/' location, signatures,
TLS, unreachable servers and missing buckets, the settings shown. What S3
shares with file stores is in test_stores.py.

The S3 server is s3s-fs: its bucket is a folder, so objects are inspected
as files there (world.location gives the folder of a store)."""

import base64
import hashlib
import http.client
import json
import os
import pathlib
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pymysql
import pytest

from s3_gate import presign
from conftest import (BLOB_3, MiB, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, attach_hash, attach_path, md5, md5_file, need,
                      reset_peak, s3_key, s3_metadata, unfinished_uploads, vm)


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
    need("openssl")
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


def big_file(world, schema, name, size):
    """Writes `size` bytes (one random MiB over and over, the first one
    starting with the schema's name) to import/<schema>-<name>/<name>;
    returns the path and the file's attachment hash."""
    path = world.dirs["import"] / f"{schema}-{name}" / name
    path.parent.mkdir()
    block = os.urandom(MiB)
    h = hashlib.md5(name.encode() + b"\0")
    with open(path, "wb") as f:
        for i in range(size // MiB):
            chunk = block if i else schema.encode() + block[len(schema):]
            f.write(chunk)
            h.update(chunk)
    return path, h.digest()


def test_300_mib_object_multipart_with_bounded_server_memory(db, s3, capsys):
    world, s = s3, db.schema
    size = 300 * MiB
    src, want = big_file(world, s, "big.bin", size)
    pid = world.server_pid()
    before = reset_peak(pid)
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
    growth = after["VmHWM"] - before["VmHWM"]
    with capsys.disabled():
        print(f"\n  300 MiB via S3: put {t_put:.1f} s, verify {t_verify:.1f} s, export {t_export:.1f} s; "
              f"server RSS {before['VmRSS'] / MiB:.0f} MiB before, peak {after['VmHWM'] / MiB:.0f} MiB, "
              f"growth {growth / MiB:.1f} MiB")
    exported = pathlib.Path(path)
    assert exported.stat().st_size == size
    assert md5_file(exported, b"big.bin\0") == h
    assert growth < 100 * MiB
    for p in (src, exported, obj):
        p.unlink()


def test_interrupted_upload_leaves_no_object(db, s3, capsys):
    world, s = s3, db.schema
    src, h = big_file(world, s, "cut.bin", 200 * MiB)
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
        "credentials": {"source": "static"}, "addressing": "path",
    }
    assert stores["s3down"]["connect_timeout"] == 2.0 and stores["s3down"]["retries"] == 1
    text = db.one("SELECT dj_stores()").decode()
    log = world.error_log()
    for secret in [S3_SECRET_KEY, S3_ACCESS_KEY, "not-the-secret"]:
        assert secret not in text and secret not in log


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


@pytest.mark.parametrize("size", [9 * MiB, 20 * MiB])
def test_file_changed_between_the_s3_passes_is_not_stored(db, s3, gate, size):
    """attach_put_file on S3 hashes a file larger than one PUT, looks the
    object up, then rewinds and uploads it: the gate rewrites the file (same
    size, other bytes) when the lookup arrives. The upload must fail its
    check, and nothing may be stored under either hash, nor an unfinished
    upload stay."""
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


def test_a_small_file_is_sent_as_it_was_hashed(db, s3, gate):
    """A file that fits one PUT is read once, into memory: the conditional
    PUT sends the bytes that were hashed. The gate rewrites the file while
    that PUT is on its way; what is stored is the file as it was read,
    under its hash, with no lookup before it."""
    world, s = s3, db.schema
    name = "small.bin"
    src = world.dirs["import"] / f"{s}-small" / name
    src.parent.mkdir()
    first, second = os.urandom(1_000_000), os.urandom(1_000_000)
    src.write_bytes(first)
    old = attach_hash(name, first)

    def rewrite(_request):
        with open(src, "r+b") as f:
            f.write(second)

    # the bucket seen lately (else a lookup goes first, to check it)
    db.one("SELECT dj_attach_put('s3attach', %s, 'seen.bin', %s)", (s, os.urandom(100)))
    hook = gate.once(lambda r: old.hex() in r.path, rewrite)
    assert db.call_out("dj_udf.attach_put_file", "s3attach", s, str(src)) == old
    assert hook.fired.is_set() and hook.request.method == "PUT", hook.request
    assert hook.request.header("if-none-match") == "*"
    assert attach_path(world, "s3attach", s, old, name).read_bytes() == first
    src.unlink()
