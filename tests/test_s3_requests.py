"""What goes over the wire to S3: the requests each operation sends (counted
against the table in docs/s3.md, so the two cannot drift apart), the
process-wide pool of connections (reused across rows, statements and
connections; a dead pooled connection replaced at once; an endpoint restart
and config changes taken in stride; 16 connections at once), and the one
hash pass of a server file's upload. The gate (tests/s3_gate.py) in front of
s3s-fs logs every request and the connection it came on."""

import json
import os
import re
import threading
import time

from conftest import PURGE_KEY, ROOT, Db, attach_hash, batch, md5

MiB = 1 << 20


def table_of_requests():
    """The table of docs/s3.md: operation -> the requests it sends (a number, or n, 3n)."""
    text = (ROOT / "docs" / "s3.md").read_text()
    section = text.split("## Requests per operation", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("operation", "---") and not cells[0].startswith("-"):
            rows[cells[0]] = cells[1]
    return rows


def expected(cell, n):
    m = re.fullmatch(r"(\d*)(n?)", cell)
    assert m and cell, f"cannot read request count {cell!r}"
    k = int(m.group(1) or 1)
    return k * n if m.group(2) else k


class Ops:
    """Each operation of the table, as SQL on the test server: `prepare`
    (not counted), then the operation (counted)."""

    N = 3  # objects in a batch

    def __init__(self, db, world, tmp):
        self.db, self.world, self.s, self.tmp = db, world, db.schema, tmp
        self.seq = 0

    def unique(self, size=1000):
        self.seq += 1
        return os.urandom(size) + f"{self.s}-{self.seq}".encode()

    def file(self, size=100_000, name=None):
        self.seq += 1
        p = self.world.dirs["import"] / f"{self.s}-{self.seq}" / (name or f"f{self.seq}.bin")
        p.parent.mkdir(parents=True)
        p.write_bytes(self.unique(size))
        return p

    def staged(self):
        self.seq += 1
        p = self.world.stage("s3data") / self.s / f"r{self.seq}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(self.unique(5000))
        return p

    def one(self, q, args):
        return lambda: self.db.one(q, args)

    def stored(self):
        data = self.unique()
        h = self.db.one("SELECT dj_attach_put('s3attach', %s, 'a.bin', %s)", (self.s, data))
        return h, data

    def batch_schema(self):
        """A schema of its own, so that a whole-table call sees only its objects."""
        d = Db(self.world)
        self.extra.append(d)
        return d

    # ---- the operations, by the table's names ---------------------------
    def cases(self):
        s, db, one = self.s, self.db, self.one
        self.extra = []

        def new_put():
            return [one("SELECT dj_attach_put('s3attach', %s, 'n.bin', %s)", (s, self.unique())),
                    one("SELECT dj_blob_put('s3blobs', %s, %s)", (s, b"dj0\0" + self.unique()))]

        def put_again():
            data, blob = self.unique(), b"dj0\0" + self.unique()
            db.one("SELECT dj_attach_put('s3attach', %s, 'n.bin', %s)", (s, data))
            db.one("SELECT dj_blob_put('s3blobs', %s, %s)", (s, blob))
            return [one("SELECT dj_attach_put('s3attach', %s, 'n.bin', %s)", (s, data)),
                    one("SELECT dj_blob_put('s3blobs', %s, %s)", (s, blob))]

        def put_file(size):
            def prepare():
                return [one("SELECT dj_attach_put_file('s3attach', %s, %s)", (s, str(self.file(size))))]
            return prepare

        def put_file_again():
            p = self.file()
            db.one("SELECT dj_attach_put_file('s3attach', %s, %s)", (s, str(p)))
            return [one("SELECT dj_attach_put_file('s3attach', %s, %s)", (s, str(p)))]

        def get():
            h, data = self.stored()
            return [one("SELECT dj_attach_get('s3attach', %s, %s, 'a.bin')", (s, h)),
                    one("SELECT dj_udf.attach_get('s3attach', %s, %s, 'a.bin')", (s, h))]

        def export():
            h, _ = self.stored()
            out = str(self.world.dirs["export"] / f"{s}-x{self.seq}")
            return [one("SELECT dj_attach_export('s3attach', %s, %s, 'a.bin', %s)", (s, h, out))]

        def verify():
            h, data = self.stored()
            return [one("SELECT dj_verify('s3attach', %s, %s, %s, 'a.bin', NULL, NULL)", (s, h, len(data)))]

        def size():
            h, _ = self.stored()
            return [one("SELECT dj_object_size('s3attach', %s, %s, 'a.bin', NULL)", (s, h))]

        def delete():
            h, _ = self.stored()
            return [one("SELECT dj_delete_object('s3attach', %s, %s, 'a.bin', NULL, %s)", (s, h, PURGE_KEY))]

        def delete_many():
            items = json.dumps([{"hash": self.stored()[0].hex(), "attachment_name": "a.bin"} for _ in range(5)])
            return [one("SELECT dj_delete_objects('s3attach', %s, %s, %s)", (s, items, PURGE_KEY))]

        def listing():
            self.stored()
            return [one("SELECT dj_list_objects('s3attach', %s, '', 100, %s)", (s, PURGE_KEY))]

        def filepath_new():
            return [one("SELECT dj_filepath_put('s3data', %s)", (str(self.staged()),))]

        def filepath_again():
            p = self.staged()
            db.one("SELECT dj_filepath_put('s3data', %s)", (str(p),))
            return [one("SELECT dj_filepath_put('s3data', %s)", (str(p),))]

        def filepath_get(local):
            def prepare():
                p = self.staged()
                db.one("SELECT dj_filepath_put('s3data', %s)", (str(p),))
                rel, n, ch = str(p.relative_to(self.world.stage("s3data"))), p.stat().st_size, md5(p.read_bytes())
                if not local:
                    p.unlink()
                return [one("SELECT dj_filepath_get('s3data', %s, %s, %s)", (rel, ch, n))]
            return prepare

        def routine_put():
            return [lambda: db.call_out("dj_udf.attach_put", "s3attach", s, "r.bin", self.unique()),
                    lambda: db.call_out("dj_udf.blob_put", "s3blobs", s, b"dj0\0" + self.unique())]

        def routine_put_file():
            return [lambda: db.call_out("dj_udf.attach_put_file", "s3attach", s, str(self.file()))]

        def routine_filepath():
            return [lambda: db.call_out("dj_udf.filepath_put", "s3data", s, str(self.staged()))]

        def batch_verify():
            d = self.batch_schema()
            for _ in range(self.N):
                d.call_out("dj_udf.attach_put", "s3attach", d.schema, "v.bin", self.unique())
            return [lambda: d.sql("CALL dj_udf.verify(%s, 's3attach')", (d.schema,))]

        def batch_put():
            self.seq += 1
            folder = self.world.dirs["import"] / f"{s}-batch{self.seq}"
            folder.mkdir()
            for i in range(self.N):
                (folder / f"b{i}.bin").write_bytes(self.unique(5000))
            return [lambda: db.sql("CALL dj_udf.attach_put_files('s3attach', %s, %s, @f)", (s, str(folder)))]

        def batch_put_many():
            args = batch([(f"m{i}.bin", self.unique(5000)) for i in range(self.N)])
            return [lambda: db.sql("CALL dj_udf.attach_put_many('s3attach', %s, %s, %s, @o)", (s, *args))]

        def referenced(d, store, put):
            d.sql(f"CREATE TABLE `{d.schema}`.t (k int PRIMARY KEY, f binary(16))")
            for i in range(self.N):
                d.sql(f"INSERT INTO `{d.schema}`.t VALUES (%s, %s)", (i, put()))

        def batch_export():
            d = self.batch_schema()
            referenced(d, "s3attach", lambda: d.call_out("dj_udf.attach_put", "s3attach", d.schema, "e.bin", self.unique()))
            out = str(self.world.dirs["export"] / f"{d.schema}-batch")
            return [lambda: d.sql("CALL dj_udf.export_attachments('s3attach', %s, 't', 'f', %s)", (d.schema, out))]

        def batch_sync():
            d = self.batch_schema()
            paths = []

            def put():
                p = self.staged()
                paths.append(p)
                return d.call_out("dj_udf.filepath_put", "s3data", d.schema, str(p))
            referenced(d, "s3data", put)
            for p in paths:
                p.unlink()
            return [lambda: d.sql("CALL dj_udf.sync_filepaths('s3data', %s, 't', 'f')", (d.schema,))]

        def purge():
            d = self.batch_schema()
            for _ in range(self.N):
                d.call_out("dj_udf.attach_put", "s3attach", d.schema, "p.bin", self.unique())
            d.sql("CALL dj_udf.delete_unused(%s, 's3attach', @n)", (d.schema,))
            assert d.one("SELECT @n") == self.N
            return [lambda: d.sql("CALL dj_udf.purge(%s, 's3attach', @o, @f)", (d.schema,))]

        def sweep():
            d = self.batch_schema()
            for _ in range(self.N):
                d.one("SELECT dj_attach_put('s3attach', %s, 'w.bin', %s)", (d.schema, self.unique()))
            return [lambda: d.sql("CALL dj_udf.sweep(%s, 's3attach', 0, @n)", (d.schema,))]

        return {
            "`dj_attach_put` / `dj_blob_put`, new object": (new_put, 1),
            "`dj_attach_put` / `dj_blob_put`, object already stored": (put_again, 1),
            "`dj_attach_put_file`, new object up to 8 MiB": (put_file(100_000), 1),
            "`dj_attach_put_file`, new object of 40 MiB": (put_file(40 * MiB), 1),
            "`dj_attach_put_file`, object already stored": (put_file_again, 1),
            "`dj_attach_get` / `dj_blob_get` / `dj_udf.attach_get`": (get, 1),
            "`dj_attach_export`": (export, 1),
            "`dj_verify`": (verify, 1),
            "`dj_object_size`": (size, 1),
            "`dj_delete_object`": (delete, 1),
            "`dj_delete_objects`, up to 1000 objects": (delete_many, 1),
            "`dj_list_objects`": (listing, 1),
            "`dj_filepath_put`, new file": (filepath_new, 1),
            "`dj_filepath_put`, same file already stored": (filepath_again, 1),
            "`dj_filepath_get`, no local copy": (filepath_get(False), 1),
            "`dj_filepath_get`, local copy current": (filepath_get(True), 1),
            "`dj_udf.attach_put` / `dj_udf.blob_put`, new object": (routine_put, 1),
            "`dj_udf.attach_put_file`, new object up to 8 MiB": (routine_put_file, 1),
            "`dj_udf.filepath_put`, new file": (routine_filepath, 1),
            "`dj_udf.verify`, n objects": (batch_verify, self.N),
            "`dj_udf.attach_put_files`, n new files up to 8 MiB": (batch_put, self.N),
            "`dj_udf.attach_put_many`, n new objects": (batch_put_many, self.N),
            "`dj_udf.export_attachments`, n objects": (batch_export, self.N),
            "`dj_udf.sync_filepaths`, n files without local copy": (batch_sync, self.N),
            "`dj_udf.purge`, up to 100 queued objects": (purge, self.N),
            "`dj_udf.sweep`, one page of up to 500 objects": (sweep, self.N),
        }


def test_each_operation_sends_the_requests_the_table_says(db, world, gate, tmp_path):
    table = table_of_requests()
    ops = Ops(db, world, tmp_path)
    cases = ops.cases()
    assert set(table) == set(cases), ("documented but not counted", set(table) - set(cases),
                                      "counted but not documented", set(cases) - set(table))
    # the bucket has been seen (else a first lookup adds a HEAD of it)
    ops.stored()
    counted = {}
    try:
        for label, (prepare, n) in cases.items():
            for op in prepare():
                gate.reset()
                op()
                counted.setdefault(label, []).append([f"{r.method} {r.path.rsplit('/', 1)[-1][:12]}?{r.query[:20]}" for r in gate.log])
    finally:
        for d in ops.extra:
            d.conn.close()
    wrong = {label: (table[label], seen) for label, seens in counted.items() for seen in seens
             if len(seen) != expected(table[label], cases[label][1])}
    assert not wrong, json.dumps(wrong, indent=1)


def reuse_store(world, **extra):
    """A store like s3attach that never retries a request (so only the pool's
    own replacement of a dead connection can save one), with the config reloaded."""
    cfg = json.loads(json.dumps(world.base_config))
    cfg["stores"]["s3once"] = dict(cfg["stores"]["s3attach"], retries=0, location="dj/once", **extra)
    world.write_config(cfg)
    return cfg


def test_connections_are_pooled_across_rows_statements_and_connections(db, world, gate):
    s = db.schema
    reuse_store(world)
    db.sql("CALL dj_udf.create_tracking_table(%s, 's3once')", (s,))
    db.sql(f"CREATE TABLE `{s}`.t (k int PRIMARY KEY, f binary(16))")
    for i in range(5):
        db.sql(f"INSERT INTO `{s}`.t VALUES (%s, %s)", (i, db.call_out("dj_udf.attach_put", "s3once", s, f"p{i}.bin", os.urandom(500))))
    before = gate.accepted
    conns = [world.connect() for _ in range(3)]
    try:
        for c in conns:
            with c.cursor() as cur:
                for _ in range(4):
                    cur.execute(f"SELECT dj_udf.attach_get('s3once', %s, f, CONCAT('p', k, '.bin')) FROM `{s}`.t", (s,))
                    assert len(cur.fetchall()) == 5
    finally:
        for c in conns:
            c.close()
    gets = [r for r in gate.log if r.method == "GET"]
    assert len(gets) >= 60
    assert gate.accepted - before <= 2, f"{gate.accepted - before} new connections for {len(gets)} requests"


def test_a_dead_pooled_connection_is_replaced_at_once(db, world, gate):
    """The server closes a pooled connection as a request arrives on it: the
    request goes again at once on a new connection, though the store allows
    no retry, and the next requests use the new one."""
    s = db.schema
    reuse_store(world)
    h = db.one("SELECT dj_attach_put('s3once', %s, 'd.bin', 'dead or alive')", (s,))
    assert db.one("SELECT dj_attach_get('s3once', %s, %s, 'd.bin')", (s, h)) == b"dead or alive"
    gate.reset()
    hook = gate.once(lambda r: r.method == "GET", lambda _r: "close")
    t = time.monotonic()
    assert db.one("SELECT dj_attach_get('s3once', %s, %s, 'd.bin')", (s, h)) == b"dead or alive", db.last_error()
    assert time.monotonic() - t < 0.4, "no backoff"
    assert hook.fired.is_set()
    closed, again = gate.log[0], gate.log[1]
    assert (closed.status, again.status, again.method) == ("closed", 200, "GET")
    assert again.conn != closed.conn
    assert db.one("SELECT dj_verify('s3once', %s, %s, 13, 'd.bin', NULL, NULL)", (s, h)) == b"ok"
    assert gate.log[2].conn == again.conn


def test_endpoint_restart_and_config_changes_between_statements(db, world, gate):
    s = db.schema
    cfg = reuse_store(world)
    h = db.one("SELECT dj_attach_put('s3once', %s, 'r.bin', 'restarted')", (s,))
    get = lambda: db.one("SELECT dj_attach_get('s3once', %s, %s, 'r.bin')", (s, h))  # noqa: E731
    assert get() == b"restarted"
    world.s3_stop()
    world.s3_start()
    before = gate.accepted
    for _ in range(10):
        assert get() == b"restarted", db.last_error()
    assert gate.accepted - before <= 2, "connections are pooled again after the restart"
    # another endpoint, then back, then another secret: each takes effect at once
    cfg["stores"]["s3once"]["endpoint"] = f"127.0.0.1:{world.down_port}"
    world.write_config(cfg)
    assert get() is None and "unreachable" in db.last_error()
    cfg["stores"]["s3once"]["endpoint"] = f"127.0.0.1:{world.s3_port}"
    world.write_config(cfg)
    assert get() == b"restarted"
    cfg["stores"]["s3once"]["secret_key"] = "not-the-secret"
    world.write_config(cfg)
    assert get() is None and "bad credentials" in db.last_error()


def test_sixteen_connections_at_once_share_the_pool(db, world, gate):
    s = db.schema
    reuse_store(world)
    before = gate.accepted
    failures, done = [], []

    def worker(n):
        try:
            c = world.connect()
            with c.cursor() as cur:
                for i in range(8):
                    data = os.urandom(2000) + f"{n}-{i}".encode()
                    cur.execute("SELECT dj_attach_put('s3once', %s, 'c.bin', %s)", (s, data))
                    (h,) = cur.fetchone()
                    assert h == attach_hash("c.bin", data), h
                    cur.execute("SELECT dj_attach_get('s3once', %s, %s, 'c.bin')", (s, h))
                    assert cur.fetchone()[0] == data
                    done.append(1)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    assert len(done) == 128
    assert gate.accepted - before <= 32, f"{gate.accepted - before} connections for 256 requests from 16 at once"


def cpu_seconds(pid):
    """User CPU time of a process, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK")


def test_a_server_file_is_hashed_in_one_pass(db, world, gate):
    """The first pass computes the key hash and every part's MD5 (two MD5s);
    the second only sends, confirmed by the parts' ETags. Hashing the file
    alone (dj_file_checksum) is one MD5: the upload must cost about two,
    where hashing again while sending cost three. User CPU time of the
    database server, so other work on the machine does not count."""
    s = db.schema
    p = world.dirs["import"] / f"{s}-onepass" / "big.bin"
    p.parent.mkdir()
    with open(p, "wb") as f:
        for i in range(96):
            f.write(os.urandom(MiB))
    pid = world.server_pid()
    db.one("SELECT dj_file_checksum(%s)", (str(p),))  # warm the page cache
    ratios = []
    for attempt in range(3):
        c0 = cpu_seconds(pid)
        db.one("SELECT dj_file_checksum(%s)", (str(p),))
        c1 = cpu_seconds(pid)
        gate.reset()
        h = db.one("SELECT dj_attach_put_file('s3attach', %s, %s)", (s, str(p)))
        c2 = cpu_seconds(pid)
        assert h is not None, db.last_error()
        parts = [r for r in gate.log if r.method == "PUT" and "partNumber" in r.params()]
        assert len(parts) == 6 and all(r.content_md5 and r.status == 200 for r in parts), gate.log
        ratios.append((c2 - c1) / max(c1 - c0, 0.01))
        assert db.one("SELECT dj_delete_object('s3attach', %s, %s, 'big.bin', NULL, %s)", (s, h, PURGE_KEY)) == b"deleted"
    print(f"\n  upload / hash CPU: {[round(r, 2) for r in ratios]}")
    assert min(ratios) < 2.5, f"upload / hash CPU: {ratios}"
