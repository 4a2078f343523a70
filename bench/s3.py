"""S3 at real-world latency: the SQL routines against DataJoint 0.14.9 (through
minio-py) doing the same job on the same bucket in the same run, once behind
a proxy that adds a round trip of 20 ms (bench/delay_proxy.py, a same-region
or campus-to-cloud link) and once straight to the server on 127.0.0.1.

    scripts/bench.sh                 (runs this after bench/bench.py)
    .venv/bin/python bench/s3.py [--objects 500] [--big-mib 1024] [--repeat 3] [--rtt-ms 20]

Each job runs --repeat times on each side; the table shows the median rate
and, per job, the ratio of the medians with the spread of the per-run ratios
(lowest to highest), since other work on the machine disturbs single runs.
Also the database server's memory: its peak over idle during all of it, and
its resident size before and after 10,000 calls.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import datajoint as dj  # noqa: E402
from conftest import World, free_port  # noqa: E402

SMALL = 100_000  # bytes per object of the many-object jobs


def vm(pid, key):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Side:
    """One store (one endpoint) as both clients see it."""

    def __init__(self, bench, store, label):
        self.bench, self.store, self.label = bench, store, label
        self.sql_schema, self.dj_schema = f"b_sql_{store}", f"b_dj_{store}"


class Bench:
    def __init__(self, args):
        self.args = args
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="dj-bench-s3-"))
        self.world = World(self.base)
        self.proxies = []
        self.results = []  # (latency label, job, unit, ours[], dj[])

    # ---- setup ------------------------------------------------------------
    def start(self):
        w = self.world
        if not w.s3_available():
            raise SystemExit("s3s-fs is not installed: run scripts/setup.sh --python")
        w.s3_start()
        far, near = free_port(), free_port()
        self.proxies = [subprocess.Popen([sys.executable, str(HERE / "delay_proxy.py"), str(port), str(w.s3_backend_port), str(ms)])
                        for port, ms in ((far, self.args.rtt_ms / 2), (near, 0))]
        s3 = dict(w.base_config["stores"]["s3attach"])
        cfg = w.base_config
        # Through the proxy to s3s-fs, with and without the delay (the test
        # gate, which checks every body in Python, stays out of it).
        cfg["stores"]["s3near"] = dict(s3, endpoint=f"127.0.0.1:{near}", location="bench/near")
        cfg["stores"]["s3far"] = dict(s3, endpoint=f"127.0.0.1:{far}", location="bench/far")
        w.write_config(cfg)
        w.start()
        # over TCP with a password, as DataJoint connects
        self.conn = w.connect(unix_socket=None, host="127.0.0.1", port=w.port, user="dj", password="dj")
        self.cur = self.conn.cursor()
        self.pid = w.server_pid()
        dj.config["database.use_tls"] = False
        dj.config["safemode"] = False
        keys = ("protocol", "endpoint", "bucket", "access_key", "secret_key", "location")
        dj.config["stores"] = {n: {k: cfg["stores"][n][k] for k in keys} for n in ("s3near", "s3far")}
        self.djc = dj.Connection(f"127.0.0.1:{w.port}", "dj", "dj", use_tls=False)
        self.sides = [Side(self, "s3far", f"{self.args.rtt_ms:g} ms round trip"), Side(self, "s3near", "no delay")]
        for side in self.sides:
            self.declare(side)
        self.files()
        self.idle_rss = vm(self.pid, "VmRSS")
        pathlib.Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # peak := now

    def sql(self, q, args=None):
        self.cur.execute(q, args)
        return self.cur.fetchall()

    def declare(self, side):
        st = side.store
        self.sql(f"CREATE DATABASE {side.sql_schema}")
        self.sql("CALL dj_udf.create_tracking_table(%s, %s)", (side.sql_schema, st))
        fk = f"FOREIGN KEY (att) REFERENCES {side.sql_schema}.`~external_{st}` (hash)"
        for t in ("one", "many", "big"):
            self.sql(f"CREATE TABLE {side.sql_schema}.{t} (k int PRIMARY KEY, att binary(16) NOT NULL, {fk})")
        schema = dj.Schema(side.dj_schema, connection=self.djc)
        side.dj = {}
        for t in ("One", "Many", "Big"):
            side.dj[t] = schema(type(t, (dj.Manual,), {"definition": f"k : int\n---\natt : attach@{st}\n"}))
        side.dj_external = schema.external[st]

    def files(self):
        n = self.args.objects
        self.small = self.world.dirs["import"] / "small"
        self.small.mkdir()
        for i in range(n):
            (self.small / f"s{i:04d}.bin").write_bytes(os.urandom(SMALL))
        self.big = self.world.dirs["import"] / "big" / "big.bin"
        self.big.parent.mkdir()
        block = os.urandom(1 << 20)
        with open(self.big, "wb") as f:
            for i in range(self.args.big_mib):
                f.write(block[:-8] + i.to_bytes(8, "little"))

    def stop(self):
        try:
            self.djc.close()
        except Exception:  # noqa: BLE001
            pass
        for p in self.proxies:
            p.terminate()
            p.wait(10)
        self.world.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------
    def wipe(self, side):
        """Both sides' rows and objects of a store gone (untimed)."""
        for t in ("one", "many", "big"):
            self.sql(f"DELETE FROM {side.sql_schema}.{t}")
        self.sql(f"DELETE FROM {side.sql_schema}.`~external_{side.store}`")
        for t in side.dj.values():
            t.delete_quick()
        self.djc.query(f"DELETE FROM `{side.dj_schema}`.`~external_{side.store}`")
        loc = self.world.dirs["s3root"] / "djtest" / "bench" / side.store[2:]
        for schema in (side.sql_schema, side.dj_schema):
            shutil.rmtree(loc / schema, ignore_errors=True)

    def out_dir(self, name):
        d = self.world.dirs["export"] / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    def timed(self, fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    def record(self, side, job, unit, amount, ours, theirs):
        self.results.append((side.label, job, unit, [amount / t for t in ours], [amount / t for t in theirs]))
        print(f"  {side.label:22} {job:46} ours {amount / statistics.median(ours):9.1f}  "
              f"DataJoint {amount / statistics.median(theirs):9.1f} {unit}", flush=True)

    # ---- the jobs -----------------------------------------------------------
    def single_rows(self, side):
        n = self.args.single
        names = sorted(os.listdir(self.small))[:n]
        data = [(self.small / m).read_bytes() for m in names]
        ours, theirs, g_ours, g_theirs = [], [], [], []
        One = side.dj["One"]
        q_put = f"CALL dj_udf.attach_put('{side.store}', '{side.sql_schema}', %s, %s, @h)"
        q_row = f"INSERT INTO {side.sql_schema}.one VALUES (%s, @h)"
        q_get = (f"SELECT dj_udf.attach_get('{side.store}', '{side.sql_schema}', o.att, x.attachment_name) "
                 f"FROM {side.sql_schema}.one o JOIN {side.sql_schema}.`~external_{side.store}` x ON x.hash = o.att WHERE o.k = %s")
        for _ in range(self.args.repeat):
            self.wipe(side)

            def put_sql():
                for i, (m, d) in enumerate(zip(names, data)):
                    self.sql(q_put, (m, d))
                    self.sql(q_row, (i,))

            def put_dj():
                for i, m in enumerate(names):
                    One.insert1(dict(k=i, att=str(self.small / m)))

            ours.append(self.timed(put_sql))
            theirs.append(self.timed(put_dj))

            def get_sql():
                for i in range(n):
                    assert len(self.sql(q_get, (i,))[0][0]) == SMALL

            dl = self.out_dir("dl-one")

            def get_dj():
                for i in range(n):
                    (One & {"k": i}).fetch1("att", download_path=str(dl))

            g_ours.append(self.timed(get_sql))
            g_theirs.append(self.timed(get_dj))
        self.record(side, "single-row put (CALL + INSERT / insert1)", "rows/s", n, ours, theirs)
        self.record(side, "single-row verified get (one SELECT / fetch1)", "rows/s", n, g_ours, g_theirs)

    def batches(self, side):
        n = self.args.objects
        Many = side.dj["Many"]
        rows = [dict(k=i, att=str(self.small / f"s{i:04d}.bin")) for i in range(n)]
        res = {k: ([], []) for k in ("put", "fetch", "audit", "delete")}
        for _ in range(self.args.repeat):
            self.wipe(side)

            def put_sql():
                self.sql(f"CALL dj_udf.attach_put_files('{side.store}', '{side.sql_schema}', %s, @files)", (str(self.small),))
                self.sql(f"INSERT INTO {side.sql_schema}.many SELECT j.n - 1, UNHEX(j.hash) FROM JSON_TABLE(@files, '$[*]' "
                         "COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j")

            res["put"][0].append(self.timed(put_sql))
            res["put"][1].append(self.timed(lambda: Many.insert(rows)))
            assert self.sql(f"SELECT COUNT(*) FROM {side.sql_schema}.many")[0][0] == n

            out = self.out_dir("batch-sql")

            def fetch_sql():
                got = self.sql(f"CALL dj_udf.export_attachments('{side.store}', '{side.sql_schema}', 'many', 'att', %s)", (str(out),))
                assert len(got) == n and all(r[3] is None for r in got), got[:3]

            dl = self.out_dir("batch-dj")
            res["fetch"][0].append(self.timed(fetch_sql))
            res["fetch"][1].append(self.timed(lambda: Many.fetch("att", download_path=str(dl))))

            def audit_sql():
                got = self.sql("CALL dj_udf.verify(%s, %s)", (side.sql_schema, side.store))
                assert [r[4] for r in got] == ["ok"] * n

            dl = self.out_dir("batch-dj")
            res["audit"][0].append(self.timed(audit_sql))
            res["audit"][1].append(self.timed(lambda: Many.fetch("att", download_path=str(dl))))

            def delete_sql():
                self.sql(f"DELETE FROM {side.sql_schema}.many")
                self.sql("CALL dj_udf.cleanup(%s, %s, @r, @o, @f)", (side.sql_schema, side.store))
                assert self.sql("SELECT @r, @f") == ((n, 0),)

            def delete_dj():
                Many.delete_quick()
                side.dj_external.delete(delete_external_files=True, display_progress=False)

            res["delete"][0].append(self.timed(delete_sql))
            res["delete"][1].append(self.timed(delete_dj))
        self.record(side, f"batch put, {n} x 100 kB (attach_put_files / insert)", "objects/s", n, *res["put"])
        self.record(side, f"batch fetch, {n} (export_attachments / fetch)", "objects/s", n, *res["fetch"])
        self.record(side, f"audit, {n} (dj_udf.verify / fetch, unverified)", "objects/s", n, *res["audit"])
        self.record(side, f"delete, {n} (DELETE + cleanup / delete + external.delete)", "objects/s", n, *res["delete"])

    def large(self, side):
        mb = self.big.stat().st_size / 1e6
        Big = side.dj["Big"]
        put, get = ([], []), ([], [])
        for _ in range(self.args.big_repeat):
            self.wipe(side)

            def put_sql():
                self.sql(f"CALL dj_udf.attach_put_file('{side.store}', '{side.sql_schema}', %s, @h)", (str(self.big),))
                self.sql(f"INSERT INTO {side.sql_schema}.big VALUES (1, @h)")

            put[0].append(self.timed(put_sql))
            put[1].append(self.timed(lambda: Big.insert1(dict(k=1, att=str(self.big)))))
            out = self.out_dir("big-sql")
            q = (f"SELECT dj_udf.attach_export('{side.store}', '{side.sql_schema}', att, 'big.bin', %s) "
                 f"FROM {side.sql_schema}.big")
            get[0].append(self.timed(lambda: self.sql(q, (str(out),))))
            dl = self.out_dir("big-dj")
            get[1].append(self.timed(lambda: Big.fetch1("att", download_path=str(dl))))
        self.record(side, f"{self.args.big_mib} MiB put (attach_put_file / insert1)", "MB/s", mb, *put)
        self.record(side, f"{self.args.big_mib} MiB fetch (verified export / fetch1)", "MB/s", mb, *get)

    def calls(self):
        """RSS before and after 10,000 calls (a put, a get and a verify of a small object, on the near store)."""
        side = self.sides[1]
        q = (f"SELECT dj_attach_get('{side.store}', '{side.sql_schema}', %s, 'm.bin'), "
             f"dj_verify('{side.store}', '{side.sql_schema}', %s, 1000, 'm.bin', NULL, NULL)")
        data = os.urandom(1000)
        h = self.sql(f"SELECT dj_attach_put('{side.store}', '{side.sql_schema}', 'm.bin', %s)", (data,))[0][0]
        for _ in range(1000):
            self.sql(q, (h, h))
        before = vm(self.pid, "VmRSS")
        for _ in range(self.args.calls // 2):
            self.sql(q, (h, h))
        return before, vm(self.pid, "VmRSS")

    def run(self):
        for side in self.sides:
            print(f"\n{side.label}", flush=True)
            self.single_rows(side)
            self.batches(side)
            self.large(side)
        before, after = self.calls()
        peak = vm(self.pid, "VmHWM") - self.idle_rss
        self.report(peak, before, after)

    def report(self, peak, before, after):
        a = self.args
        print(f"\nS3 (s3s-fs on 127.0.0.1), DataJoint 0.14.9 through minio-py; {a.repeat} runs each "
              f"({a.big_repeat} for the large file), {os.cpu_count()} cores")
        print("| link | work | SQL routines | DataJoint | ratio (median; runs) |")
        print("|---|---|---|---|---|")
        for label, job, unit, ours, theirs in self.results:
            per_run = sorted(o / t for o, t in zip(ours, theirs))
            m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
            print(f"| {label} | {job} | {m_ours:.1f} {unit} | {m_theirs:.1f} {unit} | "
                  f"{m_ours / m_theirs:.2f} ({per_run[0]:.2f}–{per_run[-1]:.2f}) |")
        print(f"\ndatabase server: peak {peak:+.1f} MiB over idle during all of it; "
              f"resident {before:.1f} MiB before and {after:.1f} MiB after {a.calls} more calls")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=500, help="objects of the batch jobs (100 kB each)")
    p.add_argument("--single", type=int, default=60, help="rows of the single-row jobs")
    p.add_argument("--big-mib", type=int, default=1024, help="size of the large file")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--big-repeat", type=int, default=2)
    p.add_argument("--rtt-ms", type=float, default=20.0)
    p.add_argument("--calls", type=int, default=10_000)
    args = p.parse_args()
    b = Bench(args)
    try:
        b.start()
        b.run()
    finally:
        b.stop()


if __name__ == "__main__":
    main()
