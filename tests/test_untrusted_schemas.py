"""The administrator's routines on schemas that other accounts control.

`eve` has every right on her own schema and EXECUTE on dj_udf, nothing
else. Her schema's tracking table may be a view, or carry triggers or
generated columns; when root then runs the routines there, none of her code
runs as root. She cannot queue a deletion, and no queue entry and no row in
her schema makes root's cleanup remove another schema's object."""

import hashlib
import uuid

import pymysql
import pytest

BLOB = bytes.fromhex("646a30000d0000000000000840")


def outcome(db, q, args):
    """The SQL error message q raises, None when it succeeds."""
    try:
        db.sql(q, args)
    except pymysql.err.MySQLError as e:
        return e.args[1]
    return None


class Account:
    def __init__(self, conn, schema):
        self.conn, self.schema = conn, schema

    def sql(self, q, args=None):
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall()

    def error(self, q, args=None):
        with pytest.raises(pymysql.err.MySQLError) as e:
            self.sql(q, args)
        return e.value.args[1]


@pytest.fixture
def eve(world, db):
    """eve, her schema with tracking tables, her `loot` table and `grab`, a
    SQL SECURITY INVOKER function that records who runs it."""
    schema = "eve_" + uuid.uuid4().hex[:10]
    db.sql(f"CREATE DATABASE `{schema}`")
    db.sql("CREATE OR REPLACE USER 'eve'@'localhost' IDENTIFIED BY 'eve-pw'")
    db.sql(f"GRANT ALL ON `{schema}`.* TO 'eve'@'localhost'")
    db.sql("GRANT EXECUTE ON dj_udf.* TO 'eve'@'localhost'")
    conn = world.connect(user="eve", password="eve-pw")
    e = Account(conn, schema)
    for store in ["main", "data"]:
        e.sql("CALL dj_udf.create_tracking_table(%s, %s)", (schema, store))
    e.sql(f"CREATE TABLE `{schema}`.loot (who varchar(200), what varchar(500))")
    e.sql(f"""CREATE FUNCTION `{schema}`.grab(what varchar(500)) RETURNS int SQL SECURITY INVOKER MODIFIES SQL DATA
              BEGIN INSERT INTO `{schema}`.loot VALUES (CURRENT_USER(), what); RETURN 1; END""")
    yield e
    conn.close()
    db.sql(f"DROP DATABASE `{schema}`")
    db.sql("DELETE FROM dj_udf.purge_queue WHERE schema_name = %s", (schema,))


def loot(db, eve):
    return db.sql(f"SELECT who, what FROM `{eve.schema}`.loot")


def as_view(eve, store):
    """Replaces her tracking table by an SQL SECURITY INVOKER view that
    calls grab() for every row it reads or checks."""
    e = eve.schema
    eve.sql(f"RENAME TABLE `{e}`.`~external_{store}` TO `{e}`.real_{store}")
    eve.sql(f"""CREATE SQL SECURITY INVOKER VIEW `{e}`.`~external_{store}` AS
                SELECT * FROM `{e}`.real_{store} WHERE `{e}`.grab('view') = 1 WITH CHECK OPTION""")
    eve.sql(f"INSERT INTO `{e}`.real_{store} (hash, size) VALUES (%s, 13)", (hashlib.md5(BLOB).digest(),))


def routine_calls(world, schema):
    imp = world.dirs["import"] / "eve-import.txt"
    imp.write_bytes(b"imported")
    staged = world.dirs["stage"] / schema / "f.dat"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(b"staged")
    return {
        "verify": ("main", "CALL dj_udf.verify(%s, 'main')", (schema,)),
        "cleanup": ("main", "CALL dj_udf.cleanup(%s, 'main', @r, @o, @f)", (schema,)),
        "delete_unused": ("main", "CALL dj_udf.delete_unused(%s, 'main', @r)", (schema,)),
        "purge": ("main", "CALL dj_udf.purge(%s, 'main', @o, @f)", (schema,)),
        "sweep": ("main", "CALL dj_udf.sweep(%s, 'main', 0, @n)", (schema,)),
        "create_tracking_table": ("main", "CALL dj_udf.create_tracking_table(%s, 'main')", (schema,)),
        "blob_put": ("main", "CALL dj_udf.blob_put('main', %s, %s, @h)", (schema, BLOB)),
        "attach_put": ("main", "CALL dj_udf.attach_put('main', %s, 'a.txt', 'x', @h)", (schema,)),
        "attach_put_file": ("main", "CALL dj_udf.attach_put_file('main', %s, %s, @h)", (schema, str(imp))),
        "filepath_put": ("data", "CALL dj_udf.filepath_put('data', %s, %s, @h)", (schema, str(staged))),
    }


