"""Installing and upgrading on a server of its own, with binary logging on
(MIXED) and latin1 as its default character set: the exact privileges a
non-root administrator needs; the script and the routines under any
sql_mode; schemas whose tracking tables are latin1; and an upgrade of the
library on the running server while connections keep calling it."""

import collections
import os
import shutil
import threading
import time
import uuid

import pymysql
import pytest

from conftest import LIBRARY, attach_hash
from servers import Server

FIXED_MODE = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
BLOB = bytes.fromhex("646a30000d0000000000000840")
# Errors a call may meet while install.sql drops and creates what it calls:
# the function or routine does not exist yet, or a stored routine's call
# names a function dropped while in use, which MariaDB renames '*' (and
# whose '*' may then find another such function: the library's argument
# checks refuse the call).
UPGRADE_WINDOW = [(1305, " does not exist"), (1122, "Can't load function '"), (1123, "Can't initialize function '*'; ")]


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("install"), world.config_path,
               "--log-bin=binlog", "--server-id=11", "--binlog-format=MIXED",
               "--character-set-server=latin1", "--collation-server=latin1_swedish_ci")
    yield s
    s.stop()


def new_schema(server, *stores):
    name = "i_" + uuid.uuid4().hex[:10]
    server.sql(f"CREATE DATABASE `{name}`")
    for st in stores:
        server.sql("CALL dj_udf.create_tracking_table(%s, %s)", (name, st))
    return name


def test_a_non_root_administrator_installs_with_binary_logging_on(server, world):
    assert server.sql("SELECT @@log_bin, @@binlog_format") == ((1, "MIXED"),)
    assert server.run_script("uninstall.sql").returncode == 0
    server.sql("DROP DATABASE dj_udf")
    server.sql("SET GLOBAL log_bin_trust_function_creators = 0")
    server.sql("DROP USER IF EXISTS 'djadmin'@'localhost'")
    server.sql("CREATE USER 'djadmin'@'localhost' IDENTIFIED BY 'admin-pw'")
    admin = dict(user="djadmin", password="admin-pw")
    # what the old install header said: not enough
    server.sql("GRANT INSERT ON mysql.func TO 'djadmin'@'localhost'")
    server.sql("GRANT CREATE ROUTINE ON dj_udf.* TO 'djadmin'@'localhost'")
    r = server.run_script("install.sql", **admin)
    assert r.returncode != 0 and "ERROR 1044" in r.stderr and "database 'mysql'" in r.stderr, r.stderr
    # exactly the privileges the install header lists
    server.sql("REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'djadmin'@'localhost'")
    server.sql("GRANT INSERT, DELETE ON mysql.* TO 'djadmin'@'localhost'")
    server.sql("GRANT SELECT ON *.* TO 'djadmin'@'localhost'")
    server.sql("GRANT CREATE, CREATE ROUTINE, ALTER ROUTINE, CREATE VIEW, DROP, SELECT, INSERT, UPDATE, DELETE ON dj_udf.* "
               "TO 'djadmin'@'localhost'")
    r = server.run_script("install.sql", **admin)
    assert r.returncode != 0 and "ERROR 1419" in r.stderr and "binary logging is enabled" in r.stderr, r.stderr
    server.sql("SET GLOBAL log_bin_trust_function_creators = 1")
    try:
        for _ in range(2):  # and again over its own install
            r = server.run_script("install.sql", **admin)
            assert r.returncode == 0, r.stderr
    finally:
        server.sql("SET GLOBAL log_bin_trust_function_creators = 0")
    definers = {d for (d,) in server.sql(
        "SELECT DISTINCT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf' AND SECURITY_TYPE = 'DEFINER'")}
    assert definers == {"djadmin@localhost"}
    assert {d for (d,) in server.sql("SELECT DISTINCT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'dj_udf'")} == \
        {"djadmin@localhost"}
    # the routines work: a put, a cleanup through the queue routines, a filepath
    server.sql("INSERT INTO dj_udf.purge_key VALUES ('test-purge-key-0123456789')")
    server.sql("UPDATE dj_udf.settings SET value = '0' WHERE name = 'cleanup_grace_seconds'")
    s = new_schema(server, "localattach", "data")
    with server.connect() as c, c.cursor() as cur:
        cur.execute("CALL dj_udf.attach_put('localattach', %s, 'a.txt', 'admin installed', @h)", (s,))
        staged = world.dirs["stage"] / s / "f.dat"
        staged.parent.mkdir(parents=True)
        staged.write_bytes(b"staged")
        cur.execute("CALL dj_udf.filepath_put('data', %s, %s, @f)", (s, str(staged)))
        for store in ["localattach", "data"]:
            cur.execute("CALL dj_udf.cleanup(%s, %s, @r, @o, @x)", (s, store))
            cur.execute("SELECT CONCAT_WS(',', @r, @o, @x)")
            assert cur.fetchone() == ("1,1,0",), store
    assert not (world.dirs["data"] / s / "f.dat").exists()
    # the monitoring views read the key with the installer's rights
    assert server.sql("SELECT objects_put > 0, objects_deleted > 0 FROM dj_udf.store_stats WHERE store = 'localattach'") == ((1, 1),)


