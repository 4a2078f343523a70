"""Batch operations on file and S3 stores: many objects in one call, up to the
store's max_parallel at once, with one result per object. A failing object
in the middle fails alone (the others complete, the failure is reported for
it, nothing half-written is left), and no thread of the library outlives
the call that started it."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import LIBRARY, PURGE_KEY, ROOT, attach_hash, batch, blob_path

MiB = 1 << 20

STORES = {"file": "localattach", "s3": "s3attach"}


@pytest.fixture(params=list(STORES))
def store(request, world):
    if request.param == "s3":
        request.getfixturevalue("gate")
    return STORES[request.param]


def attach_path(world, store, schema, h, name):
    hx = h.hex()
    return world.location(store) / schema / hx[:2] / hx[2:4] / f"{hx}.{name}"


def leftovers(world, store, schema):
    """What a failed write may leave: .saving files or S3 upload parts."""
    if store.startswith("s3"):
        return sorted(p.name for p in world.dirs["s3root"].glob(".upload_id-*"))
    return sorted(str(p) for p in (world.location(store) / schema).rglob("*.saving"))


def files(folder, n, size=2000, tag=""):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        data = os.urandom(size) + f"{tag}{i}".encode()
        (folder / f"f{i:02d}.bin").write_bytes(data)
        out[f"f{i:02d}.bin"] = data
    return out


def test_bulk_put_of_a_folder_tracks_every_file_and_returns_rows_to_insert(db, world, store):
    s = db.schema
    folder = world.dirs["import"] / f"{s}-{store}"
    data = files(folder, 12)
    (folder / "sub").mkdir()  # folders inside are not attached
    (folder / "link.bin").symlink_to(folder / "f00.bin")  # nor links
    db.sql("CALL dj_udf.attach_put_files(%s, %s, %s, @files)", (store, s, str(folder)))
    rows = json.loads(db.one("SELECT @files"))
    assert [r["attachment_name"] for r in rows] == sorted(data)
    for r in rows:
        h = attach_hash(r["attachment_name"], data[r["attachment_name"]])
        assert (r["hash"], r["size"], r["path"]) == (h.hex(), len(data[r["attachment_name"]]), str(folder / r["attachment_name"]))
        assert attach_path(world, store, s, h, r["attachment_name"]).read_bytes() == data[r["attachment_name"]]
    tracked = {(bytes(h), n, name) for h, n, name, _, _ in db.tracking(store)}
    assert tracked == {(bytes.fromhex(r["hash"]), r["size"], r["attachment_name"]) for r in rows}
    # the rows go into a user table in one statement
    db.sql(f"CREATE TABLE `{s}`.scans (k int PRIMARY KEY, f binary(16) NOT NULL, "
           f"FOREIGN KEY (f) REFERENCES `{s}`.`~external_{store}` (hash))")
    db.sql(f"INSERT INTO `{s}`.scans SELECT j.n, UNHEX(j.hash) FROM JSON_TABLE(@files, '$[*]' "
           "COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j WHERE j.hash IS NOT NULL")
    assert db.one(f"SELECT COUNT(*) FROM `{s}`.scans") == 12
    # again: nothing new is written, the same rows come back
    db.sql("CALL dj_udf.attach_put_files(%s, %s, %s, @again)", (store, s, str(folder)))
    assert json.loads(db.one("SELECT @again")) == rows


def test_bulk_put_reports_a_failing_file_and_completes_the_others(db, world, store, request):
    """A list with a refused path and a file that changes while it is
    uploaded, between good ones: those two fail with their own message, are
    neither stored nor tracked, and everything else is."""
    s = db.schema
    folder = world.dirs["import"] / f"{s}-mixed-{store}"
    data = files(folder, 6)
    moving = folder / "f03.bin"
    if store.startswith("s3"):
        # larger than one PUT: read twice (hashed, then sent), so it can change in between
        data["f03.bin"] = os.urandom(9 << 20)
        moving.write_bytes(data["f03.bin"])
    paths = [str(folder / "f00.bin"), str(folder / "f01.bin"), "/etc/passwd", str(folder / "f02.bin"), str(moving),
             str(folder / "f04.bin"), str(folder / "f05.bin")]
    old = attach_hash("f03.bin", data["f03.bin"])
    if store.startswith("s3"):
        # the S3 store reads a large file twice: change it when its lookup arrives
        gate = request.getfixturevalue("gate")
        hook = gate.once(lambda r: old.hex() in r.path, lambda _r: moving.write_bytes(os.urandom(len(data["f03.bin"]))))
    db.sql("CALL dj_udf.attach_put_files(%s, %s, %s, @files)", (store, s, json.dumps(paths)))
    rows = json.loads(db.one("SELECT @files"))
    assert [r["path"] for r in rows] == paths
    assert "not inside" in rows[2]["error"] and "hash" not in rows[2]
    good = [r for i, r in enumerate(rows) if i not in (2, 4)]
    assert all("error" not in r for r in good), good
    assert {r["attachment_name"] for r in good} == {"f00.bin", "f01.bin", "f02.bin", "f04.bin", "f05.bin"}
    if store.startswith("s3"):
        assert hook.fired.is_set() and hook.error is None
        assert "checksum mismatch" in rows[4]["error"], rows[4]
        assert not attach_path(world, store, s, old, "f03.bin").exists()
        tracked = {n for _, _, n, _, _ in db.tracking(store)}
        assert tracked == {r["attachment_name"] for r in good}
    else:
        # a file store reads once: the file is stored as it was read
        assert "error" not in rows[4]
    assert leftovers(world, store, s) == []
    for r in good:
        h = bytes.fromhex(r["hash"])
        assert attach_path(world, store, s, h, r["attachment_name"]).read_bytes() == data[r["attachment_name"]]


def put_many(db, store, schema, objects, out="@objects"):
    """CALL dj_udf.attach_put_many for [(name, bytes)]: their items and
    their bytes one after the other; returns the result's items."""
    db.sql(f"CALL dj_udf.attach_put_many(%s, %s, %s, %s, {out})", (store, schema, *batch(objects)))
    return json.loads(db.one(f"SELECT {out}"))


