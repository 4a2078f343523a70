"""Every put, get, export and audit through a real MariaDB, on each kind of
store alike (the `kind` fixture: a file store, an S3 store, an S3 store whose
location starts with '/'). On S3 the objects are inspected and corrupted as
files in s3s-fs's bucket folder (world.location gives a store's folder)."""

import json
import os
import pathlib
import uuid

import pymysql
import pytest

from conftest import (BLOB_3, MiB, S3_BUCKET, attach_hash, attach_path, blob_path, kinds_with, leftovers, md5,
                      s3_key, s3_metadata, stored_files, subfold)


def referencing_table(db, table, store, column="ref", kind="attach", null=False):
    """A user table whose `column` references the store's tracking table, as DataJoint declares it."""
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.`{table}` (id int NOT NULL,
        `{column}` binary(16) {'DEFAULT NULL' if null else 'NOT NULL'} COMMENT ':{kind}@{store}:{table}',
        PRIMARY KEY (id),
        FOREIGN KEY (`{column}`) REFERENCES `{s}`.`~external_{store}` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT)""")


def put_file(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_attach_from_client_bytes(db, world, kind):
    s, st = db.schema, kind.attach
    referencing_table(db, "scan_attachment", st, "scan_image")
    data = os.urandom(300_000)
    h = db.call_out("dj_udf.attach_put", st, s, "scan 1.png", data)
    db.sql(f"INSERT INTO `{s}`.scan_attachment VALUES (1, %s)", (h,))
    assert h == attach_hash("scan 1.png", data)
    obj = attach_path(world, st, s, h, "scan 1.png")
    assert obj.read_bytes() == data
    assert db.tracking(st) == ((h, len(data), "scan 1.png", None, None),)
    rows = db.sql(f"""SELECT a.id, x.attachment_name, dj_udf.attach_get(%s, %s, a.scan_image, x.attachment_name)
        FROM `{s}`.scan_attachment a JOIN `{s}`.`~external_{st}` x ON x.hash = a.scan_image""", (st, s))
    assert rows == ((1, "scan 1.png", data),)
    # the same content again: one object, one row, and the object is not rewritten
    before = obj.stat().st_ino
    assert db.call_out("dj_udf.attach_put", st, s, "scan 1.png", data) == h
    assert len(db.tracking(st)) == 1 and obj.stat().st_ino == before


@pytest.mark.parametrize("size", [2_500_000, 20 * MiB])
def test_attach_from_server_file(db, world, kind, size):
    s, st = db.schema, kind.attach
    referencing_table(db, "scan_attachment", st, "scan_image")
    src = put_file(world.dirs["import"] / f"{s}-{size}" / "sub" / "Ströme data.tar.gz", os.urandom(size))
    data = src.read_bytes()
    h = db.call_out("dj_udf.attach_put_file", st, s, str(src))
    assert h == attach_hash("Ströme data.tar.gz", data)
    db.sql(f"INSERT INTO `{s}`.scan_attachment VALUES (2, %s)", (h,))
    assert attach_path(world, st, s, h, "Ströme data.tar.gz").read_bytes() == data
    assert db.tracking(st) == ((h, size, "Ströme data.tar.gz", None, None),)
    assert db.one("SELECT dj_verify(%s, %s, %s, %s, 'Ströme data.tar.gz', NULL, NULL)", (st, s, h, size)) == b"ok"
    # no temporary file (file store) or unfinished upload (S3) is left behind
    assert not leftovers(world, st, s)
    src.unlink()


def test_attach_from_server_path_with_trailing_slash(db, world, kind):
    """A trailing '/' after a file's name names the file: the attachment is
    called by its base name, the tracking row says so, nothing is orphaned."""
    s, st = db.schema, kind.attach
    src = put_file(world.dirs["import"] / s / "x" / "a.bin", b"trailing slash")
    want = attach_hash("a.bin", b"trailing slash")
    error = None
    try:
        db.sql("CALL dj_udf.attach_put_file(%s, %s, %s, @h)", (st, s, f"{src}/"))
    except pymysql.err.MySQLError as e:
        error = e.args[1]
    # whatever happened, no object is left that no row tracks
    objects = [p.relative_to(world.location(st) / s) for p in stored_files(world, st, s)]
    assert (error, objects) == (None, [attach_path(world, st, s, want, "a.bin").relative_to(world.location(st) / s)])
    assert db.one("SELECT @h") == want
    assert db.tracking(st) == ((want, 14, "a.bin", None, None),)
    assert db.one("SELECT dj_udf.attach_get(%s, %s, %s, 'a.bin')", (st, s, want)) == b"trailing slash"


LAYOUTS = {"2-2": ("blob", [2, 2]), "none": ("flat", []), "1-2-3": ("deep", [1, 2, 3])}


@pytest.mark.parametrize("kind,layout", [(k, layout) for layout, (role, _) in LAYOUTS.items() for k in kinds_with(role)],
                         indirect=["kind"])
def test_blob_put_get_and_layout(db, world, kind, layout):
    role, want_folds = LAYOUTS[layout]
    s, st = db.schema, getattr(kind, role)
    h = db.call_out("dj_udf.blob_put", st, s, BLOB_3)
    assert h.hex() == "676de6356c1b33e8084921c02b8cdea6"
    path = world.location(st).joinpath(s, *subfold(h.hex(), want_folds), h.hex())
    assert path == blob_path(world, st, s, h) and path.read_bytes() == BLOB_3
    assert db.tracking(st) == ((h, len(BLOB_3), None, None, None),)
    assert db.one("SELECT dj_udf.blob_get(%s, %s, %s)", (st, s, h)) == BLOB_3
    # empty-payload blobs and compressed headers are accepted; other bytes are not
    assert "not a serialized DataJoint blob" in db.error("CALL dj_udf.blob_put(%s, %s, 'plain text', @h)", (st, s))


def test_blob_put_get_verify_and_repair(db, world, kind):
    s, st = db.schema, kind.blob
    h = db.call_out("dj_udf.blob_put", st, s, BLOB_3)
    assert h.hex() == "676de6356c1b33e8084921c02b8cdea6"
    p = blob_path(world, st, s, h)
    assert p.read_bytes() == BLOB_3
    assert db.tracking(st) == ((h, len(BLOB_3), None, None, None),)
    assert db.one("SELECT dj_udf.blob_get(%s, %s, %s)", (st, s, h)) == BLOB_3
    assert db.one("SELECT dj_verify(%s, %s, %s, %s, NULL, NULL, NULL)", (st, s, h, len(BLOB_3))) == b"ok"
    p.write_bytes(BLOB_3[:-1] + b"\x41")
    msg = db.error("SELECT dj_udf.blob_get(%s, %s, %s)", (st, s, h))
    assert "checksum mismatch" in msg
    if kind.s3:
        assert f"in bucket '{S3_BUCKET}' of store '{st}'" in msg and s3_key(world, st, f"{s}/67/6d/{h.hex()}") in msg, msg
    # putting the same blob again repairs a truncated object
    p.write_bytes(BLOB_3[:5])
    db.call_out("dj_udf.blob_put", st, s, BLOB_3)
    assert p.read_bytes() == BLOB_3


def test_blob_insert_in_two_statements_from_any_client(db, kind):
    s, st = db.schema, kind.blob
    referencing_table(db, "trace", st, "v", kind="blob", null=True)
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @h)", (st, s, BLOB_3))
    db.sql(f"INSERT INTO `{s}`.trace VALUES (1, @h)")
    assert db.one(f"SELECT dj_udf.blob_get(%s, %s, v) FROM `{s}`.trace", (st, s)) == BLOB_3
    # without the tracking row the foreign key refuses the insert
    assert "foreign key constraint fails" in db.error(f"INSERT INTO `{s}`.trace VALUES (2, %s)", (md5(b"x"),))


def test_filepath_put_get_and_versions(db, world, kind):
    s, st = db.schema, kind.data
    stage, loc = world.stage(st), world.location(st)
    referencing_table(db, "scan_images", st, "image_path", kind="filepath")
    rel = f"{s}/sub/dir/file.dat"
    f = put_file(stage / rel, b"version one")
    h = db.call_out("dj_udf.filepath_put", st, s, str(f))
    db.sql(f"INSERT INTO `{s}`.scan_images VALUES (1, %s)", (h,))
    assert h == md5(rel.encode())
    assert (loc / rel).read_bytes() == b"version one"
    assert db.tracking(st) == ((h, 11, None, rel, md5(b"version one")),)
    if kind.s3:
        # DataJoint's metadata: the contents MD5 as UUID text
        assert s3_metadata(world, st, rel) == {"contents_hash": str(uuid.UUID(bytes=md5(b"version one")))}
    # putting the same file again is a no-op
    assert db.call_out("dj_udf.filepath_put", st, s, str(f)) == h
    # a different version under the same path is refused, and the store keeps the first
    f.write_bytes(b"version two!")
    assert db.error("CALL dj_udf.filepath_put(%s, %s, %s, @h)", (st, s, str(f))) == \
        f"A different version of '{rel}' has already been placed."
    assert (loc / rel).read_bytes() == b"version one"
    # a direct UDF call cannot bypass that rule either
    assert db.one("SELECT dj_filepath_put(%s, %s)", (st, str(f))) is None
    assert "different version" in db.last_error()
    assert (loc / rel).read_bytes() == b"version one"
    # fetch: a different local file is kept unless the caller asks to replace it
    q = f"""SELECT dj_udf.filepath_get(%s, x.filepath, x.contents_hash, x.size) FROM `{s}`.scan_images i
            JOIN `{s}`.`~external_{st}` x ON x.hash = i.image_path"""
    assert "it is kept" in db.error(q, (st,)) and f.read_bytes() == b"version two!"
    assert db.one("SELECT dj_filepath_get(%s, %s, %s, 11, 1)", (st, rel, md5(b"version one"))) == str(f).encode()
    assert f.read_bytes() == b"version one"
    f.unlink()
    assert db.one(q, (st,)) == str(f) and f.read_bytes() == b"version one"
    # a corrupted stored copy does not pass the checksum
    (loc / rel).write_bytes(b"version ONE")
    f.unlink()
    assert "did not pass checksum" in db.error(q, (st,))
    assert not f.exists()


def test_filepath_outside_stage_is_refused_in_datajoints_words(db, world, kind):
    s, st = db.schema, kind.data
    stage = world.base_config["stores"][st]["stage"]
    outside = put_file(world.dirs["import"] / s / "x.dat", b"x")
    # DataJoint's words for the same input (external.py, upload_filepath):
    # it names the file's folder, and the stage as configured
    assert db.error("CALL dj_udf.filepath_put(%s, %s, %s, @h)", (st, s, str(outside))).endswith(
        f": The path {outside.parent} is not in stage {stage}")
    assert db.tracking(st) == ()
    if "stage" not in world.base_config["stores"][kind.blob]:  # (s3slash has one store, with a stage)
        assert "has no 'stage'" in db.error("CALL dj_udf.filepath_put(%s, %s, %s, @h)", (kind.blob, s, str(outside)))


def test_filepath_checksum_limits(db, world, kind):
    s, st = db.schema, kind.data
    # insert limit: above it no contents_hash is stored
    world.write_config(dict(world.base_config, filepath_checksum_size_limit_insert=5))
    rel = f"{s}/big.dat"
    big = put_file(world.stage(st) / rel, b"0123456789")
    h = db.call_out("dj_udf.filepath_put", st, s, str(big))
    assert db.tracking(st) == ((h, 10, None, rel, None),)
    assert db.one("SELECT dj_verify(%s, %s, %s, 10, NULL, %s, NULL)", (st, s, h, rel)) == b"ok (size only)"
    # fetch limit: at or above it only the size is checked
    (world.location(st) / rel).write_bytes(b"9876543210")
    big.unlink()
    q = "SELECT dj_udf.filepath_get(%s, %s, %s, 10)"
    args = (st, rel, md5(b"0123456789"))
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=10))
    assert db.one(q, args) == str(big)
    big.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=11))
    assert "did not pass checksum" in db.error(q, args)
    assert "size mismatch" in db.error("SELECT dj_udf.filepath_get(%s, %s, %s, 11)", args)


@pytest.mark.parametrize("kind", kinds_with("same"), indirect=True)
def test_filepath_stage_equal_to_location(db, world, kind):
    s, st = db.schema, kind.same
    assert world.stage(st) == world.location(st)
    f = put_file(world.stage(st) / s / "a.dat", b"in place")
    h = db.call_out("dj_udf.filepath_put", st, s, str(f))
    assert db.tracking(st) == ((h, 8, None, f"{s}/a.dat", md5(b"in place")),)
    q = "SELECT dj_udf.filepath_get(%s, %s, %s, 8)"
    assert db.one(q, (st, f"{s}/a.dat", md5(b"in place"))) == str(f)
    f.write_bytes(b"in plac3")
    assert "checksum mismatch" in db.error(q, (st, f"{s}/a.dat", md5(b"in place")))


def test_attach_export_alias_rule(db, world, kind):
    s, st = db.schema, kind.attach
    data = b"contents A"
    h = db.call_out("dj_udf.attach_put", st, s, "data.tar.gz", data)
    out = world.dirs["export"] / f"{s}-{kind.name}"
    q = "SELECT dj_udf.attach_export(%s, %s, %s, 'data.tar.gz', %s)"
    first = db.one(q, (st, s, h, str(out)))
    assert first == str(out / "data.tar.gz") and pathlib.Path(first).read_bytes() == data
    assert db.one(q, (st, s, h, str(out))) == first, "an identical file is reused"
    (out / "data.tar.gz").write_bytes(b"someone else's file")
    assert db.one(q, (st, s, h, str(out))) == str(out / "data.tar_0000.gz")
    assert (out / "data.tar.gz").read_bytes() == b"someone else's file", "never overwritten"
    assert db.one(q, (st, s, h, str(out))) == str(out / "data.tar_0000.gz")
    (out / "data.tar_0000.gz").write_bytes(b"other")
    assert db.one(q, (st, s, h, str(out))) == str(out / "data.tar_0001.gz")
    hid = db.call_out("dj_udf.attach_put", st, s, ".hidden", data)
    (out / ".hidden").write_bytes(b"x")
    assert db.one("SELECT dj_udf.attach_export(%s, %s, %s, '.hidden', %s)", (st, s, hid, str(out))) == str(out / ".hidden_0000")
    assert "not inside" in db.error(q, (st, s, h, str(world.dirs["outside"])))
    # a corrupted stored object is never exported
    attach_path(world, st, s, h, "data.tar.gz").write_bytes(b"contents B")
    assert "checksum mismatch" in db.error(q, (st, s, h, str(world.dirs["export"] / f"{s}-{kind.name}-2")))
    assert not list((world.dirs["export"] / f"{s}-{kind.name}-2").iterdir())


def test_verify_audits_a_whole_table(db, world, kind):
    s, st = db.schema, kind.attach
    names = ["ok.bin", "corrupt.bin", "short.bin", "gone.bin"]
    hashes = {n: db.call_out("dj_udf.attach_put", st, s, n, n.encode() * 100) for n in names}

    def path(n):
        return attach_path(world, st, s, hashes[n], n)

    b = bytearray(path("corrupt.bin").read_bytes())
    b[10] ^= 1
    path("corrupt.bin").write_bytes(bytes(b))
    path("short.bin").write_bytes(b"short")
    path("gone.bin").unlink()
    status = {r[2]: r[4] for r in db.sql("CALL dj_udf.verify(%s, %s)", (s, st))}
    assert status == {"ok.bin": "ok", "corrupt.bin": "checksum mismatch", "short.bin": "size mismatch", "gone.bin": "missing"}
    # reads are verified: the corrupted and missing objects raise errors, never NULL
    for n, why in [("corrupt.bin", "checksum mismatch"), ("gone.bin", "does not exist")]:
        msg = db.error("SELECT dj_udf.attach_get(%s, %s, %s, %s)", (st, s, hashes[n], n))
        assert why in msg and msg.startswith("dj_udf.attach_get: dj_attach_get:"), msg
        if kind.s3:
            assert f"bucket '{S3_BUCKET}'" in msg and f"store '{st}'" in msg, msg


def test_results_over_255_bytes_are_not_truncated(db, kind):
    s, st = db.schema, kind.attach
    data = os.urandom(100_000)
    h = db.call_out("dj_udf.attach_put", st, s, "big.bin", data)
    got = db.one("SELECT x FROM (SELECT dj_attach_get(%s, %s, %s, 'big.bin') AS x) AS sub", (st, s, h))
    assert got == data
    db.sql(f"CREATE TABLE `{s}`.copy AS SELECT dj_attach_get(%s, %s, %s, 'big.bin') AS x", (st, s, h))
    assert db.one(f"SELECT LENGTH(x) FROM `{s}`.copy") == len(data)


def test_filepath_insert_limit_skips_the_hash_only_above_it(db, world):
    """filepath_checksum_size_limit_insert = N: DataJoint stores no
    contents_hash when size > N, so a file of exactly N bytes gets one."""
    s, n = db.schema, 5000
    world.write_config(dict(world.base_config, filepath_checksum_size_limit_insert=n))
    stage = world.stage("data") / s
    stage.mkdir()
    at, above = stage / "at.dat", stage / "above.dat"
    at_data, above_data = os.urandom(n), os.urandom(n + 1)
    at.write_bytes(at_data)
    above.write_bytes(above_data)
    info = {p.name: json.loads(db.one("SELECT dj_filepath_info('data', %s)", (str(p),))) for p in (at, above)}
    assert info["at.dat"]["size"] == n and info["at.dat"]["contents_hash"] == md5(at_data).hex()
    assert info["above.dat"]["size"] == n + 1 and info["above.dat"]["contents_hash"] is None
    for p in (at, above):
        db.call_out("dj_udf.filepath_put", "data", s, str(p))
    rows = {r[3]: r for r in db.tracking("data")}
    assert rows[f"{s}/at.dat"][1:] == (n, None, f"{s}/at.dat", md5(at_data))
    assert rows[f"{s}/above.dat"][1:] == (n + 1, None, f"{s}/above.dat", None)


def test_filepath_fetch_limit_skips_the_checksum_from_it_on(db, world):
    """filepath_checksum_size_limit = L: DataJoint skips the fetch checksum
    when size >= L. A stored file corrupted in place (same size) of exactly
    L bytes is fetched; with L one above its size it is refused."""
    s, size = db.schema, 4096
    stage = world.stage("data") / s
    stage.mkdir()
    f = stage / "fetch.dat"
    data = os.urandom(size)
    f.write_bytes(data)
    db.call_out("dj_udf.filepath_put", "data", s, str(f))
    stored = world.location("data") / s / "fetch.dat"
    corrupt = bytes([data[0] ^ 0xFF]) + data[1:]
    stored.write_bytes(corrupt)
    q = f"SELECT dj_udf.filepath_get('data', x.filepath, x.contents_hash, x.size) FROM `{s}`.`~external_data` x"
    f.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=size))
    assert db.one(q) == str(f)
    assert f.read_bytes() == corrupt
    f.unlink()
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=size + 1))
    msg = db.error(q)
    assert "did not pass checksum" in msg, msg
    assert not f.exists()


def test_verify_flags_a_filepath_row_whose_hash_is_not_md5_of_filepath(db, world):
    s = db.schema
    stage = world.stage("data") / s
    stage.mkdir()
    good, other = stage / "good.dat", stage / "other.dat"
    good.write_bytes(b"good contents")
    other.write_bytes(b"other contents")
    for p in (good, other):
        db.call_out("dj_udf.filepath_put", "data", s, str(p))
    # a row for an existing, intact object, but under a hash that is not MD5(filepath)
    bad = md5(b"not the path")
    db.sql(f"INSERT INTO `{s}`.`~external_data` (hash, size, filepath, contents_hash) VALUES (%s, %s, %s, %s)",
           (bad, len(b"other contents"), f"{s}/other.dat", md5(b"other contents")))
    status = {r[0].lower(): r[4] for r in db.sql("CALL dj_udf.verify(%s, 'data')", (s,))}
    assert status == {
        md5(f"{s}/good.dat".encode()).hex(): "ok",
        md5(f"{s}/other.dat".encode()).hex(): "ok",
        bad.hex(): "bad row: hash is not the MD5 of filepath",
    }, status
