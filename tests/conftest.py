"""Test harness: a real MariaDB started for the session, with its own datadir,
socket and port, the freshly built library in its plugin_dir, and file stores
in a scratch folder described by the config file the server reads."""

import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import uuid

import pymysql
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = pathlib.Path(os.environ.get("DJ_UDF_LIBRARY", ROOT / "target" / "release" / "libdj_udf.so"))
PURGE_KEY = "test-purge-key-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """The scratch folders, the config file and the running server."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.dirs = {}
        for name in ["attach", "blobs", "data", "stage", "flat", "deep", "same", "import", "export", "outside"]:
            d = base / name
            d.mkdir(parents=True, exist_ok=True)
            self.dirs[name] = d.resolve()
        self.config_path = base / "dj_udf.json"
        self.base_config = {
            "stores": {
                "localattach": {"protocol": "file", "location": str(self.dirs["attach"])},
                "main": {"protocol": "file", "location": str(self.dirs["blobs"])},
                "data": {"protocol": "file", "location": str(self.dirs["data"]), "stage": str(self.dirs["stage"])},
                "flat": {"protocol": "file", "location": str(self.dirs["flat"]), "subfolding": None},
                "deep": {"protocol": "file", "location": str(self.dirs["deep"]), "subfolding": [1, 2, 3]},
                "same": {"protocol": "file", "location": str(self.dirs["same"]), "stage": str(self.dirs["same"])},
                "remote": {
                    "protocol": "s3", "endpoint": "127.0.0.1:1", "bucket": "b", "location": "x",
                    "access_key": "AKIDSECRETACCESS", "secret_key": "SECRETKEYVALUE123",
                },
            },
            "import_dirs": [str(self.dirs["import"])],
            "export_dirs": [str(self.dirs["export"])],
            "purge_key": PURGE_KEY,
        }
        self.write_config(self.base_config)
        self.srv = base / "server"
        self.port = free_port()

    def write_config(self, cfg):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1))
        os.replace(tmp, self.config_path)

    def start(self):
        out = subprocess.run(
            [str(ROOT / "scripts" / "server.sh"), "start", str(self.srv), str(self.port), str(LIBRARY), str(self.config_path)],
            check=True, capture_output=True, text=True,
        )
        self.socket = out.stdout.strip().splitlines()[-1]
        with self.connect() as c, c.cursor() as cur:
            cur.execute("INSERT IGNORE INTO dj_udf.purge_key VALUES (%s)", (PURGE_KEY,))
            # DataJoint connects over TCP with a password.
            cur.execute("CREATE USER IF NOT EXISTS 'dj'@'%' IDENTIFIED BY 'dj'")
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'dj'@'%'")

    def stop(self):
        subprocess.run([str(ROOT / "scripts" / "server.sh"), "stop", str(self.srv)], check=False)

    def connect(self, **kw):
        args = dict(unix_socket=self.socket, user="root", autocommit=True, charset="utf8mb4")
        args.update(kw)
        return pymysql.connect(**args)

    def server_pid(self):
        return int((self.srv / "mariadbd.pid").read_text())

    def alive(self):
        os.kill(self.server_pid(), 0)
        with self.connect() as c, c.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)

    def error_log(self):
        return (self.srv / "error.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    if not LIBRARY.exists():
        pytest.exit(f"{LIBRARY} is missing: run cargo build --release first", returncode=2)
    w = World(tmp_path_factory.mktemp("dj"))
    w.start()
    yield w
    w.stop()


class Db:
    """A connection and a fresh schema with tracking tables for every file store."""

    def __init__(self, world: World):
        self.world = world
        self.schema = "t_" + uuid.uuid4().hex[:10]
        self.conn = world.connect()
        self.sql(f"CREATE DATABASE `{self.schema}`")
        for store in ["localattach", "main", "data", "flat", "deep", "same"]:
            self.sql("CALL dj_udf.create_tracking_table(%s, %s)", (self.schema, store))

    def sql(self, q, args=None):
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall()

    def one(self, q, args=None):
        rows = self.sql(q, args)
        assert len(rows) == 1, rows
        return rows[0][0] if len(rows[0]) == 1 else rows[0]

    def error(self, q, args=None):
        """Runs q and returns the SQL error message it must raise."""
        with pytest.raises(pymysql.err.MySQLError) as e:
            self.sql(q, args)
        return e.value.args[1]

    def last_error(self):
        """dj_last_error() decoded (UDF strings reach clients as binary)."""
        e = self.one("SELECT dj_last_error()")
        return e.decode() if e is not None else None

    def call_out(self, proc, *args):
        """CALLs a procedure whose last parameter is OUT and returns it."""
        marks = ", ".join(["%s"] * len(args))
        self.sql(f"CALL {proc}({marks}, @dj_out)", args)
        return self.one("SELECT @dj_out")

    def tracking(self, store):
        return self.sql(
            f"SELECT hash, size, attachment_name, filepath, contents_hash FROM `{self.schema}`.`~external_{store}` ORDER BY hash"
        )


@pytest.fixture
def db(world):
    d = Db(world)
    yield d
    d.conn.close()
    world.write_config(world.base_config)
    assert world.alive(), "the server must survive every test"


def md5(data: bytes, init: bytes = b"") -> bytes:
    return hashlib.md5(init + data).digest()


def attach_hash(name: str, data: bytes) -> bytes:
    return md5(data, name.encode() + b"\0")


def subfold(hexname: str, folds):
    out, at = [], 0
    for n in folds:
        out.append(hexname[at:at + n])
        at += n
    return out