def test_many_attachments_in_one_statement_are_what_single_puts_make(db, world, store):
    """Client bytes of many attachments in one call: stored and tracked as
    one dj_udf.attach_put each would (same hash, same bytes, same row), a
    refused name fails alone, and the result goes into a user table in one
    statement; the same call again writes nothing new."""
    s = db.schema
    objects = [(f"s{i:03d}.bin", os.urandom(i * 37) + b"/%d" % i) for i in range(60)]
    objects[7] = ("", b"an empty name is refused")
    objects[8] = ("empty.bin", b"")
    rows = put_many(db, store, s, objects)
    assert [r["attachment_name"] for r in rows] == [n for n, _ in objects]
    assert "attachment name" in rows[7]["error"] and "hash" not in rows[7], rows[7]
    good = [(r, d) for r, (_, d) in zip(rows, objects) if "error" not in r]
    assert len(good) == 59
    for r, d in good:
        h = attach_hash(r["attachment_name"], d)
        assert (r["hash"], r["size"]) == (h.hex(), len(d))
        assert attach_path(world, store, s, h, r["attachment_name"]).read_bytes() == d
    one = db.call_out("dj_udf.attach_put", store, s, "s001.bin", objects[1][1])
    assert one.hex() == rows[1]["hash"]
    tracked = {(bytes(h), n, name) for h, n, name, _, _ in db.tracking(store)}
    assert tracked == {(bytes.fromhex(r["hash"]), r["size"], r["attachment_name"]) for r, _ in good}
    db.sql(f"CREATE TABLE `{s}`.scans (k int PRIMARY KEY, f binary(16) NOT NULL, "
           f"FOREIGN KEY (f) REFERENCES `{s}`.`~external_{store}` (hash))")
    db.sql(f"INSERT INTO `{s}`.scans SELECT j.n, UNHEX(j.hash) FROM JSON_TABLE(@objects, '$[*]' "
           "COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j WHERE j.hash IS NOT NULL")
    assert db.one(f"SELECT COUNT(*) FROM `{s}`.scans") == 59
    assert put_many(db, store, s, objects, "@again") == rows
    assert leftovers(world, store, s) == []