ROUTINES = ["verify", "cleanup", "delete_unused", "purge", "sweep", "create_tracking_table",
            "blob_put", "attach_put", "attach_put_file", "filepath_put"]
# The routines an administrator runs over other accounts' schemas.
AUDITS = ["verify", "cleanup", "delete_unused", "purge", "sweep"]


@pytest.mark.parametrize("routine", ROUTINES)
def test_a_view_as_tracking_table_is_refused(db, world, eve, routine):
    store, q, args = routine_calls(world, eve.schema)[routine]
    as_view(eve, store)
    assert eve.sql(f"SELECT COUNT(*) FROM `{eve.schema}`.`~external_{store}`") == ((1,),), "the view works for eve"
    eve.sql(f"DELETE FROM `{eve.schema}`.loot")
    msg = outcome(db, q, args)
    assert loot(db, eve) == (), "none of eve's code ran as root"
    assert msg and f"`{eve.schema}`.`~external_{store}` is a VIEW, not a table" in msg, msg


@pytest.mark.parametrize("routine", AUDITS)
def test_a_tracking_table_with_triggers_is_refused(db, world, eve, routine):
    _, q, args = routine_calls(world, eve.schema)[routine]
    e = eve.schema
    eve.sql("CALL dj_udf.blob_put('main', %s, %s, @h)", (e, BLOB))
    db.sql("CALL dj_udf.delete_unused(%s, 'main', @r)", (e,))  # an entry for the purge
    eve.sql("CALL dj_udf.attach_put('main', %s, 'unused.txt', 'a row for delete_unused', @h)", (e,))
    for event in ["INSERT", "DELETE"]:
        eve.sql(f"""CREATE TRIGGER `{e}`.spy_{event.lower()} BEFORE {event} ON `{e}`.`~external_main` FOR EACH ROW
                    SET @eve_saw = `{e}`.grab(CONCAT('trigger ', COALESCE(@dba_note, '-')))""")
    db.sql("SET @dba_note = 'the administrator''s session'")
    msg = outcome(db, q, args)
    assert loot(db, eve) == (), "none of eve's code ran in the administrator's session"
    assert msg and f"`{e}`.`~external_main` has triggers" in msg, msg


def test_a_put_into_a_table_with_triggers_runs_them_with_their_definers_rights(db, world, eve):
    e = eve.schema
    eve.sql(f"""CREATE TRIGGER `{e}`.spy BEFORE INSERT ON `{e}`.`~external_main` FOR EACH ROW
                SET @eve_saw = `{e}`.grab('trigger')""")
    db.call_out("dj_udf.attach_put", "main", e, "a.txt", b"x")
    assert loot(db, eve) == (("eve@localhost", "trigger"),), "her trigger ran as eve, never as root"


@pytest.mark.parametrize("routine", AUDITS)
def test_a_tracking_table_with_generated_columns_is_refused(db, world, eve, routine):
    _, q, args = routine_calls(world, eve.schema)[routine]
    e = eve.schema
    eve.sql(f"ALTER TABLE `{e}`.`~external_main` ADD COLUMN seen varchar(200) AS (dj_last_error()) VIRTUAL")
    msg = outcome(db, q, args)
    assert msg and f"`{e}`.`~external_main` has generated columns" in msg, msg


