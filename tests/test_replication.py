"""A primary with binary logging and a replica whose config points every file
store at folders of its own, so that anything the replica's library writes
or deletes shows there. Under STATEMENT, MIXED and ROW binary logging the
routines log no unsafe statement, the replica ends with the same tracking
rows, user rows and purge queue (failures and their messages included),
and the replica never runs the library. A function called directly inside
a logged statement is run again by a STATEMENT replica (the server warns);
MIXED and ROW replicate its result."""

import json
import uuid

import pytest

from conftest import attach_hash, batch
from servers import Server

FORMATS = ["STATEMENT", "MIXED", "ROW"]
BLOB = bytes.fromhex("646a30000d0000000000000840")
FILE_STORES = {"localattach": "attach", "main": "blobs", "data": "data", "flat": "flat", "deep": "deep", "same": "same"}


@pytest.fixture(scope="module")
def pair(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("replication")
    # the replica's own store folders, under the same store names
    stores = json.loads(json.dumps(world.base_config["stores"]))
    for name, folder in FILE_STORES.items():
        d = base / "replica-stores" / folder
        d.mkdir(parents=True)
        stores[name]["location"] = str(d)
        if "stage" in stores[name]:
            stores[name]["stage"] = str(d) if name == "same" else str(base / "replica-stores" / "stage")
    (base / "replica-stores" / "stage").mkdir()
    replica_config = base / "replica.json"
    replica_config.write_text(json.dumps(dict(world.base_config, stores=stores)))
    primary = Server(base / "primary", world.config_path, "--log-bin=binlog", "--server-id=21", "--binlog-format=MIXED")
    replica = Server(base / "replica", replica_config, "--server-id=22", "--relay-log=relay")
    primary.sql("CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-pw'")
    primary.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'")
    log_file, log_pos = primary.sql("SHOW MASTER STATUS")[0][:2]
    replica.sql(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary.port}, MASTER_USER = 'repl', "
                f"MASTER_PASSWORD = 'repl-pw', MASTER_LOG_FILE = '{log_file}', MASTER_LOG_POS = {log_pos}")
    replica.sql("START SLAVE")
    yield primary, replica, base / "replica-stores"
    replica.stop()
    primary.stop()


def caught_up(primary, replica):
    log_file, log_pos = primary.sql("SHOW MASTER STATUS")[0][:2]
    waited = replica.sql("SELECT MASTER_POS_WAIT(%s, %s, 30)", (log_file, log_pos))[0][0]
    assert waited is not None and waited >= 0, replica.sql("SHOW SLAVE STATUS")


class Session:
    """A primary connection logging in one binlog format, keeping warnings."""

    def __init__(self, primary, fmt):
        self.conn = primary.connect()
        self.warnings = []
        self.sql(f"SET SESSION binlog_format = '{fmt}'")

    def sql(self, q, args=None):
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            rows = cur.fetchall()
            cur.execute("SHOW WARNINGS")
            self.warnings += [(w[1], q, w[2]) for w in cur.fetchall()]
        return rows


