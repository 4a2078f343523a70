"""The container image of docker/ built and run with podman: the freshly
built library installed in the image's MariaDB, sql/install.sql applied at
the first start, the config file and the store folder mounted from the host,
examples/seed.sql run through the container, and DataJoint 0.14.9 on the
host reading (and writing) the same schema and store over a port published
on 127.0.0.1; and docker/compose.yaml run by podman-compose, with its S3
server, DataJoint on the host reading a file store and the S3 store.

No registry is needed: the base image is Debian bookworm made here with
`debootstrap --variant=minbase` and `podman import` (cached as a tarball
under .tmp/container/ and as the podman image below), and the Dockerfile
takes it as its BASE build argument. Podman runs with runc and a
containers.conf without default rlimits and with runc as the runtime
(written under .tmp/container/ and named by CONTAINERS_CONF, so that
podman-compose's podman uses it too), which sandboxes that refuse rlimits
need.

Where podman, podman-compose, runc, debootstrap, objdump or s3s-fs is
missing, or containers cannot run, the tests are skipped with the reason; with DJ_UDF_REQUIRE_ALL=1 or CI
set they fail instead, naming what is missing."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pymysql
import pytest

from conftest import LIBRARY, REQUIRE_ALL, ROOT, S3S_FS, attach_hash, free_port, need

CACHE = ROOT / ".tmp" / "container"
BASE_TAR = CACHE / "bookworm-minbase.tar"
BASE_IMAGE = "localhost/dj_udf-test-base:bookworm"
IMAGE = "localhost/dj_udf-mariadb:test"
MIRROR = os.environ.get("DJ_UDF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MYSQL_UID = 999  # the mysql user of the image (and of the official mariadb image)
PURGE_KEY = "container-purge-key-0123456789"
USER, PASSWORD = "dj", "dj-container-pw"
ROOT_PASSWORD = "root-container-pw"


def unavailable(why):
    """Skips the module's tests, printing why, or fails them when every
    test component is required."""
    if REQUIRE_ALL:
        pytest.fail(f"container tests cannot run: {why} (DJ_UDF_REQUIRE_ALL or CI is set)", pytrace=False)
    pytest.skip(f"container tests cannot run: {why}")


def podman_env():
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    conf.write_text("# written by tests/test_container.py\n[containers]\ndefault_ulimits = []\n"
                    "[engine]\nruntime = \"runc\"\n")
    return dict(os.environ, CONTAINERS_CONF=str(conf))


def podman(*args, check=True, timeout=900, **kw):
    out = subprocess.run(["podman", "--runtime", "runc", *args], env=podman_env(), capture_output=True, text=True,
                         timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited with {out.returncode}:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
    return out


def glibc_versions(text):
    return sorted({tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", text)})


def base_image():
    """The Debian bookworm base image: debootstrap's minbase, imported."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    if not BASE_TAR.exists():
        if os.geteuid() != 0:
            unavailable("debootstrap needs root to make the base image")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = pathlib.Path(tmp) / "rootfs"
            out = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR],
                                 capture_output=True, text=True, timeout=900)
            assert out.returncode == 0, f"debootstrap failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            partial = BASE_TAR.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            os.replace(partial, BASE_TAR)
    with open(BASE_TAR, "rb") as f:
        podman("import", "-", BASE_IMAGE, stdin=f)


