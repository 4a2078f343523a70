"""Interoperability with the real DataJoint 0.14.9 client: the same schema and
the same stores used from Python and from plain SQL, in both directions, on
file stores and on S3 stores (one bucket shared by both clients)."""

import os
import pathlib
import uuid

import numpy as np
import pytest

from conftest import (attach_hash, attach_path, import_needed, kinds_with, md5, md5_file, reset_peak, s3_metadata,
                      stored_files, vm)

os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"
dj = import_needed("datajoint")
from datajoint import settings  # noqa: E402

# The suite runs on the kinds with every store it uses (file and s3).
BOTH = pytest.mark.parametrize("kind", kinds_with("attach", "blob", "data", "flat", "deep"), indirect=True)
S3_ONLY = pytest.mark.parametrize("kind", ["s3"], indirect=True)
# The store keys DataJoint itself knows (the plugin's transfer settings are not among them).
DJ_KEYS = ["protocol", "location", "subfolding", "stage", "endpoint", "bucket", "access_key", "secret_key", "secure"]
NAMES = ["empty.bin", "with space.txt", "a.tar.gz", ".hidden", "Ströme ü.dat", "comma, (parens) & more.txt"]
# DataJoint splices attachment names and file paths into its SQL unescaped,
# so only SQL can write names with quotes; DataJoint reads them fine.
SQL_NAMES = NAMES[:-1] + ["it's \"quoted\".txt"]


@pytest.fixture
def dj_env(world, db, kind):
    """A DataJoint connection and schema, with all of dj.config set from
    DataJoint's defaults (nothing left from another test) and the server's
    own stores of the kind; dj.config is put back afterwards."""
    conf = dj.config.instance._conf
    saved = dict(conf)
    conf.clear()
    conf.update(settings.default)
    stores = world.base_config["stores"]
    conf.update({
        "database.host": "127.0.0.1", "database.port": world.port, "database.user": "dj", "database.password": "dj",
        "database.use_tls": False, "safemode": False, "display.progress": False,
        "filepath_checksum_size_limit": None, "filepath_checksum_size_limit_insert": None,
        "stores": {name: {k: v for k, v in stores[name].items() if k in DJ_KEYS}
                   for name in [kind.attach, kind.blob, kind.data, kind.flat, kind.deep]},
    })
    conn = dj.Connection(f"127.0.0.1:{world.port}", "dj", "dj", use_tls=False)
    schema = dj.Schema(db.schema, connection=conn, create_tables=True)
    yield conn, schema
    conn.close()
    conf.clear()
    conf.update(saved)


def declare(schema, name, nullable=False, **attributes):
    """A dj.Manual table `name` keyed by `<name>_id : int`, with the given
    secondary attributes (name=type), all `= null` if nullable."""
    default = " = null" if nullable else ""
    definition = "\n".join([f"{name.lower()}_id : int", "---"] + [f"{a}{default} : {t}" for a, t in attributes.items()])
    return schema(type(name, (dj.Manual,), {"definition": definition}))


def sql_attach(db, store, h):
    """SQL's view of an attachment: (name, verified contents)."""
    return db.one(
        f"SELECT x.attachment_name, dj_udf.attach_get(%s, %s, x.hash, x.attachment_name) "
        f"FROM `{db.schema}`.`~external_{store}` x WHERE x.hash = %s", (store, db.schema, h))


def all_ok(db, store, count):
    """dj_udf.verify finds `count` objects in the store's tracking table, all ok."""
    rows = db.sql("CALL dj_udf.verify(%s, %s)", (db.schema, store))
    assert [r[4] for r in rows] == ["ok"] * count, rows


