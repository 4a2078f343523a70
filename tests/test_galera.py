"""dj_udf on a three-node MariaDB Galera cluster (galera-4) on 127.0.0.1
(tests/galera_cluster.py): one store folder and one S3 server shared by all
nodes, sql/install.sql run on one node only.

A workload runs on all three nodes at once: puts on node1, verified reads
and `dj_udf.verify` on node2, row deletions, `dj_udf.cleanup` and
`dj_udf.sweep` on node3; node1 is killed (SIGKILL) in the middle of a put and
started again. Another runs puts, cleanup and sweep on one node and reads on
the two others (the cluster rule of README.md). Then an audit: every node holds the same rows, every tracking
row on every node has its object and nothing else is left in the store,
every user row the workload committed and did not delete is there with its
verified contents, and every object was written by the node that ran the
put (each node talks to S3 through its own gate, so replication re-running a
put would show up as a write through another node's gate).

Put and purge must exclude each other across nodes: row locks of one node
(`SELECT ... FOR UPDATE`) do not reach the others; only writes of one row,
which the cluster certifies, do. The race tests make a put on one node meet
a removal of the same object on another at the worst moment.

Where galera-4, rsync or s3s-fs is missing, or not running as root, the
tests are skipped with the reason; with DJ_UDF_REQUIRE_ALL=1 or CI set they
fail instead, naming what is missing."""

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pymysql
import pytest

from conftest import LIBRARY, REQUIRE_ALL, ROOT, S3_ACCESS_KEY, S3_SECRET_KEY, S3S_FS, attach_hash, free_port
from galera_cluster import PROVIDER, Cluster, find_bin
from s3_gate import S3Gate

BUCKET = "galera"
PURGE_KEY = "galera-purge-key-0123456789"
STORES = {"gfile": "fdoc", "gs3": "sdoc"}  # store -> user table referencing it
KEYS = 12  # contents per store: few, so that puts keep meeting cleanups of the same object
# MySQL errors a cluster answers while it certifies or changes views: the
# statement did not take effect and may be tried again.
RETRY = {1205, 1213, 1047, 1180, 1317, 4031}
GONE = {2003, 2006, 2013}  # the connection's server died


def unavailable(why):
    if REQUIRE_ALL:
        pytest.fail(f"Galera tests cannot run: {why} (DJ_UDF_REQUIRE_ALL or CI is set)", pytrace=False)
    pytest.skip(f"Galera tests cannot run: {why}")


def contents(store, k):
    return hashlib.sha256(f"{store}:{k}".encode()).digest() * (64 + k)


def name(k):
    return f"doc_{k:02d}.bin"


