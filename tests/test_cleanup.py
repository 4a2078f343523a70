"""Removing objects, on every kind of store: delete_unused and purge (NULL-safe,
only after the tracking row's deletion committed, never while a row for the
object exists again, only with the purge key), and sweep of objects that
rolled-back inserts left (tracked, young and foreign files stay)."""

import json
import time

import pytest

from conftest import BLOB_3, PURGE_KEY, attach_hash, attach_path, subfold


def queued(db):
    return db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name=%s", (db.schema,))


def test_cleanup_is_null_safe_and_keeps_referenced_objects(db, world, kind):
    s, st = db.schema, kind.attach
    db.sql(f"""CREATE TABLE `{s}`.doc (id int PRIMARY KEY, att binary(16) DEFAULT NULL COMMENT ':attach@{st}:optional',
        FOREIGN KEY (att) REFERENCES `{s}`.`~external_{st}` (hash))""")
    keep = db.call_out("dj_udf.attach_put", st, s, "keep.txt", b"keep")
    drop = db.call_out("dj_udf.attach_put", st, s, "drop.txt", b"drop")
    db.sql(f"INSERT INTO `{s}`.doc VALUES (1, %s), (2, NULL)", (keep,))
    db.sql("CALL dj_udf.cleanup(%s, %s, @rows, @objs, @fails)", (s, st))
    assert db.one("SELECT CONCAT_WS(',', @rows, @objs, @fails)") == "1,1,0"
    assert [r[2] for r in db.tracking(st)] == ["keep.txt"]
    assert attach_path(world, st, s, keep, "keep.txt").exists()
    assert not attach_path(world, st, s, drop, "drop.txt").exists()
    assert queued(db) == 0
    # a purge of an object already gone counts as done, not as a failure
    # (and S3's DeleteObjects cannot tell it from an object it deleted)
    back = db.call_out("dj_udf.attach_put", st, s, "back.txt", b"back")
    db.sql("CALL dj_udf.delete_unused(%s, %s, @rows)", (s, st))
    attach_path(world, st, s, back, "back.txt").unlink()
    db.sql("CALL dj_udf.purge(%s, %s, @objs, @fails)", (s, st))
    assert db.one("SELECT CONCAT_WS(',', @objs, @fails)") == ("1,0" if kind.s3 else "0,0")
    assert queued(db) == 0


def test_purge_never_removes_an_object_tracked_again(db, kind):
    s, st = db.schema, kind.attach
    h = db.call_out("dj_udf.attach_put", st, s, "back.txt", b"comes back")
    db.sql("CALL dj_udf.delete_unused(%s, %s, @rows)", (s, st))
    assert db.one("SELECT @rows") == 1 and db.tracking(st) == ()
    # the object is put again before the purge runs
    assert db.call_out("dj_udf.attach_put", st, s, "back.txt", b"comes back") == h
    db.sql("CALL dj_udf.purge(%s, %s, @objs, @fails)", (s, st))
    assert db.one("SELECT @objs") == 0
    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'back.txt')", (st, s, h)) == b"comes back"


def test_rolled_back_deletion_removes_nothing(db, world, kind):
    s, st = db.schema, kind.attach
    db.sql(f"""CREATE TABLE `{s}`.ref (id int PRIMARY KEY, a binary(16) NOT NULL,
        FOREIGN KEY (a) REFERENCES `{s}`.`~external_{st}` (hash))""")
    h = db.call_out("dj_udf.attach_put", st, s, "held.txt", b"held")
    # Another session references the object but has not committed: the row is
    # locked, delete_unused cannot delete it and rolls everything back.
    other = world.connect(autocommit=False)
    with other.cursor() as cur:
        cur.execute(f"INSERT INTO `{s}`.ref VALUES (1, %s)", (h,))
    db.sql("SET SESSION innodb_lock_wait_timeout = 1")
    assert "Lock wait timeout" in db.error("CALL dj_udf.delete_unused(%s, %s, @rows)", (s, st))
    other.rollback()
    other.close()
    assert queued(db) == 0
    assert len(db.tracking(st)) == 1
    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'held.txt')", (st, s, h)) == b"held"


