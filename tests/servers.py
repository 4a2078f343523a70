"""Extra MariaDB servers for the tests that need other server options than
the session's (binary logging, a latin1 default, a replica): each has its
own datadir, socket and port, the freshly built library in its plugin_dir
and the session's store config, through scripts/server.sh."""

import os
import pathlib
import subprocess

import pymysql

from conftest import LIBRARY, PURGE_KEY, ROOT, free_port

SERVER_SH = ROOT / "scripts" / "server.sh"


class Server:
    def __init__(self, base: pathlib.Path, config: pathlib.Path, *options: str, env=None):
        """`env`: variables added to the server process's environment (the
        S3 `env` and `web_identity` credential sources read them)."""
        self.dir = base
        self.port = free_port()
        out = subprocess.run([str(SERVER_SH), "start", str(base), str(self.port), str(LIBRARY), str(config), *options],
                             check=True, capture_output=True, text=True, env={**os.environ, **(env or {})})
        self.socket = out.stdout.strip().splitlines()[-1]
        with self.connect() as c, c.cursor() as cur:
            cur.execute("INSERT IGNORE INTO dj_udf.purge_key VALUES (%s)", (PURGE_KEY,))
            cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dj_udf' AND TABLE_NAME = 'settings'")
            if cur.fetchone()[0]:
                # as in the session's server: tests clean up what they have just put
                cur.execute("UPDATE dj_udf.settings SET value = '0' WHERE name = 'cleanup_grace_seconds'")

    def connect(self, **kw):
        args = dict(unix_socket=self.socket, user="root", autocommit=True, charset="utf8mb4")
        args.update(kw)
        return pymysql.connect(**args)

    def sql(self, q, args=None, **kw):
        with self.connect(**kw) as c, c.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall()

    def run_script(self, name, user="root", password=None, init_command=None):
        """Runs sql/<name> with the mariadb client; returns the finished process."""
        cmd = ["mariadb", "--no-defaults", f"--socket={self.socket}", f"--user={user}"]
        if password:
            cmd.append(f"--password={password}")
        if init_command:
            cmd.append(f"--init-command={init_command}")
        with open(ROOT / "sql" / name) as f:
            return subprocess.run(cmd, stdin=f, capture_output=True, text=True)

    @property
    def plugin_dir(self):
        return self.dir / "plugin"

    def pid(self):
        return int((self.dir / "mariadbd.pid").read_text())

    def mapped_libraries(self):
        """The inodes of the dj_udf library files the server has mapped,
        with ' (deleted)' for a file no longer in the folder."""
        out = set()
        for line in pathlib.Path(f"/proc/{self.pid()}/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and "dj_udf" in fields[5]:
                out.add(fields[4] + (" (deleted)" if fields[5].endswith("(deleted)") else ""))
        return sorted(out)

    def error_log(self):
        return (self.dir / "error.log").read_text(errors="replace")

    def stop(self):
        subprocess.run([str(SERVER_SH), "stop", str(self.dir)], check=False)
