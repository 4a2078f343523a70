"""Puts and cleanups at every isolation level: a purge and a put of the same
object are ordered by the database itself (both write the object's
tracking-row slot), so an object whose row is in place is never removed,
whatever isolation level either side runs at; concurrent cleanups count
each object once and retry their own deadlocks; a fresh put's row is left
alone for the grace period, so the INSERT that follows it finds it."""

import random
import subprocess
import threading
import time

import pymysql
import pytest

from conftest import ROOT, S3_BUCKET, batch

LEVELS = ["READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
# How long the concurrent load runs at each level.
LOAD_SECONDS = 6
DEADLOCK, LOCK_WAIT = 1213, 1205


def session(world, level):
    """A connection whose transactions run at `level`."""
    c = world.connect()
    with c.cursor() as cur:
        cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
    return c


class Worker(threading.Thread):
    """Runs statements on its own connection in a thread; keeps the error."""

    def __init__(self, conn, statements):
        super().__init__(daemon=True)
        self.conn, self.statements, self.error, self.rows = conn, statements, None, None
        self.start()

    def run(self):
        try:
            with self.conn.cursor() as cur:
                for q, args in self.statements:
                    cur.execute(q, args)
                    self.rows = cur.fetchall()
        except Exception as e:  # reported by the test
            self.error = e


def reference_table(db, store):
    db.sql(f"""CREATE TABLE `{db.schema}`.doc (id int AUTO_INCREMENT PRIMARY KEY, a binary(16) NOT NULL,
        FOREIGN KEY (a) REFERENCES `{db.schema}`.`~external_{store}` (hash))""")


def statuses(db, store):
    return [r[0] for r in db.sql(
        f"SELECT CONVERT(dj_verify(%s, %s, hash, size, attachment_name, filepath, contents_hash) USING utf8mb4) "
        f"FROM `{db.schema}`.`~external_{store}`", (store, db.schema))]


@pytest.fixture
def grace(db):
    """Sets cleanup_grace_seconds for the test; puts the harness's 0 back."""
    def set_grace(seconds):
        db.sql("UPDATE dj_udf.settings SET value = %s WHERE name = 'cleanup_grace_seconds'", (str(seconds),))
    yield set_grace
    set_grace(0)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("how", ["attach_put", "attach_put_many"])
def test_a_put_while_the_purge_removes_its_object_keeps_it(db, world, gate, level, how):
    """The purge has found no row for the object and is deleting it (its S3
    DELETE is held at the gate) when a put of that object arrives, alone or
    in a batch: the put waits for the purge, then finds the object gone and
    writes it again."""
    s = db.schema
    reference_table(db, "s3attach")
    data = b"put again while it is purged"
    h = db.call_out("dj_udf.attach_put", "s3attach", s, "again.txt", data)
    db.sql("CALL dj_udf.delete_unused(%s, 's3attach', @n)", (s,))
    assert db.one("SELECT @n") == 1
    entered, release = threading.Event(), threading.Event()

    def hold(_request):
        entered.set()
        release.wait(30)

    # the purge's one deletion, of this object alone (a DeleteObjects request)
    gate.once(lambda r: r.deletes(), hold)
    purger = Worker(session(world, level), [("CALL dj_udf.purge(%s, 's3attach', @o, @f)", (s,)),
                                            ("SELECT @o, @f", None)])
    assert entered.wait(20), "the purge reached its DELETE"
    if how == "attach_put":
        put = ("CALL dj_udf.attach_put('s3attach', %s, 'again.txt', %s, @h)", (s, data))
    else:
        put = ("CALL dj_udf.attach_put_many('s3attach', %s, %s, %s, @objects)", (s, *batch([("other.txt", b"other"), ("again.txt", data)])))
    putter = Worker(session(world, level), [put, ("SET @h = COALESCE(@h, UNHEX(JSON_VALUE(@objects, '$[1].hash')))", None),
                                            (f"INSERT INTO `{s}`.doc (a) VALUES (@h)", None)])
    putter.join(1.5)
    release.set()
    purger.join(30)
    putter.join(30)
    assert purger.error is None and putter.error is None, (purger.error, putter.error)
    assert purger.rows == ((1, 0),), "the purge removed the unused object once"
    assert db.one(f"SELECT COUNT(*) FROM `{s}`.doc") == 1
    assert statuses(db, "s3attach") == ["ok"] * (1 if how == "attach_put" else 2), "the objects the new rows name are there"
    hx = h.hex()
    assert (world.location("s3attach") / s / hx[:2] / hx[2:4] / f"{hx}.again.txt").read_bytes() == data


@pytest.mark.parametrize("level", LEVELS)
def test_two_purges_of_one_entry_count_it_once(db, world, gate, level):
    """A second purge waits for the first instead of handling the same entry:
    one object deleted, counted once, no failure."""
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "s3attach", s, "once.txt", b"once")
    db.sql("CALL dj_udf.delete_unused(%s, 's3attach', @n)", (s,))
    entered, release = threading.Event(), threading.Event()

    def hold(_request):
        entered.set()
        release.wait(30)

    gate.once(lambda r: r.deletes(), hold)
    first = Worker(session(world, level), [("CALL dj_udf.purge(%s, 's3attach', @o, @f)", (s,)), ("SELECT @o, @f", None)])
    assert entered.wait(20)
    second = Worker(session(world, level), [("CALL dj_udf.purge(%s, 's3attach', @o, @f)", (s,)), ("SELECT @o, @f", None)])
    second.join(1.5)
    release.set()
    first.join(30)
    second.join(30)
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.rows[0][0] + second.rows[0][0] == 1 and first.rows[0][1] + second.rows[0][1] == 0, (first.rows, second.rows)
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = %s", (s,)) == 0


