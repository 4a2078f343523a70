"""DataJoint 0.14.9 and the plugin share one schema and one S3 bucket in both
directions: what Python inserts, SQL reads and verifies, and the reverse;
filepath objects carry the same metadata whoever wrote them."""

import base64
import json
import os
import uuid

import pytest

from conftest import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, attach_hash, md5

dj = pytest.importorskip("datajoint")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def s3_metadata(world, key):
    enc = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")  # noqa: E731
    path = world.dirs["s3root"] / f".bucket-{enc(S3_BUCKET)}.object-{enc(key)}.metadata.json"
    return json.loads(path.read_text()).get("user_metadata", {})


@pytest.fixture
def dj_schema(db, s3, monkeypatch):
    world = s3
    monkeypatch.setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
    db.sql("CREATE USER IF NOT EXISTS 'djpy'@'127.0.0.1' IDENTIFIED BY 'djpy-password'")
    db.sql("GRANT ALL ON *.* TO 'djpy'@'127.0.0.1'")
    spec = world.base_config["stores"]
    dj.config["database.host"] = "127.0.0.1"
    dj.config["database.port"] = world.port
    dj.config["database.user"] = "djpy"
    dj.config["database.password"] = "djpy-password"
    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False
    # DataJoint's own store settings: only its keys, none of the plugin's.
    keys = ["protocol", "endpoint", "bucket", "access_key", "secret_key", "location", "stage"]
    dj.config["stores"] = {name: {k: spec[name][k] for k in keys if k in spec[name]} for name in ["s3attach", "s3data"]}
    conn = dj.conn(reset=True)
    yield dj.Schema(db.schema, connection=conn)
    conn.close()


def test_attachments_cross_between_datajoint_and_sql(db, world, dj_schema, tmp_path):
    s = db.schema

    @dj_schema
    class Scan(dj.Manual):
        definition = """
        scan_id: int
        ---
        img: attach@s3attach
        """

    # Python writes, SQL reads and audits
    a = os.urandom(50_000)
    (tmp_path / "py scan.png").write_bytes(a)
    Scan.insert1((1, str(tmp_path / "py scan.png")))
    h = db.one(f"SELECT img FROM `{s}`.scan WHERE scan_id = 1")
    assert h == attach_hash("py scan.png", a)
    assert (world.location("s3attach") / s / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.py scan.png").read_bytes() == a
    got = db.one(f"""SELECT dj_udf.attach_get('s3attach', %s, i.img, x.attachment_name) FROM `{s}`.scan i
                     JOIN `{s}`.`~external_s3attach` x ON x.hash = i.img WHERE i.scan_id = 1""", (s,))
    assert got == a
    # SQL writes, Python reads
    b = os.urandom(9 << 20)  # a multipart upload
    hb = db.call_out("dj_udf.attach_put", "s3attach", s, "sql scan.bin", b)
    db.sql(f"INSERT INTO `{s}`.scan VALUES (2, %s)", (hb,))
    out = tmp_path / "out"
    out.mkdir()
    path = (Scan & "scan_id = 2").fetch1("img", download_path=str(out))
    assert open(path, "rb").read() == b
    assert {r[4] for r in db.sql("CALL dj_udf.verify(%s, 's3attach')", (s,))} == {"ok"}


def test_filepaths_cross_between_datajoint_and_sql(db, world, dj_schema):
    s = db.schema
    stage = world.stage("s3data")

    @dj_schema
    class Raw(dj.Manual):
        definition = """
        raw_id: int
        ---
        raw: filepath@s3data
        """

    (stage / s / "py").mkdir(parents=True)
    (stage / s / "sql").mkdir()
    a, b = os.urandom(1000), os.urandom(1200)
    (stage / s / "py" / "a.dat").write_bytes(a)
    (stage / s / "sql" / "b.dat").write_bytes(b)
    # Python writes
    Raw.insert1((1, str(stage / s / "py" / "a.dat")))
    # SQL writes
    hb = db.call_out("dj_udf.filepath_put", "s3data", s, str(stage / s / "sql" / "b.dat"))
    db.sql(f"INSERT INTO `{s}`.raw VALUES (2, %s)", (hb,))
    # the same metadata whoever wrote the object
    assert s3_metadata(world, f"dj/data/{s}/py/a.dat") == {"contents_hash": str(uuid.UUID(bytes=md5(a)))}
    assert s3_metadata(world, f"dj/data/{s}/sql/b.dat") == {"contents_hash": str(uuid.UUID(bytes=md5(b)))}
    assert sorted(r[4] for r in db.sql("CALL dj_udf.verify(%s, 's3data')", (s,))) == ["ok", "ok"]
    # each side fetches what the other wrote, from the bucket
    (stage / s / "py" / "a.dat").unlink()
    (stage / s / "sql" / "b.dat").unlink()
    got = db.one("SELECT dj_udf.filepath_get('s3data', filepath, contents_hash, size) FROM "
                 f"`{s}`.`~external_s3data` WHERE filepath = %s", (f"{s}/py/a.dat",))
    assert got == str(stage / s / "py" / "a.dat") and (stage / s / "py" / "a.dat").read_bytes() == a
    path = (Raw & "raw_id = 2").fetch1("raw")
    assert str(path) == str(stage / s / "sql" / "b.dat") and open(path, "rb").read() == b