def write(path: pathlib.Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@BOTH
def test_python_writes_sql_reads(dj_env, kind, db, world, tmp_path):
    conn, schema = dj_env
    Rec = declare(schema, "Rec", nullable=True, att=f"attach@{kind.attach}", val=f"blob@{kind.blob}",
                  fp=f"filepath@{kind.data}", flat_val=f"blob@{kind.flat}", deep_att=f"attach@{kind.deep}")
    values = [np.arange(10.0), {"a": 1, "b": "text"}, np.zeros((0,)), "a string", 3.0, np.random.rand(50, 40)]
    for i, (name, val) in enumerate(zip(NAMES, values)):
        data = os.urandom(i * 1000)  # the first file is empty
        local = write(tmp_path / f"in{i}" / name, data)
        staged = write(world.stage(kind.data) / db.schema / "nested" / f"d{i}" / name, data)
        Rec.insert1(dict(rec_id=i, att=local, val=val, fp=staged, flat_val=val, deep_att=local))
    Rec.insert1(dict(rec_id=99))  # all NULL
    for i, (name, val) in enumerate(zip(NAMES, values)):
        data = (tmp_path / f"in{i}" / name).read_bytes()
        att, packed, fp_hash, flat_packed, deep = db.one(
            f"SELECT att, dj_udf.blob_get(%s, %s, val), fp, dj_udf.blob_get(%s, %s, flat_val), deep_att "
            f"FROM `{db.schema}`.rec WHERE rec_id = %s", (kind.blob, db.schema, kind.flat, db.schema, i))
        assert att == attach_hash(name, data)
        assert sql_attach(db, kind.attach, att) == (name, data)
        assert sql_attach(db, kind.deep, deep) == (name, data)
        got = dj.blob.unpack(packed)
        if isinstance(val, np.ndarray):
            np.testing.assert_array_equal(got, val)
        else:
            assert got == val
        assert flat_packed == packed
        # filepath: SQL syncs the stage copy back after it is removed
        rel, ch, size = db.one(f"SELECT filepath, contents_hash, size FROM `{db.schema}`.`~external_{kind.data}` WHERE hash=%s", (fp_hash,))
        assert rel == f"{db.schema}/nested/d{i}/{name}" and ch == md5(data) and size == len(data)
        staged = world.stage(kind.data) / rel
        staged.unlink()
        assert db.one("SELECT dj_udf.filepath_get(%s, %s, %s, %s)", (kind.data, rel, ch, size)) == str(staged)
        assert staged.read_bytes() == data
    assert db.one(f"SELECT dj_udf.blob_get(%s, %s, val) FROM `{db.schema}`.rec WHERE rec_id = 99", (kind.blob, db.schema)) is None
    for store in [kind.attach, kind.blob, kind.data, kind.flat, kind.deep]:
        all_ok(db, store, len(NAMES))


@BOTH
def test_sql_writes_python_reads(dj_env, kind, db, world, tmp_path):
    conn, schema = dj_env
    Rec = declare(schema, "Rec", nullable=True, att=f"attach@{kind.attach}", val=f"blob@{kind.blob}", fp=f"filepath@{kind.data}")
    s = db.schema
    objects = [np.arange(7, dtype=np.int16), {"k": [1, 2, 3]}, np.zeros((0, 3)), "text", np.random.rand(20, 20), 2.5]
    sent = []
    for i, (name, obj) in enumerate(zip(SQL_NAMES, objects)):
        data = os.urandom(i * 777)
        sent.append(data)
        if i % 2:
            db.sql("CALL dj_udf.attach_put(%s, %s, %s, %s, @a)", (kind.attach, s, name, data))
        else:
            write(world.dirs["import"] / s / name, data)
            db.sql("CALL dj_udf.attach_put_file(%s, %s, %s, @a)", (kind.attach, s, str(world.dirs["import"] / s / name)))
        db.sql("CALL dj_udf.blob_put(%s, %s, %s, @b)", (kind.blob, s, dj.blob.pack(obj)))
        staged = write(world.stage(kind.data) / s / "deep" / "er" / name, data)
        db.sql("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, s, staged))
        db.sql(f"INSERT INTO `{s}`.rec VALUES (%s, @a, @b, @f)", (i,))
        os.remove(staged)
    out = tmp_path / "out"
    out.mkdir()
    for i, (name, obj, data) in enumerate(zip(SQL_NAMES, objects, sent)):
        att, val, fp = (Rec & {"rec_id": i}).fetch1("att", "val", "fp", download_path=str(out))
        assert pathlib.Path(att).name == name
        assert pathlib.Path(att).read_bytes() == data
        assert pathlib.Path(fp).read_bytes() == data
        assert fp == str(world.stage(kind.data) / s / "deep" / "er" / name)
        if isinstance(obj, np.ndarray):
            np.testing.assert_array_equal(val, obj)
            assert val.dtype == obj.dtype
        else:
            assert val == obj


@BOTH
def test_sql_created_tables_are_accepted_by_datajoint(dj_env, kind, db, world, tmp_path):
    conn, _ = dj_env
    s = db.schema
    db.sql(f"""CREATE TABLE `{s}`.`scan` (
        `scan_id` int NOT NULL COMMENT "",
        `image` binary(16) DEFAULT NULL COMMENT ":attach@{kind.attach}:the scan",
        `samples` binary(16) DEFAULT NULL COMMENT ":blob@{kind.blob}:samples",
        PRIMARY KEY (`scan_id`),
        FOREIGN KEY (`image`) REFERENCES `{s}`.`~external_{kind.attach}` (`hash`) ON UPDATE RESTRICT ON DELETE RESTRICT,
        FOREIGN KEY (`samples`) REFERENCES `{s}`.`~external_{kind.blob}` (`hash`) ON UPDATE RESTRICT ON DELETE RESTRICT
        ) ENGINE=InnoDB, COMMENT "scans made in SQL" """)
    db.sql("CALL dj_udf.attach_put(%s, %s, 'scan.png', 'png bytes', @a)", (kind.attach, s))
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @b)", (kind.blob, s, dj.blob.pack(np.eye(3))))
    db.sql(f"INSERT INTO `{s}`.scan VALUES (1, @a, @b)")
    module = dj.VirtualModule("vm", s, connection=conn)
    heading = module.Scan.heading
    assert heading.attributes["image"].is_attachment and heading.attributes["image"].store == kind.attach
    assert heading.attributes["samples"].is_blob and heading.attributes["samples"].store == kind.blob
    image, samples = (module.Scan & "scan_id=1").fetch1("image", "samples", download_path=str(tmp_path))
    assert pathlib.Path(image).read_bytes() == b"png bytes"
    np.testing.assert_array_equal(samples, np.eye(3))
    # DataJoint inserts into the SQL-made tables, and sees the SQL-made tracking tables
    module.Scan.insert1(dict(scan_id=2, image=write(tmp_path / "in" / "b.png", b"more"), samples=np.ones(4)))
    ext = module.schema.external[kind.attach]
    assert len(ext) == 2
    all_ok(db, kind.attach, 2)
    all_ok(db, kind.blob, 2)


@BOTH
def test_same_content_from_both_sides_is_one_object(dj_env, kind, db, world, tmp_path):
    conn, schema = dj_env
    Doc = declare(schema, "Doc", att=f"attach@{kind.attach}", val=f"blob@{kind.blob}")
    data = os.urandom(5000)
    packed = dj.blob.pack(np.arange(5))
    Doc.insert1(dict(doc_id=1, att=write(tmp_path / "same.bin", data), val=np.arange(5)))
    s = db.schema
    db.sql("CALL dj_udf.attach_put(%s, %s, 'same.bin', %s, @a)", (kind.attach, s, data))
    db.sql("CALL dj_udf.blob_put(%s, %s, %s, @b)", (kind.blob, s, packed))
    db.sql(f"INSERT INTO `{s}`.doc VALUES (2, @a, @b)")
    assert db.one(f"SELECT COUNT(DISTINCT att), COUNT(DISTINCT val) FROM `{s}`.doc") == (1, 1)
    assert len(db.tracking(kind.attach)) == 1 and len(db.tracking(kind.blob)) == 1
    assert [p.name.split(".", 1)[1] for p in stored_files(world, kind.attach, s)] == ["same.bin"]
    assert len(stored_files(world, kind.blob, s)) == 1


@BOTH
def test_cleanup_in_both_directions(dj_env, kind, db, world, tmp_path):
    conn, schema = dj_env
    Doc = declare(schema, "Doc", nullable=True, att=f"attach@{kind.attach}")
    s = db.schema
    files = {i: write(tmp_path / f"f{i}.txt", f"file {i}".encode()) for i in range(4)}
    for i in range(3):
        Doc.insert1(dict(doc_id=i, att=files[i]))
    Doc.insert1(dict(doc_id=10))  # a NULL in the nullable external column

    def objects():
        return sorted(p.name.split(".", 1)[1] for p in stored_files(world, kind.attach, s))

    # rows deleted in Python, cleaned from SQL; the NULL does not block it
    (Doc & "doc_id in (0, 1)").delete()
    db.sql("CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (s, kind.attach))
    assert db.one("SELECT CONCAT_WS(',', @r, @o, @f)") == "2,2,0"
    assert objects() == ["f2.txt"]
    assert pathlib.Path((Doc & "doc_id=2").fetch1("att", download_path=str(tmp_path / "dl"))).read_bytes() == b"file 2"
    # rows inserted and deleted in SQL, cleaned by DataJoint
    db.sql("CALL dj_udf.attach_put(%s, %s, 'f3.txt', 'file 3', @a)", (kind.attach, s))
    db.sql(f"INSERT INTO `{s}`.doc VALUES (3, @a)")
    db.sql("CALL dj_udf.attach_put(%s, %s, 'f4.txt', 'file 4', @a)", (kind.attach, s))
    db.sql(f"INSERT INTO `{s}`.doc VALUES (4, @a)")
    db.sql(f"DELETE FROM `{s}`.doc WHERE doc_id = 4")
    # DataJoint's unused() misses everything while a NULL is present (its issue #1000)
    db.sql(f"DELETE FROM `{s}`.doc WHERE doc_id = 10")
    schema.external[kind.attach].delete(delete_external_files=True)
    assert objects() == ["f2.txt", "f3.txt"]
    assert sql_attach(db, kind.attach, db.one(f"SELECT att FROM `{s}`.doc WHERE doc_id=3")) == ("f3.txt", b"file 3")
    all_ok(db, kind.attach, 2)


@BOTH
def test_filepath_versions_and_limits_seen_from_both_sides(dj_env, kind, db, world, tmp_path):
    conn, schema = dj_env
    Img = declare(schema, "Img", fp=f"filepath@{kind.data}")
    s = db.schema
    a = write(world.stage(kind.data) / s / "a.dat", b"version 1")
    Img.insert1(dict(img_id=1, fp=a))
    write(world.stage(kind.data) / s / "a.dat", b"version 2")
    assert db.error("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, s, a)) == \
        f"A different version of '{s}/a.dat' has already been placed."
    b = write(world.stage(kind.data) / s / "b.dat", b"version 1")
    db.sql("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, s, b))
    db.sql(f"INSERT INTO `{s}`.img VALUES (2, @f)")
    write(world.stage(kind.data) / s / "b.dat", b"version 2")
    with pytest.raises(dj.DataJointError, match="A different version of .* has already been placed"):
        Img.insert1(dict(img_id=3, fp=b))
    # the insert limit: both sides store NULL contents_hash for a file above it
    world.write_config(dict(world.base_config, filepath_checksum_size_limit_insert=4))
    dj.config["filepath_checksum_size_limit_insert"] = 4
    c = write(world.stage(kind.data) / s / "c.dat", b"big file from python")
    Img.insert1(dict(img_id=4, fp=c))
    d = write(world.stage(kind.data) / s / "d.dat", b"big file from sql")
    db.sql("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, s, d))
    db.sql(f"INSERT INTO `{s}`.img VALUES (5, @f)")
    rows = {r[3]: r[4] for r in db.tracking(kind.data)}
    assert rows[f"{s}/c.dat"] is None and rows[f"{s}/d.dat"] is None
    # the fetch limit: both sides accept a same-size file without a checksum above it
    world.write_config(dict(world.base_config, filepath_checksum_size_limit=5))
    dj.config["filepath_checksum_size_limit"] = 5
    os.remove(c)
    os.remove(d)
    assert pathlib.Path((Img & "img_id=5").fetch1("fp")).read_bytes() == b"big file from sql"
    assert db.one("SELECT dj_udf.filepath_get(%s, %s, NULL, %s)", (kind.data, f"{s}/c.dat", 20)) == c
    assert pathlib.Path(c).read_bytes() == b"big file from python"


@BOTH
def test_large_file_streams_both_ways(dj_env, kind, db, world, tmp_path):
    """A few hundred MiB through both sides; the server's peak memory barely moves."""
    conn, schema = dj_env
    Big = declare(schema, "Big", att=f"attach@{kind.attach}")
    s = db.schema
    size = int(os.environ.get("DJ_BIG_MIB", "100" if kind.s3 else "300")) << 20
    src = world.dirs["import"] / s / "big.raw"
    src.parent.mkdir(parents=True)
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            f.write(block[:-8] + i.to_bytes(8, "little"))
    pid = world.server_pid()
    before = reset_peak(pid)
    # SQL -> Python
    db.sql("CALL dj_udf.attach_put_file(%s, %s, %s, @a)", (kind.attach, s, str(src)))
    db.sql(f"INSERT INTO `{s}`.big VALUES (1, @a)")
    got = (Big & "big_id=1").fetch1("att", download_path=str(tmp_path))
    assert md5_file(got) == md5_file(src)
    # Python -> SQL
    os.rename(got, tmp_path / "big2.raw")
    with open(tmp_path / "big2.raw", "r+b") as f:
        f.write(b"changed!")
    Big.insert1(dict(big_id=2, att=str(tmp_path / "big2.raw")))
    h = db.one(f"SELECT att FROM `{s}`.big WHERE big_id=2")
    assert db.one(f"SELECT dj_verify(%s, %s, hash, size, attachment_name, filepath, contents_hash) "
                  f"FROM `{s}`.`~external_{kind.attach}` WHERE hash=%s", (kind.attach, s, h)) == b"ok"
    out = db.one("SELECT dj_udf.attach_export(%s, %s, %s, 'big2.raw', %s)", (kind.attach, s, h, str(world.dirs["export"] / s)))
    assert md5_file(out) == md5_file(tmp_path / "big2.raw")
    growth_mib = (vm(pid)["VmHWM"] - before["VmHWM"]) / (1 << 20)
    print(f"server peak RSS growth over {size >> 20} MiB transfers: {growth_mib:.1f} MiB")
    assert growth_mib < 64, growth_mib


@BOTH
def test_filepath_outside_stage_refused_in_datajoints_words(dj_env, kind, db, world):
    """SQL refuses a file outside the stage with DataJoint's own message for the same file."""
    conn, schema = dj_env
    Img = declare(schema, "Img", fp=f"filepath@{kind.data}")
    outside = write(world.dirs["import"] / db.schema / "x.dat", b"x")
    with pytest.raises(dj.DataJointError) as e:
        Img.insert1(dict(img_id=1, fp=outside))
    assert str(e.value).startswith("The path ")
    assert db.error("CALL dj_udf.filepath_put(%s, %s, %s, @f)", (kind.data, db.schema, outside)).endswith(": " + str(e.value))
    assert db.tracking(kind.data) == ()


@S3_ONLY
def test_attachments_cross_between_datajoint_and_sql(dj_env, kind, db, world, tmp_path):
    """A multipart upload from SQL read by DataJoint, DataJoint's object read by SQL, one bucket."""
    conn, schema = dj_env
    Scan = declare(schema, "Scan", img=f"attach@{kind.attach}")
    s = db.schema
    # Python writes, SQL reads and audits
    a = os.urandom(50_000)
    Scan.insert1((1, write(tmp_path / "py scan.png", a)))
    h = db.one(f"SELECT img FROM `{s}`.scan WHERE scan_id = 1")
    assert h == attach_hash("py scan.png", a)
    assert attach_path(world, kind.attach, s, h, "py scan.png").read_bytes() == a
    assert sql_attach(db, kind.attach, h) == ("py scan.png", a)
    # SQL writes, Python reads
    b = os.urandom(9 << 20)  # a multipart upload
    hb = db.call_out("dj_udf.attach_put", kind.attach, s, "sql scan.bin", b)
    db.sql(f"INSERT INTO `{s}`.scan VALUES (2, %s)", (hb,))
    path = (Scan & "scan_id = 2").fetch1("img", download_path=str(tmp_path / "out"))
    assert pathlib.Path(path).read_bytes() == b
    all_ok(db, kind.attach, 2)


@S3_ONLY
def test_filepaths_cross_between_datajoint_and_sql(dj_env, kind, db, world):
    """Filepath objects carry the same metadata whoever wrote them, and each side fetches the other's."""
    conn, schema = dj_env
    Raw = declare(schema, "Raw", raw=f"filepath@{kind.data}")
    s, stage = db.schema, world.stage(kind.data)
    a, b = os.urandom(1000), os.urandom(1200)
    pa, pb = write(stage / s / "py" / "a.dat", a), write(stage / s / "sql" / "b.dat", b)
    Raw.insert1((1, pa))  # Python writes
    db.sql(f"INSERT INTO `{s}`.raw VALUES (2, %s)", (db.call_out("dj_udf.filepath_put", kind.data, s, pb),))  # SQL writes
    assert s3_metadata(world, kind.data, f"{s}/py/a.dat") == {"contents_hash": str(uuid.UUID(bytes=md5(a)))}
    assert s3_metadata(world, kind.data, f"{s}/sql/b.dat") == {"contents_hash": str(uuid.UUID(bytes=md5(b)))}
    all_ok(db, kind.data, 2)
    # each side fetches what the other wrote, from the bucket
    os.remove(pa)
    os.remove(pb)
    got = db.one("SELECT dj_udf.filepath_get(%s, filepath, contents_hash, size) FROM "
                 f"`{s}`.`~external_{kind.data}` WHERE filepath = %s", (kind.data, f"{s}/py/a.dat"))
    assert got == pa and pathlib.Path(pa).read_bytes() == a
    path = (Raw & "raw_id = 2").fetch1("raw")
    assert str(path) == pb and pathlib.Path(path).read_bytes() == b
