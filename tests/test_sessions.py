"""What a session sees: every routine leaves the caller's session as it found
it (user variables, prepared statements, system variables), also when it
fails; and dj_last_error() shows a connection its own failures only, never
another connection's or another account's, and not after a later call."""

import hashlib
import time

import pytest

BLOB = bytes.fromhex("646a30000d0000000000000840")
# Values of the caller's own that no routine may change.
USER_VARIABLES = {
    "dj_udf_v": "caller's v", "dj_udf_h": "caller's h", "dj_udf_sql": "caller's sql",
    "dj_udf_n": "caller's n", "dj_udf_ch": "caller's ch", "h": "caller's @h",
}
SYSTEM_VARIABLES = ["group_concat_max_len", "sql_mode", "autocommit", "tx_isolation", "character_set_client",
                    "collation_connection", "max_sp_recursion_depth", "foreign_key_checks", "unique_checks"]


def snapshot(db):
    names = sorted(USER_VARIABLES)
    users = dict(zip(names, db.sql("SELECT " + ", ".join(f"@{n}" for n in names))[0]))
    system = dict(zip(SYSTEM_VARIABLES, db.sql("SELECT " + ", ".join(f"@@SESSION.{v}" for v in SYSTEM_VARIABLES))[0]))
    return users, system


def routine_calls(db, world):
    s = db.schema
    imp = world.dirs["import"] / "session.txt"
    imp.write_bytes(b"session")
    staged = world.dirs["stage"] / s / "session.dat"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(b"session file")
    attach = db.call_out("dj_udf.attach_put", "localattach", s, "kept.txt", b"kept")
    db.sql(f"""CREATE TABLE `{s}`.doc (id int PRIMARY KEY, a binary(16),
        FOREIGN KEY (a) REFERENCES `{s}`.`~external_localattach` (hash))""")
    db.sql(f"INSERT INTO `{s}`.doc VALUES (1, %s)", (attach,))
    return [
        ("CALL dj_udf.create_tracking_table(%s, 'main')", (s,)),
        ("CALL dj_udf.blob_put('main', %s, %s, @out)", (s, BLOB)),
        ("CALL dj_udf.attach_put('localattach', %s, 'n.txt', 'x', @out)", (s,)),
        ("CALL dj_udf.attach_put_file('localattach', %s, %s, @out)", (s, str(imp))),
        ("CALL dj_udf.filepath_put('data', %s, %s, @out)", (s, str(staged))),
        ("CALL dj_udf.filepath_put('data', %s, %s, @out)", (s, str(staged))),
        ("SELECT dj_udf.attach_get('localattach', %s, %s, 'kept.txt')", (s, attach)),
        ("SELECT dj_udf.blob_get('main', %s, %s)", (s, hashlib.md5(BLOB).digest())),
        ("SELECT dj_udf.attach_export('localattach', %s, %s, 'kept.txt', %s)", (s, attach, str(world.dirs["export"]))),
        ("CALL dj_udf.verify(%s, 'localattach')", (s,)),
        ("CALL dj_udf.delete_unused(%s, 'localattach', @out)", (s,)),
        ("CALL dj_udf.purge(%s, 'localattach', @out, @out2)", (s,)),
        ("CALL dj_udf.cleanup(%s, 'main', @out, @out2, @out3)", (s,)),
        ("CALL dj_udf.sweep(%s, 'localattach', 0, @out)", (s,)),
        # failures, each after the routine has started its work
        ("CALL dj_udf.filepath_put('data', 'no_such_schema', %s, @out)", (str(staged),)),
        ("CALL dj_udf.delete_unused('no_such_schema', 'main', @out)", ()),
        ("CALL dj_udf.attach_put('localattach', 'no_such_schema', 'n.txt', 'x', @out)", ()),
    ]


def test_every_routine_leaves_the_session_as_it_found_it(db, world):
    calls = routine_calls(db, world)
    for name, value in USER_VARIABLES.items():
        db.sql(f"SET @{name} = %s", (value,))
    db.sql("SET SESSION group_concat_max_len = 1024, SESSION max_sp_recursion_depth = 3")
    db.sql("SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES,PAD_CHAR_TO_FULL_LENGTH'")
    db.sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    # the caller's own prepared statement, under the name the routines once used
    db.sql("PREPARE dj_udf_stmt FROM 'SELECT ''caller''''s statement'''")
    before = snapshot(db)
    for q, args in calls:
        try:
            db.sql(q, args)
        except Exception as e:  # failures are part of the test; the state must survive them too
            assert "no_such_schema" in q, (q, e)
        else:
            assert "no_such_schema" not in q, q
        assert snapshot(db) == before, q
        assert db.sql("EXECUTE dj_udf_stmt") == (("caller's statement",),), q


def last_error(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT dj_last_error()")
        e = cur.fetchone()[0]
    return e.decode() if e is not None else None


def test_a_connection_never_reads_another_connections_error(db, world):
    """root's failure names a server path and an attachment name; new
    connections of another account (on threads the server reuses, as it
    does for one connection after another) never read it, nor does root's
    other connection; and root's own message is gone after its next call."""
    db.sql("CREATE USER IF NOT EXISTS 'bob'@'localhost' IDENTIFIED BY 'bob-pw'")
    db.sql("SET GLOBAL thread_cache_size = 16")
    secret = f"{world.dirs['import']}/root-only-secret.txt"
    for attempt in range(6):
        other_root = world.connect()
        root = world.connect()
        with root.cursor() as cur:
            cur.execute("SELECT dj_attach_put_file('localattach', %s, %s)", (db.schema, secret))
            assert cur.fetchone()[0] is None
            cur.execute("SELECT CONNECTION_ID()")
            root_id = cur.fetchone()[0]
        assert "root-only-secret.txt" in last_error(root)
        assert last_error(other_root) is None, "another connection of the same account"
        # the server's thread that served root now waits in its cache for the next connection
        root.close()
        time.sleep(0.05)
        bob = world.connect(user="bob", password="bob-pw")
        with bob.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            assert cur.fetchone()[0] != root_id
        assert last_error(bob) is None, f"attempt {attempt}: bob read root's error"
        bob.close()
        other_root.close()
    # a later successful call clears the connection's own message
    assert db.one("SELECT dj_attach_put_file('localattach', %s, %s)", (db.schema, secret)) is None
    assert "root-only-secret.txt" in db.last_error()
    assert db.one("SELECT dj_version()") is not None
    assert db.last_error() is None
    with pytest.raises(Exception):
        db.sql("CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (db.schema, secret))
    db.call_out("dj_udf.attach_put", "localattach", db.schema, "fine.txt", b"fine")
    assert db.last_error() is None