def test_a_row_for_anothers_filepath_object_does_not_remove_it(db, world, eve):
    """eve tracks alice's filepath object in her own schema and leaves the
    row unused: root's cleanup of eve's schema removes eve's row only."""
    alice = db.schema
    f = world.dirs["stage"] / alice / "results.dat"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"alice's results")
    h = db.call_out("dj_udf.filepath_put", "data", alice, str(f))
    ch, size = db.one(f"SELECT contents_hash, size FROM `{alice}`.`~external_data`")
    # eve stages the same file and tracks it in her schema
    eve.sql("SELECT dj_filepath_get('data', %s, %s, %s)", (f"{alice}/results.dat", ch, size))
    eve.sql("CALL dj_udf.filepath_put('data', %s, %s, @h)", (eve.schema, str(f)))
    assert eve.sql("SELECT @h") == ((h,),)
    db.sql("CALL dj_udf.cleanup(%s, 'data', @r, @o, @f)", (eve.schema,))
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "1,0,0", "eve's row went; the object stays, in use"
    assert (world.dirs["data"] / alice / "results.dat").read_bytes() == b"alice's results"
    assert db.one(f"SELECT CONVERT(dj_verify('data', %s, hash, size, attachment_name, filepath, contents_hash) USING utf8mb4) "
                  f"FROM `{alice}`.`~external_data`", (alice,)) == "ok"
    # once no schema tracks it, the next cleanup removes it
    db.sql(f"DELETE FROM `{alice}`.`~external_data`")
    eve.sql("CALL dj_udf.filepath_put('data', %s, %s, @h)", (eve.schema, str(f)))
    db.sql("CALL dj_udf.cleanup(%s, 'data', @r, @o, @f)", (eve.schema,))
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "1,1,0"
    assert not (world.dirs["data"] / alice / "results.dat").exists()


def test_no_queue_entry_removes_anothers_blob(db, world, eve):
    """The queue is written only by the routines: eve can neither insert an
    entry nor have one copied from a row that is not there. An entry that
    does get in (an account once granted INSERT on the queue) is checked
    against what it names: a filepath whose hash is not the MD5 of its
    path, or whose path is another schema's blob key, is refused."""
    alice = db.schema
    h = db.call_out("dj_udf.blob_put", "data", alice, BLOB)
    hx = h.hex()
    blob_key = f"{alice}/{hx[:2]}/{hx[2:4]}/{hx}"
    blob_file = world.dirs["data"] / blob_key
    assert blob_file.read_bytes() == BLOB
    entry = "INSERT INTO dj_udf.purge_queue (schema_name, store, hash, size, filepath) VALUES (%s, 'data', %s, 13, %s)"
    db.sql(entry, (eve.schema, uuid.uuid4().bytes, blob_key))
    db.sql(entry, (eve.schema, hashlib.md5(blob_key.encode()).digest(), blob_key))
    db.sql("CALL dj_udf.cleanup(%s, 'data', @r, @o, @f)", (eve.schema,))
    assert blob_file.read_bytes() == BLOB, "alice's blob is still there"
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "0,0,2"
    errors = [r[0] for r in db.sql("SELECT last_error FROM dj_udf.purge_queue WHERE schema_name = %s ORDER BY id", (eve.schema,))]
    assert "is not the MD5 of filepath" in errors[0], errors
    assert "has the layout of a blob or attachment key of schema" in errors[1], errors

    assert "command denied" in eve.error(entry, (eve.schema, uuid.uuid4().bytes, blob_key))
    assert "has no row for" in eve.error("CALL dj_udf.enqueue(%s, 'data', %s)", (eve.schema, uuid.uuid4().bytes))
    assert "wrong purge key" in eve.error("CALL dj_udf.claim_batch('guess', %s, 'data', 0, 100, @items, @last)", (alice,))
    assert "wrong purge key" in eve.error("CALL dj_udf.record_failure('guess', 1, 'x')")
    assert "wrong purge key" in eve.error("CALL dj_udf.record_failures('guess', '[{\"qid\": 1}]', 'x')")
    assert "wrong purge key" in eve.error("CALL dj_udf.end_removals('guess', 'data', %s, '[]')", (alice,))
    assert "wrong purge key" in eve.error("CALL dj_udf.entry_queued('guess', 1, @q)")
    # nor can she make her own row name alice's blob as a filepath
    staged = world.dirs["stage"] / blob_key
    staged.parent.mkdir(parents=True)
    staged.write_bytes(BLOB)
    msg = eve.error("CALL dj_udf.filepath_put('data', %s, %s, @h)", (eve.schema, str(staged)))
    assert "has the layout of a blob or attachment key of schema" in msg, msg

