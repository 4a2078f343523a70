"""Objects left behind by rolled-back inserts are found and removed by
dj_udf.sweep, on file and S3 stores; tracked objects, young objects and
files that are not DataJoint objects stay."""

import json
import time

import pytest

from conftest import PURGE_KEY, attach_hash

KINDS = {"file": ("localattach", "main"), "s3": ("s3attach", "s3blobs")}
BLOB = bytes.fromhex("646a30000d0000000000000840")


@pytest.fixture(params=list(KINDS))
def stores(request, world):
    if request.param == "s3":
        request.getfixturevalue("s3")
    return KINDS[request.param]


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


def test_sweep_removes_what_rolled_back_inserts_left(db, world, stores):
    attach, blobs = stores
    s = db.schema
    kept = db.call_out("dj_udf.attach_put", attach, s, "kept.txt", b"kept")
    # inserts whose transaction rolls back: the objects stay, the rows do not
    db.sql("START TRANSACTION")
    for i in range(5):
        db.sql("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)", (attach, s, f"lost {i}.txt", f"lost {i}".encode()))
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @h)", (blobs, s, BLOB))
    db.sql("ROLLBACK")
    assert len(db.tracking(attach)) == 1 and db.tracking(blobs) == ()
    listed = listing(db, attach)
    assert [o["key"] for o in listed] == sorted(o["key"] for o in listed), "keys come in order across pages"
    names = sorted(o["attachment_name"] for o in listed)
    assert names == ["kept.txt"] + [f"lost {i}.txt" for i in range(5)]
    assert {o["hash"] for o in listed if o["attachment_name"] == "kept.txt"} == {kept.hex()}

    # young objects stay while they are within min_age_seconds
    db.sql("CALL dj_udf.sweep(%s, %s, 3600, @n)", (s, attach))
    assert db.one("SELECT @n") == 0
    time.sleep(1.1)
    db.sql("CALL dj_udf.sweep(%s, %s, 1, @n)", (s, attach))
    assert db.one("SELECT @n") == 5
    db.sql("CALL dj_udf.sweep(%s, %s, 0, @n)", (s, blobs))
    assert db.one("SELECT @n") == 1
    assert [o["attachment_name"] for o in listing(db, attach)] == ["kept.txt"]
    assert listing(db, blobs) == []
    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'kept.txt')", (attach, s, kept)) == b"kept"


def test_sweep_leaves_foreign_files_alone(db, world):
    s = db.schema
    h = attach_hash("x.txt", b"x")
    folder = world.dirs["attach"] / s / h.hex()[:2] / h.hex()[2:4]
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_bytes(b"not an object")
    (folder / h.hex().upper()).write_bytes(b"not ours either")
    (world.dirs["attach"] / s / ".dj-1-2-3.saving").write_bytes(b"a write in progress")
    listed = listing(db, "localattach")
    assert {o["hash"] for o in listed} == {None}
    db.sql("CALL dj_udf.sweep(%s, 'localattach', 0, @n)", (s,))
    assert db.one("SELECT @n") == 0
    assert (folder / "notes.txt").exists() and (folder / h.hex().upper()).exists()


def test_sweep_refuses_a_location_shared_by_two_stores(db, world):
    """A blob store and an attach store on one folder is a common setup;
    seen from one, the other's objects have no row: no sweep there."""
    s = db.schema
    stores = dict(world.base_config["stores"], twin=dict(world.base_config["stores"]["localattach"]))
    world.write_config(dict(world.base_config, stores=stores))
    db.sql("CALL dj_udf.create_tracking_table(%s, 'twin')", (s,))
    db.call_out("dj_udf.blob_put", "twin", s, BLOB)
    msg = db.error("CALL dj_udf.sweep(%s, 'localattach', 0, @n)", (s,))
    assert "store 'localattach' shares its location with store 'twin'" in msg
    assert db.one("SELECT COUNT(*) FROM `%s`.`~external_twin`" % s) == 1
    assert db.one("SELECT dj_udf.blob_get('twin', %s, hash) FROM `%s`.`~external_twin`" % ("%s", s), (s,)) == BLOB
