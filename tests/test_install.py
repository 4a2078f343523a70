"""The install and uninstall scripts are idempotent and keep pending work."""

import hashlib
import json
import re
import subprocess

from conftest import ROOT, attach_hash

FUNCTIONS = "SELECT name, ret, dl, type FROM mysql.func WHERE dl = 'dj_udf.so' ORDER BY name"
ROUTINES = ("SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf' "
            "ORDER BY ROUTINE_NAME")


def run_script(world, name):
    with open(ROOT / "sql" / name) as f:
        subprocess.run(["mariadb", "--no-defaults", f"--socket={world.socket}", "-uroot"], stdin=f, check=True)


def test_uninstall_then_install_twice(world, db):
    functions, routines = db.sql(FUNCTIONS), db.sql(ROUTINES)
    assert functions and routines
    db.sql("INSERT INTO dj_udf.purge_queue (schema_name, store, hash, size) VALUES ('keep', 'main', %s, 1)", (b"\0" * 16,))
    run_script(world, "uninstall.sql")
    run_script(world, "uninstall.sql")
    assert db.sql("SELECT name FROM mysql.func WHERE dl = 'dj_udf.so' OR name LIKE 'dj\\_%'") == ()
    assert db.sql(ROUTINES) == ()
    assert "does not exist" in db.error("SELECT dj_version()")
    # the pending deletion and the purge key survive an uninstall
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = 'keep'") == 1
    run_script(world, "install.sql")
    run_script(world, "install.sql")
    # the same functions and routines as before, once each
    assert db.sql(FUNCTIONS) == functions
    assert db.sql(ROUTINES) == routines
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = 'keep'") == 1
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_key") == 1
    db.sql("DELETE FROM dj_udf.purge_queue WHERE schema_name = 'keep'")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    assert db.one("SELECT dj_version()") == version.encode()
    assert db.call_out("dj_udf.attach_put", "localattach", db.schema, "after.txt", b"reinstalled") == \
        attach_hash("after.txt", b"reinstalled")
    assert db.one("SELECT dj_udf.attach_get('localattach', %s, %s, 'after.txt')",
                  (db.schema, attach_hash("after.txt", b"reinstalled"))) == b"reinstalled"


def test_small_functions(world, db):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "n.txt", b"12345")
    assert h == attach_hash("n.txt", b"12345")
    assert db.one("SELECT dj_object_size('localattach', %s, %s, 'n.txt', NULL)", (s, h)) == 5
    assert db.one("SELECT dj_object_size('localattach', %s, %s, 'other.txt', NULL)", (s, h)) is None
    assert db.one("SELECT dj_object_size('localattach', %s, HEX(%s), 'n.txt', NULL)", (s, h)) == 5
    f = world.dirs["stage"] / s / "info.dat"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"abc")
    info = json.loads(db.one("SELECT dj_filepath_info('data', %s)", (str(f),)))
    assert info == {"hash": hashlib.md5(f"{s}/info.dat".encode()).hexdigest(), "filepath": f"{s}/info.dat",
                    "size": 3, "contents_hash": "900150983cd24fb0d6963f7d28e17f72"}
    assert db.one("SELECT HEX(dj_file_checksum(%s, 'info.dat\\0'))", (str(f),)) == \
        hashlib.md5(b"info.dat\0abc").hexdigest().upper()


def test_install_does_not_need_a_usable_config(world, db):
    """Installing creates the monitoring views, which name loadable
    functions; a config whose store folder does not exist yet (a container's
    first start creates it after installing) must not stop the install. The
    views are then empty, and dj_last_error() says why."""
    cfg = json.loads(json.dumps(world.base_config))
    cfg["stores"]["localattach"]["location"] = "/nonexistent/dj_udf/folder"
    world.write_config(cfg)
    try:
        run_script(world, "install.sql")
        assert db.sql("SELECT * FROM dj_udf.store_stats") == ()
        msg = db.last_error()
        assert "/nonexistent/dj_udf/folder" in msg, msg
    finally:
        world.write_config(world.base_config)
    assert db.one("SELECT COUNT(*) > 0 FROM dj_udf.store_stats") == 1
