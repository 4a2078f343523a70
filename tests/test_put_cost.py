"""What a put costs in system calls, watched with strace on the server: the
fsyncs a durable object needs and no more, the folders a put creates made
durable, and large transfers that start writeback while they hash (so the
final fsync has little left to wait for)."""

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import attach_hash

MiB = 1 << 20
STRACE = shutil.which("strace")

pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed (scripts/setup.sh --python installs it)")


class Trace:
    """strace attached to every thread of the server, recording the
    syscalls named, with the paths of their file descriptors (-y)."""

    def __init__(self, world, db, calls):
        self.log = world.base / f"strace-{uuid.uuid4().hex[:8]}.log"
        self.proc = subprocess.Popen([STRACE, "-f", "-qq", "-y", "-o", str(self.log), "-e", f"trace={calls},openat",
                                      "-p", str(world.server_pid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Attached once a marker file opened by this connection shows up.
        marker = world.dirs["import"] / f"marker-{uuid.uuid4().hex}"
        marker.write_bytes(b"m")
        deadline = time.monotonic() + 20
        while marker.name not in self.text():
            assert time.monotonic() < deadline, "strace did not attach to the server"
            db.sql("SELECT dj_file_checksum(%s)", (str(marker),))
            time.sleep(0.05)
        self.start = len(self.text())

    def text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        """The lines recorded since attaching."""
        time.sleep(0.2)
        self.proc.terminate()
        self.proc.wait(10)
        return self.text()[self.start:].splitlines()


def calls(lines, name, below):
    """The `name` calls whose first descriptor is a path below `below`: (path, line)."""
    out = []
    for line in lines:
        m = re.match(rf"\d+\s+{name}\(\d+<([^>]*)>", line)
        if m and m.group(1).startswith(str(below)):
            out.append((m.group(1), line))
    return out


def object_path(world, schema, h, name):
    hx = h.hex()
    return world.dirs["attach"] / schema / hx[:2] / hx[2:4] / f"{hx}.{name}"


def test_a_small_put_costs_two_fsyncs_and_a_present_object_none(world, db):
    """Into folders that exist: the object's file and its folder, nothing
    else in the store; putting the same object again writes nothing."""
    data = os.urandom(4096)
    h = attach_hash("one.bin", data)
    # Another object in the same folders, so that they exist.
    hx = h.hex()
    folder = world.dirs["attach"] / db.schema / hx[:2] / hx[2:4]
    folder.mkdir(parents=True)
    t = Trace(world, db, "fsync,fdatasync")
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'one.bin', %s, @h)", (db.schema, data))
    lines = t.stop()
    synced = [p for p, _ in calls(lines, "fsync", world.dirs["attach"]) + calls(lines, "fdatasync", world.dirs["attach"])]
    assert len(synced) == 2, synced
    assert synced[0].startswith(str(folder) + "/.dj-") and synced[0].endswith(".saving"), synced
    assert synced[1] == str(folder), synced
    assert object_path(world, db.schema, h, "one.bin").read_bytes() == data

    t = Trace(world, db, "fsync,fdatasync,write,renameat,renameat2")
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'one.bin', %s, @h)", (db.schema, data))
    lines = t.stop()
    assert [line for line in lines if str(world.dirs["attach"]) in line and "openat" not in line] == []


def test_folders_a_put_creates_are_made_durable(world, db):
    """A put into a new schema creates `<schema>/<hh>/<hh>/`: each new
    folder's entry is in its parent, which must be fsync'd too, or a crash
    can take the folder and the acknowledged object in it."""
    data = os.urandom(4096)
    h = attach_hash("new.bin", data)
    hx = h.hex()
    schema_dir = world.dirs["attach"] / db.schema
    assert not schema_dir.exists()
    t = Trace(world, db, "fsync,fdatasync")
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'new.bin', %s, @h)", (db.schema, data))
    synced = {p for p, _ in calls(t.stop(), "fsync", world.dirs["attach"])}
    for d in [world.dirs["attach"], schema_dir, schema_dir / hx[:2], schema_dir / hx[:2] / hx[2:4]]:
        assert str(d) in synced, (d, sorted(synced))


def test_an_export_into_a_new_folder_makes_it_durable(world, db):
    data = os.urandom(4096)
    h = db.call_out("dj_udf.attach_put", "localattach", db.schema, "e.bin", data)
    target = world.dirs["export"] / f"new-{uuid.uuid4().hex[:8]}" / "deeper"
    t = Trace(world, db, "fsync,fdatasync")
    path = db.one("SELECT dj_udf.attach_export('localattach', %s, %s, 'e.bin', %s)", (db.schema, h, str(target)))
    synced = {p for p, _ in calls(t.stop(), "fsync", world.dirs["export"])}
    assert path == str(target / "e.bin")
    for d in [world.dirs["export"], target.parent, target]:
        assert str(d) in synced, (d, sorted(synced))


@pytest.mark.parametrize("how", ["put", "export"])
def test_large_transfers_write_behind_and_keep_the_final_fsync(world, db, how):
    """A 48 MiB put or export starts writeback of its temporary file in
    windows while it goes on hashing (sync_file_range), and still fsyncs the
    file before it gets its name."""
    src = world.dirs["import"] / f"big-{uuid.uuid4().hex[:8]}.bin"
    with open(src, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(MiB))
    below = world.dirs["attach"] if how == "put" else world.dirs["export"]
    if how == "export":
        h = db.call_out("dj_udf.attach_put_file", "localattach", db.schema, str(src))
    t = Trace(world, db, "fsync,fdatasync,sync_file_range,renameat,renameat2,linkat")
    if how == "put":
        h = db.call_out("dj_udf.attach_put_file", "localattach", db.schema, str(src))
    else:
        out = world.dirs["export"] / f"x-{uuid.uuid4().hex[:8]}"
        db.one("SELECT dj_udf.attach_export('localattach', %s, %s, %s, %s)", (db.schema, h, src.name, str(out)))
    lines = t.stop()
    ranges = calls(lines, "sync_file_range", below)
    assert len(ranges) >= 6, lines[:20]
    temp = ranges[0][0]
    assert temp.endswith(".saving"), temp
    assert all(p == temp for p, _ in ranges)
    # The file's own fsync comes after every writeback call and before its name.
    order = [i for i, line in enumerate(lines) if temp in line]
    fsync_at = [i for i, line in enumerate(lines) if re.match(rf"\d+\s+fsync\(\d+<{re.escape(temp)}>", line)]
    named_at = [i for i, line in enumerate(lines) if re.search(r"(renameat2?|linkat)\(", line) and ".saving" in line]
    assert fsync_at and named_at, lines[-20:]
    assert max(i for i in order if "sync_file_range" in lines[i]) < fsync_at[0] < named_at[0]
    assert h == attach_hash(src.name, src.read_bytes())
