"""The SQL surface, through a real MariaDB: DataJoint's test vectors and
tracking-table DDL, NULLs, arity and argument types, hostile paths and names,
configuration errors, credentials never returned, non-ASCII names, long
results and the text of errors."""

import os

from conftest import BLOB_3, attach_path, md5


def test_test_vectors_through_sql(db):
    assert db.one("SELECT HEX(dj_checksum(%s))", (BLOB_3,)) == "676DE6356C1B33E8084921C02B8CDEA6"
    assert db.one("SELECT HEX(dj_checksum('hello world\\n', 'hello.txt\\0'))") == "B2FD972284848B26F19727FC49A93A85"
    assert db.one("SELECT HEX(dj_checksum('sub/dir/file.dat'))") == "537136C708D597BCC84BA766248670F7"
    assert db.one("SELECT HEX(dj_checksum(''))") == "D41D8CD98F00B204E9800998ECF8427E"
    assert db.one("SELECT dj_checksum(NULL)") is None


def test_tracking_table_is_datajoints(db):
    cols = db.sql(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_COMMENT FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME='~external_localattach' ORDER BY ORDINAL_POSITION", (db.schema,))
    assert [c[0] for c in cols] == ["hash", "size", "attachment_name", "filepath", "contents_hash", "timestamp"]
    assert [c[1] for c in cols] == ["binary(16)", "bigint(20) unsigned", "varchar(255)", "varchar(1000)", "binary(16)", "timestamp"]
    assert [c[2] for c in cols] == ["NO", "NO", "YES", "YES", "YES", "NO"]
    assert cols[0][4].startswith(":uuid:hash of contents")
    assert cols[4][4] == ":uuid:used for the filepath datatype"
    assert db.one("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='~external_main'",
                  (db.schema,)) == "external storage tracking"
    # idempotent
    db.sql("CALL dj_udf.create_tracking_table(%s, 'main')", (db.schema,))
    assert "not configured" in db.error("CALL dj_udf.create_tracking_table(%s, 'nosuch')", (db.schema,))
    assert "invalid schema name" in db.error("CALL dj_udf.create_tracking_table('a`b', 'main')")


def test_nulls(db):
    assert db.one("SELECT dj_blob_get('main', %s, NULL)", (db.schema,)) is None
    assert db.one("SELECT dj_udf.attach_get('localattach', %s, NULL, 'x')", (db.schema,)) is None
    assert db.one("SELECT dj_attach_put('localattach', %s, 'a', NULL)", (db.schema,)) is None
    db.sql("CALL dj_udf.attach_put('localattach', %s, 'a', NULL, @h)", (db.schema,))
    assert db.one("SELECT @h") is None
    assert db.one("SELECT dj_attach_put(NULL, %s, 'a', 'x')", (db.schema,)) is None
    assert "store: must not be NULL" in db.last_error()
    assert "invalid store name" in db.error("CALL dj_udf.attach_put(NULL, %s, 'a', 'x', @h)", (db.schema,))


def test_wrong_arity_and_types(db):
    cases = {
        "dj_checksum()": "takes 1 to 2 arguments, got 0: dj_checksum(data, [init_string])",
        "dj_blob_put('main', 'x')": "takes 3 arguments, got 2: dj_blob_put(store, schema, data)",
        "dj_verify('main')": "takes 7 arguments, got 1",
        "dj_version(1)": "takes 0 arguments, got 1: dj_version()",
        "dj_blob_get('main', 'x', 12345)": "argument 3 (hash) must be binary(16)",
        "dj_blob_get('main', 'x', 'nothex')": "invalid hash",
        "dj_filepath_get('data', 'a', NULL, 1.5)": "argument 4 (size) must be an integer",
        "dj_blob_get('nosuch', 'x', NULL)": "unknown store 'nosuch'",
        "dj_blob_get('main', 'x/../y', NULL)": "invalid schema name",
        "dj_attach_get('localattach', 'x', NULL, 'a/b')": "invalid attachment name",
    }
    for call, want in cases.items():
        msg = db.error(f"SELECT {call}")
        assert msg.startswith("Can't initialize function")
        assert want in msg or want in db.last_error(), (call, msg)
    assert db.one("SELECT dj_filepath_get('data', 'a', NULL, 'abc')") is None
    assert "size: must be a non-negative integer" in db.last_error()


def test_hostile_paths_and_names(db, world):
    s = db.schema
    secret = world.dirs["outside"] / "secret.txt"
    secret.write_bytes(b"secret")
    imp = world.dirs["import"]
    os.symlink(secret, imp / f"link-{s}")
    os.symlink(world.dirs["outside"], imp / f"dirlink-{s}")
    for path, why in [
        ("/etc/passwd", "not inside"),
        (f"{imp}/../outside/secret.txt", "'..' components"),
        ("relative/path", "must be absolute"),
        (f"{imp}/link-{s}", "symbolic link"),
        (f"{imp}/dirlink-{s}/secret.txt", "symbolic link"),
    ]:
        assert db.one("SELECT dj_file_checksum(%s)", (path,)) is None, path
        assert why in db.last_error(), (path, db.last_error())
        assert why in db.error("CALL dj_udf.attach_put_file('localattach', %s, %s, @h)", (s, path))
    for name in ["../../evil", "a/b", ".", ".."]:
        assert "invalid attachment name" in db.error("CALL dj_udf.attach_put('localattach', %s, %s, 'x', @h)", (s, name))
    assert "invalid filepath" in db.error("SELECT dj_udf.filepath_get('data', '../../etc/passwd', NULL, 1)")
    assert "invalid filepath" in db.error("SELECT dj_udf.filepath_get('data', '/etc/passwd', NULL, 1)")
    assert "invalid schema name" in db.error("CALL dj_udf.blob_put('main', '../x', %s, @h)", (BLOB_3,))
    assert "'..' components" in db.error("SELECT dj_udf.attach_export('localattach', %s, %s, 'a', %s)",
                                         (s, md5(b"x"), f"{world.dirs['export']}/../outside"))
    assert secret.read_bytes() == b"secret"
    assert not list(world.dirs["outside"].glob("*.saving"))


def test_config_errors_name_file_store_and_key(db, world):
    cfg = world.config_path
    world.write_config("{not json")
    assert "see dj_last_error()" in db.error("SELECT dj_stores()")
    assert db.last_error() == f"dj_stores: config file {cfg}: not valid JSON: key must be a string at line 1 column 2"
    world.write_config({"stores": {"x": {"protocol": "file", "location": "/does/not/exist"}}})
    assert "store 'x', key 'location': '/does/not/exist' does not e" in db.error("SELECT dj_stores()")
    assert db.last_error().endswith(f"; config file {cfg}")
    world.write_config({"stores": {"x": {"protocol": "ftp", "location": "/tmp"}}})
    assert "store 'x', key 'protocol': unknown protocol 'ftp'" in db.error("SELECT dj_stores()")
    os.remove(cfg)
    db.error("SELECT dj_stores()")
    assert db.last_error().startswith(f"dj_stores: config file {cfg}: No such file or directory")
    assert "DJ_UDF_CONFIG" in db.last_error()
    world.write_config(world.base_config)
    assert db.one("SELECT JSON_VALUE(dj_stores(), '$.stores.main.protocol')") == b"file"


def test_credentials_never_returned(db):
    out = db.one("SELECT dj_stores()").decode()
    assert "SECRETKEYVALUE123" not in out and "AKIDSECRETACCESS" not in out and "test-purge-key" not in out
    assert '"secret_key":"<redacted>"' in out


def test_error_text_keeps_non_ascii_names_and_limits_results(db, world, kind):
    s, st = db.schema, kind.attach
    h = db.call_out("dj_udf.attach_put", st, s, "Ströme ü.dat", b"x" * 100)
    attach_path(world, st, s, h, "Ströme ü.dat").unlink()
    msg = db.error("SELECT dj_udf.attach_get(%s, %s, %s, 'Ströme ü.dat')", (st, s, h))
    assert "attachment 'Ströme ü.dat'" in msg and msg.endswith("does not exist"), msg
    h = db.call_out("dj_udf.attach_put", st, s, "big.dat", b"y" * 100)
    world.write_config(dict(world.base_config, max_get_bytes=10))
    msg = db.error("SELECT dj_udf.attach_get(%s, %s, %s, 'big.dat')", (st, s, h))
    assert "is 100 bytes, over the limit of 10 bytes (config key max_get_bytes)" in msg


def test_long_non_ascii_filepath(db, world):
    """A filepath near the column's 1000 characters, 4 bytes each, through
    dj_filepath_info's JSON and back (a file store: S3 keys end at 1024 bytes)."""
    s = db.schema
    rel = s + "/" + "/".join(["😀" * 61] * 15)
    assert len(rel) <= 1000 and len(rel.encode()) > 3600
    f = world.dirs["stage"] / rel
    f.parent.mkdir(parents=True)
    f.write_bytes(b"deep")
    h = db.call_out("dj_udf.filepath_put", "data", s, str(f))
    assert db.tracking("data") == ((h, 4, None, rel, md5(b"deep")),)
    f.unlink()
    assert db.one("SELECT dj_udf.filepath_get('data', %s, %s, 4)", (rel, md5(b"deep"))) == str(f)


def test_non_ascii_names_survive_every_routine(db, world, kind):
    s, st = db.schema, kind.attach
    name = "Ströme 😀 ü.dat"
    src = world.dirs["import"] / s / name
    src.parent.mkdir(parents=True)
    src.write_bytes(b"unicode")
    h = db.call_out("dj_udf.attach_put_file", st, s, str(src))
    assert db.tracking(st) == ((h, 7, name, None, None),)
    assert attach_path(world, st, s, h, name).read_bytes() == b"unicode"
    out = db.one("SELECT dj_udf.attach_export(%s, %s, %s, %s, %s)", (st, s, h, name, str(world.dirs["export"] / s)))
    assert out == str(world.dirs["export"] / s / name)
    assert db.sql("CALL dj_udf.verify(%s, %s)", (s, st)) == ((h.hex().upper(), 7, name, None, "ok"),)