def test_deletion_needs_the_purge_key(db, world, kind):
    s, st = db.schema, kind.attach
    h = db.call_out("dj_udf.attach_put", st, s, "k.txt", b"k")
    assert db.one("SELECT dj_delete_object(%s, %s, %s, 'k.txt', NULL, 'wrong key guess')", (st, s, h)) is None
    assert "wrong purge key" in db.last_error()
    # a user without SELECT on dj_udf.purge_key cannot purge
    db.sql("CREATE USER IF NOT EXISTS 'pipeline'@'localhost' IDENTIFIED BY 'pw'")
    db.sql(f"GRANT ALL ON `{s}`.* TO 'pipeline'@'localhost'")
    db.sql("GRANT SELECT, INSERT, UPDATE, DELETE ON dj_udf.purge_queue TO 'pipeline'@'localhost'")
    db.sql("GRANT EXECUTE ON dj_udf.* TO 'pipeline'@'localhost'")
    user = world.connect(user="pipeline", password="pw")
    with user.cursor() as cur:
        cur.execute("CALL dj_udf.delete_unused(%s, %s, @rows)", (s, st))
        with pytest.raises(Exception) as e:
            cur.execute("CALL dj_udf.purge(%s, %s, @o, @f)", (s, st))
        assert "purge_key" in str(e.value)
    user.close()
    assert db.one("SELECT dj_attach_get(%s, %s, %s, 'k.txt')", (st, s, h)) == b"k"
    db.sql("CALL dj_udf.purge(%s, %s, @o, @f)", (s, st))
    assert db.one("SELECT @o") == 1
    assert not attach_path(world, st, s, h, "k.txt").exists()
    # with the key, one call deletes an object, and a second finds it missing
    h = db.call_out("dj_udf.attach_put", st, s, "k2.txt", b"k2")
    assert db.one("SELECT dj_delete_object(%s, %s, %s, 'k2.txt', NULL, %s)", (st, s, h, PURGE_KEY)) == b"deleted"
    assert db.one("SELECT dj_delete_object(%s, %s, %s, 'k2.txt', NULL, %s)", (st, s, h, PURGE_KEY)) == b"missing"


# ---------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------

def listing(db, store):
    """Every object of the schema, through pages of two."""
    keys, after = [], ""
    while True:
        page = json.loads(db.one("SELECT dj_list_objects(%s, %s, %s, 2, %s)", (store, db.schema, after, PURGE_KEY)))
        if not page:
            return keys
        assert len(page) <= 2
        keys += page
        after = page[-1]["key"]


def test_sweep_removes_what_rolled_back_inserts_left(db, kind):
    s, attach, blobs = db.schema, kind.attach, kind.blob
    one_store = attach == blobs  # then the blob is listed and swept with the attachments
    kept = db.call_out("dj_udf.attach_put", attach, s, "kept.txt", b"kept")
    # inserts whose transaction rolls back: the objects stay, the rows do not
    db.sql("START TRANSACTION")
    for i in range(5):
        db.sql("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)", (attach, s, f"lost {i}.txt", f"lost {i}".encode()))
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @h)", (blobs, s, BLOB_3))
    db.sql("ROLLBACK")
    assert [r[2] for r in db.tracking(attach)] == ["kept.txt"]
    assert db.tracking(blobs) == db.tracking(attach) if one_store else db.tracking(blobs) == ()
    listed = listing(db, attach)
    assert [o["key"] for o in listed] == sorted(o["key"] for o in listed), "keys come in order across pages"
    names = sorted(o["attachment_name"] for o in listed if o["attachment_name"] is not None)
    assert names == ["kept.txt"] + [f"lost {i}.txt" for i in range(5)]
    assert {o["hash"] for o in listed if o["attachment_name"] == "kept.txt"} == {kept.hex()}
    blob_hex = "676de6356c1b33e8084921c02b8cdea6"
    assert [o["hash"] for o in (listed if one_store else listing(db, blobs)) if o["attachment_name"] is None] == [blob_hex]

    # young objects stay while they are within min_age_seconds
    db.sql("CALL dj_udf.sweep(%s, %s, 3600, @n)", (s, attach))
    assert db.one("SELECT @n") == 0
    time.sleep(1.1)
    db.sql("CALL dj_udf.sweep(%s, %s, 1, @n)", (s, attach))
    assert db.one("SELECT @n") == (6 if one_store else 5)
    db.sql("CALL dj_udf.sweep(%s, %s, 0, @n)", (s, blobs))
    assert db.one("SELECT @n") == (0 if one_store else 1)
    assert [o["attachment_name"] for o in listing(db, attach)] == ["kept.txt"]
    assert [o for o in listing(db, blobs) if o["attachment_name"] is None] == []
    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'kept.txt')", (attach, s, kept)) == b"kept"


