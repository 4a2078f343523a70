"""Throughput of the server-side functions against references run in the same
script on the same files: md5sum (the MD5 stream, the limit of any verified
transfer), cp + sync, and DataJoint 0.14.9 doing the same job. Every row is
run with one connection, then with four at once (the references four at
once too). Prints rates, ratios and the server's peak memory; asserts nothing.

    scripts/bench.sh [MiB] [small objects]     (default 512 and 2000)
"""

import multiprocessing
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"

import datajoint as dj  # noqa: E402
import pymysql  # noqa: E402
from conftest import World, batch, reset_peak, settled, vm  # noqa: E402

dj.logger.setLevel("WARNING")

REPEAT = 3
CONNS = 4
SMALL = 4096
BATCH = 500  # attachments per CALL dj_udf.attach_put_many


def timed(fn, repeat=REPEAT, setup=None):
    """Best of `repeat` runs, in seconds (warm page cache, as on a busy
    server), and the spread (worst / best); `setup` runs before each, untimed."""
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        # what the setup deleted or wrote is written back before the clock
        # starts, not charged to the run (a journal full of the last round's
        # unlinks slows every fsync of the next)
        os.sync()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), max(times) / min(times)


def parallel(fns):
    """Runs the functions at once, each in its own thread; re-raises the first failure."""
    errors = []

    def wrap(f):
        try:
            f()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Bench:
    def __init__(self, world, base, mib, small):
        self.world, self.base, self.mib, self.small = world, base, mib, small
        self.rows = []
        self.notes = []
        self.pid = world.server_pid()
        self.conns = [world.connect() for _ in range(CONNS)]

    def sql(self, q, args=None, c=0):
        with self.conns[c].cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall()

    def row(self, group, what, ours, ref_name, ref, unit):
        """ours/ref are (seconds, spread); unit: ("MB/s", bytes) or ("rows/s", rows)."""
        name, amount = unit
        self.rows.append((group, what, amount / ours[0], ours[1], ref_name, amount / ref[0], ref[1], ref[0] / ours[0], name))
        r = self.rows[-1]
        print(f"  {group:7} {what:52} {r[2]:7.0f} ({r[3]:4.2f})  {ref_name:38} {r[5]:7.0f} ({r[6]:4.2f})  {r[7]:5.2f}  {name}", flush=True)

    def peak_mib(self):
        return vm(self.pid)["VmHWM"] / 2**20


def files(world, mib, n):
    out = []
    block = os.urandom(1 << 20)
    for k in range(n):
        p = world.dirs["import"] / f"bench{k}.raw"
        with open(p, "wb") as f:
            for i in range(mib):
                f.write(block[:-9] + bytes([k]) + i.to_bytes(8, "little"))
        out.append(p)
    return out


def md5sum(paths):
    procs = [subprocess.Popen(["md5sum", str(p)], stdout=subprocess.DEVNULL) for p in paths]
    assert all(p.wait() == 0 for p in procs)


def dj_setup(world):
    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False
    dj.config["display.progress"] = False
    spec = world.base_config["stores"]
    dj.config["stores"] = {"localattach": dict(spec["localattach"]),
                           "data": {k: spec["data"][k] for k in ("protocol", "location", "stage")}}


def dj_schema(world):
    """A DataJoint connection and the benchmark's tables on it (declared once,
    found again by every later connection)."""
    conn = dj.Connection(f"127.0.0.1:{world.port}", "dj", "dj", use_tls=False)
    schema = dj.Schema("bench_dj", connection=conn)

    @schema
    class Big(dj.Manual):
        definition = """
        k : int
        ---
        att : attach@localattach
        """

    @schema
    class Small(dj.Manual):
        definition = """
        k : int
        ---
        att : attach@localattach
        """

    return conn, Big, Small