@pytest.mark.parametrize("mode", ["ANSI", "ORACLE", "ANSI_QUOTES,NO_BACKSLASH_ESCAPES,PAD_CHAR_TO_FULL_LENGTH,NO_ZERO_DATE"])
def test_install_and_routines_under_any_sql_mode(server, world, mode):
    r = server.run_script("install.sql", init_command=f"SET SESSION sql_mode = '{mode}'")
    assert r.returncode == 0, r.stderr
    modes = {m for (m,) in server.sql("SELECT DISTINCT SQL_MODE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf'")}
    assert modes == {FIXED_MODE}
    s = new_schema(server, "localattach", "main")
    name = "it's a \\ \"name\".txt"
    with server.connect() as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (mode,))
        cur.execute("CALL dj_udf.create_tracking_table(%s, 'data')", (s,))
        cur.execute("CALL dj_udf.attach_put('localattach', %s, %s, 'contents', @h)", (s, name))
        cur.execute("CALL dj_udf.blob_put('main', %s, %s, @b)", (s, BLOB))
        cur.execute("SELECT @h")
        h = cur.fetchone()[0]
        assert h == attach_hash(name, b"contents")
        cur.execute("SELECT dj_udf.attach_get('localattach', %s, @h, %s), dj_udf.blob_get('main', %s, @b)", (s, name, s))
        assert cur.fetchone() == (b"contents", BLOB)
        cur.execute("CALL dj_udf.verify(%s, 'localattach')", (s,))
        assert [(r[2], r[4]) for r in cur.fetchall()] == [(name, "ok")]
        cur.execute("CALL dj_udf.cleanup(%s, 'localattach', @r, @o, @f)", (s,))
        cur.execute("SELECT @r, @o, @f")
        assert cur.fetchone() == (1, 1, 0)
    assert not list((world.dirs["attach"] / s).rglob("*.txt"))