def test_sweep_leaves_foreign_files_alone(db, world, kind):
    s, st = db.schema, kind.attach
    h = attach_hash("x.txt", b"x")
    folder = world.location(st).joinpath(s, *subfold(h.hex(), [2, 2]))
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_bytes(b"not an object")
    (folder / h.hex().upper()).write_bytes(b"not ours either")
    (world.location(st) / s / ".dj-1-2-3.saving").write_bytes(b"a write in progress")
    listed = listing(db, st)
    assert listed and {o["hash"] for o in listed} == {None}
    db.sql("CALL dj_udf.sweep(%s, %s, 0, @n)", (s, st))
    assert db.one("SELECT @n") == 0
    assert (folder / "notes.txt").exists() and (folder / h.hex().upper()).exists()
    assert (world.location(st) / s / ".dj-1-2-3.saving").exists()


def test_sweep_refuses_a_location_shared_by_two_stores(db, world, kind):
    """A blob store and an attach store on one folder is a common setup;
    seen from one, the other's objects have no row: no sweep there."""
    s, st = db.schema, kind.attach
    stores = dict(world.base_config["stores"], twin=dict(world.base_config["stores"][st]))
    world.write_config(dict(world.base_config, stores=stores))
    db.sql("CALL dj_udf.create_tracking_table(%s, 'twin')", (s,))
    db.call_out("dj_udf.blob_put", "twin", s, BLOB_3)
    msg = db.error("CALL dj_udf.sweep(%s, %s, 0, @n)", (s, st))
    assert f"store '{st}' shares its location with store 'twin'" in msg
    assert db.one(f"SELECT COUNT(*) FROM `{s}`.`~external_twin`") == 1
    assert db.one(f"SELECT dj_udf.blob_get('twin', %s, hash) FROM `{s}`.`~external_twin`", (s,)) == BLOB_3


def test_delete_needs_the_exact_purge_key(db, world):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "guarded.bin", b"guarded" * 100)
    obj = attach_path(world, "localattach", s, h, "guarded.bin")
    k = PURGE_KEY
    flip = lambda c: chr(ord(c) ^ 1)  # noqa: E731
    wrong = {
        "empty": "",
        "NULL": None,
        "first character": k[:1],
        "prefix": k[:-1],
        "one character more": k + "x",
        "last byte differs": k[:-1] + flip(k[-1]),
        "first byte differs": flip(k[0]) + k[1:],
    }
    q = "SELECT dj_delete_object('localattach', %s, %s, 'guarded.bin', NULL, %s)"
    for what, key in wrong.items():
        assert db.one(q, (s, h, key)) is None, what
        assert "wrong purge key" in db.last_error(), (what, db.last_error())
        assert obj.exists(), what
    assert db.one(q, (s, h, k)) == b"deleted"
    assert not obj.exists()


def test_a_removal_under_way_on_another_server_refuses_the_put_until_it_is_stale(db, world):
    """What a cluster node sees while another node removes an object (the
    cluster itself: tests/test_galera.py): its dj_udf.removals row makes a
    put of the object fail as a deadlock to retry, never commit a row the
    removal then leaves without its object; a row of a server that died
    mid-removal (older than removal_stale_seconds) holds nothing off, nor
    does one of this server (its row locks do)."""
    s, data = db.schema, b"removed elsewhere"
    h = attach_hash("r.txt", data)
    db.sql("INSERT INTO dj_udf.removals (store, schema_name, hash, node, connection) VALUES ('localattach', %s, %s, 'node2:3306', 7)",
           (s, h))
    try:
        with pytest.raises(Exception) as e:
            db.sql("CALL dj_udf.attach_put('localattach', %s, 'r.txt', %s, @h)", (s, data))
        assert e.value.args[0] == 1213 and "being removed by node2:3306" in e.value.args[1], e.value.args
        assert db.tracking("localattach") == ()
        db.sql("UPDATE dj_udf.removals SET since = NOW() - INTERVAL 601 SECOND WHERE hash = %s", (h,))
        assert db.call_out("dj_udf.attach_put", "localattach", s, "r.txt", data) == h
        db.sql("UPDATE dj_udf.removals SET since = NOW(), node = dj_udf.this_node() WHERE hash = %s", (h,))
        assert db.call_out("dj_udf.attach_put", "localattach", s, "r.txt", data) == h
    finally:
        db.sql("DELETE FROM dj_udf.removals WHERE hash = %s", (h,))
    assert attach_path(world, "localattach", s, h, "r.txt").read_bytes() == data