def objects_in(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def snapshot(server, s):
    out = {}
    for st in ["localattach", "main", "data"]:
        out[st] = server.sql(f"SELECT hash, size, attachment_name, filepath, contents_hash, timestamp "
                             f"FROM `{s}`.`~external_{st}` ORDER BY hash")
    out["doc"] = server.sql(f"SELECT * FROM `{s}`.doc ORDER BY id")
    out["queue"] = server.sql("SELECT id, store, hash, size, attachment_name, filepath, contents_hash, queued_at, last_error "
                              "FROM dj_udf.purge_queue WHERE schema_name = %s ORDER BY id", (s,))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_routines_replicate_without_running_the_library_on_the_replica(pair, world, fmt):
    primary, replica, replica_stores = pair
    before = objects_in(replica_stores)
    s = "r_" + uuid.uuid4().hex[:10]
    p = Session(primary, fmt)
    p.sql(f"CREATE DATABASE `{s}`")
    for st in ["localattach", "main", "data"]:
        p.sql("CALL dj_udf.create_tracking_table(%s, %s)", (s, st))
    p.sql(f"""CREATE TABLE `{s}`.doc (id int PRIMARY KEY, a binary(16), b binary(16), f binary(16),
              FOREIGN KEY (a) REFERENCES `{s}`.`~external_localattach` (hash),
              FOREIGN KEY (b) REFERENCES `{s}`.`~external_main` (hash),
              FOREIGN KEY (f) REFERENCES `{s}`.`~external_data` (hash))""")
    staged = world.dirs["stage"] / s / "run1" / "trace.dat"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"a staged file")
    p.sql("CALL dj_udf.attach_put('localattach', %s, 'notes.txt', 'kept', @a)", (s,))
    p.sql("CALL dj_udf.blob_put('main', %s, %s, @b)", (s, BLOB))
    p.sql("CALL dj_udf.filepath_put('data', %s, %s, @f)", (s, str(staged)))
    p.sql(f"INSERT INTO `{s}`.doc VALUES (1, @a, @b, @f)")
    p.sql("CALL dj_udf.attach_put('localattach', %s, 'dropped.txt', 'dropped', @a)", (s,))
    p.sql(f"INSERT INTO `{s}`.doc VALUES (2, @a, NULL, NULL)")
    p.sql(f"DELETE FROM `{s}`.doc WHERE id = 2")
    p.sql("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @x)", (s,))
    assert p.sql("SELECT @r, @o, @x") == ((1, 1, 0),)
    # a purge that fails: the object's name is taken by a folder
    p.sql(f"DELETE FROM `{s}`.doc WHERE id = 1")
    p.sql("CALL dj_udf.delete_unused(%s, 'main', @r)", (s,))
    hx = p.sql("SELECT LOWER(HEX(hash)) FROM dj_udf.purge_queue WHERE schema_name = %s", (s,))[0][0]
    blob = world.dirs["blobs"] / s / hx[:2] / hx[2:4] / hx
    blob.unlink()
    blob.mkdir()
    (blob / "inside").write_bytes(b"not the blob")
    p.sql("CALL dj_udf.purge(%s, 'main', @o, @x)", (s,))
    assert p.sql("SELECT @o, @x") == ((0, 1),)
    # batches, tracked with one INSERT ... SELECT from the batch's result
    p.sql("CALL dj_udf.attach_put_many('localattach', %s, %s, %s, @m)", (s, *batch([("m1.txt", b"one"), ("m2.txt", b"two")])))
    p.sql("CALL dj_udf.blob_put_many('main', %s, %s, %s, @m)", (s, *batch([BLOB + b"1", BLOB + b"2"])))
    p.sql("CALL dj_udf.verify(%s, 'data')", (s,))
    p.sql("CALL dj_udf.sweep(%s, 'localattach', 0, @n)", (s,))

    assert [w[1] for w in p.warnings if w[0] == 1592] == [], ("no statement the routines log is unsafe", p.warnings)
    caught_up(primary, replica)
    mine, theirs = snapshot(primary, s), snapshot(replica, s)
    assert mine["queue"][0][-1].startswith("dj_delete_objects: delete "), mine["queue"]
    assert theirs == mine
    assert objects_in(replica_stores) == before, "the replica's library wrote or removed nothing"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_direct_call_in_a_logged_statement(pair, fmt):
    """What the README says of direct calls: under STATEMENT the server
    warns and the replica runs the function again (here: into its own
    store); MIXED and ROW log the row the primary computed."""
    primary, replica, replica_stores = pair
    s = "d_" + uuid.uuid4().hex[:10]
    p = Session(primary, fmt)
    p.sql(f"CREATE DATABASE `{s}`")
    p.sql(f"CREATE TABLE `{s}`.t (id int PRIMARY KEY, h binary(16))")
    p.sql(f"INSERT INTO `{s}`.t VALUES (1, dj_attach_put('localattach', '{s}', 'direct.txt', 'direct'))")
    caught_up(primary, replica)
    h = attach_hash("direct.txt", b"direct")
    assert replica.sql(f"SELECT h FROM `{s}`.t") == ((h,),)
    again = [o for o in objects_in(replica_stores) if o.startswith(f"attach/{s}/")]
    unsafe = [w for w in p.warnings if w[0] == 1592]
    if fmt == "STATEMENT":
        assert unsafe and again == [f"attach/{s}/{h.hex()[:2]}/{h.hex()[2:4]}/{h.hex()}.direct.txt"]
    else:
        assert not unsafe and again == []
