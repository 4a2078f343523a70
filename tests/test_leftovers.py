"""What interrupted writes leave behind is swept, and only that: stale
temporary files after the server is killed during a put, and abandoned S3
multipart uploads after the S3 server dies mid-upload; a write in progress
is never touched."""

import os
import signal
import threading
import time

import pymysql
import pytest

from conftest import attach_hash

MiB = 1 << 20


def temporaries(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".saving")]


def bytes_in(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def sparse(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def wait_for(what, timeout=30):
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def in_background(world, q, args):
    """Runs q on a connection of its own; returns the thread and its outcome."""
    outcome = {}

    def run():
        conn = world.connect(read_timeout=120)
        try:
            with conn.cursor() as cur:
                cur.execute(q, args)
                cur.execute("SELECT @h")
                outcome["result"] = cur.fetchone()[0]
        except pymysql.err.MySQLError as e:
            outcome["error"] = e
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - the server may be gone
                pass

    t = threading.Thread(target=run)
    t.start()
    return t, outcome


def sweep(db, store, min_age):
    db.sql("CALL dj_udf.sweep_leftovers(%s, %s, @files, @uploads)", (store, min_age))
    return db.one("SELECT @files, @uploads")


def test_temporaries_left_by_a_killed_server_are_swept_but_never_one_in_use(db, world):
    s = db.schema
    sweep(db, "localattach", 0)  # what earlier tests left
    folder = world.dirs["import"] / f"{s}-leftovers"
    src = sparse(folder / "big.bin", 2 << 30)
    t, _ = in_background(world, "CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (s, str(src)))
    wait_for(lambda: any(bytes_in(p) > 0 for p in temporaries(world.dirs["attach"] / s)))
    os.kill(world.server_pid(), signal.SIGKILL)
    t.join(60)
    world.start()
    db.conn = world.connect()
    left = temporaries(world.dirs["attach"] / s)
    assert len(left) == 1 and os.path.getsize(left[0]) > 0, left

    # young ones stay; abandoned ones older than the grace period go
    assert sweep(db, "localattach", 3600) == (0, 0)
    assert temporaries(world.dirs["attach"] / s) == left
    assert sweep(db, "localattach", 0) == (1, 0)
    assert temporaries(world.dirs["attach"] / s) == []

    # a write in progress is never taken, whatever the grace period
    src.unlink()
    src = sparse(folder / "live.bin", 1 << 30)
    t, outcome = in_background(world, "CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (s, str(src)))
    wait_for(lambda: temporaries(world.dirs["attach"] / s))
    assert sweep(db, "localattach", 0) == (0, 0)
    t.join(120)
    assert "error" not in outcome, outcome
    h = outcome["result"]
    stored = world.dirs["attach"] / s / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.live.bin"
    assert stored.stat().st_size == 1 << 30
    assert db.one("SELECT dj_verify('localattach', %s, %s, %s, 'live.bin', NULL, NULL)", (s, h, 1 << 30)) == b"ok"
    stored.unlink()
    src.unlink()


def unfinished(world):
    return set(world.dirs["s3root"].glob(".upload_id-*"))


def markers(world, store):
    return [p for p in world.location(store).glob(".dj-uploads/*") if not p.name.endswith(".json")]


def test_an_upload_abandoned_mid_way_is_aborted_by_the_sweep(db, s3, gate):
    world, s = s3, db.schema
    sweep(db, "s3attach", 0)  # what earlier tests left
    src = world.dirs["import"] / f"{s}-upload" / "parts.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(40 * MiB))
    before = unfinished(world)
    # s3s-fs dies as the upload is to be completed (its parts may go out in
    # parallel, so only then are they all stored): neither the completion
    # nor the abort gets through
    completion = gate.once(lambda r: r.method == "POST" and "uploadId" in r.params(),
                           lambda r: world.s3_stop(kill=True))
    msg = db.error("CALL dj_udf.attach_put_file('s3attach', %s, %s, @h)", (s, str(src)))
    assert completion.fired.is_set() and "unreachable" in msg, msg
    world.s3_start()
    assert len(unfinished(world) - before) >= 1, "its parts stay on the S3 server"
    assert len(markers(world, "s3attach")) == 1

    assert sweep(db, "s3attach", 3600) == (0, 0), "younger than the grace period"
    assert sweep(db, "s3attach", 0) == (0, 1)
    assert unfinished(world) == before
    assert markers(world, "s3attach") == []
    assert sweep(db, "s3attach", 0) == (0, 0)


def test_an_upload_in_progress_is_never_aborted(db, s3, gate):
    world, s = s3, db.schema
    sweep(db, "s3attach", 0)  # what earlier tests left
    data = os.urandom(40 * MiB)
    src = world.dirs["import"] / f"{s}-live" / "live.bin"
    src.parent.mkdir()
    src.write_bytes(data)
    # the second part waits in the gate while a sweep with no grace at all runs
    paused = threading.Event()
    gate.once(lambda r: r.method == "PUT" and r.params().get("partNumber") == "2", lambda r: (paused.set(), time.sleep(3)))
    t, outcome = in_background(world, "CALL dj_udf.attach_put_file('s3attach', %s, %s, @h)", (s, str(src)))
    assert paused.wait(30)
    assert len(markers(world, "s3attach")) == 1
    assert sweep(db, "s3attach", 0) == (0, 0)
    t.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"] == attach_hash("live.bin", data)
    assert db.one("SELECT dj_verify('s3attach', %s, %s, %s, 'live.bin', NULL, NULL)", (s, outcome["result"], len(data))) == b"ok"
    assert markers(world, "s3attach") == []