class S3:
    """s3s-fs on 127.0.0.1, with one gate per node in front of it."""

    def __init__(self, base, nodes):
        self.root = base / "s3root"
        (self.root / BUCKET).mkdir(parents=True)
        self.port = free_port()
        self.log = open(base / "s3s-fs.log", "ab")
        self.proc = subprocess.Popen([S3S_FS, "--host", "127.0.0.1", "--port", str(self.port), "--access-key",
                                      S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY, str(self.root)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.gates = [S3Gate(self.port) for _ in range(nodes)]
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "s3s-fs did not start"
                time.sleep(0.05)

    def close(self):
        for g in self.gates:
            g.close()
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = []
    if not os.path.exists(PROVIDER):
        missing.append(f"galera-4 ({PROVIDER})")
    for tool, pkg in (("rsync", "rsync"), ("ss", "iproute2")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} ({pkg})")
    if find_bin("mariadbd", "mysqld") is None:
        missing.append("mariadbd (mariadb-server)")
    if not os.access(S3S_FS, os.X_OK):
        missing.append(f"s3s-fs ({S3S_FS})")
    if missing:
        unavailable(f"{', '.join(missing)} not found: run scripts/setup.sh --python")
    if os.geteuid() != 0:
        unavailable("the nodes run as root (the SST rsync daemon drops to nobody only then)")
    base = tmp_path_factory.mktemp("galera")
    store = base / "store"
    store.mkdir()
    s3 = S3(base, 3)
    ports = [[free_port() for _ in range(4)] for _ in range(3)]
    configs = []
    for i in range(3):
        # One store folder and one S3 server for all nodes; each node's S3
        # requests pass through its own gate.
        cfg = base / f"dj_udf.node{i + 1}.json"
        cfg.write_text(json.dumps({
            "stores": {
                "gfile": {"protocol": "file", "location": str(store)},
                "gs3": {"protocol": "s3", "endpoint": f"127.0.0.1:{s3.gates[i].port}", "bucket": BUCKET,
                        "location": "dj", "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY},
            },
            "purge_key": PURGE_KEY,
        }, indent=1))
        configs.append(cfg)
    c = Cluster(base, LIBRARY, configs, ports)
    c.store = store
    c.s3 = s3
    try:
        c.start()
        # install.sql on node1 only; everything else must come by replication
        with open(ROOT / "sql" / "install.sql") as f:
            subprocess.run(["mariadb", "--no-defaults", f"--socket={c.nodes[0].socket}", "-uroot"], stdin=f,
                           check=True, capture_output=True)
        with c.nodes[0].connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO dj_udf.purge_key VALUES (%s)", (PURGE_KEY,))
            # the workload cleans up rows it has just written: no grace period
            cur.execute("UPDATE dj_udf.settings SET value = '0' WHERE name = 'cleanup_grace_seconds'")
        yield c
    finally:
        c.stop()
        s3.close()


def sql(node, q, args=None, sync=True):
    with node.connect() as conn, conn.cursor() as cur:
        if sync:
            cur.execute("SET SESSION wsrep_sync_wait = 15")
        cur.execute(q, args)
        return cur.fetchall()


def test_install_on_one_node_reaches_the_others(cluster):
    first = cluster.nodes[0]
    functions = sql(first, "SELECT name, ret, dl FROM mysql.func WHERE dl = 'dj_udf.so' ORDER BY name")
    routines = sql(first, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf' "
                          "ORDER BY ROUTINE_NAME")
    assert len(functions) >= 20 and len(routines) >= 10
    for node in cluster.nodes:
        assert sql(node, "SELECT @@binlog_format, @@innodb_autoinc_lock_mode, @@wsrep_on, @@wsrep_sst_method") == \
            (("ROW", 2, 1, "rsync"),)
        assert sql(node, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")[0][1] == "3"
        assert sql(node, "SELECT name, ret, dl FROM mysql.func WHERE dl = 'dj_udf.so' ORDER BY name") == functions
        assert sql(node, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf' "
                         "ORDER BY ROUTINE_NAME") == routines
        assert sql(node, "SELECT purge_key FROM dj_udf.purge_key") == ((PURGE_KEY,),)
        # the functions are loaded on every node, from its own plugin_dir
        assert sql(node, "SELECT dj_checksum('abc')")[0][0] == hashlib.md5(b"abc").digest()
        assert sql(node, "SELECT @@plugin_dir")[0][0].rstrip("/") == str(node.dir / "plugin")


class Workload:
    """One schema's workload: the roles' shared bookkeeping."""

    def __init__(self, cluster, schema):
        self.cluster = cluster
        self.schema = schema
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_id = 0
        self.committed = {st: {} for st in STORES}  # store -> id -> k: user rows committed, not deleted
        self.puts = {st: 0 for st in STORES}
        self.counts = {}
        self.problems = []
        self.verify_statuses = {}
        with cluster.nodes[0].connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {schema}")
            for st, table in STORES.items():
                cur.execute("CALL dj_udf.create_tracking_table(%s, %s)", (schema, st))
                cur.execute(f"""CREATE TABLE {schema}.{table} (
                    id int NOT NULL, k int NOT NULL,
                    doc binary(16) NOT NULL COMMENT ':attach@{st}:a document',
                    PRIMARY KEY (id),
                    FOREIGN KEY (doc) REFERENCES {schema}.`~external_{st}` (hash)
                      ON UPDATE RESTRICT ON DELETE RESTRICT) ENGINE=InnoDB""")

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def problem(self, text):
        with self.lock:
            self.problems.append(text)

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id


def put_row(conn, w, st, k):
    """A put and the user row referencing it, in one transaction on conn (so
    that a cleanup elsewhere cannot take the tracking row in between: the
    cluster's certification aborts one of the two, and the put is tried
    again, for up to 30 s). Returns the committed id, or None."""
    table = STORES[st]
    i = w.new_id()
    deadline = time.monotonic() + 30
    with conn.cursor() as cur:
        while time.monotonic() < deadline:
            try:
                cur.execute("START TRANSACTION")
                cur.execute("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)", (st, w.schema, name(k), contents(st, k)))
                cur.execute(f"INSERT INTO {w.schema}.{table} (id, k, doc) VALUES (%s, %s, @h)", (i, k))
                cur.execute("COMMIT")
            except pymysql.err.MySQLError as e:
                try:
                    conn.rollback()
                except pymysql.err.MySQLError as again:
                    # a transaction the cluster aborted may report it on the ROLLBACK too
                    if again.args[0] not in RETRY:
                        raise
                if e.args[0] in RETRY:
                    w.count(f"writer retry {e.args[0]}")
                    time.sleep(0.05)
                    continue
                raise
            with w.lock:
                w.committed[st][i] = k
                w.puts[st] += 1
            return i
    w.count("writer gave up")
    return None


VICTIM = b"killed mid-put " * 1000


def writer(w, node, resume=None, victim=None):
    """Puts and inserts; once `victim` is set, the put during which its node is killed."""
    rng = random.Random(1)
    conn = node.connect()
    try:
        while not w.stop.is_set():
            if victim is not None and victim.is_set():
                try:
                    with conn.cursor() as cur:
                        cur.execute("CALL dj_udf.attach_put('gs3', %s, 'victim.bin', %s, @h)", (w.schema, VICTIM))
                    w.problem("the put meant to be killed mid-way returned")
                except pymysql.err.MySQLError as e:
                    if e.args[0] not in GONE:
                        w.problem(f"the killed put failed with {e!r}, not a lost connection")
                victim.clear()
                conn.close()
                resume.wait()
                if w.stop.is_set():
                    return
                conn = node.connect()
                continue
            st = rng.choice(list(STORES))
            try:
                put_row(conn, w, st, rng.randrange(KEYS))
            except pymysql.err.MySQLError as e:
                w.problem(f"writer on {node.name}: {e!r}")
    finally:
        conn.close()


def reader(w, node, seed):
    """Verified reads of referenced rows, and dj_udf.verify."""
    rng = random.Random(seed)
    conn = node.connect()
    n = 0
    try:
        while not w.stop.is_set():
            n += 1
            st = rng.choice(list(STORES))
            table = STORES[st]
            try:
                with conn.cursor() as cur:
                    if n % 5 == 0:
                        cur.execute("CALL dj_udf.verify(%s, %s)", (w.schema, st))
                        for row in cur.fetchall():
                            w.count(f"verify on {node.name}: {row[4]}")
                        continue
                    cur.execute(f"SELECT t.id, t.k, t.doc, x.attachment_name FROM {w.schema}.{table} t "
                                f"JOIN {w.schema}.`~external_{st}` x ON x.hash = t.doc ORDER BY RAND() LIMIT 4")
                    rows = cur.fetchall()
                for i, k, h, nm in rows:
                    try:
                        with conn.cursor() as cur:
                            cur.execute("SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, w.schema, h, nm))
                            got = cur.fetchone()[0]
                        w.count("verified read")
                        if got != contents(st, k):
                            w.problem(f"read of {st} row {i} on {node.name} returned other bytes")
                    except pymysql.err.MySQLError as e:
                        if e.args[0] in RETRY:
                            continue
                        recheck_read(w, node, st, i, h, nm, e)
            except pymysql.err.MySQLError as e:
                if e.args[0] in RETRY:
                    w.count(f"reader retry {e.args[0]}")
                    time.sleep(0.1)
                    continue
                w.problem(f"reader on {node.name}: {e!r}")
    finally:
        conn.close()


def recheck_read(w, node, st, i, h, nm, error):
    """A read failed: the row may have been deleted (and its object purged)
    between the SELECT and the read. A loss is a row that is still there,
    caught up with the cluster, whose object cannot be read."""
    time.sleep(1)
    table = STORES[st]
    still = sql(node, f"SELECT COUNT(*) FROM {w.schema}.{table} WHERE id = %s AND doc = %s", (i, h))[0][0]
    if not still:
        w.count("read of a row deleted meanwhile")
        return
    try:
        sql(node, "SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, w.schema, h, nm))
        w.problem(f"{st} row {i} (object {h.hex()}) was referenced but unreadable for a while on {node.name}: "
                  f"{error!r}")
    except pymysql.err.MySQLError as e:
        w.problem(f"{st} row {i} (object {h.hex()}) is referenced but its object is lost: {e!r}")


def cleaner(w, node):
    """Deletes user rows, then cleanup and sweep (no minimum age)."""
    rng = random.Random(3)
    conn = node.connect()
    n = 0
    try:
        while not w.stop.is_set():
            n += 1
            st = rng.choice(list(STORES))
            table = STORES[st]
            k = rng.randrange(KEYS)
            try:
                with conn.cursor() as cur:
                    cur.execute("START TRANSACTION")
                    cur.execute(f"SELECT id FROM {w.schema}.{table} WHERE k = %s FOR UPDATE", (k,))
                    ids = [r[0] for r in cur.fetchall()]
                    if ids:
                        cur.execute(f"DELETE FROM {w.schema}.{table} WHERE id IN ({','.join(map(str, ids))})")
                    cur.execute("COMMIT")
                with w.lock:
                    for i in ids:
                        w.committed[st].pop(i, None)
                with conn.cursor() as cur:
                    cur.execute("CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (w.schema, st))
                    cur.execute("SELECT @f")
                    w.count("cleanup")
                    if cur.fetchone()[0]:
                        w.count("cleanup failures")
                    if n % 3 == 0:
                        cur.execute("CALL dj_udf.sweep(%s, %s, 0, @n)", (w.schema, st))
                        w.count("sweep")
            except pymysql.err.MySQLError as e:
                try:
                    conn.rollback()
                except pymysql.err.MySQLError:
                    pass
                if e.args[0] in RETRY:
                    w.count(f"cleaner retry {e.args[0]}")
                    time.sleep(0.1)
                    continue
                w.problem(f"cleaner on {node.name}: {e!r}")
            time.sleep(0.05)
    finally:
        conn.close()


def slow_deletes(w, gate, seconds=0.2):
    """Every S3 deletion through `gate` waits before it is sent on: the time
    between a purge or sweep finding an object untracked and removing it,
    in which a put may track the object again, is wide."""
    def slow(_request):
        time.sleep(seconds)
        if not w.stop.is_set():
            gate.once(lambda r: r.deletes(), slow)

    gate.once(lambda r: r.deletes(), slow)


def stored_objects(cluster, schema, st):
    """The object files of a store, by their hash (hex) and attachment name."""
    root = cluster.store / schema if st == "gfile" else cluster.s3.root / BUCKET / "dj" / schema
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            h, _, nm = p.name.partition(".")
            out[(h, nm)] = p
    return out


def read_back(node, schema, st, table):
    """Every user row's contents, verified, in one SELECT on node; row by
    row only where that fails, to name what is lost."""
    rows_sql = (f"SELECT t.id, t.k, t.doc, x.attachment_name FROM {schema}.{table} t "
                f"JOIN {schema}.`~external_{st}` x ON x.hash = t.doc ORDER BY t.id")
    get = "dj_udf.attach_get(%s, %s, t.doc, x.attachment_name)"
    try:
        rows = sql(node, rows_sql.replace("SELECT t.id, t.k, t.doc, x.attachment_name", f"SELECT t.id, t.k, {get}"),
                   (st, schema))
        return [f"{st} row {i} on {node.name}: other bytes" for i, k, data in rows if data != contents(st, k)]
    except pymysql.err.MySQLError:
        pass
    problems = []
    with node.connect() as conn, conn.cursor() as cur:
        cur.execute(rows_sql)
        for i, k, h, nm in cur.fetchall():
            try:
                cur.execute("SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, schema, h, nm))
                if cur.fetchone()[0] != contents(st, k):
                    problems.append(f"{st} row {i} on {node.name}: other bytes")
            except pymysql.err.MySQLError as e:
                problems.append(f"{st} row {i} (object {h.hex()}) on {node.name}: referenced, lost: {e!r}")
    return problems


def audit(w, writer_node, cleaner_node, seconds):
    """After the workload, with everything quiet: the last cleanup and sweep,
    then what must hold on every node."""
    cluster, schema = w.cluster, w.schema
    for st in STORES:
        sql(cleaner_node, "CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (schema, st))
        sql(cleaner_node, "CALL dj_udf.sweep(%s, %s, 0, @n)", (schema, st))
    problems = list(w.problems)
    for st, table in STORES.items():
        tracking = [sql(n, f"SELECT hash, size, attachment_name FROM {schema}.`~external_{st}` ORDER BY hash")
                    for n in cluster.nodes]
        users = [sql(n, f"SELECT id, k, doc FROM {schema}.{table} ORDER BY id") for n in cluster.nodes]
        if not (tracking[0] == tracking[1] == tracking[2]):
            problems.append(f"{st}: the nodes disagree on the tracking rows")
        if not (users[0] == users[1] == users[2]):
            problems.append(f"{st}: the nodes disagree on the user rows")
        # every tracking row on every node has its object, verified
        for n in cluster.nodes:
            bad = [r for r in sql(n, "CALL dj_udf.verify(%s, %s)", (schema, st)) if r[4] != "ok"]
            if bad:
                problems.append(f"{st} on {n.name}: tracking rows without their object: {bad}")
        # and nothing else is left in the store (a killed put's object was swept)
        objects = set(stored_objects(cluster, schema, st))
        rows = {(h.hex(), nm) for h, _, nm in tracking[0]}
        if objects != rows:
            problems.append(f"{st}: objects without a tracking row: {sorted(objects - rows)}; "
                            f"tracking rows without an object: {sorted(rows - objects)}")
        # nothing referenced is lost: every committed row is there, with its contents
        expected = w.committed[st]
        got = {i: k for i, k, _ in users[0]}
        if set(expected) - set(got):
            problems.append(f"{st}: committed user rows lost: {sorted(set(expected) - set(got))}")
        if set(got) - set(expected):
            problems.append(f"{st}: user rows nobody committed: {sorted(set(got) - set(expected))}")
        for n in cluster.nodes:
            problems += read_back(n, schema, st, table)
    # No object written twice by replication: only the writer node ran puts,
    # so every upload came through its gate; the others only read and delete.
    for n, g in zip(cluster.nodes, cluster.s3.gates):
        puts = [r for r in g.log if r.method == "PUT" and f"/{schema}/" in r.path]
        if n is writer_node and not puts:
            problems.append(f"{n.name} uploaded nothing to S3")
        if n is not writer_node and puts:
            problems.append(f"{n.name} uploaded objects it never put (replication re-ran a put?): {puts[:5]}")
    summary = f"{schema}: workload {seconds:.0f} s, puts committed {w.puts}, counts {w.counts}"
    print(summary)
    assert w.puts["gfile"] > 20 and w.puts["gs3"] > 20, summary
    assert w.counts.get("cleanup", 0) > 20 and w.counts.get("sweep", 0) > 5, summary
    assert w.counts.get("verified read", 0) > 20, summary
    assert not problems, "\n".join(problems[:40]) + "\n" + summary


def run(w, threads):
    for t in threads:
        t.start()
    return time.monotonic()


def finish(w, threads, started):
    w.stop.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a workload thread hangs"
    return time.monotonic() - started


def test_puts_reads_cleanup_on_three_nodes_with_a_node_killed_mid_put(cluster):
    """Puts on node1, reads and verify on node2, cleanup and sweep on node3,
    at the same time; node1 killed in the middle of an S3 upload and
    started again. Put and purge must exclude each other across nodes:
    row locks (the single-server protocol) do not reach other nodes."""
    n1, n2, n3 = cluster.nodes
    w = Workload(cluster, "glab_spread")
    for g in cluster.s3.gates:
        g.reset()
    slow_deletes(w, cluster.s3.gates[2])
    victim, resume = threading.Event(), threading.Event()
    threads = [threading.Thread(target=writer, args=(w, n1, resume, victim), name="writer"),
               threading.Thread(target=reader, args=(w, n2, 2), name="reader"),
               threading.Thread(target=cleaner, args=(w, n3), name="cleaner")]
    started = run(w, threads)
    try:
        time.sleep(12)
        # node1 dies while its S3 upload of the victim object is under way
        victim_hex = attach_hash("victim.bin", VICTIM).hex()
        hook = cluster.s3.gates[0].once(lambda r: r.method == "PUT" and victim_hex in r.path, lambda r: n1.kill())
        victim.set()
        assert hook.fired.wait(60), "the victim put never reached S3"
        assert not n1.alive()
        time.sleep(3)  # the others go on without it
        n1.start()  # rejoins with the full gcomm:// list (IST, or SST by rsync)
        assert [n.status("wsrep_cluster_size") for n in cluster.nodes] == ["3"] * 3
        resume.set()
        time.sleep(10)
    finally:
        resume.set()
        seconds = finish(w, threads, started)
    audit(w, n1, n3, seconds)


def test_puts_and_cleanup_on_one_node_reads_on_the_others(cluster):
    """The cluster rule in README.md: a store's puts, cleanup and sweep on
    one node (row locks exclude put and purge there, as on a single
    server); reads and verify on any node."""
    n1, n2, n3 = cluster.nodes
    w = Workload(cluster, "glab_single")
    for g in cluster.s3.gates:
        g.reset()
    slow_deletes(w, cluster.s3.gates[0])
    threads = [threading.Thread(target=writer, args=(w, n1), name="writer"),
               threading.Thread(target=cleaner, args=(w, n1), name="cleaner"),
               threading.Thread(target=reader, args=(w, n2, 2), name="reader2"),
               threading.Thread(target=reader, args=(w, n3, 3), name="reader3")]
    started = run(w, threads)
    try:
        time.sleep(15)
    finally:
        seconds = finish(w, threads, started)
    audit(w, n1, n1, seconds)


@pytest.mark.parametrize("where", ["other node", "same node"])
@pytest.mark.parametrize("how", ["cleanup", "sweep"])
def test_a_put_while_a_node_removes_the_object(cluster, how, where):
    """The race the random workload may or may not hit, made to happen: node3
    has decided that an object is untracked (cleanup: its row was deleted;
    sweep: no row ever named it) and its S3 deletion is on its way; right
    then a put of the same object commits a row referencing it, on node1
    (other node) or on node3 itself (same node: the single-server case,
    where row locks make the put wait). The object must survive, or be
    written again by the put. The put is given 3 s before node3's deletion
    goes on, so a protocol that makes the put wait for the removal passes."""
    n1, n2, n3 = cluster.nodes
    putter = n1 if where == "other node" else n3
    w = Workload(cluster, f"glab_race_{how}_{where.split()[0]}")
    st, table, k = "gs3", STORES["gs3"], 0
    data = contents(st, k)
    h = attach_hash(name(k), data)
    with n1.connect() as conn, conn.cursor() as cur:
        if how == "cleanup":
            # tracked, then unused: node3's cleanup deletes the row and purges the object
            i = put_row(conn, w, st, k)
            cur.execute(f"DELETE FROM {w.schema}.{table} WHERE id = %s", (i,))
            w.committed[st].pop(i)
        else:
            # an object no row tracks (what a failed insert leaves): node3's sweep removes it
            cur.execute("SELECT dj_attach_put(%s, %s, %s, %s)", (st, w.schema, name(k), data))
            assert cur.fetchone()[0] == h
    racing = {}

    def put_meanwhile(_request):
        def put():
            with putter.connect() as conn:
                racing["id"] = put_row(conn, w, st, k)
        t = threading.Thread(target=put, name="racing put")
        racing["thread"] = t
        t.start()
        t.join(3)

    # node3's one deletion in this schema (DeleteObjects does not name its keys in the path)
    hook = cluster.s3.gates[2].once(lambda r: r.deletes(), put_meanwhile)
    try:
        if how == "cleanup":
            sql(n3, "CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (w.schema, st))
        else:
            sql(n3, "CALL dj_udf.sweep(%s, %s, 0, @n)", (w.schema, st))
    except pymysql.err.MySQLError as e:
        # the cluster may abort node3's transaction for node1's (a deadlock)
        assert e.args[0] in RETRY, e
    assert hook.fired.is_set(), f"node3's {how} did not delete the object"
    racing["thread"].join(120)
    assert racing.get("id") is not None, "the racing put did not commit"
    # the row committed on node1 references the object: it must be there
    for n in cluster.nodes:
        assert sql(n, f"SELECT COUNT(*) FROM {w.schema}.{table} WHERE id = %s", (racing["id"],))[0][0] == 1
        statuses = [r[4] for r in sql(n, "CALL dj_udf.verify(%s, %s)", (w.schema, st))]
        assert statuses == ["ok"], f"{n.name}: the object a committed row references is {statuses} after the {how}"
        assert sql(n, "SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, w.schema, h, name(k)))[0][0] == data
