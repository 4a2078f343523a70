"""The install and uninstall scripts are idempotent and keep pending work."""

import hashlib
import json
import subprocess

from conftest import ROOT

FUNCTIONS = 18


def run_script(world, name):
    with open(ROOT / "sql" / name) as f:
        subprocess.run(["mariadb", "--no-defaults", f"--socket={world.socket}", "-uroot"], stdin=f, check=True)


def test_uninstall_then_install_twice(world, db):
    db.sql("INSERT INTO dj_udf.purge_queue (schema_name, store, hash, size) VALUES ('keep', 'main', %s, 1)", (b"\0" * 16,))
    run_script(world, "uninstall.sql")
    run_script(world, "uninstall.sql")
    assert db.one("SELECT COUNT(*) FROM mysql.func WHERE name LIKE 'dj\\_%'") == 0
    assert db.one("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'dj_udf'") == 0
    assert "does not exist" in db.error("SELECT dj_version()")
    # the pending deletion and the purge key survive an uninstall
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = 'keep'") == 1
    run_script(world, "install.sql")
    run_script(world, "install.sql")
    assert db.one("SELECT COUNT(*) FROM mysql.func WHERE dl = 'dj_udf.so'") == FUNCTIONS
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name = 'keep'") == 1
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_key") == 1
    db.sql("DELETE FROM dj_udf.purge_queue WHERE schema_name = 'keep'")
    assert db.one("SELECT dj_version()") == b"0.1.0"
    assert db.call_out("dj_udf.attach_put", "localattach", db.schema, "after.txt", b"reinstalled")


def test_small_functions(world, db):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "n.txt", b"12345")
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