def dj_job(world, job, k, arg, out):
    """One DataJoint client's work, in a process of its own (as four users
    would run it); sends its time through `out`."""
    conn, Big, Small = dj_schema(world)
    t = time.perf_counter()
    if job == "insert1":
        Big.insert1(dict(k=k, att=str(arg)))
    elif job == "fetch1":
        (Big & dict(k=k)).fetch1("att", download_path=str(arg))
    elif job == "small":
        first, paths = arg
        for i, p in enumerate(paths):
            Small.insert1(dict(k=first + i, att=str(p)))
    elif job == "small_batch":
        first, paths = arg
        Small.insert([dict(k=first + i, att=str(p)) for i, p in enumerate(paths)])
    elif job == "fetch":
        first, count, folder = arg
        (Small & f"k >= {first} and k < {first + count}").fetch("att", download_path=str(folder))
    out.put(time.perf_counter() - t)
    conn.close()


def dj_run(world, job, args):
    """Runs DataJoint clients at once, one process each; wall time, in seconds."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=dj_job, args=(world, job, k, a, q)) for k, a in args]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - t
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return wall


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    small = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    base = pathlib.Path(tempfile.mkdtemp(prefix="dj-bench-"))
    world = World(base)
    if world.s3_available():
        world.s3_start()
    world.start()
    try:
        run(world, mib, small, base)
    finally:
        world.stop()
        world.s3_stop()
        shutil.rmtree(base, ignore_errors=True)


def run(world, mib, small, base):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    fs = subprocess.run(["df", "--output=fstype", str(world.dirs["attach"])], capture_output=True, text=True).stdout.split()[-1]
    print(f"machine: {cpu}, {os.cpu_count()} cores, store on {fs}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"load average before: {os.getloadavg()[0]:.1f}; {mib} MiB files, {small} x {SMALL // 1024} KiB objects, "
          f"best of {REPEAT} (spread = worst/best)", flush=True)
    print(f"  {'':7} {'operation':52} {'ours (spread)':>14}  {'reference':38} {'theirs (spread)':>14}  ratio", flush=True)
    srcs = files(world, mib, CONNS)
    size = srcs[0].stat().st_size
    b = Bench(world, base, mib, small)
    b.sql("CREATE DATABASE bench")
    for store in ("localattach", "data"):
        b.sql("CALL dj_udf.create_tracking_table('bench', %s)", (store,))
    b.sql("CREATE TABLE bench.small (k int PRIMARY KEY, att binary(16) NOT NULL)")
    dj_setup(world)
    djc, Big, Small = dj_schema(world)
    peak0 = b.peak_mib()
    large(b, srcs, size)
    peak_large = b.peak_mib()
    small_objects(b, Small)
    peak_small = b.peak_mib()
    memory(b, peak0, peak_large, peak_small)
    if world.s3_running():
        s3_results = run_s3(world, srcs[0], base, djc, b.sql)
        print("\nS3 store (s3s-fs on 127.0.0.1), DataJoint through minio-py")
        print(f"{'operation':34} {'ours':>10}   {'DataJoint':>10}   ratio (ours / DataJoint speed)")
        for what, ours, theirs, unit in s3_results:
            print(f"{what:34} {ours:10.1f}   {theirs:10.1f}   {ours / theirs:5.2f}   ({unit})")
    djc.close()


def large(b, srcs, size):
    world, base = b.world, b.base
    attach, export = world.dirs["attach"], world.dirs["export"]
    stage, data = world.dirs["stage"], world.dirs["data"]

    def clear_objects():
        b.sql("DELETE FROM bench.`~external_localattach`")
        shutil.rmtree(attach / "bench", ignore_errors=True)

    def dj_clear():
        conn, big, _ = dj_schema(world)
        big.delete_quick()
        conn.query("DELETE FROM bench_dj.`~external_localattach`")
        conn.close()
        shutil.rmtree(attach / "bench_dj", ignore_errors=True)

    for n, group in [(1, "1 conn"), (CONNS, f"{CONNS} conns")]:
        mb = ("MB/s", size * n / 1e6)
        part = srcs[:n]
        ours = timed(lambda: parallel([lambda c=c, p=p: b.sql("SELECT dj_file_checksum(%s)", (str(p),), c) for c, p in enumerate(part)]))
        ref_md5 = timed(lambda: md5sum(part))
        b.row(group, "dj_file_checksum", ours, "md5sum", ref_md5, mb)

        def put():
            parallel([lambda c=c, p=p: b.sql("CALL dj_udf.attach_put_file('localattach', 'bench', %s, @h)", (str(p),), c)
                      for c, p in enumerate(part)])

        peak_before = b.peak_mib()
        ours = timed(put, setup=clear_objects)
        if n == 1:
            b.notes.append(f"server peak memory growth during {mib_of(size)} MiB file puts: {b.peak_mib() - peak_before:.1f} MiB")
        ref = timed(lambda: dj_run(world, "insert1", list(enumerate(part))), setup=dj_clear)
        b.row(group, "dj_udf.attach_put_file (hash+copy+fsync)", ours, "DataJoint insert1 (no fsync)", ref, mb)

        def cp_sync():
            procs = [subprocess.Popen(["sh", "-c", f"cp {p} {base}/cp{k}.raw && sync {base}/cp{k}.raw"]) for k, p in enumerate(part)]
            assert all(x.wait() == 0 for x in procs)

        def cp_clear():
            for k in range(n):
                (base / f"cp{k}.raw").unlink(missing_ok=True)

        b.row(group, "dj_udf.attach_put_file", ours, "cp + sync (no hash)", timed(cp_sync, setup=cp_clear), mb)

        hashes = [b.sql("SELECT hash FROM bench.`~external_localattach` WHERE attachment_name = %s", (p.name,))[0][0] for p in part]

        def export_clear():
            shutil.rmtree(export / "x", ignore_errors=True)

        def exp():
            parallel([lambda c=c, p=p, h=h: b.sql("SELECT dj_udf.attach_export('localattach', 'bench', %s, %s, %s)",
                                                  (h, p.name, str(export / "x" / str(c))), c)
                      for c, (p, h) in enumerate(zip(part, hashes))])

        ours = timed(exp, setup=export_clear)
        b.row(group, "dj_udf.attach_export (verified copy+fsync)", ours, "md5sum", ref_md5, mb)

        def dl_clear():
            for k in range(n):
                shutil.rmtree(base / f"dl{k}", ignore_errors=True)
                (base / f"dl{k}").mkdir()

        b.row(group, "dj_udf.attach_export", ours, "DataJoint fetch1 (no check, no fsync)",
              timed(lambda: dj_run(world, "fetch1", [(k, base / f"dl{k}") for k in range(n)]), setup=dl_clear), mb)

        # filepath: the stage copy made again from the store, checked and fsync'd
        for k, p in enumerate(part):
            shutil.copyfile(p, stage / f"fp{k}.raw")
            b.sql("CALL dj_udf.filepath_put('data', 'bench', %s, @h)", (str(stage / f"fp{k}.raw"),))
        rows = [b.sql("SELECT filepath, contents_hash, size FROM bench.`~external_data` WHERE filepath = %s", (f"fp{k}.raw",))[0]
                for k in range(n)]

        def stage_clear():
            for k in range(n):
                (stage / f"fp{k}.raw").unlink(missing_ok=True)

        ours = timed(lambda: parallel([lambda c=c, r=r: b.sql("SELECT dj_udf.filepath_get('data', %s, %s, %s)", r, c)
                                       for c, r in enumerate(rows)]), setup=stage_clear)
        b.row(group, "dj_udf.filepath_get (verified copy+fsync)", ours, "md5sum", ref_md5, mb)

        objs = [next((attach / "bench").rglob(f"*.{p.name}")) for p in part]
        ours = timed(lambda: parallel([lambda c=c, p=p: b.sql(
            "SELECT dj_verify('localattach', 'bench', hash, size, attachment_name, filepath, contents_hash) "
            "FROM bench.`~external_localattach` WHERE attachment_name = %s", (p.name,), c) for c, p in enumerate(part)]))
        b.row(group, "dj_verify", ours, "md5sum", timed(lambda: md5sum(objs)), mb)
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        b.sql("DELETE FROM bench.`~external_data`")


def mib_of(n):
    return n >> 20


def small_objects(b, Small):
    world, base, n = b.world, b.base, b.small
    folder = base / "small"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"s{i}.bin"
        p.write_bytes(os.urandom(SMALL))
        paths.append(p)
    payloads = [p.read_bytes() for p in paths]
    rows = ("rows/s", n)

    # Each round puts objects of its own: the same keys again, right after
    # the last round deleted them, would meet the delete-marked records that
    # InnoDB has not purged yet (next-key locks between connections), which
    # is not what a put of new data meets.
    round_no = [0]

    def payload(i):
        return payloads[i] + f"/{round_no[0]}".encode()

    def purged():
        """Waits (up to 30 s) until InnoDB has purged the rows a setup
        deleted, so that its purge threads do not share the cores with the
        next run."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (n,), = b.sql("SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'")
            if n < 100:
                return
            time.sleep(0.1)

    # Nothing is deleted between rounds: the last round's folder is moved
    # aside (one rename) and removed at the end. On a file system mounted
    # with `discard` (this machine's is), thousands of files deleted just
    # before make the next round's journal commits, and so its fsyncs, 30
    # to 40% slower (measured with write + fsync + rename outside the
    # server): a cost of the setup, not of the puts.
    aside = []

    def move_aside(folder):
        if folder.exists():
            aside.append(folder.with_name(f"{folder.name}-old-{len(aside)}"))
            folder.rename(aside[-1])

    def clear(keep_folders=False):
        """Empties the tables; with keep_folders the round's objects go into
        the folders of the last (new objects beside the old ones)."""
        round_no[0] += 1
        b.sql("DELETE FROM bench.small")
        b.sql("DELETE FROM bench.`~external_localattach`")
        if not keep_folders:
            move_aside(world.dirs["attach"] / "bench")
        purged()

    def dj_clear():
        Small.delete_quick()
        conn, big, _ = dj_schema(world)
        big.delete_quick()
        conn.query("DELETE FROM bench_dj.`~external_localattach`")
        conn.close()
        move_aside(world.dirs["attach"] / "bench_dj")
        purged()

    deadlocks = [0]

    def puts(c, first, count, txn):
        """Rows first .. first + count - 1, as a client must write them:
        a transaction (or, in autocommit, a row) that ends in a deadlock is
        run again."""
        def rows(cur, ids):
            for i in ids:
                cur.execute("CALL dj_udf.attach_put('localattach', 'bench', %s, %s, @h)", (paths[i].name, payload(i)))
                cur.execute("INSERT INTO bench.small VALUES (%s, @h)", (i,))

        def again(work):
            for _ in range(50):
                try:
                    return work()
                except pymysql.err.OperationalError as e:
                    if e.args[0] != 1213:
                        raise
                    deadlocks[0] += 1
                    cur.execute("ROLLBACK")
            raise RuntimeError("deadlocked 50 times in a row")

        with b.conns[c].cursor() as cur:
            if txn:
                again(lambda: (cur.execute("START TRANSACTION"), rows(cur, range(first, first + count)), cur.execute("COMMIT")))
            else:
                for i in range(first, first + count):
                    again(lambda i=i: rows(cur, [i]))

    def counters():
        got = dict(b.sql("SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_data_fsyncs', 'Questions', 'Com_call_procedure', "
                         "'Com_insert', 'Com_execute_sql', 'Com_prepare_sql', 'Com_dealloc_sql', 'Com_set_option')"))
        return {k: int(v) for k, v in got.items()}

    ref = timed(lambda: dj_run(world, "small", [(0, (0, paths))]), setup=dj_clear)
    b.notes.append(f"DataJoint insert1 of {n} x {SMALL // 1024} KiB: {n / ref[0]:.0f} rows/s (one client)")
    # Into a new schema (each put also creates and syncs its folders), then
    # into folders that exist (a store in use).
    for txn, keep, what in [(False, False, "autocommit"), (True, False, "one transaction"),
                            (False, True, "autocommit, folders exist"), (True, True, "one transaction, folders exist")]:
        before = counters()
        ours = timed(lambda: puts(0, 0, n, txn), setup=lambda: clear(keep))
        after = counters()
        per = {k: (after[k] - before[k]) / (REPEAT * n) for k in after}
        b.row("1 conn", f"{n} x CALL attach_put + INSERT, {what}", ours, "DataJoint insert1, one client", ref, rows)
        b.notes.append(f"per row, {what}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items())))
    # What the routine's own SQL costs: the function and the two INSERTs
    # without the routine (no dynamic SQL, no nested CALLs, no checks).
    def bare(c, first, count):
        with b.conns[c].cursor() as cur:
            cur.execute("START TRANSACTION")
            for i in range(first, first + count):
                cur.execute("SET @h = dj_attach_put('localattach', 'bench', %s, %s)", (paths[i].name, payload(i)))
                cur.execute("INSERT INTO bench.`~external_localattach` (hash, size, attachment_name) VALUES (@h, %s, %s) "
                            "ON DUPLICATE KEY UPDATE timestamp = CURRENT_TIMESTAMP", (SMALL, paths[i].name))
                cur.execute("INSERT INTO bench.small VALUES (%s, @h)", (i,))
            cur.execute("COMMIT")

    ours = timed(lambda: bare(0, 0, n), setup=lambda: clear(True))
    b.row("1 conn", f"{n} x dj_attach_put + 2 INSERTs, no routine, one txn", ours, "DataJoint insert1, one client", ref, rows)
    for txn, what in [(False, "autocommit"), (True, "a transaction each")]:
        share = n // CONNS
        ours = timed(lambda: parallel([lambda c=c: puts(c, c * share, share, txn) for c in range(CONNS)]), setup=clear)
        b.row(f"{CONNS} conns", f"{n} x CALL attach_put + INSERT, {what}", ours, "DataJoint insert1, one client", ref, rows)

    # Many rows per statement: batches of BATCH attachments in one
    # CALL dj_udf.attach_put_many each, and one INSERT ... SELECT per batch,
    # a transaction per connection; against DataJoint's insert1 and its
    # own many-row insert (one call for the whole list).
    def batches(c, first, count):
        with b.conns[c].cursor() as cur:
            cur.execute("START TRANSACTION")
            for at in range(first, first + count, BATCH):
                ids = range(at, min(at + BATCH, first + count))
                cur.execute("CALL dj_udf.attach_put_many('localattach', 'bench', %s, %s, @objects)",
                            batch([(paths[i].name, payload(i)) for i in ids]))
                cur.execute("INSERT INTO bench.small SELECT %s + j.n - 1, UNHEX(j.hash) FROM JSON_TABLE(@objects, '$[*]' "
                            "COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j", (at,))
            cur.execute("COMMIT")

    ref_many = timed(lambda: dj_run(world, "small_batch", [(0, (0, paths))]), setup=dj_clear)
    b.notes.append(f"DataJoint insert of {n} x {SMALL // 1024} KiB in one call: {n / ref_many[0]:.0f} rows/s (one client)")
    for c_n, group in [(1, "1 conn"), (CONNS, f"{CONNS} conns")]:
        share = n // c_n
        ours = timed(lambda: parallel([lambda c=c: batches(c, c * share, share) for c in range(c_n)]), setup=clear)
        what = f"{n} x attach_put_many in batches of {BATCH} + INSERT ... SELECT"
        b.row(group, what, ours, "DataJoint insert1, one client", ref, rows)
        b.row(group, what, ours, "DataJoint insert (one call), one client", ref_many, rows)
    b.notes.append(f"small puts: {deadlocks[0]} deadlocked transactions (or autocommit rows) run again, in all rounds")
    for folder in aside:
        shutil.rmtree(folder, ignore_errors=True)

    # verified gets of every row in one SELECT vs DataJoint's fetch (downloads)
    get = ("SELECT k, dj_udf.attach_get('localattach', 'bench', s.att, x.attachment_name) FROM bench.small s "
           "JOIN bench.`~external_localattach` x ON x.hash = s.att WHERE k >= %s AND k < %s")
    for c_n, group in [(1, "1 conn"), (CONNS, f"{CONNS} conns")]:
        share = n // c_n
        ours = timed(lambda: parallel([lambda c=c: b.sql(get, (c * share, (c + 1) * share), c) for c in range(c_n)]))

        def dl_clear():
            for k in range(c_n):
                shutil.rmtree(base / f"sdl{k}", ignore_errors=True)
                (base / f"sdl{k}").mkdir()

        ref_get = timed(lambda: dj_run(world, "fetch", [(k, (k * share, share, base / f"sdl{k}")) for k in range(c_n)]), setup=dl_clear)
        b.row(group, f"{n} x verified get in one SELECT", ours, f"DataJoint fetch ({c_n} client{'s' if c_n > 1 else ''})",
              ref_get, rows)


def memory(b, peak0, peak_large, peak_small):
    """The server's own cost of receiving 128 MiB, and what a put of them adds."""
    payload = os.urandom(128 << 20)
    forms = {
        "SELECT LENGTH(<literal>)": ("SELECT LENGTH(%s)", (payload,)),
        "SELECT dj_attach_put(..., <literal>)": ("SELECT LENGTH(dj_attach_put('localattach', 'bench', 'mem.bin', %s))", (payload,)),
        "SELECT dj_attach_put(..., IF(RAND() >= 0, <literal>, NULL))":
            ("SELECT LENGTH(dj_attach_put('localattach', 'bench', 'mem1.bin', IF(RAND() >= 0, %s, NULL)))", (payload,)),
        "CALL dj_udf.attach_put": ("CALL dj_udf.attach_put('localattach', 'bench', 'mem2.bin', %s, @h)", (payload,)),
    }
    costs = {}
    for what, (q, args) in forms.items():
        conn = b.world.connect()  # a new one each: none reuses buffers another grew
        try:
            settled(b.pid)  # what the last connection freed is gone first
            base = reset_peak(b.pid)["VmRSS"] / 2**20  # the peak starts again from here
            with conn.cursor() as cur:
                cur.execute(q, args)
            costs[what] = b.peak_mib() - base
        finally:
            conn.close()
    mb = len(payload) / 2**20
    print()
    for note in b.notes:
        print(note)
    print(f"server peak memory: +{peak_large - peak0:.1f} MiB over the large-file runs, +{peak_small - peak_large:.1f} MiB over "
          f"the small-object runs")
    print("client bytes, 128 MiB, each on a new connection with the server's peak reset: " + "; ".join(f"{what} +{cost / mb:.2f}x the payload"
                                                                            for what, cost in costs.items()))


def run_s3(world, src, base, djc, sql):
    """The same jobs on an S3 store: one large file, then many small ones."""

    def best(*args, **kw):
        return timed(*args, **kw)[0]

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

    t_ours = best(lambda: sql("CALL dj_udf.attach_put_file(%s, 'bench_s3', %s, @h)", (store, str(src))),
                   setup=wipe)
    t_dj = best(lambda: Big.insert1(dict(k=1, att=str(src))), setup=wipe)
    out.append(("attach put, one large file", size / t_ours / 1e6, size / t_dj / 1e6, "MB/s"))
    h = sql("SELECT att FROM bench_s3.big")[0][0]
    exp = world.dirs["export"] / "s3"

    t_ours = best(lambda: sql("SELECT dj_udf.attach_export(%s, 'bench_s3', %s, %s, %s)", (store, h, src.name, str(exp))),
                   setup=lambda: shutil.rmtree(exp, ignore_errors=True))

    def dl_clear():
        shutil.rmtree(base / "dl3", ignore_errors=True)
        (base / "dl3").mkdir()

    t_dj = best(lambda: Big.fetch1("att", download_path=str(base / "dl3")), setup=dl_clear)
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

    t_ours = best(ours_small, repeat=1, setup=wipe)
    t_dj = best(dj_small, repeat=1, setup=wipe)
    out.append((f"attach put, {n} x 100 kB", n / t_ours, n / t_dj, "objects/s"))
    t_ours = best(lambda: sql("SELECT COUNT(CONVERT(dj_verify(%s, 'bench_s3', hash, size, attachment_name, filepath, "
                               "contents_hash) USING utf8mb4) = 'ok') FROM bench_s3.`~external_s3attach`", (store,)), repeat=1)
    dl_clear()
    t_dj = best(lambda: Small.fetch("att", download_path=str(base / "dl3")), repeat=1)
    out.append((f"verify (ours) / fetch (DJ), {n} x 100 kB", n / t_ours, n / t_dj, "objects/s"))
    return out


if __name__ == "__main__":
    main()
