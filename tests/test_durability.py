"""Crashes: the server is killed (kill -9) while puts and exports are in the
middle of writing, and restarted. No object may exist under its final name
with contents that do not hash to that name, no exported file may have
other contents than its object, and every tracking row that committed must
name a complete object. Temporary files (`.dj-*.saving`) may be left
behind: they are hidden and never taken for objects."""

import hashlib
import os
import pathlib
import random
import re
import signal
import threading
import time
import uuid

import pymysql
import pytest

from conftest import batch

MiB = 1 << 20


def attach_ok(path: pathlib.Path) -> bool:
    """Whether an object file's contents hash to the name it has."""
    hexname, _, name = path.name.partition(".")
    h = hashlib.md5(name.encode() + b"\0")
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest() == hexname


def files(folder: pathlib.Path):
    return [pathlib.Path(d) / f for d, _, fs in os.walk(folder) for f in fs]


def kill_server(world):
    pid = world.server_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, "the killed server did not go away"
        time.sleep(0.05)


def writing(folders):
    """A temporary file with data in it: a write is under way."""
    for folder in folders:
        for p in files(folder):
            try:
                if p.name.endswith(".saving") and p.stat().st_size > MiB:
                    return True
            except FileNotFoundError:
                pass
    return False


def busy(world, schema, sources, export_dir, stop):
    """One connection's loop of puts (one file, client bytes, a batch of
    client bytes) and exports until the server dies."""
    try:
        conn = world.connect()
        with conn.cursor() as cur:
            i = 0
            while not stop.is_set():
                src = sources[i % len(sources)]
                cur.execute("CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (schema, str(src)))
                cur.execute("SELECT @h")
                h = cur.fetchone()[0]
                cur.execute("CALL dj_udf.attach_put('localattach', %s, %s, %s, @h2)",
                            (schema, f"bytes-{i}.bin", os.urandom(16 * MiB)))
                many = [(f"many-{i}-{k}.bin", os.urandom(2 * MiB)) for k in range(4)]
                cur.execute("CALL dj_udf.attach_put_many('localattach', %s, %s, %s, @objects)", (schema, *batch(many)))
                cur.execute("SELECT dj_udf.attach_export('localattach', %s, %s, %s, %s)",
                            (schema, h, src.name, str(export_dir / f"run-{i}")))
                i += 1
    except (pymysql.err.MySQLError, OSError):
        pass  # the server died under us


@pytest.mark.parametrize("round_", range(4))
def test_kill_during_puts_and_exports_leaves_no_partial_file(world, round_):
    schema = "crash_" + uuid.uuid4().hex[:8]
    with world.connect() as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{schema}`")
        cur.execute("CALL dj_udf.create_tracking_table(%s, 'localattach')", (schema,))
    sources = []
    for k in range(3):
        p = world.dirs["import"] / f"{schema}-{k}.bin"
        with open(p, "wb") as f:
            for _ in range(24 + 8 * k):
                f.write(os.urandom(MiB))
        sources.append(p)
    store = world.dirs["attach"] / schema
    export_dir = world.dirs["export"] / schema
    stop = threading.Event()
    threads = [threading.Thread(target=busy, args=(world, schema, sources, export_dir, stop)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        # Even rounds kill while a temporary file is being filled; odd ones
        # at a moment drawn at random, which may fall into any step.
        if round_ % 2:
            time.sleep(random.uniform(0.2, 2.0))
        else:
            time.sleep(0.5 * round_)
            deadline = time.monotonic() + 60
            while not writing([store, export_dir]):
                assert time.monotonic() < deadline, "no write ever started"
                time.sleep(0.005)
        kill_server(world)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if not os.path.exists(f"/proc/{world.server_pid()}"):
            world.start()
    assert world.alive()

    objects = [p for p in files(store) if not p.name.startswith(".")]
    temps = [p for p in files(store) + files(export_dir) if p.name.startswith(".")]
    assert all(p.name.startswith(".dj-") and p.name.endswith(".saving") for p in temps), temps
    bad = [p for p in objects if not attach_ok(p)]
    assert bad == [], bad

    originals = {p.name: p.read_bytes() for p in sources}
    for p in files(export_dir):
        if not p.name.startswith("."):
            # An alias (name_0000.bin) is a copy of the same attachment.
            original = re.sub(r"_[0-9a-f]{4}(\.bin)$", r"\1", p.name)
            assert original in originals and p.read_bytes() == originals[original], p

    with world.connect() as c, c.cursor() as cur:
        cur.execute(f"SELECT CONVERT(dj_verify('localattach', %s, hash, size, attachment_name, filepath, contents_hash) "
                    f"USING utf8mb4) FROM `{schema}`.`~external_localattach`", (schema,))
        assert {s for (s,) in cur.fetchall()} <= {"ok"}
        # The store takes the same objects again after the crash.
        cur.execute("CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (schema, str(sources[0])))
        cur.execute(f"SELECT COUNT(*) FROM `{schema}`.`~external_localattach` WHERE attachment_name = %s", (sources[0].name,))
        assert cur.fetchone()[0] == 1
    for p in sources:
        p.unlink()
