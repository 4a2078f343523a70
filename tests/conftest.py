"""Test harness: a real MariaDB started for the session, with its own datadir,
socket and port, the freshly built library in its plugin_dir, and file stores
in a scratch folder described by the config file the server reads. An
S3-compatible server (s3s-fs, which checks request signatures) runs on
127.0.0.1 for the s3 stores; its bucket is a folder, so tests inspect and
corrupt S3 objects as plain files.

Shared here, once: the store kinds every store test runs on (the `kind`
fixture), the sample blob, where objects live, hashes and the server's
memory. With DJ_UDF_REQUIRE_ALL=1 or CI set, a missing test component
(s3s-fs, openssl, strace, DataJoint) fails the run instead of skipping."""

import base64
import hashlib
import importlib
import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import uuid

import pymysql
import pytest

from s3_gate import S3Gate

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = pathlib.Path(os.environ.get("DJ_UDF_LIBRARY", ROOT / "target" / "release" / "libdj_udf.so"))
PURGE_KEY = "test-purge-key-0123456789"
S3S_FS = os.environ.get("DJ_S3S_FS") or shutil.which("s3s-fs") or str(pathlib.Path.home() / ".cargo" / "bin" / "s3s-fs")
S3_BUCKET = "djtest"
S3_ACCESS_KEY = "djtestaccesskey"
S3_SECRET_KEY = "djtest-secret-9f8e7d6c5b4a"
# The stores backed by the S3 server, with tracking tables in every test schema.
S3_STORES = ["s3attach", "s3blobs", "s3data", "s3slash", "s3flat", "s3deep"]
MiB = 1 << 20
BLOB_3 = bytes.fromhex("646a30000d0000000000000840")  # dj.blob.pack(3.0)

# ---------------------------------------------------------------------------
# Test components: skipped where missing, unless the run must have them all
# ---------------------------------------------------------------------------

REQUIRE_ALL = os.environ.get("DJ_UDF_REQUIRE_ALL", "") not in ("", "0") or bool(os.environ.get("CI"))
# component -> (is it there?, how to get it)
COMPONENTS = {
    "s3s-fs": (lambda: os.access(S3S_FS, os.X_OK), f"not found at {S3S_FS}: run scripts/setup.sh --python"),
    "openssl": (lambda: shutil.which("openssl") is not None, "not on PATH: apt-get install openssl"),
    "strace": (lambda: shutil.which("strace") is not None, "not on PATH: apt-get install strace"),
    "datajoint": (lambda: importlib.util.find_spec("datajoint") is not None,
                  "the Python package is not installed: run scripts/setup.sh --python"),
    "pytest-randomly": (lambda: importlib.util.find_spec("pytest_randomly") is not None,
                        "the Python package is not installed: run scripts/setup.sh --python"),
}


def missing_components():
    return [f"{name} ({how})" for name, (present, how) in COMPONENTS.items() if not present()]


def need(component, strict=False):
    """Skips the test when `component` is missing, or fails it when the run
    must have every component (DJ_UDF_REQUIRE_ALL=1, CI) or `strict`."""
    present, how = COMPONENTS[component]
    if present():
        return
    msg = f"{component} is missing: {how}"
    if REQUIRE_ALL or strict:
        pytest.fail(msg + (" (DJ_UDF_REQUIRE_ALL or CI is set)" if REQUIRE_ALL else ""), pytrace=False)
    pytest.skip(msg)


def import_needed(module):
    """The module, or a skip of the importing test file where it is missing
    (an import error, failing the run, when every component is required)."""
    if REQUIRE_ALL:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is missing: {COMPONENTS[module][1]}")


