"""Monitoring: the store counters (dj_udf.store_stats, dj_udf.store_latency)
move as each operation runs on a file store and an S3 store; a transfer is
listed in dj_udf.transfers while it runs (held deterministically by the S3
gate) and is gone after success, failure and KILL; dj_udf.health names what
is wrong with a store; the raw functions answer only with the purge key, and
the views are read with a grant; 16 connections put while another reads the
views; and the Prometheus example of docs/monitoring.md gives valid metrics."""

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

import pymysql
import pytest

from conftest import PURGE_KEY, ROOT, Session, attach_hash, attach_path

MiB = 1 << 20
STATS = "SELECT * FROM dj_udf.store_stats WHERE store = %s"


def stats(db, store):
    """The store's row of dj_udf.store_stats as a dict."""
    with db.conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(STATS, (store,))
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def latency(db, store):
    return {r[0]: r[1:] for r in db.sql("SELECT op, timed, p50_ms, p95_ms, p99_ms FROM dj_udf.store_latency WHERE store = %s",
                                        (store,))}


def delta(before, after):
    return {k: after[k] - before[k] for k in before if isinstance(before[k], int) and not isinstance(before[k], bool)}


def transfers(db, where="TRUE", args=None):
    with db.conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM dj_udf.transfers WHERE {where}", args)
        return cur.fetchall()


def wait_for(what, check, seconds=30):
    """Polls `check` until it holds (the state it waits for is held, not timed)."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Worker:
    """Runs statements on a connection of its own, in a thread."""

    def __init__(self, world, statements):
        self.conn = world.connect(read_timeout=120)
        with self.conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            self.connection_id = cur.fetchone()[0]
        self.statements, self.rows, self.error = statements, None, None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        try:
            with self.conn.cursor() as cur:
                for q, args in self.statements:
                    cur.execute(q, args)
                    self.rows = cur.fetchall()
        except pymysql.err.MySQLError as e:
            self.error = e.args
        finally:
            with contextlib.suppress(Exception):
                self.conn.close()

    def join(self):
        self.thread.join(120)
        assert not self.thread.is_alive()


# ---------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "s3"], indirect=True)
def test_counters_move_with_each_operation(world, db, kind):
    store, s = kind.attach, db.schema
    one, two = os.urandom(1000), os.urandom(3000)
    before, lat0 = stats(db, store), latency(db, store)

    h1 = db.call_out("dj_udf.attach_put", store, s, "one.bin", one)
    h2 = db.call_out("dj_udf.attach_put", store, s, "two.bin", two)
    after = stats(db, store)
    d = delta(before, after)
    assert (d["objects_put"], d["bytes_put"]) == (2, 4000), d
    assert d["objects_read"] == d["objects_deleted"] == 0

    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'one.bin')", (store, s, h1)) == one
    assert db.one("SELECT dj_verify(%s, %s, %s, 1000, 'one.bin', NULL, NULL)", (store, s, h1)) == b"ok"
    path = db.one("SELECT dj_udf.attach_export(%s, %s, %s, 'one.bin', %s)", (store, s, h1, str(world.dirs["export"] / s)))
    assert pathlib.Path(path).read_bytes() == one
    assert db.one("SELECT dj_delete_object(%s, %s, %s, 'one.bin', NULL, %s)", (store, s, h1, PURGE_KEY)) == b"deleted"
    d = delta(after, stats(db, store))
    assert (d["objects_read"], d["bytes_read"]) == (1, 1000), d
    assert (d["objects_verified"], d["bytes_verified"]) == (1, 1000), d
    assert (d["objects_exported"], d["bytes_exported"]) == (1, 1000), d
    assert d["objects_deleted"] == 1, d
    assert d["objects_put"] == 0 and sum(v for k, v in d.items() if k.startswith("errors_")) == 0, d

    # failures, by kind
    after = stats(db, store)
    assert db.one("SELECT dj_verify(%s, %s, %s, 1000, 'one.bin', NULL, NULL)", (store, s, h1)) == b"missing"
    assert db.one("SELECT dj_attach_get(%s, %s, %s, 'one.bin')", (store, s, h1)) is None
    p = attach_path(world, store, s, h2, "two.bin")
    p.write_bytes(os.urandom(3000))
    assert db.one("SELECT dj_attach_get(%s, %s, %s, 'two.bin')", (store, s, h2)) is None
    assert "checksum mismatch" in db.last_error()
    assert db.one("SELECT dj_attach_put_file(%s, %s, '/etc/passwd')", (store, s)) is None
    assert db.one("SELECT dj_delete_object(%s, %s, %s, 'two.bin', NULL, 'not the key')", (store, s, h2)) is None
    d = delta(after, stats(db, store))
    assert d["errors_missing"] >= 2, d  # the audit's finding, then the read's
    assert d["errors_mismatch"] == 1, d
    assert d["errors_refused_path"] == 1, d
    assert d["errors_denied"] == 1, d

    lat = latency(db, store)
    for op, n in [("put", 2), ("read", 1), ("verify", 1), ("export", 1), ("delete", 1)]:
        assert lat[op][0] - lat0[op][0] >= n, (op, lat)
        assert 0 < lat[op][1] <= lat[op][2] <= lat[op][3], (op, lat)

    requests = ["s3_head", "s3_get", "s3_put", "s3_post", "s3_delete", "s3_answers_ok", "s3_answers_4xx"]
    d = delta(before, stats(db, store))
    if kind.s3:
        assert d["s3_put"] >= 2 and d["s3_get"] >= 3 and d["s3_delete"] >= 1, d
        assert d["s3_answers_ok"] >= 6, d
    else:
        assert all(d[k] == 0 for k in requests), d


def test_s3_retries_and_unreachable_servers_are_counted(world, db, s3):
    before = stats(db, "s3down")
    h = attach_hash("x.bin", b"x")
    assert db.one("SELECT dj_object_size('s3down', %s, %s, 'x.bin', NULL)", (db.schema, h)) is None
    d = delta(before, stats(db, "s3down"))
    # s3down: nothing listens, retries 1
    assert (d["retries"], d["s3_head"], d["s3_no_answer"], d["errors_unreachable"]) == (1, 1, 1, 1), d


def test_counters_reset_only_with_the_key(world, db):
    db.call_out("dj_udf.attach_put", "localattach", db.schema, "r.bin", b"reset me")
    assert stats(db, "localattach")["objects_put"] >= 1
    assert db.one("SELECT dj_reset_store_stats('wrong key')") is None
    assert "wrong purge key" in db.last_error()
    assert stats(db, "localattach")["objects_put"] >= 1
    db.sql("CALL dj_udf.reset_store_stats()")
    row = stats(db, "localattach")
    assert row["objects_put"] == 0 and row["reset_at"] is not None
    assert latency(db, "localattach")["put"] == (0, None, None, None)


# ---------------------------------------------------------------------------
# Transfers in progress
# ---------------------------------------------------------------------------

def hold(gate, method, h):
    """Holds the first `method` request for object `h` in the gate until
    released; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def action(_r):
        entered.set()
        release.wait(60)

    gate.once(lambda r: r.method == method and h.hex() in r.path, action)
    return entered, release