def test_one_attachment_many_times_in_a_batch_is_stored_and_tracked_once(db, world, store):
    """The same attachment several times in one call (on S3, one of them
    larger than a single PUT) is written at once by several workers: each
    item gets its hash, and one object and one row come of each."""
    s = db.schema
    small, big = os.urandom(3000), os.urandom(9 * MiB)
    rows = put_many(db, store, s, [("same.bin", small)] * 6 + [("big.bin", big)] * 3 + [("same.bin", small)])
    assert all("error" not in r for r in rows), rows
    assert {r["hash"] for r in rows} == {attach_hash("same.bin", small).hex(), attach_hash("big.bin", big).hex()}
    assert len(db.tracking(store)) == 2
    assert attach_path(world, store, s, attach_hash("big.bin", big), "big.bin").read_bytes() == big
    assert leftovers(world, store, s) == []


def test_many_blobs_in_one_statement_are_what_single_puts_make(db, world, store):
    """dj_udf.blob_put_many: serialized blobs stored and tracked as
    dj_udf.blob_put would, one that is not a serialized blob failing alone;
    an item with an attachment name is refused, whole."""
    s = db.schema
    blobs = [b"mYm\0" + os.urandom(i * 53) for i in range(40)]
    blobs[5] = b"not a blob"
    db.sql("CALL dj_udf.blob_put_many(%s, %s, %s, %s, @objects)", (store, s, *batch(blobs)))
    rows = json.loads(db.one("SELECT @objects"))
    assert len(rows) == 40 and "not a serialized DataJoint blob" in rows[5]["error"] and "hash" not in rows[5], rows[5]
    good = [(r, b) for r, b in zip(rows, blobs) if "error" not in r]
    assert len(good) == 39
    for r, b in good:
        h = hashlib.md5(b).digest()
        assert (r["hash"], r["size"]) == (h.hex(), len(b))
        assert blob_path(world, store, s, h).read_bytes() == b
    assert db.call_out("dj_udf.blob_put", store, s, blobs[3]).hex() == rows[3]["hash"]
    tracked = {(bytes(h), n, name) for h, n, name, _, _ in db.tracking(store)}
    assert tracked == {(bytes.fromhex(r["hash"]), r["size"], None) for r, _ in good}
    named = json.dumps([{"size": 4, "attachment_name": "a.bin"}])
    assert "a blob has no attachment_name" in db.error("CALL dj_udf.blob_put_many(%s, %s, %s, 'mYm\0', @o)", (store, s, named))
    assert leftovers(world, store, s) == []


def test_many_attachments_whose_sizes_do_not_divide_the_data_are_refused_whole(db, world):
    s = db.schema
    cases = [
        ([{"attachment_name": "a.bin", "size": 3}], b"abcd", "add up to 3 bytes, but data has 4"),
        ([{"attachment_name": "a.bin", "size": 3}, {"attachment_name": "b.bin", "size": 2}], b"abcd", "item 1 (b.bin) would end at byte 5"),
        ([{"attachment_name": "a.bin"}], b"abcd", "item 0: size is missing"),
        ([{"size": 4}], b"abcd", "item 0: attachment_name is missing"),
        ([{"attachment_name": "a.bin", "size": -1}], b"abcd", "size must be a non-negative integer"),
        ({"attachment_name": "a.bin", "size": 4}, b"abcd", "must be a JSON array"),
    ]
    for items, data, message in cases:
        with pytest.raises(Exception, match=re.escape(message)):
            db.sql("CALL dj_udf.attach_put_many('localattach', %s, %s, %s, @o)", (s, json.dumps(items), data))
    assert len(db.tracking("localattach")) == 0
    assert not (world.location("localattach") / s).exists() or list((world.location("localattach") / s).rglob("*")) == []
    assert db.one("SELECT dj_attach_put_many('localattach', %s, '[]', NULL)", (s,)) is None
    db.sql("CALL dj_udf.attach_put_many('localattach', %s, '[]', '', @o)", (s,))
    assert db.one("SELECT @o") == "[]"


