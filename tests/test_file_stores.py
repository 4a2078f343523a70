"""Every function and routine on file stores, through a real MariaDB."""

import os
import pathlib

import pytest

from conftest import attach_hash, md5, subfold

BLOB_3 = bytes.fromhex("646a30000d0000000000000840")  # dj.blob.pack(3.0)


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


def make_scan_tables(db):
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.scan_attachment (
        scan_id int NOT NULL,
        scan_image binary(16) NOT NULL COMMENT ':attach@localattach:attached image scans',
        PRIMARY KEY (scan_id),
        FOREIGN KEY (scan_image) REFERENCES `{s}`.`~external_localattach` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT)""")
    db.sql(f"""CREATE TABLE `{s}`.scan_images (
        scan_id int NOT NULL,
        image_path binary(16) NOT NULL COMMENT ':filepath@data:image file',
        PRIMARY KEY (scan_id),
        FOREIGN KEY (image_path) REFERENCES `{s}`.`~external_data` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT)""")


def test_attach_from_client_bytes(db, world):
    make_scan_tables(db)
    data = os.urandom(300_000)
    h = db.call_out("dj_udf.attach_put", "localattach", db.schema, "scan 1.png", data)
    db.sql(f"INSERT INTO `{db.schema}`.scan_attachment VALUES (1, %s)", (h,))
    assert h == attach_hash("scan 1.png", data)
    hx = h.hex()
    obj = world.dirs["attach"] / db.schema / hx[:2] / hx[2:4] / f"{hx}.scan 1.png"
    assert obj.read_bytes() == data
    assert db.tracking("localattach") == ((h, len(data), "scan 1.png", None, None),)
    rows = db.sql(f"""SELECT a.scan_id, x.attachment_name, dj_udf.attach_get('localattach', %s, a.scan_image, x.attachment_name)
        FROM `{db.schema}`.scan_attachment a JOIN `{db.schema}`.`~external_localattach` x ON x.hash = a.scan_image""", (db.schema,))
    assert rows == ((1, "scan 1.png", data),)
    # The same content again: one object, one row, and the file is not rewritten.
    before = obj.stat().st_ino
    assert db.call_out("dj_udf.attach_put", "localattach", db.schema, "scan 1.png", data) == h
    assert len(db.tracking("localattach")) == 1 and obj.stat().st_ino == before


def test_attach_from_server_file(db, world):
    make_scan_tables(db)
    src = world.dirs["import"] / "sub" / "Ströme data.tar.gz"
    src.parent.mkdir(exist_ok=True)
    data = os.urandom(2_500_000)
    src.write_bytes(data)
    h = db.call_out("dj_udf.attach_put_file", "localattach", db.schema, str(src))
    assert h == attach_hash("Ströme data.tar.gz", data)
    db.sql(f"INSERT INTO `{db.schema}`.scan_attachment VALUES (2, %s)", (h,))
    hx = h.hex()
    assert (world.dirs["attach"] / db.schema / hx[:2] / hx[2:4] / f"{hx}.Ströme data.tar.gz").read_bytes() == data
    assert db.tracking("localattach") == ((h, len(data), "Ströme data.tar.gz", None, None),)
    # no temporary file is left behind
    assert not [p for p in (world.dirs["attach"] / db.schema).rglob("*.saving")]


@pytest.mark.parametrize("store,folds", [("main", [2, 2]), ("flat", []), ("deep", [1, 2, 3])])
def test_blob_put_get_and_layout(db, world, store, folds):
    h = db.call_out("dj_udf.blob_put", store, db.schema, BLOB_3)
    assert h.hex() == "676de6356c1b33e8084921c02b8cdea6"
    loc = world.base_config["stores"][store]["location"]
    path = pathlib.Path(loc, db.schema, *subfold(h.hex(), folds), h.hex())
    assert path.read_bytes() == BLOB_3
    assert db.tracking(store) == ((h, len(BLOB_3), None, None, None),)
    assert db.one("SELECT dj_udf.blob_get(%s, %s, %s)", (store, db.schema, h)) == BLOB_3
    # empty-payload blobs and compressed headers are accepted; other bytes are not
    assert "not a serialized DataJoint blob" in db.error("CALL dj_udf.blob_put(%s, %s, 'plain text', @h)", (store, db.schema))


def test_blob_insert_in_two_statements_from_any_client(db):
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.trace (id int PRIMARY KEY, v binary(16) DEFAULT NULL COMMENT ':blob@main:values',
        FOREIGN KEY (v) REFERENCES `{s}`.`~external_main` (hash))""")
    db.sql("CALL dj_udf.blob_put('main', %s, %s, @h)", (s, BLOB_3))
    db.sql(f"INSERT INTO `{s}`.trace VALUES (1, @h)")
    assert db.one(f"SELECT dj_udf.blob_get('main', %s, v) FROM `{s}`.trace", (s,)) == BLOB_3
    # without the tracking row the foreign key refuses the insert
    assert "foreign key constraint fails" in db.error(f"INSERT INTO `{s}`.trace VALUES (2, %s)", (md5(b"x"),))