def test_a_put_and_an_export_are_listed_while_they_run(world, db, gate):
    s, data = db.schema, os.urandom(2 * MiB)
    h = attach_hash("big.bin", data)
    entered, release = hold(gate, "PUT", h)
    w = Worker(world, [("CALL dj_udf.attach_put('s3attach', %s, 'big.bin', %s, @h)", (s, data))])
    try:
        assert entered.wait(30), "the put reached S3"
        rows = wait_for("the put in dj_udf.transfers", lambda: transfers(db, "store = 's3attach' AND op = 'put'"))
        assert len(rows) == 1, rows
        t = rows[0]
        assert t["connection_id"] == w.connection_id
        assert t["function_name"] == "dj_attach_put"
        assert h.hex() in t["object_key"] and t["object_key"].endswith(".big.bin")
        assert t["bytes_total"] == len(data) and t["bytes_done"] <= len(data)
        assert t["seconds"] >= 0 and t["started"] is not None
    finally:
        release.set()
        w.join()
    assert w.error is None, w.error
    assert transfers(db, "store = 's3attach'") == ()

    entered, release = hold(gate, "GET", h)
    out = world.dirs["export"] / s
    w = Worker(world, [("SELECT dj_attach_export('s3attach', %s, %s, 'big.bin', %s)", (s, h, str(out)))])
    try:
        assert entered.wait(30)
        rows = wait_for("the export in dj_udf.transfers", lambda: transfers(db, "store = 's3attach'"))
        # listed from its request on: the size comes with the answer
        assert [(r["op"], r["function_name"], r["connection_id"], r["bytes_total"], r["bytes_done"]) for r in rows] == \
            [("export", "dj_attach_export", w.connection_id, None, 0)]
        assert h.hex() in rows[0]["object_key"]
    finally:
        release.set()
        w.join()
    assert w.error is None and w.rows[0][0] is not None, (w.error, w.rows)
    assert transfers(db, "store = 's3attach'") == ()