def test_audit_export_and_sync_run_in_parallel_and_report_per_object(db, world, store, request):
    s = db.schema
    folder = world.dirs["import"] / f"{s}-audit-{store}"
    data = files(folder, 10)
    db.sql("CALL dj_udf.attach_put_files(%s, %s, %s, @files)", (store, s, str(folder)))
    rows = json.loads(db.one("SELECT @files"))
    db.sql(f"CREATE TABLE `{s}`.scans (k int PRIMARY KEY, f binary(16))")
    db.sql(f"INSERT INTO `{s}`.scans SELECT j.n, UNHEX(j.hash) FROM JSON_TABLE(@files, '$[*]' "
           "COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j")
    # one corrupted and one missing object in the middle
    by = {r["attachment_name"]: bytes.fromhex(r["hash"]) for r in rows}
    bad = attach_path(world, store, s, by["f04.bin"], "f04.bin")
    bad.write_bytes(b"x" + bad.read_bytes()[1:])
    attach_path(world, store, s, by["f06.bin"], "f06.bin").unlink()

    slow = []
    if store.startswith("s3"):
        # each object's GET waits 0.4 s in the gate: one after the other the
        # audit would take 4 s, eight at once about 0.8 s
        gate = request.getfixturevalue("gate")
        for name, h in by.items():
            slow.append(gate.once(lambda r, h=h: r.method == "GET" and h.hex() in r.path, lambda _r: time.sleep(0.4)))
    t = time.monotonic()
    audit = db.sql("CALL dj_udf.verify(%s, %s)", (s, store))
    took = time.monotonic() - t
    status = {r[2]: r[4] for r in audit}
    assert status == {**{n: "ok" for n in data}, "f04.bin": "checksum mismatch", "f06.bin": "missing"}, status
    assert [r[0] for r in audit] == sorted(h.hex().upper() for h in by.values())
    if slow:
        assert all(h.fired.is_set() for h in slow)
        assert took < 2.5, f"audit of 10 slowed objects took {took:.1f} s: not parallel"

    out = world.dirs["export"] / f"{s}-{store}"
    exported = db.sql("CALL dj_udf.export_attachments(%s, %s, 'scans', 'f', %s)", (store, s, str(out)))
    res = {r[1]: (r[2], r[3]) for r in exported}
    assert "checksum mismatch" in res["f04.bin"][1] and res["f04.bin"][0] is None
    assert "does not exist" in res["f06.bin"][1] and res["f06.bin"][0] is None
    for n in set(data) - {"f04.bin", "f06.bin"}:
        assert res[n] == (str(out / n), None)
        assert (out / n).read_bytes() == data[n]
    assert sorted(os.listdir(out)) == sorted(set(data) - {"f04.bin", "f06.bin"}), "nothing half-written"


def test_filepaths_sync_to_the_stage_in_one_call(db, world, gate):
    s, store = db.schema, "s3data"
    stage = world.stage(store)
    made = {}
    for i in range(6):
        p = stage / s / f"run{i}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(3000))
        made[f"{s}/run{i}.dat"] = p.read_bytes()
        db.call_out("dj_udf.filepath_put", store, s, str(p))
    db.sql(f"CREATE TABLE `{s}`.runs (k int PRIMARY KEY, f binary(16))")
    db.sql(f"INSERT INTO `{s}`.runs SELECT ROW_NUMBER() OVER (), hash FROM `{s}`.`~external_{store}`")
    shutil.rmtree(stage / s)
    missing = world.location(store) / s / "run2.dat"
    missing.unlink()
    rows = db.sql("CALL dj_udf.sync_filepaths(%s, %s, 'runs', 'f')", (store, s))
    res = {r[0]: (r[1], r[2]) for r in rows}
    assert set(res) == set(made)
    assert res[f"{s}/run2.dat"][0] is None and "does not exist" in res[f"{s}/run2.dat"][1]
    for rel, data in made.items():
        if rel != f"{s}/run2.dat":
            assert res[rel] == (str(stage / rel), None)
            assert (stage / rel).read_bytes() == data