def test_filepath_put_get_and_versions(db, world):
    make_scan_tables(db)
    stage, loc = world.dirs["stage"], world.dirs["data"]
    rel = f"{db.schema}/sub/dir/file.dat"
    f = stage / rel
    f.parent.mkdir(parents=True)
    f.write_bytes(b"version one")
    h = db.call_out("dj_udf.filepath_put", "data", db.schema, str(f))
    db.sql(f"INSERT INTO `{db.schema}`.scan_images VALUES (1, %s)", (h,))
    assert h == md5(rel.encode())
    assert (loc / rel).read_bytes() == b"version one"
    assert db.tracking("data") == ((h, 11, None, rel, md5(b"version one")),)
    # putting the same file again is a no-op
    assert db.call_out("dj_udf.filepath_put", "data", db.schema, str(f)) == h
    # a different version under the same path is refused, and the store keeps the first
    f.write_bytes(b"version two!")
    msg = db.error("CALL dj_udf.filepath_put('data', %s, %s, @h)", (db.schema, str(f)))
    assert msg == f"A different version of '{rel}' has already been placed."
    assert (loc / rel).read_bytes() == b"version one"
    # a direct UDF call cannot bypass that rule either
    assert db.one("SELECT dj_filepath_put('data', %s)", (str(f),)) is None
    assert "different version" in db.last_error()
    # fetch: a different local file is kept unless the caller asks to replace it
    q = f"""SELECT dj_udf.filepath_get('data', x.filepath, x.contents_hash, x.size) FROM `{db.schema}`.scan_images i
            JOIN `{db.schema}`.`~external_data` x ON x.hash = i.image_path"""
    assert "it is kept" in db.error(q) and f.read_bytes() == b"version two!"
    assert db.one("SELECT dj_filepath_get('data', %s, %s, 11, 1)", (rel, md5(b"version one"))) == str(f).encode()
    assert f.read_bytes() == b"version one"
    f.unlink()
    assert db.one(q) == str(f) and f.read_bytes() == b"version one"
    # a corrupted stored copy does not pass the checksum
    (loc / rel).write_bytes(b"version ONE")
    f.unlink()
    assert "did not pass checksum" in db.error(q)
    assert not f.exists()


def test_filepath_outside_stage_and_limits(db, world):
    outside = world.dirs["import"] / "x.dat"
    outside.write_bytes(b"x")
    assert db.error("CALL dj_udf.filepath_put('data', %s, %s, @h)", (db.schema, str(outside))).endswith(
        f"The path {outside} is not in stage {world.dirs['stage']}")
    assert "has no 'stage'" in db.error("CALL dj_udf.filepath_put('main', %s, %s, @h)", (db.schema, str(outside)))
    # insert limit: above it no contents_hash is stored
    cfg = dict(world.base_config, filepath_checksum_size_limit_insert=5)
    world.write_config(cfg)
    big = world.dirs["stage"] / db.schema / "big.dat"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"0123456789")
    h = db.call_out("dj_udf.filepath_put", "data", db.schema, str(big))
    assert db.tracking("data") == ((h, 10, None, f"{db.schema}/big.dat", None),)
    assert db.one("SELECT dj_verify('data', %s, %s, 10, NULL, %s, NULL)", (db.schema, h, f"{db.schema}/big.dat")) == b"ok (size only)"
    # fetch limit: at or above it only the size is checked
    stored = world.dirs["data"] / db.schema / "big.dat"
    stored.write_bytes(b"9876543210")
    big.unlink()
    q = "SELECT dj_udf.filepath_get('data', %s, %s, 10)"
    args = (f"{db.schema}/big.dat", md5(b"0123456789"))
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=10))
    assert db.one(q, args) == str(big)
    big.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=11))
    assert "did not pass checksum" in db.error(q, args)
    assert "size mismatch" in db.error("SELECT dj_udf.filepath_get('data', %s, %s, 11)", args)


