"""Throughput of the server-side functions against references run in the same
script on the same files: md5sum and cp for the raw work, DataJoint 0.14.9 for
what labs use today. Prints MB/s and ratios; asserts nothing.

    scripts/bench.sh [MiB]     (default 512)
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"

import datajoint as dj  # noqa: E402
from conftest import World  # noqa: E402


def timed(fn, repeat=3, setup=None):
    """Best of `repeat` runs, in seconds (warm page cache, as on a busy
    server); `setup` runs before each, untimed."""
    best = float("inf")
    for _ in range(repeat):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    base = pathlib.Path(tempfile.mkdtemp(prefix="dj-bench-"))
    world = World(base)
    if world.s3_available():
        world.s3_start()
    world.start()
    try:
        run(world, mib, base)
    finally:
        world.stop()
        world.s3_stop()
        shutil.rmtree(base, ignore_errors=True)


def run(world, mib, base):
    src = world.dirs["import"] / "bench.raw"
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(mib):
            f.write(block[:-8] + i.to_bytes(8, "little"))
    size = src.stat().st_size
    conn = world.connect()
    cur = conn.cursor()
    cur.execute("CREATE DATABASE bench")
    cur.execute("CALL dj_udf.create_tracking_table('bench', 'localattach')")
    pid = world.server_pid()
    peak0 = peak_kib(pid)

    def sql(q, args=None):
        cur.execute(q, args)
        return cur.fetchall()

    def clear_store():
        shutil.rmtree(world.dirs["attach"] / "bench", ignore_errors=True)

    results = []

    def row(what, secs, ref_name, ref_secs):
        results.append((what, size / secs / 1e6, ref_name, size / ref_secs / 1e6, ref_secs / secs))

    # hashing: dj_file_checksum vs md5sum
    t_udf = timed(lambda: sql("SELECT dj_file_checksum(%s)", (str(src),)))
    t_md5 = timed(lambda: subprocess.run(["md5sum", str(src)], check=True, capture_output=True))
    row("dj_file_checksum", t_udf, "md5sum", t_md5)

    # attach a server file (hash + copy + fsync) vs cp, and vs DataJoint's insert
    def udf_put():
        sql("CALL dj_udf.attach_put_file('localattach', 'bench', %s, @h)", (str(src),))

    def cp_sync():
        subprocess.run(["cp", str(src), str(base / "cp.raw")], check=True)
        subprocess.run(["sync", str(base / "cp.raw")], check=True)

    def cp_clear():
        (base / "cp.raw").unlink(missing_ok=True)

    t_put = timed(udf_put, setup=clear_store)
    row("dj_udf.attach_put_file", t_put, "cp + sync", timed(cp_sync, setup=cp_clear))

    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False
    dj.config["stores"] = {"localattach": dict(world.base_config["stores"]["localattach"])}
    djc = dj.Connection(f"127.0.0.1:{world.port}", "dj", "dj", use_tls=False)
    schema = dj.Schema("bench_dj", connection=djc)

    @schema
    class Blob(dj.Manual):
        definition = """
        k : int
        ---
        att : attach@localattach
        """

    def dj_clear():
        Blob.delete_quick()
        schema.external["localattach"].delete(delete_external_files=True)

    def dj_insert():
        Blob.insert1(dict(k=1, att=str(src)))

    def udf_clear():
        sql("DELETE FROM bench.`~external_localattach`")
        clear_store()

    row("dj_udf.attach_put_file", timed(udf_put, setup=udf_clear), "DataJoint insert1", timed(dj_insert, setup=dj_clear))

    # export (verified copy out) vs cp, and vs DataJoint's fetch
    h = sql("SELECT hash FROM bench.`~external_localattach`")[0][0]
    out = world.dirs["export"]

    def export_clear():
        shutil.rmtree(out / "x", ignore_errors=True)

    def udf_export():
        sql("SELECT dj_udf.attach_export('localattach', 'bench', %s, 'bench.raw', %s)", (h, str(out / "x")))

    def dl_clear():
        shutil.rmtree(base / "dl", ignore_errors=True)
        (base / "dl").mkdir()

    def dj_fetch():
        Blob.fetch1("att", download_path=str(base / "dl"))

    t_exp = timed(udf_export, setup=export_clear)
    row("dj_udf.attach_export", t_exp, "cp + sync", timed(cp_sync, setup=cp_clear))
    row("dj_udf.attach_export", t_exp, "DataJoint fetch1", timed(dj_fetch, setup=dl_clear))

    # verify (read + hash) vs md5sum of the stored object
    obj = next((world.dirs["attach"] / "bench").rglob("*.bench.raw"))
    t_ver = timed(lambda: sql("SELECT dj_verify('localattach', 'bench', hash, size, attachment_name, filepath, contents_hash) "
                              "FROM bench.`~external_localattach`"))
    row("dj_verify", t_ver, "md5sum", timed(lambda: subprocess.run(["md5sum", str(obj)], check=True, capture_output=True)))

    s3_results = run_s3(world, src, base, djc, sql) if world.s3_running() else []

    growth = (peak_kib(pid) - peak0) / 1024
    print(f"\n{mib} MiB file, best of 3, warm page cache, {os.cpu_count()} cores")
    print(f"{'operation':26} {'MB/s':>8}   {'reference':18} {'MB/s':>8}   ratio (ours / reference speed)")
    for what, ours, ref, theirs, ratio in results:
        print(f"{what:26} {ours:8.0f}   {ref:18} {theirs:8.0f}   {ratio:5.2f}")
    if s3_results:
        print("\nS3 store (s3s-fs on 127.0.0.1), DataJoint through minio-py")
        print(f"{'operation':34} {'ours':>10}   {'DataJoint':>10}   ratio (ours / DataJoint speed)")
        for what, ours, theirs, unit in s3_results:
            print(f"{what:34} {ours:10.1f}   {theirs:10.1f}   {ours / theirs:5.2f}   ({unit})")
    print(f"server peak memory growth during all of it: {growth:.1f} MiB")
    djc.close()


def run_s3(world, src, base, djc, sql):
    """The same jobs on an S3 store: one large file, then many small ones."""
    store = "s3attach"
    spec = world.base_config["stores"][store]
    dj.config["stores"] = {store: {k: v for k, v in spec.items() if k in
                                   ("protocol", "endpoint", "bucket", "access_key", "secret_key", "location")}}
    schema = dj.Schema("bench_s3", connection=djc)
    sql("CREATE DATABASE IF NOT EXISTS bench_s3")
    sql("CALL dj_udf.create_tracking_table('bench_s3', %s)", (store,))

    @schema
    class Big(dj.Manual):
        definition = """
        k : int
        ---
        att : attach@s3attach
        """

    @schema
    class Small(dj.Manual):
        definition = """
        k : int
        ---
        att : attach@s3attach
        """

    out = []
    size = src.stat().st_size

    def wipe():
        Big.delete_quick()
        Small.delete_quick()
        sql("DELETE FROM bench_s3.`~external_s3attach`")
        shutil.rmtree(world.dirs["s3root"] / spec["bucket"] / spec["location"], ignore_errors=True)

    t_ours = timed(lambda: sql("CALL dj_udf.attach_put_file(%s, 'bench_s3', %s, @h)", (store, str(src))),
                   setup=wipe)
    t_dj = timed(lambda: Big.insert1(dict(k=1, att=str(src))), setup=wipe)
    out.append(("attach put, one large file", size / t_ours / 1e6, size / t_dj / 1e6, "MB/s"))
    h = sql("SELECT att FROM bench_s3.big")[0][0]
    exp = world.dirs["export"] / "s3"

    t_ours = timed(lambda: sql("SELECT dj_udf.attach_export(%s, 'bench_s3', %s, 'bench.raw', %s)", (store, h, str(exp))),
                   setup=lambda: shutil.rmtree(exp, ignore_errors=True))

    def dl_clear():
        shutil.rmtree(base / "dl3", ignore_errors=True)
        (base / "dl3").mkdir()

    t_dj = timed(lambda: Big.fetch1("att", download_path=str(base / "dl3")), setup=dl_clear)
    out.append(("attach fetch, one large file", size / t_ours / 1e6, size / t_dj / 1e6, "MB/s"))

    # many small objects: per-object overhead (DataJoint issue #806)
    n = 200
    small = base / "small"
    small.mkdir(exist_ok=True)
    for i in range(n):
        (small / f"s{i}.bin").write_bytes(os.urandom(100_000))
    sql("CREATE TABLE IF NOT EXISTS bench_s3.small_sql (k int PRIMARY KEY, att binary(16))")

    def ours_small():
        for i in range(n):
            sql("CALL dj_udf.attach_put(%s, 'bench_s3', %s, %s, @h)", (store, f"s{i}.bin", (small / f"s{i}.bin").read_bytes()))

    def dj_small():
        Small.insert([dict(k=i, att=str(small / f"s{i}.bin")) for i in range(n)])

    t_ours = timed(ours_small, repeat=1, setup=wipe)
    t_dj = timed(dj_small, repeat=1, setup=wipe)
    out.append((f"attach put, {n} x 100 kB", n / t_ours, n / t_dj, "objects/s"))
    t_ours = timed(lambda: sql("SELECT COUNT(CONVERT(dj_verify(%s, 'bench_s3', hash, size, attachment_name, filepath, "
                               "contents_hash) USING utf8mb4) = 'ok') FROM bench_s3.`~external_s3attach`", (store,)), repeat=1)
    dl_clear()
    t_dj = timed(lambda: Small.fetch("att", download_path=str(base / "dl3")), repeat=1)
    out.append((f"verify (ours) / fetch (DJ), {n} x 100 kB", n / t_ours, n / t_dj, "objects/s"))
    return out


if __name__ == "__main__":
    main()
