"""Attacks by accounts with little or no privilege: `eve`, who has all rights
on her own schema and EXECUTE on dj_udf only, and `nobody`, who has no
privilege at all and calls the loadable functions directly. Where an attack
goes through the DBA's routines, root runs them afterwards."""

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import threading
import time
import uuid

import pymysql
import pytest

from conftest import PURGE_KEY, Session, md5

MiB = 1 << 20


class Account(Session):
    """One connection of an account, with the few helpers the tests use."""

    def __init__(self, world, user, password):
        super().__init__(world.connect(user=user, password=password, read_timeout=60))

    def connection_id(self):
        return self.one("SELECT CONNECTION_ID()")

    def close(self):
        with contextlib.suppress(Exception):
            self.conn.close()


@pytest.fixture(scope="module")
def accounts(world):
    """Creates eve (her schema `eve_…` with tracking tables, EXECUTE on
    dj_udf) and nobody (no privilege); yields eve's schema."""
    schema = "eve_" + uuid.uuid4().hex[:8]
    root = world.connect()
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{schema}`")
        for user in ("eve", "nobody"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
            cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{user}'")
        cur.execute(f"GRANT ALL PRIVILEGES ON `{schema}`.* TO 'eve'@'localhost'")
        cur.execute("GRANT EXECUTE ON dj_udf.* TO 'eve'@'localhost'")
    root.close()
    eve = Account(world, "eve", "eve")
    for store in ("localattach", "main", "data", "s3attach"):
        eve.sql("CALL dj_udf.create_tracking_table(%s, %s)", (schema, store))
    eve.close()
    yield schema


@pytest.fixture
def eve(world, accounts):
    a = Account(world, "eve", "eve")
    a.schema, a.credentials = accounts, ("eve", "eve")
    yield a
    a.close()
    world.write_config(world.base_config)
    assert world.alive(), "the server must survive every attack"


@pytest.fixture
def nobody(world, accounts):
    a = Account(world, "nobody", "nobody")
    yield a
    a.close()
    world.write_config(world.base_config)
    assert world.alive(), "the server must survive every attack"


def config_with(world, **changes):
    world.write_config(dict(world.base_config, **changes))


def sparse(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def temporaries(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".saving")]


def remove_tree(path):
    # rm copes with any depth (Python's rmtree recurses per level)
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


# ---------------------------------------------------------------------------
# 3. A deep folder tree crashes nothing
# ---------------------------------------------------------------------------

def nest(base, depth, name="d"):
    """Folders nested `depth` deep below base, one level at a time (the whole
    path would be far beyond PATH_MAX); returns the depth made."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deepest.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"at the bottom")
    finally:
        os.close(fd)


def test_folders_thousands_deep_crash_neither_listing_nor_sweep(eve, world):
    """Anyone who can write a file store (every DataJoint Python user of it)
    can nest folders under a schema folder; listing recursed once per level
    on the server's 292 KiB stack."""
    s = eve.schema
    eve.sql("START TRANSACTION")
    orphan = eve.call_out("dj_udf.attach_put", "localattach", s, "orphan.txt", b"left behind")
    eve.sql("ROLLBACK")
    top = world.dirs["attach"] / s / "zz"
    nest(top, 3000)
    try:
        # eve's own listing is refused (item 9), her call survives
        assert eve.one("SELECT dj_list_objects('localattach', %s, '', 10, NULL)", (s,)) is None
        root = world.connect()
        with root.cursor() as cur:
            cur.execute("SELECT dj_list_objects('localattach', %s, '', 1000, %s)", (s, PURGE_KEY))
            listed = json.loads(cur.fetchone()[0])
            assert orphan.hex() in [o["hash"] for o in listed], listed
            assert not [o for o in listed if o["key"].startswith(f"{s}/zz/")], "nothing that deep is an object"
            cur.execute("CALL dj_udf.sweep(%s, 'localattach', 0, @n)", (s,))
            cur.execute("SELECT @n")
            assert cur.fetchone()[0] >= 1
        root.close()
        assert not list((world.dirs["attach"] / s).glob("*/*/*.orphan.txt"))
        assert world.alive()
        assert "Got signal" not in world.error_log()
    finally:
        remove_tree(top)


# ---------------------------------------------------------------------------
# 4. Arguments are read as the server filled them
# ---------------------------------------------------------------------------

def test_numbers_for_names_are_never_read_as_strings(nobody):
    """0x4141414141414141 and 0x4242424242424242: were a constant number read
    as a string of its text length, the message would echo 'AAAAAAAABBBB…'."""
    msg = nobody.error("SELECT dj_blob_get(4702111234474983745, 4774451407313060418, 'x')")
    assert "argument 1 (store) must be a store name, not a number" in msg, msg
    # a number where text is expected: converted by the server, checked per row
    assert nobody.one("SELECT dj_file_checksum(4702111234474983745)") is None
    err = nobody.last_error()
    assert "'4702111234474983745' refused: server paths must be absolute" in err, err
    assert nobody.one("SELECT dj_attach_get('localattach', 4774451407313060418, REPEAT('0', 32), 4702111234474983745)") is None
    for text in (msg, err, nobody.last_error()):
        assert "AAAA" not in text and "BBBB" not in text, text


# ---------------------------------------------------------------------------
# 5. The result bytes held by all call sites are bounded
# ---------------------------------------------------------------------------

def test_results_held_at_once_are_bounded_server_wide(eve, world):
    s = eve.schema
    hashes = [eve.call_out("dj_udf.attach_put", "localattach", s, f"r{i}.bin", os.urandom(MiB)) for i in range(4)]
    config_with(world, max_held_bytes=MiB * 5 // 2)
    sites = ", ".join(f"LENGTH(dj_attach_get('localattach', %s, %s, 'r{i}.bin'))" for i in range(4))
    args = [v for h in hashes for v in (s, h)]
    assert eve.one(f"SELECT {sites}", args) == (MiB, MiB, None, None)
    assert "max_held_bytes" in eve.last_error(), eve.last_error()
    # held only until the statement ends, and a row's result replaces the last one
    two = "LENGTH(dj_attach_get('localattach', %s, %s, 'r0.bin')), LENGTH(dj_attach_get('localattach', %s, %s, 'r1.bin'))"
    assert eve.one(f"SELECT {two}", args[:4]) == (MiB, MiB)
    rows = eve.sql(f"""SELECT LENGTH(dj_attach_get('localattach', %s, hash, attachment_name)) FROM `{s}`.`~external_localattach`
                       WHERE attachment_name LIKE 'r_.bin'""", (s,))
    assert rows == ((MiB,),) * 4


# ---------------------------------------------------------------------------
# 6. Long calls, puts included, stop when their statement is killed
# ---------------------------------------------------------------------------

def killed_within(world, account, q, args, before_kill, ready=lambda: True):
    """Runs q on account's connection, kills it with KILL QUERY from a second
    connection of the same account once `before_kill` seconds passed and
    `ready()` holds, and returns the seconds the statement took to end after
    the kill and the message it ended with."""
    target = account.connection_id()
    other = Account(world, *account.credentials)
    outcome = {}

    def run():
        try:
            outcome["rows"] = account.sql(q, args)
            # A statement killed while its last row is computed may still end
            # normally, its result NULL: the call says why.
            outcome["error"] = account.last_error()
        except pymysql.err.MySQLError as e:
            outcome["error"] = e.args[1] if e.args[0] != 1317 else "killed: Query execution was interrupted"
        outcome["ended"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    start = time.monotonic()
    while time.monotonic() - start < before_kill or not ready():
        assert t.is_alive(), f"the statement ended before the kill: {outcome}"
        assert time.monotonic() - start < 60
        time.sleep(0.05)
    killed = time.monotonic()
    other.sql(f"KILL QUERY {target}")
    t.join(60)
    other.close()
    assert not t.is_alive()
    return outcome["ended"] - killed, outcome["error"]


def test_kill_query_stops_checksums_puts_and_exports(eve, world, s3):
    s = eve.schema
    folder = world.dirs["import"] / f"{s}-kill"
    try:
        # a checksum of 8 GiB (at ~600 MB/s: 13 s)
        big = sparse(folder / "big.bin", 8 << 30)
        took, err = killed_within(world, eve, "SELECT dj_file_checksum(%s)", (str(big),), 0.7)
        assert took < 3, f"the checksum went on for {took:.1f} s after KILL QUERY"
        assert "killed" in str(err), err

        # a put to a file store: nothing half-written, nothing tracked
        put = sparse(folder / "put.bin", 4 << 30)
        took, err = killed_within(world, eve, "CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (s, str(put)), 0.7,
                                  ready=lambda: bool(temporaries(world.dirs["attach"] / s)))
        assert took < 3, f"the put went on for {took:.1f} s after KILL QUERY"
        assert "killed" in str(err), err
        assert temporaries(world.dirs["attach"] / s) == []
        assert not list((world.dirs["attach"] / s).rglob("*.put.bin"))
        assert eve.one(f"SELECT COUNT(*) FROM `{s}`.`~external_localattach` WHERE attachment_name = 'put.bin'") == 0

        # a put to an S3 store, killed during its multipart upload: aborted
        uploads = world.dirs["s3root"]
        before = set(uploads.glob(".upload_id-*"))
        markers = set(world.location("s3attach").glob(".dj-uploads/*"))
        s3put = sparse(folder / "s3put.bin", 1 << 30)
        took, err = killed_within(world, eve, "CALL dj_udf.attach_put_file('s3attach', %s, %s, @h)", (s, str(s3put)), 0.5,
                                  ready=lambda: bool(set(uploads.glob(".upload_id-*")) - before))
        assert took < 5, f"the S3 put went on for {took:.1f} s after KILL QUERY"
        assert "killed" in str(err), err
        assert set(uploads.glob(".upload_id-*")) == before, "the upload was aborted"
        assert set(world.location("s3attach").glob(".dj-uploads/*")) == markers, "and its marker removed"
        assert not list(world.location("s3attach").glob(f"{s}/**/*.s3put.bin"))

        # an export of a 4 GiB object (its bytes do not matter: it is never finished)
        h = bytes(range(16))
        obj = sparse(world.dirs["attach"] / s / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.huge.bin", 4 << 30)
        out = world.dirs["export"] / f"{s}-kill"
        took, err = killed_within(world, eve, "SELECT dj_udf.attach_export('localattach', %s, %s, 'huge.bin', %s)", (s, h, str(out)), 0.7,
                                  ready=lambda: bool(temporaries(out)))
        assert took < 3, f"the export went on for {took:.1f} s after KILL QUERY"
        assert "killed" in str(err), err
        assert list(out.iterdir()) == [], "no temporary file, no partial file"
        obj.unlink()
    finally:
        remove_tree(folder)
    assert world.alive()


# ---------------------------------------------------------------------------
# 7. The stage: no file replaced unless asked, nothing created for nothing
# ---------------------------------------------------------------------------

def test_a_newer_staged_file_is_never_replaced_behind_its_owners_back(db, eve, world):
    alice = db.schema
    staged = world.stage("data") / alice / "scan.dat"
    staged.parent.mkdir()
    staged.write_bytes(b"version one")
    db.call_out("dj_udf.filepath_put", "data", alice, str(staged))
    staged.write_bytes(b"version two, not uploaded yet")
    rel, ch, size = f"{alice}/scan.dat", md5(b"version one"), 11
    assert eve.one("SELECT dj_filepath_get('data', %s, %s, %s)", (rel, ch, size)) is None
    assert "already exists and differs from the stored file; it is kept" in eve.last_error()
    assert "it is kept" in eve.error("SELECT dj_udf.filepath_get('data', %s, %s, %s)", (rel, ch, size))
    assert staged.read_bytes() == b"version two, not uploaded yet"
    # the owner can ask for the stored version
    assert db.one("SELECT dj_filepath_get('data', %s, %s, %s, 1)", (rel, ch, size)) == str(staged).encode()
    assert staged.read_bytes() == b"version one"
    # a copy that passes is kept as it is
    assert eve.one("SELECT dj_udf.filepath_get('data', %s, %s, %s)", (rel, ch, size)) == str(staged)


def test_fetching_a_missing_filepath_object_creates_nothing(eve, world):
    rel = f"{eve.schema}/no/such/folders/x.dat"
    assert eve.one("SELECT dj_filepath_get('data', %s, NULL, 5)", (rel,)) is None
    assert "does not exist" in eve.last_error()
    assert not (world.stage("data") / eve.schema).exists()


# ---------------------------------------------------------------------------
# 8. Exports: bounded depth, length, space and name search
# ---------------------------------------------------------------------------

def test_exports_cannot_nest_without_bound_or_exceed_their_quota(eve, world):
    s = eve.schema
    h = eve.call_out("dj_udf.attach_put", "localattach", s, "e.bin", b"exported")
    top = world.dirs["export"] / f"{s}-bounds"
    deep = str(top) + "/d" * 100
    assert eve.one("SELECT dj_attach_export('localattach', %s, %s, 'e.bin', %s)", (s, h, deep)) is None
    assert "more than 64 folders below" in eve.last_error(), eve.last_error()
    long = str(top) + ("/" + "x" * 200) * 21
    assert eve.one("SELECT dj_attach_export('localattach', %s, %s, 'e.bin', %s)", (s, h, long)) is None
    assert "longer than 4095 bytes" in eve.last_error(), eve.last_error()
    assert not top.exists(), "nothing was created"

    # a quota per export folder, whatever one statement asks
    used = sum(f.stat().st_size for f in world.dirs["export"].rglob("*") if f.is_file() and not f.is_symlink())
    hashes = [eve.call_out("dj_udf.attach_put", "localattach", s, f"q{i}.bin", os.urandom(MiB)) for i in range(3)]
    config_with(world, export_quota_bytes=used + MiB * 5 // 2)
    sites = ", ".join(f"dj_attach_export('localattach', %s, %s, 'q{i}.bin', %s)" for i in range(3))
    got = eve.one(f"SELECT {sites}", [v for h in hashes for v in (s, h, str(top))])
    assert got[:2] == tuple(str(top / f"q{i}.bin").encode() for i in range(2)) and got[2] is None, got
    assert "over its quota" in eve.last_error() and "export_quota_bytes" in eve.last_error()
    remove_tree(top)


def test_planted_files_cannot_block_an_export_name(eve, world):
    """Every name DataJoint's rule could give (name, name_0000 … name_ffff)
    taken: the export still finds a name, after a bounded search."""
    s = eve.schema
    h = eve.call_out("dj_udf.attach_put", "localattach", s, "p.txt", b"planted around")
    out = world.dirs["export"] / f"{s}-planted"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in ["p.txt"] + [f"p_{n:04x}.txt" for n in range(0x10000)]:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        t = time.monotonic()
        path = eve.one("SELECT dj_udf.attach_export('localattach', %s, %s, 'p.txt', %s)", (s, h, str(out)))
        assert time.monotonic() - t < 5
        assert pathlib.Path(path).read_bytes() == b"planted around"
        assert pathlib.Path(path).name.startswith("p_") and len(pathlib.Path(path).name) == len("p_00000000.txt"), path
    finally:
        remove_tree(out)


# ---------------------------------------------------------------------------
# 9. Listing is gated like deleting
# ---------------------------------------------------------------------------

def test_listing_needs_the_purge_key_and_reveals_nothing_without_it(db, eve, nobody):
    alice = db.schema
    db.call_out("dj_udf.attach_put", "localattach", alice, "secret plan.txt", b"alice's")
    for who in (eve, nobody):
        msg = who.error("SELECT dj_list_objects('localattach', %s, '', 10)", (alice,))
        assert "takes 5 arguments" in msg, msg
        for key in (None, "", "guess", PURGE_KEY[:-1], PURGE_KEY + "x", PURGE_KEY.upper()):
            assert who.one("SELECT dj_list_objects('localattach', %s, '', 10, %s)", (alice, key)) is None
            assert "wrong purge key: listing objects refused" in who.last_error(), key
    listed = json.loads(db.one("SELECT dj_list_objects('localattach', %s, '', 10, %s)", (alice, PURGE_KEY)))
    assert [o["attachment_name"] for o in listed] == ["secret plan.txt"]
    # the routine eve may execute reads the key from a table she cannot read
    assert "purge_key" in eve.error("CALL dj_udf.sweep(%s, 'localattach', 0, @n)", (alice,))


# ---------------------------------------------------------------------------
# 10. A total deadline for S3 downloads; plain HTTP beyond this machine is warned about
# ---------------------------------------------------------------------------

class Trickle:
    """An HTTP server on 127.0.0.1 that answers HEAD with a size and GET with
    that many bytes, one every 0.2 s: slow enough for ever, never stalled."""

    SIZE = 10_000

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.SIZE}\r\nConnection: close\r\n\r\n".encode())
            if head.startswith(b"GET"):
                for _ in range(self.SIZE):
                    if self.stop.wait(0.2):
                        return
                    conn.sendall(b"x")

    def close(self):
        self.stop.set()
        self.sock.close()


def test_a_trickling_s3_server_cannot_hold_a_call(eve, world):
    slow = Trickle()
    try:
        stores = dict(world.base_config["stores"], s3slow={
            "protocol": "s3", "endpoint": f"127.0.0.1:{slow.port}", "bucket": "b", "location": "x",
            "access_key": "k", "secret_key": "s", "timeout": 1, "transfer_timeout": 2, "retries": 0})
        config_with(world, stores=stores)
        eve.sql("CALL dj_udf.create_tracking_table(%s, 's3slow')", (eve.schema,))
        t = time.monotonic()
        assert eve.one("SELECT dj_attach_get('s3slow', %s, REPEAT('0', 32), 'x.bin')", (eve.schema,)) is None
        assert time.monotonic() - t < 6
        assert "transfer_timeout" in eve.last_error(), eve.last_error()
    finally:
        slow.close()


def test_plain_http_to_another_machine_is_warned_about(nobody, world):
    remote = dict(world.base_config["stores"]["s3attach"], endpoint="s3.example.org:9000")
    config_with(world, stores=dict(world.base_config["stores"], faraway=remote))
    stores = json.loads(nobody.one("SELECT dj_stores()"))
    assert stores["warnings"] == [
        "store 'faraway': secure is false, so objects and the signed requests that grant access to them travel "
        "unencrypted to s3.example.org:9000; set \"secure\": true"]