def test_many_objects_deleted_in_one_request(db, world, store, request):
    s = db.schema
    folder = world.dirs["import"] / f"{s}-del-{store}"
    data = files(folder, 25)
    db.sql("CALL dj_udf.attach_put_files(%s, %s, %s, @files)", (store, s, str(folder)))
    rows = json.loads(db.one("SELECT @files"))
    items = json.dumps([{"hash": r["hash"], "attachment_name": r["attachment_name"]} for r in rows])
    q = "SELECT dj_delete_objects(%s, %s, %s, %s)"
    assert db.one(q, (store, s, items, "wrong key, no deletion")) is None
    assert "wrong purge key" in db.last_error()
    assert all(attach_path(world, store, s, bytes.fromhex(r["hash"]), r["attachment_name"]).exists() for r in rows)
    if store.startswith("s3"):
        request.getfixturevalue("gate").reset()
    out = json.loads(db.one(q, (store, s, items, PURGE_KEY)))
    assert [o["status"] for o in out] == ["deleted"] * 25
    assert not any(attach_path(world, store, s, bytes.fromhex(r["hash"]), r["attachment_name"]).exists() for r in rows)
    if store.startswith("s3"):
        log = request.getfixturevalue("gate").log
        assert [(r.method, "delete" in r.query) for r in log] == [("POST", True)], log
    assert len(data) == 25


def test_no_thread_outlives_a_call(db, world, gate, tmp_path):
    """Batch calls and a large upload of a server file use worker threads;
    the library is called here the way the server calls it, from a
    single-threaded process under strace: threads are started, and after
    every call the process has one thread again."""
    strace = shutil.which("strace")
    assert strace, "strace is installed by scripts/setup.sh"
    s = db.schema
    folder = world.dirs["import"] / f"{s}-threads"
    files(folder, 9)
    big = folder / "big.bin"
    big.write_bytes(os.urandom(40 * MiB))  # three parts, sent at once
    script = tmp_path / "calls.py"
    script.write_text(f"""
import ctypes, json, os, sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
import udf_direct as u
lib = ctypes.CDLL({str(LIBRARY)!r})
import time
def threads():
    # a joined thread has run its last instruction; the kernel may list it
    # for a moment longer while it tears it down
    for _ in range(100):
        n = len(os.listdir('/proc/self/task'))
        if n == 1:
            break
        time.sleep(0.001)
    return n
assert threads() == 1
rows = json.loads(u.call(lib, 'dj_attach_put_files', b's3attach', {s.encode()!r}, {str(folder).encode()!r}))
assert all('error' not in r for r in rows) and len(rows) == 10, rows
print('put', threads())
check = json.dumps([dict(hash=r['hash'], size=r['size'], attachment_name=r['attachment_name']) for r in rows]).encode()
out = json.loads(u.call(lib, 'dj_verify_many', b's3attach', {s.encode()!r}, check))
assert [o['status'] for o in out] == ['ok'] * 10, out
print('verify', threads())
""")
    log = tmp_path / "strace.txt"
    env = dict(os.environ, DJ_UDF_CONFIG=str(world.config_path))
    out = subprocess.run([strace, "-f", "-qq", "-e", "trace=clone,clone3,exit", "-o", str(log), sys.executable, "-S", str(script)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["put", "1", "verify", "1"], out.stdout
    traced = log.read_text()
    started = set(re.findall(r"clone3?\(.*\) = (\d+)$", traced, re.M))
    ended = set(re.findall(r"^(\d+) +exit\(", traced, re.M))
    assert len(started) >= 2, "the calls used worker threads"
    assert started <= ended, ("threads that never ended", started - ended)