@pytest.mark.parametrize("level", LEVELS)
def test_puts_references_and_cleanups_at_once_lose_nothing(db, world, level):
    """Putters put one of three objects, reference it and drop the reference
    again; another putter leaves its rows unreferenced; two cleaners loop.
    Every referenced object must exist while it is referenced, every
    cleanup must succeed without failures, and in the end every tracking
    row verifies."""
    s = db.schema
    reference_table(db, "localattach")
    objects = [(f"o{i}.txt", f"object {i}".encode()) for i in range(3)]
    stop = time.monotonic() + LOAD_SECONDS
    lost, errors, puts, cleaned, retried = [], [], [0], [0], [0]

    def putter(n, reference):
        rng = random.Random(n)
        conn = session(world, level)
        with conn.cursor() as cur:
            while time.monotonic() < stop:
                name, data = rng.choice(objects)
                try:
                    if not reference:
                        cur.execute("CALL dj_udf.attach_put('localattach', %s, %s, %s, @h)", (s, name, data))
                        puts[0] += 1
                        continue
                    # put and reference in one transaction: no cleanup comes between
                    cur.execute("START TRANSACTION")
                    cur.execute("CALL dj_udf.attach_put('localattach', %s, %s, %s, @h)", (s, name, data))
                    cur.execute(f"INSERT INTO `{s}`.doc (a) VALUES (@h)")
                    cur.execute("COMMIT")
                    puts[0] += 1
                    time.sleep(rng.random() / 50)
                    cur.execute("SELECT dj_object_size('localattach', %s, @h, %s, NULL)", (s, name))
                    if cur.fetchone()[0] is None:
                        lost.append(name)
                    cur.execute(f"DELETE FROM `{s}`.doc WHERE id = LAST_INSERT_ID()")
                except pymysql.err.OperationalError as e:
                    # the database may pick a putter's own transaction as a deadlock victim
                    if e.args[0] not in (DEADLOCK, LOCK_WAIT):
                        errors.append(e)
                    retried[0] += 1
                    cur.execute("ROLLBACK")
                except pymysql.err.MySQLError as e:
                    errors.append(e)
                    cur.execute("ROLLBACK")
        conn.close()

    def cleaner():
        conn = session(world, level)
        with conn.cursor() as cur:
            while time.monotonic() < stop:
                try:
                    cur.execute("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
                    cur.execute("SELECT @o, @f")
                    deleted, failed = cur.fetchone()
                    cleaned[0] += deleted
                    if failed:
                        errors.append(f"cleanup counted {failed} failures")
                except pymysql.err.MySQLError as e:
                    errors.append(e)
        conn.close()

    threads = [threading.Thread(target=putter, args=(n, n < 4)) for n in range(5)]
    threads += [threading.Thread(target=cleaner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOAD_SECONDS + 60)
    assert not lost, f"referenced objects lost after {puts[0]} puts: {lost}"
    assert not errors, errors[:5]
    assert puts[0] > 20 and cleaned[0] > 0, (puts, cleaned)
    assert set(statuses(db, "localattach")) <= {"ok"}
    # an entry a cleaner skipped while the other one was removing its object
    # waits for the next run: this one
    db.sql("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
    assert db.one("SELECT @f") == 0
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = %s", (s,)) == 0


def test_the_grace_period_keeps_a_fresh_put_for_its_insert(db, world, grace):
    s = db.schema
    reference_table(db, "localattach")
    # the default, as a fresh install sets it
    db.sql("DELETE FROM dj_udf.settings WHERE name = 'cleanup_grace_seconds'")
    with open(ROOT / "sql" / "install.sql") as f:
        subprocess.run(["mariadb", "--no-defaults", f"--socket={world.socket}", "-uroot"], stdin=f, check=True)
    assert db.one("SELECT value FROM dj_udf.settings WHERE name = 'cleanup_grace_seconds'") == "3600"

    grace(60)
    fresh = db.call_out("dj_udf.attach_put", "localattach", s, "fresh.txt", b"fresh")
    old = db.call_out("dj_udf.attach_put", "localattach", s, "old.txt", b"old")
    db.sql(f"UPDATE `{s}`.`~external_localattach` SET timestamp = NOW() - INTERVAL 61 SECOND WHERE hash = %s", (old,))
    db.sql("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "1,1,0", "only the row older than the grace period goes"
    db.sql(f"INSERT INTO `{s}`.doc (a) VALUES (%s)", (fresh,))
    # a put refreshes the row: an old unreferenced row put again is young again
    db.sql(f"UPDATE `{s}`.`~external_localattach` SET timestamp = NOW() - INTERVAL 61 SECOND WHERE hash = %s", (fresh,))
    again = db.call_out("dj_udf.attach_put", "localattach", s, "again.txt", b"again")
    db.sql(f"UPDATE `{s}`.`~external_localattach` SET timestamp = NOW() - INTERVAL 61 SECOND WHERE hash = %s", (again,))
    assert db.call_out("dj_udf.attach_put", "localattach", s, "again.txt", b"again") == again
    db.sql("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "0,0,0"
    assert statuses(db, "localattach") == ["ok", "ok"]

    # Without a grace period, a cleanup between the put and the INSERT
    # removes the row, and the INSERT fails; in one transaction it cannot.
    grace(0)
    h = db.call_out("dj_udf.attach_put", "localattach", s, "window.txt", b"window")
    db.sql("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
    assert "foreign key constraint fails" in db.error(f"INSERT INTO `{s}`.doc (a) VALUES (%s)", (h,))
    db.sql("START TRANSACTION")
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'window.txt', 'window', @h)", (s,))
    cleanup = Worker(world.connect(), [("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,)), ("SELECT @r, @o", None)])
    cleanup.join(1)
    db.sql(f"INSERT INTO `{s}`.doc (a) VALUES (@h)")
    db.sql("COMMIT")
    cleanup.join(30)
    assert cleanup.error is None and cleanup.rows == ((0, 0),), (cleanup.error, cleanup.rows)
    assert db.one(f"SELECT COUNT(*) FROM `{s}`.doc") == 2
    assert statuses(db, "localattach") == ["ok", "ok"]