def test_filepath_stage_equal_to_location(db, world):
    f = world.dirs["same"] / db.schema / "a.dat"
    f.parent.mkdir()
    f.write_bytes(b"in place")
    h = db.call_out("dj_udf.filepath_put", "same", db.schema, str(f))
    assert db.tracking("same") == ((h, 8, None, f"{db.schema}/a.dat", md5(b"in place")),)
    assert db.one("SELECT dj_udf.filepath_get('same', %s, %s, 8)", (f"{db.schema}/a.dat", md5(b"in place"))) == str(f)
    f.write_bytes(b"in plac3")
    assert "checksum mismatch" in db.error("SELECT dj_udf.filepath_get('same', %s, %s, 8)", (f"{db.schema}/a.dat", md5(b"in place")))


def test_attach_export_alias_rule(db, world):
    data = b"contents A"
    h = db.call_out("dj_udf.attach_put", "localattach", db.schema, "data.tar.gz", data)
    out = world.dirs["export"] / db.schema
    q = "SELECT dj_udf.attach_export('localattach', %s, %s, 'data.tar.gz', %s)"
    first = db.one(q, (db.schema, h, str(out)))
    assert first == str(out / "data.tar.gz") and pathlib.Path(first).read_bytes() == data
    assert db.one(q, (db.schema, h, str(out))) == first, "an identical file is reused"
    (out / "data.tar.gz").write_bytes(b"someone else's file")
    assert db.one(q, (db.schema, h, str(out))) == str(out / "data.tar_0000.gz")
    assert (out / "data.tar.gz").read_bytes() == b"someone else's file", "never overwritten"
    assert db.one(q, (db.schema, h, str(out))) == str(out / "data.tar_0000.gz")
    (out / "data.tar_0000.gz").write_bytes(b"other")
    assert db.one(q, (db.schema, h, str(out))) == str(out / "data.tar_0001.gz")
    hid = db.call_out("dj_udf.attach_put", "localattach", db.schema, ".hidden", data)
    (out / ".hidden").write_bytes(b"x")
    assert db.one("SELECT dj_udf.attach_export('localattach', %s, %s, '.hidden', %s)", (db.schema, hid, str(out))) == str(out / ".hidden_0000")
    assert "not inside" in db.error(q, (db.schema, h, str(world.dirs["outside"])))


def test_verify_audits_a_whole_table(db, world):
    names = ["ok.bin", "corrupt.bin", "short.bin", "gone.bin"]
    hashes = {n: db.call_out("dj_udf.attach_put", "localattach", db.schema, n, n.encode() * 100) for n in names}
    base = world.dirs["attach"] / db.schema

    def path(n):
        hx = hashes[n].hex()
        return base / hx[:2] / hx[2:4] / f"{hx}.{n}"

    p = path("corrupt.bin")
    b = bytearray(p.read_bytes())
    b[10] ^= 1
    p.write_bytes(bytes(b))
    path("short.bin").write_bytes(b"short")
    path("gone.bin").unlink()
    rows = db.sql("CALL dj_udf.verify(%s, 'localattach')", (db.schema,))
    status = {r[2]: r[4] for r in rows}
    assert status == {"ok.bin": "ok", "corrupt.bin": "checksum mismatch", "short.bin": "size mismatch", "gone.bin": "missing"}
    # reads are verified: the corrupted and missing objects raise errors, never NULL
    for n, why in [("corrupt.bin", "checksum mismatch"), ("gone.bin", "does not exist")]:
        msg = db.error("SELECT dj_udf.attach_get('localattach', %s, %s, %s)", (db.schema, hashes[n], n))
        assert why in msg and msg.startswith("dj_udf.attach_get: dj_attach_get:")


