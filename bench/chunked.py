"""Objects through SQL from a client machine: a chunked upload and download
(examples/dj_chunked.py, 64 MiB parts over TCP) against the same bytes in
one statement (dj_udf.attach_put / attach_get, as large as the packet
allows) and against DataJoint 0.14.9 inserting and fetching the same file,
on a file store and on an S3 store. Prints MB/s (median of the runs and
their spread) and ratios; asserts nothing.

    scripts/bench.sh [MiB] [runs]     (this part: 1024 MiB, 3 runs)
"""

import hashlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import datajoint as dj  # noqa: E402
from conftest import World  # noqa: E402

CLIENT = ROOT / "examples" / "dj_chunked.py"
MiB = 1 << 20
# The largest single statement: the packet holds the escaped bytes (up to
# twice as many) plus the statement, and max_allowed_packet is at most 1 GiB.
SINGLE_MAX = 384 * MiB
DJ_KEYS = ("protocol", "endpoint", "bucket", "access_key", "secret_key", "location")


def runs_of(fn, runs, setup=None):
    """Seconds of each run; `setup` runs before each, untimed."""
    out = []
    for _ in range(runs):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def rate(size, secs):
    """(median, lowest, highest) MB/s."""
    speeds = sorted(size / s / 1e6 for s in secs)
    return statistics.median(speeds), speeds[0], speeds[-1]


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    base = pathlib.Path(tempfile.mkdtemp(prefix="dj-bench-chunked-"))
    world = World(base)
    world.base_config["max_get_bytes"] = 1 << 30
    world.write_config(world.base_config)
    if world.s3_available():
        world.s3_start()
    world.start()
    try:
        results = []
        for store, blobs in [("localattach", "main")] + ([("s3attach", "s3blobs")] if world.s3_running() else []):
            results += run(world, base, store, mib, runs)
        report(results, mib, runs)
    finally:
        world.stop()
        shutil.rmtree(base, ignore_errors=True)


def run(world, base, store, mib, runs):
    src = base / "bench.raw"
    if not src.exists():
        with open(src, "wb") as f:
            block = os.urandom(MiB)
            for i in range(mib):
                f.write(block[:-8] + i.to_bytes(8, "little"))
    size = src.stat().st_size
    schema = f"bench_{store}"
    conn = world.connect()
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {schema}")
    cur.execute("CALL dj_udf.create_tracking_table(%s, %s)", (schema, store))
    spec = world.base_config["stores"][store]
    objects = world.location(store) / schema

    def wipe():
        cur.execute(f"DELETE FROM {schema}.`~external_{store}`")
        shutil.rmtree(objects, ignore_errors=True)

    client = [sys.executable, str(CLIENT), "--host", "127.0.0.1", "--port", str(world.port), "--user", "dj", "--password", "dj"]
    out = base / "out.raw"
    name = "bench.raw"
    h = hashlib.md5(name.encode() + b"\0")
    with open(src, "rb") as f:
        while b := f.read(8 * MiB):
            h.update(b)
    h = h.hexdigest()

    def chunked_put():
        subprocess.run(client + ["put", store, schema, str(src), "--part-size", str(64 * MiB)], check=True, capture_output=True)

    def chunked_get():
        subprocess.run(client + ["get", store, schema, h, str(out)], check=True, capture_output=True)

    rows = []
    label = "file store" if spec["protocol"] == "file" else "S3 store (s3s-fs)"
    put_s = runs_of(chunked_put, runs, setup=wipe)
    get_s = runs_of(chunked_get, runs, setup=lambda: out.unlink(missing_ok=True))

    # the same bytes in one statement, as many as the packet allows
    one = min(size, SINGLE_MAX)
    with open(src, "rb") as f:
        piece = f.read(one)
    hp = hashlib.md5(b"piece.raw\0" + piece).digest()
    big = world.connect(host="127.0.0.1", port=world.port, user="dj", password="dj", unix_socket=None)
    bcur = big.cursor()

    def single_put():
        bcur.execute("CALL dj_udf.attach_put(%s, %s, 'piece.raw', %s, @h)", (store, schema, piece))

    def single_get():
        bcur.execute("SELECT dj_udf.attach_get(%s, %s, %s, 'piece.raw')", (store, schema, hp))
        assert len(bcur.fetchone()[0]) == one

    single_put_s = runs_of(single_put, runs, setup=wipe)
    single_get_s = runs_of(single_get, runs)
    big.close()
    del piece

    # DataJoint 0.14.9 inserting and fetching the file from the client's disk
    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False
    dj.config["display.progress"] = False
    dj.config["stores"] = {store: {k: v for k, v in spec.items() if k in DJ_KEYS}}
    djc = dj.Connection(f"127.0.0.1:{world.port}", "dj", "dj", use_tls=False)
    djs = dj.Schema(f"bench_dj_{store}", connection=djc)
    Rec = djs(type("Rec", (dj.Manual,), {"definition": f"k : int\n---\natt : attach@{store}\n"}))

    def dj_wipe():
        Rec.delete_quick()
        djs.external[store].delete(delete_external_files=True)

    dl = base / "dl"

    def dl_clear():
        shutil.rmtree(dl, ignore_errors=True)
        dl.mkdir()

    dj_put_s = runs_of(lambda: Rec.insert1(dict(k=1, att=str(src))), runs, setup=dj_wipe)
    dj_get_s = runs_of(lambda: Rec.fetch1("att", download_path=str(dl)), runs, setup=dl_clear)
    djc.close()
    wipe()
    shutil.rmtree(dl, ignore_errors=True)
    out.unlink(missing_ok=True)

    rows.append((label, "upload", rate(size, put_s), f"single attach_put ({one // MiB} MiB)", rate(one, single_put_s),
                 "DataJoint insert1", rate(size, dj_put_s)))
    rows.append((label, "download", rate(size, get_s), f"single attach_get ({one // MiB} MiB)", rate(one, single_get_s),
                 "DataJoint fetch1", rate(size, dj_get_s)))
    return rows


def report(results, mib, runs):
    print(f"\nchunked transfers through SQL, {mib} MiB, 64 MiB parts over TCP; median of {runs} runs (lowest-highest) in MB/s")
    for label, what, ours, one_name, one, dj_name, theirs in results:
        fmt = lambda r: f"{r[0]:6.0f} ({r[1]:.0f}-{r[2]:.0f})"  # noqa: E731
        print(f"{label:18} {what:8} chunked {fmt(ours)} | {one_name:28} {fmt(one)} ratio {ours[0] / one[0]:4.2f}"
              f" | {dj_name:17} {fmt(theirs)} ratio {ours[0] / theirs[0]:4.2f}")


if __name__ == "__main__":
    main()