def test_a_transfer_is_gone_after_a_failure_and_a_kill(world, db, gate):
    s, data = db.schema, os.urandom(MiB)
    h = db.call_out("dj_udf.attach_put", "s3attach", s, "bad.bin", data)
    # a corrupted object: the export fails at its end
    attach_path(world, "s3attach", s, h, "bad.bin").write_bytes(os.urandom(MiB))
    entered, release = hold(gate, "GET", h)
    w = Worker(world, [("SELECT dj_attach_export('s3attach', %s, %s, 'bad.bin', %s)", (s, h, str(world.dirs["export"] / s))),
                       ("SELECT dj_last_error()", None)])
    try:
        assert entered.wait(30)
        assert len(wait_for("the export", lambda: transfers(db, "store = 's3attach'"))) == 1
    finally:
        release.set()
        w.join()
    assert b"checksum mismatch" in w.rows[0][0], w.rows
    assert transfers(db, "store = 's3attach'") == ()

    # KILL QUERY during a put, KILL (the connection) during an export
    for method, kill, statement in [
        ("PUT", "KILL QUERY", ("CALL dj_udf.attach_put('s3attach', %s, 'killed.bin', %s, @h)", (s, data))),
        ("GET", "KILL", ("SELECT dj_attach_export('s3attach', %s, %s, 'bad.bin', %s)", (s, h, str(world.dirs["export"] / s)))),
    ]:
        target = attach_hash("killed.bin", data) if method == "PUT" else h
        entered, release = hold(gate, method, target)
        w = Worker(world, [statement])
        try:
            assert entered.wait(30)
            wait_for(f"the {method}", lambda: transfers(db, "connection_id = %s", (w.connection_id,)))
            db.sql(f"{kill} {w.connection_id}")
        finally:
            release.set()
            w.join()
        wait_for(f"the end of the killed {method}", lambda: transfers(db, "connection_id = %s", (w.connection_id,)) == ())


# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------

def health(db):
    return {r[0]: r[1:] for r in db.sql("SELECT store, healthy, reason, free_bytes FROM dj_udf.health")}


def test_health_names_what_is_wrong(world, db, s3):
    got = health(db)
    assert set(got) == set(world.base_config["stores"])
    ok, reason, free = got["localattach"]
    assert ok == 1 and reason is None and free > 0
    assert got["s3attach"][:2] == (1, None)
    assert got["s3badkey"][0] == 0 and "bad credentials" in got["s3badkey"][1]
    assert got["s3nobucket"][0] == 0 and "bucket does not exist" in got["s3nobucket"][1]
    assert got["s3down"][0] == 0 and "unreachable" in got["s3down"][1]
    assert got["s3silent"][0] == 0 and "timed out" in got["s3silent"][1]
    # no probe is left behind
    assert not list((world.location("localattach") / ".dj-health").glob("*"))
    # the routine: the same rows, the unhealthy first
    rows = db.sql("CALL dj_udf.store_health()")
    assert {r[0] for r in rows} == set(got) and rows[0][2] == 0 and rows[-1][2] == 1

    world.s3_stop()
    got = health(db)
    assert got["s3attach"][0] == 0 and "unreachable" in got["s3attach"][1], got["s3attach"]
    assert got["localattach"][0] == 1


def with_store(world, name, folder):
    cfg = dict(world.base_config, stores=dict(world.base_config["stores"], **{name: {"protocol": "file", "location": str(folder)}}))
    world.write_config(cfg)


def test_health_of_a_missing_folder(world, db, tmp_path):
    folder = tmp_path / "vanishing"
    folder.mkdir()
    with_store(world, "vanishing", folder)
    assert health(db)["vanishing"][0] == 1
    shutil.rmtree(folder)  # with the empty .dj-health/ the probes left
    ok, reason, free = health(db)["vanishing"]
    assert ok == 0 and "No such file or directory" in reason and str(folder) in reason and free is None


def test_health_of_a_full_disk(world, db, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)]).returncode:
        pytest.skip("cannot mount a small tmpfs (needs root)")
    try:
        with_store(world, "small", folder)
        ok, reason, free = health(db)["small"]
        assert ok == 1 and 0 < free <= 512 * 1024
        with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        ok, reason, free = health(db)["small"]
        assert ok == 0 and free == 0 and "no free space" in reason, (ok, reason, free)
    finally:
        world.write_config(world.base_config)
        subprocess.run(["umount", str(folder)], check=False)


# ---------------------------------------------------------------------------
# Who may see what
# ---------------------------------------------------------------------------