def test_blob_verify_and_corruption(db, world):
    h = db.call_out("dj_udf.blob_put", "main", db.schema, BLOB_3)
    assert db.one("SELECT dj_verify('main', %s, %s, %s, NULL, NULL, NULL)", (db.schema, h, len(BLOB_3))) == b"ok"
    p = world.dirs["blobs"] / db.schema / h.hex()[:2] / h.hex()[2:4] / h.hex()
    p.write_bytes(BLOB_3[:-1] + b"\x41")
    assert "checksum mismatch" in db.error("SELECT dj_udf.blob_get('main', %s, %s)", (db.schema, h))
    # putting the same blob again repairs a truncated object
    p.write_bytes(BLOB_3[:5])
    db.call_out("dj_udf.blob_put", "main", db.schema, BLOB_3)
    assert p.read_bytes() == BLOB_3


def test_cleanup_is_null_safe_and_keeps_referenced_objects(db, world):
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.doc (id int PRIMARY KEY,
        att binary(16) DEFAULT NULL COMMENT ':attach@localattach:optional',
        FOREIGN KEY (att) REFERENCES `{s}`.`~external_localattach` (hash))""")
    keep = db.call_out("dj_udf.attach_put", "localattach", s, "keep.txt", b"keep")
    drop = db.call_out("dj_udf.attach_put", "localattach", s, "drop.txt", b"drop")
    db.sql(f"INSERT INTO `{s}`.doc VALUES (1, %s), (2, NULL)", (keep,))
    base = world.dirs["attach"] / s

    def exists(h, n):
        return (base / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.{n}").exists()

    db.sql("CALL dj_udf.cleanup(%s, 'localattach', @rows, @objs, @fails)", (s,))
    assert db.one("SELECT CONCAT_WS(',', @rows, @objs, @fails)") == "1,1,0"
    assert [r[2] for r in db.tracking("localattach")] == ["keep.txt"]
    assert exists(keep, "keep.txt") and not exists(drop, "drop.txt")
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name=%s", (s,)) == 0


def test_purge_never_removes_an_object_tracked_again(db, world):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "back.txt", b"comes back")
    db.sql("CALL dj_udf.delete_unused(%s, 'localattach', @rows)", (s,))
    assert db.one("SELECT @rows") == 1 and db.tracking("localattach") == ()
    # the object is re-inserted before the purge runs
    assert db.call_out("dj_udf.attach_put", "localattach", s, "back.txt", b"comes back") == h
    db.sql("CALL dj_udf.purge(%s, 'localattach', @objs, @fails)", (s,))
    assert db.one("SELECT @objs") == 0
    assert db.one("SELECT dj_udf.attach_get('localattach', %s, %s, 'back.txt')", (s, h)) == b"comes back"


def test_rolled_back_deletion_removes_nothing(db, world):
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.ref (id int PRIMARY KEY, a binary(16) NOT NULL,
        FOREIGN KEY (a) REFERENCES `{s}`.`~external_localattach` (hash))""")
    h = db.call_out("dj_udf.attach_put", "localattach", s, "held.txt", b"held")
    # Another session references the object but has not committed: the row is
    # locked, delete_unused cannot delete it and rolls everything back.
    other = world.connect(autocommit=False)
    with other.cursor() as cur:
        cur.execute(f"INSERT INTO `{s}`.ref VALUES (1, %s)", (h,))
    db.sql("SET SESSION innodb_lock_wait_timeout = 1")
    assert "Lock wait timeout" in db.error("CALL dj_udf.delete_unused(%s, 'localattach', @rows)", (s,))
    other.rollback()
    other.close()
    assert db.one("SELECT COUNT(*) FROM dj_udf.purge_queue WHERE schema_name=%s", (s,)) == 0
    assert len(db.tracking("localattach")) == 1
    assert db.one("SELECT dj_udf.attach_get('localattach', %s, %s, 'held.txt')", (s, h)) == b"held"