def pytest_sessionstart(session):
    seed = getattr(session.config.option, "randomly_seed", None)
    if session.config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        tw = session.config.get_terminal_writer()
        tw.line(f"random test order, seed {seed}: --randomly-seed={seed} repeats it, -p no:randomly turns it off")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """The scratch folders, the config file and the running server."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.dirs = {}
        for name in ["attach", "blobs", "data", "stage", "flat", "deep", "same", "import", "export", "outside",
                     "s3root", "s3stage"]:
            d = base / name
            d.mkdir(parents=True, exist_ok=True)
            self.dirs[name] = d.resolve()
        (self.dirs["s3root"] / S3_BUCKET).mkdir()
        # --- S3 gate (tests/s3_gate.py) --------------------------------------
        # The S3 stores talk to s3s-fs through a checking proxy that refuses
        # request bodies without a matching Content-MD5. s3_port is the port
        # the stores' endpoint names (the gate's: it is in messages and
        # dj_stores()); s3_backend_port is where s3s-fs itself listens.
        self.s3_backend_port = free_port()
        self.gate = S3Gate(self.s3_backend_port)
        self.s3_port = self.gate.port
        # ----------------------------------------------------------------------
        self.s3_proc = None
        # Nothing listens on down_port; silent accepts connections (the
        # kernel does, from the backlog) and never answers.
        self.down_port = free_port()
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(64)
        s3 = {"protocol": "s3", "endpoint": f"127.0.0.1:{self.s3_port}", "bucket": S3_BUCKET,
              "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY}
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
                    "access_key": "AKIDSECRETACCESS", "secret_key": "SECRETKEYVALUE123", "retries": 0,
                },
                "s3attach": dict(s3, location="dj/attach"),
                "s3blobs": dict(s3, location="dj/blobs"),
                "s3data": dict(s3, location="dj/data", stage=str(self.dirs["s3stage"])),
                # DataJoint on Python >= 3.12 keeps this leading '/' in keys.
                "s3slash": dict(s3, location="/dj/slash", stage=str(self.dirs["s3stage"])),
                "s3flat": dict(s3, location="dj/flat", subfolding=None),
                "s3deep": dict(s3, location="dj/deep", subfolding=[1, 2, 3]),
                # Fault cases.
                "s3badkey": dict(s3, location="dj/badkey", secret_key="not-the-secret", retries=0),
                "s3nobucket": dict(s3, location="dj", bucket="no-such-bucket"),
                "s3down": dict(s3, location="dj", endpoint=f"127.0.0.1:{self.down_port}", connect_timeout=2, retries=1),
                "s3silent": dict(s3, location="dj", endpoint=f"127.0.0.1:{self.silent.getsockname()[1]}", timeout=2),
            },
            "import_dirs": [str(self.dirs["import"])],
            "export_dirs": [str(self.dirs["export"])],
            "purge_key": PURGE_KEY,
        }
        # --- chunked uploads (tests/test_chunked.py) -------------------------
        self.dirs["uploads"] = base / "uploads"
        self.dirs["uploads"].mkdir()
        self.base_config["upload_dir"] = str(self.dirs["uploads"])
        # ----------------------------------------------------------------------
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
            # --- cleanup grace period ----------------------------------------
            # Tests clean up objects they have just put: no grace period here
            # (tests/test_isolation.py checks the default and sets its own).
            cur.execute("UPDATE dj_udf.settings SET value = '0' WHERE name = 'cleanup_grace_seconds'")
            # ------------------------------------------------------------------
            # DataJoint connects over TCP with a password.
            cur.execute("CREATE USER IF NOT EXISTS 'dj'@'%' IDENTIFIED BY 'dj'")
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'dj'@'%'")

    def stop(self):
        subprocess.run([str(ROOT / "scripts" / "server.sh"), "stop", str(self.srv)], check=False)
        self.s3_stop()
        self.gate.close()  # S3 gate
        self.silent.close()

    def s3_available(self):
        return os.access(S3S_FS, os.X_OK)

    def s3_start(self):
        """Starts s3s-fs on the session's port and waits until it accepts connections."""
        log = open(self.base / "s3s-fs.log", "ab")
        self.s3_proc = subprocess.Popen(
            [S3S_FS, "--host", "127.0.0.1", "--port", str(self.s3_backend_port), "--access-key", S3_ACCESS_KEY,
             "--secret-key", S3_SECRET_KEY, str(self.dirs["s3root"])],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.s3_proc.poll() is not None:
                raise RuntimeError(f"s3s-fs exited with {self.s3_proc.returncode}; see {self.base / 's3s-fs.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.s3_backend_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("s3s-fs did not start listening")

    def s3_stop(self, kill=False):
        if self.s3_proc is None:
            return
        if kill:
            self.s3_proc.kill()
        else:
            self.s3_proc.terminate()
        try:
            self.s3_proc.wait(10)
        except subprocess.TimeoutExpired:
            self.s3_proc.kill()
            self.s3_proc.wait()
        self.s3_proc = None

    def s3_running(self):
        return self.s3_proc is not None and self.s3_proc.poll() is None

    def location(self, store):
        """The local folder holding a store's objects: its location for a
        file store, the bucket folder plus the key prefix for an s3 store."""
        spec = self.base_config["stores"][store]
        if spec["protocol"] == "file":
            return pathlib.Path(spec["location"])
        prefix = [p for p in spec["location"].replace("\\", "/").split("/") if p not in ("", ".")]
        return self.dirs["s3root"].joinpath(spec["bucket"], *prefix)

    def stage(self, store):
        return pathlib.Path(self.base_config["stores"][store]["stage"])

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
    if REQUIRE_ALL and missing_components():
        pytest.exit("DJ_UDF_REQUIRE_ALL or CI is set and test components are missing: " + "; ".join(missing_components()),
                    returncode=3)
    w = World(tmp_path_factory.mktemp("dj"))
    if w.s3_available():
        w.s3_start()
    w.start()
    yield w
    w.stop()


@pytest.fixture
def s3(world):
    """The S3 server, running (tests may stop it; it is started again)."""
    need("s3s-fs")
    if not world.s3_running():
        world.s3_start()
    yield world
    if not world.s3_running():
        world.s3_start()


@pytest.fixture
def gate(s3):
    """The S3 gate in front of s3s-fs, its request log emptied before and
    its unfired hooks dropped after the test."""
    s3.gate.reset()
    yield s3.gate
    s3.gate.reset()
    assert not s3.gate.errors, s3.gate.errors


class Session:
    """One connection, with the helpers the tests run SQL through."""

    def __init__(self, conn):
        self.conn = conn

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


class Db(Session):
    """A connection and a fresh schema with tracking tables for every file store."""

    def __init__(self, world: World):
        super().__init__(world.connect())
        self.world = world
        self.schema = "t_" + uuid.uuid4().hex[:10]
        self.sql(f"CREATE DATABASE `{self.schema}`")
        for store in ["localattach", "main", "data", "flat", "deep", "same"] + S3_STORES:
            self.sql("CALL dj_udf.create_tracking_table(%s, %s)", (self.schema, store))

    def tracking(self, store):
        return self.sql(
            f"SELECT hash, size, attachment_name, filepath, contents_hash FROM `{self.schema}`.`~external_{store}` ORDER BY hash"
        )


@pytest.fixture
def db(world):
    world.write_config(world.base_config)
    d = Db(world)
    yield d
    d.conn.close()
    world.write_config(world.base_config)
    assert world.alive(), "the server must survive every test"


# ---------------------------------------------------------------------------
# Store kinds: the same tests on a file store, an S3 store, and an S3 store
# whose location starts with '/'
# ---------------------------------------------------------------------------

# kind -> role -> store (None where the kind has no such store). Roles:
# attach, blob and data (filepath, with a stage) stores; blob stores with
# subfolding none (flat) and [1, 2, 3] (deep); a filepath store whose stage is
# its location (same; S3 cannot have that).
KINDS = {
    "file": dict(attach="localattach", blob="main", data="data", flat="flat", deep="deep", same="same"),
    "s3": dict(attach="s3attach", blob="s3blobs", data="s3data", flat="s3flat", deep="s3deep", same=None),
    # location '/dj/slash': DataJoint on Python >= 3.12 keeps the '/' in keys;
    # the objects are under 'dj/slash/...'. One store for every role.
    "s3slash": dict(attach="s3slash", blob="s3slash", data="s3slash", flat=None, deep=None, same=None),
}


class Kind:
    """The stores of one kind by role (kind.attach, kind.blob, ...)."""

    def __init__(self, name):
        self.name = name
        self.s3 = name != "file"
        for role, store in KINDS[name].items():
            setattr(self, role, store)

    def __repr__(self):
        return f"Kind({self.name})"


def kinds_with(*roles):
    """The kinds that have a store for each role."""
    return [k for k, stores in KINDS.items() if all(stores[r] for r in roles)]


@pytest.fixture(params=list(KINDS))
def kind(request, world):
    """A store kind; S3 kinds start the S3 server. Narrow it with
    @pytest.mark.parametrize("kind", kinds_with(...), indirect=True)."""
    if request.param != "file":
        request.getfixturevalue("s3")
    return Kind(request.param)


# ---------------------------------------------------------------------------
# Hashes and where objects live
# ---------------------------------------------------------------------------

def batch(objects):
    """The `items` and `data` arguments of dj_udf.attach_put_many for
    [(attachment name, bytes)], or of dj_udf.blob_put_many for [bytes]:
    each object's size (and name) as JSON, and their bytes one after the other."""
    named = [o if isinstance(o, tuple) else (None, o) for o in objects]
    items = [{"size": len(d)} if n is None else {"attachment_name": n, "size": len(d)} for n, d in named]
    return json.dumps(items), b"".join(d for _, d in named)


def md5(data: bytes, init: bytes = b"") -> bytes:
    return hashlib.md5(init + data).digest()


def attach_hash(name: str, data: bytes) -> bytes:
    return md5(data, name.encode() + b"\0")


def md5_file(path, init: bytes = b"") -> bytes:
    h = hashlib.md5(init)
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.digest()


def subfold(hexname: str, folds):
    out, at = [], 0
    for n in folds:
        out.append(hexname[at:at + n])
        at += n
    return out


def folds(world, store):
    """A store's subfolding as configured ([2, 2] unless it says otherwise)."""
    return world.base_config["stores"][store].get("subfolding", [2, 2]) or []


def blob_path(world, store, schema, h):
    return world.location(store).joinpath(schema, *subfold(h.hex(), folds(world, store)), h.hex())


def attach_path(world, store, schema, h, name):
    return world.location(store).joinpath(schema, *subfold(h.hex(), folds(world, store)), f"{h.hex()}.{name}")


def stored_files(world, store, schema):
    """The files below a schema's folder in a store (an S3 store's: in the bucket's folder)."""
    return sorted(p for p in (world.location(store) / schema).rglob("*") if p.is_file())


def s3_key(world, store, relative):
    return str(world.location(store).relative_to(world.dirs["s3root"] / S3_BUCKET) / relative)


def s3_metadata(world, store, relative):
    """The user metadata s3s-fs keeps for an object, in its own file."""
    enc = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")  # noqa: E731
    name = f".bucket-{enc(S3_BUCKET)}.object-{enc(s3_key(world, store, relative))}.metadata.json"
    return json.loads((world.dirs["s3root"] / name).read_text()).get("user_metadata", {})


def unfinished_uploads(world):
    return sorted(p.name for p in world.dirs["s3root"].glob(".upload_id-*"))


def leftovers(world, store, schema):
    """Temporary files a put may have left: .saving files, or S3 upload parts."""
    if world.base_config["stores"][store]["protocol"] == "s3":
        return unfinished_uploads(world)
    return [p for p in (world.location(store) / schema).rglob("*.saving")]


# ---------------------------------------------------------------------------
# The server's memory
# ---------------------------------------------------------------------------

def vm(pid):
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out


def rss(pid):
    """The resident memory of a process now, in bytes."""
    return vm(pid)["VmRSS"]


def settled(pid, timeout=10.0):
    """Waits until a process's RSS has stopped falling (two reads 0.1 s
    apart within 1 MiB): a closed connection's thread frees its buffers
    after the client has gone, and a peak reset meanwhile would take a base
    that is about to drop."""
    deadline = time.monotonic() + timeout
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss(pid)
        if abs(now - last) < MiB:
            return
        last = now


def reset_peak(pid):
    """Resets a process's VmHWM to its current RSS (Linux >= 4.0), so that a
    later VmHWM is the peak of what ran in between; fails the test if that
    cannot be done (an earlier peak would hide growth)."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as e:
        pytest.fail(f"cannot reset the peak memory of process {pid} (/proc/{pid}/clear_refs): {e}")
    got = vm(pid)
    # the peak is now the current RSS, give or take what moved meanwhile
    assert got["VmHWM"] - got["VmRSS"] < 16 * MiB, got
    return got