def test_the_raw_functions_need_the_key_and_the_views_a_grant(world, db):
    for user in ("watcher", "runner"):
        db.sql(f"DROP USER IF EXISTS '{user}'@'localhost'")
        db.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{user}'")
    db.sql("GRANT SELECT ON dj_udf.transfers TO 'watcher'@'localhost'")
    db.sql("GRANT SELECT ON dj_udf.store_stats TO 'watcher'@'localhost'")
    db.sql("GRANT EXECUTE ON dj_udf.* TO 'runner'@'localhost'")
    watcher = Session(world.connect(user="watcher", password="watcher"))
    runner = Session(world.connect(user="runner", password="runner"))
    try:
        for who in (watcher, runner):
            for f in ("dj_transfers", "dj_store_stats", "dj_store_health"):
                for key in ("NULL", "''", "'guess'"):
                    assert who.one(f"SELECT {f}({key})") is None
                    assert "purge key" in who.last_error() or "refused" in who.last_error()
            assert who.one("SELECT dj_reset_store_stats('guess')") is None
        assert "denied" in runner.error("SELECT * FROM dj_udf.transfers")
        assert "denied" in watcher.error("SELECT * FROM dj_udf.purge_key")
        assert "denied" in watcher.error("SELECT * FROM dj_udf.health")
        assert "denied" in watcher.error("CALL dj_udf.reset_store_stats()")
        # EXECUTE on the routines is not the right to reset: that needs the key
        assert "purge_key" in runner.error("CALL dj_udf.reset_store_stats()")
        assert watcher.sql("SELECT store FROM dj_udf.store_stats WHERE store = 'localattach'") == (("localattach",),)
        assert watcher.sql("SELECT * FROM dj_udf.transfers WHERE FALSE") == ()
    finally:
        watcher.conn.close()
        runner.conn.close()
        for user in ("watcher", "runner"):
            db.sql(f"DROP USER '{user}'@'localhost'")


# ---------------------------------------------------------------------------
# Many connections at once
# ---------------------------------------------------------------------------

def helper_threads(world):
    """Threads of the server the library started (they are named dj_udf…)."""
    out = []
    for comm in pathlib.Path(f"/proc/{world.server_pid()}/task").glob("*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().startswith("dj_udf"):
                out.append(comm.parent.name)
    return out


def test_sixteen_connections_put_while_the_views_are_read(world, db, s3):
    stores, n, per = ["localattach", "s3attach"], 16, 20
    before = {st: stats(db, st) for st in stores}
    errors, done = [], threading.Event()

    def put(i):
        try:
            with world.connect() as c, c.cursor() as cur:
                for j in range(per):
                    cur.execute("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)",
                                (stores[i % 2], db.schema, f"c{i}-{j}.bin", os.urandom(4096)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    seen = []

    def read():
        with world.connect() as c, c.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT COUNT(*) FROM dj_udf.transfers")
                seen.append(cur.fetchone()[0])
                cur.execute("SELECT SUM(objects_put) FROM dj_udf.store_stats")
                cur.execute("SELECT COUNT(*) FROM dj_udf.store_latency WHERE timed > 0")

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=put, args=(i,)) for i in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(300)
    done.set()
    reader.join(60)
    assert not errors, errors[:3]
    for st in stores:
        assert stats(db, st)["objects_put"] - before[st]["objects_put"] == n // 2 * per, st
    assert len(seen) > 0 and max(seen) <= n
    assert transfers(db, "store IN ('localattach', 's3attach')") == ()
    assert helper_threads(world) == []
    assert world.alive()


# ---------------------------------------------------------------------------
# The Prometheus example
# ---------------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? -?[0-9.eE+-]+$')
COMMENT = re.compile(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$")


def test_the_prometheus_example_gives_valid_metrics(world, db):
    db.call_out("dj_udf.attach_put", "localattach", db.schema, "metrics.bin", b"m")
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    assert "docs/dj_udf.prom.sql" in doc
    out = subprocess.run(["mariadb", "--no-defaults", f"--socket={world.socket}", "-uroot", "-N", "-B", "-r"],
                         stdin=open(ROOT / "docs" / "dj_udf.prom.sql"), capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines
    families = {}
    for line in lines:
        if line.startswith("#"):
            assert COMMENT.match(line), line
            if line.startswith("# TYPE"):
                name = line.split()[2]
                assert name not in families, f"{name} twice"
                families[name] = 0
        else:
            assert SAMPLE.match(line), line
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            assert name in families or name.rsplit("_", 1)[0] in families, line
            families[name] = families.get(name, 0) + 1
    for name in ["dj_udf_objects_total", "dj_udf_bytes_total", "dj_udf_errors_total", "dj_udf_s3_requests_total",
                 "dj_udf_latency_milliseconds", "dj_udf_transfers", "dj_udf_store_healthy"]:
        assert families.get(name), (name, families)
    assert 'dj_udf_objects_total{store="localattach",op="put"}' in out
    assert 'dj_udf_store_healthy{store="localattach"} 1' in out