@pytest.fixture(scope="module")
def image():
    """The image of docker/Dockerfile on the debootstrapped base, with the
    library under test (layers are cached by podman between runs)."""
    missing = [t for t in ("podman", "runc", "debootstrap", "objdump") if shutil.which(t) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not found: run scripts/setup.sh --python "
                    "(apt-get install podman runc debootstrap binutils)")
    if LIBRARY.resolve() != (ROOT / "target" / "release" / "libdj_udf.so").resolve():
        pytest.fail(f"the image is built from target/release/libdj_udf.so, not {LIBRARY}", pytrace=False)
    base_image()
    probe = podman("run", "--rm", BASE_IMAGE, "true", check=False, timeout=120)
    if probe.returncode != 0:
        unavailable(f"podman cannot run a container here: {probe.stderr.strip()[-500:]}")
    old = podman("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
    podman("build", "-f", "docker/Dockerfile", "--build-arg", f"BASE={BASE_IMAGE}", "-t", IMAGE, ".", cwd=ROOT,
           timeout=1800)
    if old and old != podman("image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip():
        podman("rmi", old, check=False)  # the previous build, no longer tagged
    return IMAGE


class Container:
    """A running container of the image, with its host folders."""

    def __init__(self, image, base: pathlib.Path):
        self.base = base
        self.data = base / "data"  # mounted as /data: the stores
        self.conf = base / "conf"
        for d in (self.data / "import", self.data / "stage" / "session1", self.conf):
            d.mkdir(parents=True)
        config = {
            "stores": {
                "localattach": {"protocol": "file", "location": "/data/attach"},
                "data": {"protocol": "file", "location": "/data/store", "stage": "/data/stage"},
                "main": {"protocol": "file", "location": "/data/blobs"},
            },
            "import_dirs": ["/data/import"],
            "export_dirs": ["/data/export"],
            "purge_key": PURGE_KEY,
        }
        (self.conf / "dj_udf.json").write_text(json.dumps(config, indent=1))
        # The server's own settings, from the host.
        (self.conf / "host.cnf").write_text("[mysqld]\nmax_connections = 77\n")
        self.scan = os.urandom(200_000)
        self.image_file = os.urandom(500_000)
        (self.data / "import" / "scan_0002.png").write_bytes(self.scan)
        (self.data / "stage" / "session1" / "image_0001.tif").write_bytes(self.image_file)
        for p in [base, *base.rglob("*")]:
            os.chown(p, MYSQL_UID, MYSQL_UID)
        os.chmod(self.conf / "dj_udf.json", 0o600)
        self.port = free_port()
        self.name = f"dj_udf-test-{uuid.uuid4().hex[:8]}"
        podman("run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:3306",
               "-v", f"{self.conf / 'dj_udf.json'}:/etc/dj_udf/dj_udf.json:ro",
               "-v", f"{self.conf / 'host.cnf'}:/etc/mysql/conf.d/host.cnf:ro",
               "-v", f"{self.data}:/data",
               "-e", f"MARIADB_ROOT_PASSWORD={ROOT_PASSWORD}", "-e", f"MARIADB_USER={USER}",
               "-e", f"MARIADB_PASSWORD={PASSWORD}", "-e", "DJ_USER_SCHEMAS=lab dj\\_%", image)
        self.wait_ready()

    def logs(self):
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def wait_ready(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                state = podman("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
                if state != "true":
                    raise AssertionError(f"the container stopped; its log:\n{self.logs()[-5000:]}")
                time.sleep(0.5)
        raise AssertionError(f"the server in the container did not accept connections; its log:\n{self.logs()[-5000:]}")

    def connect(self, user=USER, password=PASSWORD, **kw):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, autocommit=True,
                               charset="utf8mb4", connect_timeout=5, **kw)

    def root_sql(self, sql):
        """Runs SQL as root through the container's socket (the DBA's way)."""
        out = podman("exec", "-i", self.name, "mariadb", "-uroot", "-N", "-B", input=sql)
        return out.stdout

    def remove(self):
        podman("rm", "-f", "-v", self.name, check=False)


@pytest.fixture(scope="module")
def container(image, tmp_path_factory):
    c = Container(image, tmp_path_factory.mktemp("container"))
    yield c
    c.remove()


@pytest.fixture(scope="module")
def seeded(container):
    """examples/seed.sql run through the container's own client."""
    seed = (ROOT / "examples" / "seed.sql").read_text()
    seed = seed.replace("@IMPORT@", "/data/import").replace("@STAGE@", "/data/stage").replace("@EXPORT@", "/data/export")
    out = podman("exec", "-i", container.name, "mariadb", "-uroot", "-t", input=seed)
    return out.stdout


# DataJoint on the host, in its own process (dj.config is global), with the
# host's paths of the stores the container writes.
DJ_SCRIPT = r"""
import json, os, sys
os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"
import datajoint as dj
args = json.loads(sys.argv[1])
data = args["data"]
dj.config.update({
    "database.host": "127.0.0.1", "database.port": args["port"], "database.user": args["user"],
    "database.password": args["password"], "database.use_tls": False, "safemode": False,
    "display.progress": False,
    "stores": {"localattach": {"protocol": "file", "location": f"{data}/attach"},
               "data": {"protocol": "file", "location": f"{data}/store", "stage": f"{data}/stage"},
               "main": {"protocol": "file", "location": f"{data}/blobs"}}})
out = {}
if args["action"] == "read":
    lab = dj.VirtualModule("lab", "lab")
    out["tables"] = sorted(lab.schema.list_tables())
    keys, paths = lab.ScanAttachment.fetch("KEY", "scan_image", download_path=args["download"], order_by="scan_id")
    out["attachments"] = [[k["scan_id"], p] for k, p in zip(keys, paths)]
    out["blobs"] = [[r["trace_id"], None if r["samples"] is None else float(r["samples"])]
                    for r in lab.Trace.fetch(as_dict=True, order_by="trace_id")]
    out["filepaths"] = [[r["scan_id"], r["image_path"]] for r in lab.ScanImages.fetch(as_dict=True)]
else:
    schema = dj.Schema(args["schema"])
    @schema
    class Upload(dj.Manual):
        definition = '''
        upload_id : int
        ---
        doc : attach@localattach
        '''
    Upload.insert1({"upload_id": 1, "doc": args["file"]})
    out["hash"] = schema.external["localattach"].fetch1("hash").hex
print(json.dumps(out))
"""


def datajoint(container, **args):
    need("datajoint")
    args.update(port=container.port, user=USER, password=PASSWORD, data=str(container.data))
    out = subprocess.run([sys.executable, "-c", DJ_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"DataJoint failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_library_needs_no_newer_glibc_than_the_image(image):
    """objdump -T: every glibc symbol version the library needs is one the
    image's glibc provides; and the image holds exactly this library."""
    needed = glibc_versions(subprocess.run(["objdump", "-T", str(LIBRARY)], check=True, capture_output=True,
                                           text=True).stdout)
    assert needed, "objdump -T found no GLIBC_ symbol versions"
    have = podman("run", "--rm", "--entrypoint", "getconf", image, "GNU_LIBC_VERSION").stdout.split()[-1]
    have = tuple(int(x) for x in have.split("."))
    assert needed[-1] <= have, f"the library needs glibc {needed[-1]}, the image has {have}"
    plugin = podman("run", "--rm", "--entrypoint", "sha256sum", image, "/usr/lib/mysql/plugin/dj_udf.so").stdout
    assert plugin.split()[0] == hashlib.sha256(LIBRARY.read_bytes()).hexdigest()


def test_image_build_refuses_a_library_that_needs_a_newer_glibc(image, tmp_path):
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"\x7fELF\0GLIBC_2.2.5\0GLIBC_2.99\0")
    out = podman("run", "--rm", "-v", f"{fake}:/fake.so:ro", "--entrypoint", "check-glibc.sh", image, "/fake.so",
                 check=False)
    assert out.returncode == 1
    assert "needs glibc 2.99" in out.stderr and "build the library on a system with glibc <=" in out.stderr


def test_first_start_installs_and_configures(container):
    with container.connect() as c, c.cursor() as cur:
        cur.execute("SELECT dj_version()")
        version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
        assert cur.fetchone()[0] == version.encode()
        # the config mounted from the host, and the server settings mounted into conf.d
        cur.execute("SELECT JSON_EXTRACT(CONVERT(dj_stores() USING utf8mb4), '$.config_file'), @@max_connections, "
                    "@@character_set_server, @@binlog_format")
        assert cur.fetchone() == ('"/etc/dj_udf/dj_udf.json"', 77, "utf8mb4", "ROW")
    # the purge key from the config file, the store folders it names
    assert container.root_sql("SELECT purge_key FROM dj_udf.purge_key").split() == [PURGE_KEY]
    for d in ("attach", "store", "blobs", "stage", "export"):
        assert (container.data / d).is_dir()
        assert (container.data / d).stat().st_uid == MYSQL_UID
    # root over TCP with the password; the pipeline account only where granted
    container.connect("root", ROOT_PASSWORD).close()
    with container.connect() as c, c.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError, match="denied"):
            cur.execute("CREATE DATABASE other_db")
    assert container.logs().count("dj_udf entrypoint: initializing") == 1


def test_seed_in_the_container_read_by_datajoint_on_the_host(container, seeded, tmp_path):
    # the seed's audits: every object ok, the cleanup removed one row and its object
    assert re.search(r"\|\s+1 \|\s+1 \|\s+0 \|", seeded), seeded
    assert seeded.count("| ok ") == 3 and "missing" not in seeded, seeded
    data = container.data
    scan_hash = attach_hash("scan_0002.png", container.scan)
    assert (data / "attach" / "lab" / scan_hash.hex()[:2] / scan_hash.hex()[2:4] /
            f"{scan_hash.hex()}.scan_0002.png").read_bytes() == container.scan
    # the stage copy goes, so that DataJoint must fetch the filepath from the store
    (data / "stage" / "session1" / "image_0001.tif").unlink()
    got = datajoint(container, action="read", download=str(tmp_path))
    assert got["tables"] == ["scan_attachment", "scan_images", "trace"]
    assert [s for s, _ in got["attachments"]] == [2]  # the seed deleted scan 1
    assert pathlib.Path(got["attachments"][0][1]).read_bytes() == container.scan
    assert got["blobs"] == [[1, 3.0], [2, None]]
    [[scan_id, path]] = got["filepaths"]
    assert (scan_id, path) == (1, str(data / "stage" / "session1" / "image_0001.tif"))
    assert pathlib.Path(path).read_bytes() == container.image_file


def test_datajoint_on_the_host_writes_the_container_verifies(container, tmp_path):
    schema = "dj_" + uuid.uuid4().hex[:8]
    doc = tmp_path / "report.txt"
    doc.write_bytes(b"written by DataJoint on the host\n" * 100)
    got = datajoint(container, action="write", schema=schema, file=str(doc))
    assert got["hash"] == attach_hash("report.txt", doc.read_bytes()).hex()
    with container.connect() as c, c.cursor() as cur:
        cur.execute("CALL dj_udf.verify(%s, 'localattach')", (schema,))
        assert [(r[2], r[4]) for r in cur.fetchall()] == [("report.txt", "ok")]
        cur.execute(f"SELECT dj_udf.attach_get('localattach', %s, doc, 'report.txt') FROM `{schema}`.upload", (schema,))
        assert cur.fetchone()[0] == doc.read_bytes()


def test_restart_keeps_the_data_and_does_not_initialize_again(container):
    marker = "dj_" + uuid.uuid4().hex[:8]
    with container.connect() as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {marker}")
        cur.execute(f"CREATE TABLE {marker}.restart_marker (n int)")
        cur.execute(f"INSERT INTO {marker}.restart_marker VALUES (1)")
    podman("restart", "-t", "60", container.name)
    container.wait_ready()
    with container.connect() as c, c.cursor() as cur:
        cur.execute(f"SELECT n FROM {marker}.restart_marker")
        assert cur.fetchall() == ((1,),)
        cur.execute("SELECT dj_checksum('abc')")
        assert cur.fetchone()[0] == hashlib.md5(b"abc").digest()
    assert container.logs().count("dj_udf entrypoint: initializing") == 1


def test_a_first_start_that_failed_is_not_taken_for_a_finished_one(image, tmp_path):
    """The entrypoint refuses what it cannot set up, and a data folder whose
    initialization stopped half-way is refused on the next start instead of
    being served without dj_udf."""
    conf, datadir, initdb = tmp_path / "dj_udf.json", tmp_path / "db", tmp_path / "initdb"
    datadir.mkdir()
    initdb.mkdir()
    conf.write_text(json.dumps({"stores": {"main": {"protocol": "file", "location": "/data/blobs"}}}))
    (initdb / "broken.sql").write_text("SELECT no_such_function();\n")
    for p in (conf, datadir):
        os.chown(p, MYSQL_UID, MYSQL_UID)
    mounts = ["-v", f"{conf}:/etc/dj_udf/dj_udf.json:ro", "-v", f"{datadir}:/var/lib/mysql"]
    out = podman("run", "--rm", *mounts, "-e", "MARIADB_USER=someone", image, check=False, timeout=300)
    assert out.returncode != 0 and "MARIADB_USER needs MARIADB_PASSWORD" in out.stderr
    assert not any(datadir.iterdir())
    out = podman("run", "--rm", *mounts, "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro", image, check=False,
                 timeout=300)
    assert out.returncode != 0 and "no_such_function" in out.stderr, out.stderr[-3000:]
    out = podman("run", "--rm", *mounts, image, check=False, timeout=300)
    assert out.returncode != 0
    assert "the initialization of /var/lib/mysql did not finish" in out.stderr, out.stderr[-3000:]


S3_IMAGE = "localhost/dj_udf-s3s-fs:test"


@pytest.fixture(scope="module")
def s3_image(image):
    """The s3s-fs image of docker/s3s-fs.Dockerfile, its build stage given the
    s3s-fs built on the host (no registry, no Rust toolchain image)."""
    if not os.access(S3S_FS, os.X_OK):
        unavailable(f"s3s-fs not found at {S3S_FS}: run scripts/setup.sh --python")
    ctx = CACHE / "s3s-fs-build"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "out" / "bin").mkdir(parents=True)
    shutil.copy2(S3S_FS, ctx / "out" / "bin" / "s3s-fs")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY out /out\n")
    podman("build", "-t", "localhost/dj_udf-test-s3s-fs-build", str(ctx))
    podman("build", "-f", "docker/s3s-fs.Dockerfile", "--build-arg", "RUST=localhost/dj_udf-test-s3s-fs-build",
           "--build-arg", f"BASE={BASE_IMAGE}", "-t", S3_IMAGE, "docker", cwd=ROOT)
    return S3_IMAGE


def test_compose_stack_serves_datajoint_on_the_host(image, s3_image, tmp_path):
    """docker/compose.yaml as shipped (its config, its S3 server and bucket),
    run by podman-compose: SQL through the database puts attachments into a
    file store and the S3 store; DataJoint on the host reads both."""
    compose = shutil.which("podman-compose")
    if compose is None:
        unavailable("podman-compose not found: run scripts/setup.sh --python (apt-get install podman-compose)")
    store = tmp_path / "store"
    store.mkdir()
    os.chown(store, MYSQL_UID, MYSQL_UID)
    project = f"dj_udf_test_{uuid.uuid4().hex[:8]}"
    port, s3_port = free_port(), free_port()
    env = dict(podman_env(), DJ_UDF_IMAGE=image, DJ_UDF_S3_IMAGE=s3_image, DJ_UDF_PORT=str(port),
               DJ_UDF_S3_PORT=str(s3_port), DJ_UDF_STORE=str(store), MARIADB_ROOT_PASSWORD=ROOT_PASSWORD,
               MARIADB_USER=USER, MARIADB_PASSWORD=PASSWORD)
    config = json.loads((ROOT / "docker" / "dj_udf.json").read_text())
    run = [compose, "-p", project, "-f", str(ROOT / "docker" / "compose.yaml")]

    def compose_cmd(*args, check=True):
        out = subprocess.run(run + list(args), env=env, capture_output=True, text=True, timeout=600)
        if check and out.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    compose_cmd("up", "-d")
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, autocommit=True,
                                       charset="utf8mb4", connect_timeout=5)
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    logs = compose_cmd("logs", check=False)
                    raise AssertionError(f"the compose stack's database did not come up:\n{logs.stdout[-5000:]}")
                time.sleep(0.5)
        schema = "dj_" + uuid.uuid4().hex[:8]
        docs = {"localattach": ("local.txt", b"in the store volume\n" * 50),
                "s3store": ("remote.txt", b"in the S3 bucket\n" * 5000)}
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {schema}")
            for st, (nm, data) in docs.items():
                cur.execute("CALL dj_udf.create_tracking_table(%s, %s)", (schema, st))
                cur.execute(f"""CREATE TABLE {schema}.doc_{st} (
                    doc_id int NOT NULL, doc binary(16) NOT NULL COMMENT ':attach@{st}:a document',
                    PRIMARY KEY (doc_id), FOREIGN KEY (doc) REFERENCES {schema}.`~external_{st}` (hash)
                      ON UPDATE RESTRICT ON DELETE RESTRICT) ENGINE=InnoDB""")
                cur.execute("CALL dj_udf.attach_put(%s, %s, %s, %s, @h)", (st, schema, nm, data))
                cur.execute(f"INSERT INTO {schema}.doc_{st} VALUES (1, @h)")
                cur.execute("CALL dj_udf.verify(%s, %s)", (schema, st))
                assert [r[4] for r in cur.fetchall()] == ["ok"]
        # DataJoint on the host: the file store through the shared folder,
        # the S3 store through the S3 server's published port.
        s3 = config["stores"]["s3store"]
        stores = {"localattach": {"protocol": "file", "location": str(store / "attach")},
                  "s3store": {"protocol": "s3", "endpoint": f"127.0.0.1:{s3_port}", "bucket": s3["bucket"],
                              "location": s3["location"], "access_key": s3["access_key"],
                              "secret_key": s3["secret_key"]}}
        got = datajoint_fetch(port, schema, stores, [f"doc_{st}" for st in docs], tmp_path / "down")
        for st, (nm, data) in docs.items():
            path = pathlib.Path(got[f"doc_{st}"])
            assert path.name == nm and path.read_bytes() == data
        h = attach_hash(*docs["localattach"])
        assert (store / "attach" / schema / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.local.txt").exists()
    finally:
        compose_cmd("down", "-v", check=False)
        # podman-compose 1.0.3 leaves the project's network
        podman("network", "rm", "-f", f"{project}_default", check=False)


DJ_FETCH = r"""
import json, sys
import datajoint as dj
a = json.loads(sys.argv[1])
dj.config.update({"database.host": "127.0.0.1", "database.port": a["port"], "database.user": a["user"],
                  "database.password": a["password"], "database.use_tls": False, "display.progress": False,
                  "stores": a["stores"]})
m = dj.VirtualModule("m", a["schema"])
print(json.dumps({t: getattr(m, dj.utils.to_camel_case(t)).fetch1("doc", download_path=a["down"]) for t in a["tables"]}))
"""


def datajoint_fetch(port, schema, stores, tables, down):
    need("datajoint")
    down.mkdir()
    args = dict(port=port, user=USER, password=PASSWORD, schema=schema, stores=stores, tables=tables, down=str(down))
    out = subprocess.run([sys.executable, "-c", DJ_FETCH, json.dumps(args)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"DataJoint failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])