def test_latin1_tracking_tables(server, world):
    """A schema created with the server's latin1 default gets latin1
    tracking tables, as with DataJoint; names go in and out as UTF-8."""
    s = new_schema(server, "localattach", "data")
    assert server.sql("SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                      "AND TABLE_NAME = '~external_localattach'", (s,)) == (("latin1_swedish_ci",),)
    staged = world.dirs["stage"] / s / "données" / "é.dat"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"accented path")
    with server.connect() as c, c.cursor() as cur:
        cur.execute("CALL dj_udf.attach_put('localattach', %s, 'café.txt', 'latin1 row', @h)", (s,))
        cur.execute("CALL dj_udf.filepath_put('data', %s, %s, @f)", (s, str(staged)))
        cur.execute(f"SELECT dj_udf.attach_get('localattach', %s, hash, attachment_name), attachment_name "
                    f"FROM `{s}`.`~external_localattach`", (s,))
        assert cur.fetchall() == ((b"latin1 row", "café.txt"),)
        for store, shown in [("localattach", ("café.txt", None)), ("data", (None, f"{s}/données/é.dat"))]:
            cur.execute("CALL dj_udf.verify(%s, %s)", (s, store))
            assert [(r[2], r[3], r[4]) for r in cur.fetchall()] == [shown + ("ok",)], store
        # a name latin1 cannot hold is refused, not mangled
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute("CALL dj_udf.attach_put('localattach', %s, '数据.txt', 'x', @h)", (s,))
        assert "Incorrect string value" in e.value.args[1]
        cur.execute(f"SELECT COUNT(*) FROM `{s}`.`~external_localattach`")
        assert cur.fetchone() == (1,)
        for store in ["localattach", "data"]:
            cur.execute("CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (s, store))
            cur.execute("SELECT @r, @o, @f")
            assert cur.fetchone() == (1, 1, 0), store
    h = attach_hash("café.txt", b"latin1 row").hex()
    assert not (world.dirs["attach"] / s / h[:2] / h[2:4] / f"{h}.café.txt").exists()
    assert not (world.dirs["data"] / s / "données" / "é.dat").exists()


def replace_library(server):
    """The documented upgrade: a new file renamed over the old name."""
    new = server.plugin_dir / "dj_udf.so.new"
    shutil.copyfile(LIBRARY, new)
    os.replace(new, server.plugin_dir / "dj_udf.so")
    return str(os.stat(server.plugin_dir / "dj_udf.so").st_ino)


def test_upgrade_under_load(server, world):
    r = server.run_script("install.sql")
    assert r.returncode == 0, r.stderr
    pid = server.pid()
    s = new_schema(server, "localattach")
    h = attach_hash("kept.txt", b"kept")
    server.sql("CALL dj_udf.attach_put('localattach', %s, 'kept.txt', 'kept', @h)", (s,))
    errors, done_after, lost = collections.Counter(), collections.Counter(), []
    installed = {"at": None}
    stop = time.monotonic() + 30
    calls = [
        ("CALL dj_udf.attach_put('localattach', %s, %s, %s, @h)", lambda n, i: (s, f"f{n}.txt", f"{n}:{i % 7}")),
        ("SELECT dj_udf.attach_get('localattach', %s, %s, 'kept.txt')", lambda n, i: (s, h)),
        ("SELECT dj_checksum(%s)", lambda n, i: (str(i),)),
        ("CALL dj_udf.verify(%s, 'localattach')", lambda n, i: (s,)),
    ]

    def caller(n):
        conn = server.connect()
        i = 0
        with conn.cursor() as cur:
            while time.monotonic() < stop:
                i += 1
                q, args = calls[i % len(calls)]
                try:
                    cur.execute(q, args(n, i))
                    cur.fetchall()
                    if installed["at"] is not None:
                        done_after[n] += 1
                        if done_after[n] > 20:
                            return
                except pymysql.err.OperationalError as e:
                    if e.args[0] in (2006, 2013):
                        lost.append(e)
                        return
                    errors[e.args] += 1
                except pymysql.err.MySQLError as e:
                    errors[e.args] += 1

    long_result = {}

    def long_statement():
        with server.connect() as c, c.cursor() as cur:
            cur.execute(f"SELECT COUNT(DISTINCT dj_checksum(seq)) FROM `{s}`.seq_1_to_1500000")
            long_result["rows"] = cur.fetchall()

    callers = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in callers:
        t.start()
    running = threading.Thread(target=long_statement)
    running.start()
    time.sleep(0.5)
    old = server.mapped_libraries()
    new = replace_library(server)
    r = server.run_script("install.sql")
    assert r.returncode == 0, r.stderr
    # A statement was using the library: MariaDB reuses the loaded (old) one
    # for the functions it creates again, so the new file is not in use yet.
    assert server.mapped_libraries() == [old[0] + " (deleted)"], (old, new)
    running.join(60)
    assert long_result.get("rows") == ((1500000,),), "the running statement finished on the old library"
    new = replace_library(server)
    r = server.run_script("install.sql")
    assert r.returncode == 0, r.stderr
    installed["at"] = time.monotonic()
    for t in callers:
        t.join(60)
    assert not lost, lost
    unclean = [e for e in errors if not any(e[0] == code and text in e[1] for code, text in UPGRADE_WINDOW)]
    assert not unclean, unclean
    assert all(done_after[n] > 0 for n in range(4)), ("every connection works after the upgrade", done_after)
    assert server.pid() == pid and server.sql("SELECT 1") == ((1,),)
    assert "signal" not in server.error_log().lower()
    # run again once no statement uses the library: the new file is loaded
    r = server.run_script("install.sql")
    assert r.returncode == 0, r.stderr
    assert server.mapped_libraries() == [new]
    assert server.sql("SELECT dj_udf.attach_get('localattach', %s, %s, 'kept.txt')", (s, h)) == ((b"kept",),)
