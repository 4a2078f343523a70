"""A three-node MariaDB Galera cluster on 127.0.0.1 for tests/test_galera.py:
each node with its own datadir, socket, SQL port, group-communication
(gmcast), IST and SST ports, and the library under test in its own
plugin_dir; all nodes' config files name one shared store folder (and one S3 server).

The first node bootstraps the cluster (an empty `gcomm://`); the others,
started with empty datadirs, name all three and receive the first node's
data by rsync state transfer. Nodes run as root, like the suite's other
servers; the joiner's SST rsync daemon then drops to `nobody`, so every
folder above the datadirs must be traversable (o+x) by it, and the datadirs
writable: they belong to `nobody` (root, the server, reads them anyway)."""

import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import time

import pymysql

PROVIDER = "/usr/lib/galera/libgalera_smm.so"


def find_bin(*names):
    for n in names:
        p = shutil.which(n) or next((f"{d}/{n}" for d in ("/usr/sbin", "/usr/bin") if os.access(f"{d}/{n}", os.X_OK)),
                                    None)
        if p:
            return p
    return None


class Node:
    def __init__(self, cluster, index, ports):
        self.cluster = cluster
        self.index = index
        self.name = f"node{index + 1}"
        self.dir = cluster.base / self.name
        self.port, self.gcomm_port, self.ist_port, self.sst_port = ports
        self.proc = None
        self.data = self.dir / "data"
        self.socket = self.dir / "mysql.sock"
        for d in (self.dir / "plugin", self.dir / "tmp", self.data):
            d.mkdir(parents=True, exist_ok=True)
        # the library under the name install.sql loads, in this node's plugin_dir
        shutil.copyfile(cluster.library, self.dir / "plugin" / "dj_udf.so")

    def args(self, bootstrap):
        c = self.cluster
        peers = "" if bootstrap else ",".join(f"127.0.0.1:{n.gcomm_port}" for n in c.nodes)
        return [
            c.mariadbd, "--no-defaults", "--user=root",
            f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--pid-file={self.dir / 'mariadbd.pid'}", f"--log-error={self.dir / 'error.log'}",
            f"--tmpdir={self.dir / 'tmp'}", f"--plugin-dir={self.dir / 'plugin'}",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M", "--max-allowed-packet=64M",
            "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve", "--lower-case-table-names=0",
            # what Galera needs
            "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}", f"--wsrep-cluster-address=gcomm://{peers}",
            f"--wsrep-cluster-name={c.name}", f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.gcomm_port}",
            f"--wsrep-node-incoming-address=127.0.0.1:{self.port}",
            f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port};"
            f"ist.recv_addr=127.0.0.1:{self.ist_port};gcache.size=64M",
            "--wsrep-sst-method=rsync", f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--binlog-format=ROW", "--default-storage-engine=InnoDB", "--innodb-autoinc-lock-mode=2",
        ]

    def recovered_position(self):
        """What systemd's galera_recovery does before a node starts again:
        the last committed position from InnoDB (`--wsrep-recover`), so that
        the node asks for the missing transactions only (IST) instead of a
        whole copy (SST)."""
        log = self.dir / "recover.log"
        log.unlink(missing_ok=True)
        args = [a for a in self.args(False) if not a.startswith("--log-error=")]
        subprocess.run(args + ["--wsrep-recover", f"--log-error={log}"], check=True, capture_output=True, timeout=120)
        found = re.findall(r"WSREP: Recovered position: (\S+)", log.read_text(errors="replace"))
        return found[-1] if found else None

    def start(self, bootstrap=False, wait=True):
        nobody = pwd.getpwnam("nobody")
        for p in [self.data, *self.data.rglob("*")]:
            os.chown(p, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
        args = self.args(bootstrap)
        if self.proc is not None:  # started before: a restart
            position = self.recovered_position()
            if position:
                args.append(f"--wsrep-start-position={position}")
        env = dict(os.environ, DJ_UDF_CONFIG=str(self.cluster.configs[self.index]))
        log = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_synced()

    def connect(self, **kw):
        args = dict(unix_socket=str(self.socket), user="root", autocommit=True, charset="utf8mb4")
        args.update(kw)
        return pymysql.connect(**args)

    def status(self, name):
        with self.connect() as c, c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cur.fetchone()
            return row[1] if row else None

    def wait_synced(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.error_log()[-4000:]}")
            try:
                if self.status("wsrep_local_state_comment") == "Synced" and self.status("wsrep_ready") == "ON":
                    return
            except pymysql.err.MySQLError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not reach Synced:\n{self.error_log()[-4000:]}")

    def kill(self):
        """SIGKILL: the node dies mid-work, as on a power cut."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def error_log(self):
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Cluster:
    def __init__(self, base: pathlib.Path, library, configs, ports, name="dj_udf_test"):
        """configs: each node's config file (the same stores; they may
        differ in how a node reaches them); ports: each node's SQL,
        gmcast, IST and SST ports."""
        self.base = base
        self.library = library
        self.configs = configs
        self.name = name
        self.mariadbd = find_bin("mariadbd", "mysqld")
        self.install_db = find_bin("mariadb-install-db", "mysql_install_db")
        # The SST rsync daemon runs as nobody: it must reach the datadirs.
        p = base
        while p != p.parent:
            mode = os.stat(p).st_mode
            if not mode & 0o001:
                os.chmod(p, mode | 0o001)
            p = p.parent
        self.nodes = [Node(self, i, ports[i]) for i in range(3)]

    def start(self):
        first = self.nodes[0]
        subprocess.run([self.install_db, "--no-defaults", f"--datadir={first.data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)
        first.start(bootstrap=True)
        for n in self.nodes[1:]:
            n.start()

    def stop(self):
        # the last node to stop is the one that could bootstrap again
        for n in reversed(self.nodes):
            n.stop()