def test_deletion_needs_the_purge_key(db, world):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "k.txt", b"k")
    assert db.one("SELECT dj_delete_object('localattach', %s, %s, 'k.txt', NULL, 'wrong key guess')", (s, h)) is None
    assert "wrong purge key" in db.last_error()
    # a user without SELECT on dj_udf.purge_key cannot purge
    db.sql("CREATE USER IF NOT EXISTS 'pipeline'@'localhost' IDENTIFIED BY 'pw'")
    db.sql(f"GRANT ALL ON `{s}`.* TO 'pipeline'@'localhost'")
    db.sql("GRANT SELECT, INSERT, UPDATE, DELETE ON dj_udf.purge_queue TO 'pipeline'@'localhost'")
    db.sql("GRANT EXECUTE ON dj_udf.* TO 'pipeline'@'localhost'")
    user = world.connect(user="pipeline", password="pw")
    with user.cursor() as cur:
        cur.execute("CALL dj_udf.delete_unused(%s, 'localattach', @rows)", (s,))
        with pytest.raises(Exception) as e:
            cur.execute("CALL dj_udf.purge(%s, 'localattach', @o, @f)", (s,))
        assert "purge_key" in str(e.value)
    user.close()
    assert db.one("SELECT dj_attach_get('localattach', %s, %s, 'k.txt')", (s, h)) == b"k"
    db.sql("CALL dj_udf.purge(%s, 'localattach', @o, @f)", (s,))
    assert db.one("SELECT @o") == 1


def test_results_over_255_bytes_are_not_truncated(db):
    data = os.urandom(100_000)
    h = db.call_out("dj_udf.attach_put", "localattach", db.schema, "big.bin", data)
    got = db.one("SELECT x FROM (SELECT dj_attach_get('localattach', %s, %s, 'big.bin') AS x) AS sub", (db.schema, h))
    assert got == data
    db.sql(f"CREATE TABLE `{db.schema}`.copy AS SELECT dj_attach_get('localattach', %s, %s, 'big.bin') AS x", (db.schema, h))
    assert db.one(f"SELECT LENGTH(x) FROM `{db.schema}`.copy") == len(data)


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


def test_error_text_keeps_non_ascii_names_and_limits_results(db, world):
    s = db.schema
    h = db.call_out("dj_udf.attach_put", "localattach", s, "Ströme ü.dat", b"x" * 100)
    hx = h.hex()
    (world.dirs["attach"] / s / hx[:2] / hx[2:4] / f"{hx}.Ströme ü.dat").unlink()
    msg = db.error("SELECT dj_udf.attach_get('localattach', %s, %s, 'Ströme ü.dat')", (s, h))
    assert "attachment 'Ströme ü.dat'" in msg and msg.endswith("does not exist"), msg
    h = db.call_out("dj_udf.attach_put", "localattach", s, "big.dat", b"y" * 100)
    world.write_config(dict(world.base_config, max_get_bytes=10))
    msg = db.error("SELECT dj_udf.attach_get('localattach', %s, %s, 'big.dat')", (s, h))
    assert "is 100 bytes, over the limit of 10 bytes (config key max_get_bytes)" in msg


def test_long_non_ascii_filepath(db, world):
    """A filepath near the column's 1000 characters, 4 bytes each, through
    dj_filepath_info's JSON and back."""
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


def test_non_ascii_names_survive_every_routine(db, world):
    s = db.schema
    name = "Ströme 😀 ü.dat"
    src = world.dirs["import"] / s / name
    src.parent.mkdir(parents=True)
    src.write_bytes(b"unicode")
    h = db.call_out("dj_udf.attach_put_file", "localattach", s, str(src))
    assert db.tracking("localattach")[0][2] == name
    out = db.one("SELECT dj_udf.attach_export('localattach', %s, %s, %s, %s)", (s, h, name, str(world.dirs["export"] / s)))
    assert out == str(world.dirs["export"] / s / name)
    assert db.sql("CALL dj_udf.verify(%s, 'localattach')", (s,))[0][2:] == (name, None, "ok")
