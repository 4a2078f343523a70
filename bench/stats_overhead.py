"""What the store counters and the transfer list cost on the small-object
path: N x 4 KiB `CALL dj_udf.attach_put` + INSERT on a file store, one
connection, with a library built without them (BASE) and with them (STATS),
swapped on one running server (rename into place, install.sql twice, as in
an upgrade) round after round, so that both see the same machine load.
Prints each round and the best and median of each, in wall time and in the
server's CPU time (utime + stime of mariadbd, which the machine's other load
disturbs far less than the fsync-bound wall time); asserts nothing.

    .venv/bin/python bench/stats_overhead.py BASE.so BASE_INSTALL.sql STATS.so STATS_INSTALL.sql [N] [ROUNDS]

BASE is built from the commit before the counters, e.g.

    git archive <commit> | tar -x -C /tmp/base && (cd /tmp/base && cargo build --release)
"""

import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from conftest import World  # noqa: E402


def install(world, library, script):
    plugin = world.srv / "plugin"
    shutil.copy(library, plugin / "dj_udf.so.new")
    os.replace(plugin / "dj_udf.so.new", plugin / "dj_udf.so")
    for _ in range(2):  # the second run loads the new file (README, Upgrade)
        with open(script) as f:
            subprocess.run(["mariadb", "--no-defaults", f"--socket={world.socket}", "-uroot"], stdin=f, check=True)


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(world, n, payloads):
    """Wall and server CPU seconds of n puts."""
    with world.connect() as c, c.cursor() as cur:
        cur.execute("DELETE FROM bench.small")
        cur.execute("DELETE FROM bench.`~external_localattach`")
        shutil.rmtree(world.dirs["attach"] / "bench", ignore_errors=True)
        pid = world.server_pid()
        t, cpu = time.perf_counter(), cpu_seconds(pid)
        for i in range(n):
            cur.execute("CALL dj_udf.attach_put('localattach', 'bench', %s, %s, @h)", (f"s{i}.bin", payloads[i]))
            cur.execute("INSERT INTO bench.small VALUES (%s, @h)", (i,))
        return time.perf_counter() - t, cpu_seconds(pid) - cpu


def main():
    base, base_sql, stats, stats_sql = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    world = World(pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"dj-stats-bench-{os.getpid()}")
    world.start()
    try:
        with world.connect() as c, c.cursor() as cur:
            cur.execute("CREATE DATABASE bench")
            cur.execute("CALL dj_udf.create_tracking_table('bench', 'localattach')")
            cur.execute("CREATE TABLE bench.small (k int PRIMARY KEY, att binary(16) NOT NULL)")
        payloads = [os.urandom(4096) for _ in range(n)]
        times = {"base": [], "stats": []}
        cpus = {"base": [], "stats": []}
        for r in range(rounds):
            for name, lib, script in [("base", base, base_sql), ("stats", stats, stats_sql)][:: 1 if r % 2 == 0 else -1]:
                install(world, lib, script)
                run(world, min(n, 200), payloads)  # warm up
                took, cpu = run(world, n, payloads)
                times[name].append(took)
                cpus[name].append(cpu)
                print(f"round {r + 1} {name:5}: {n / took:7.0f} puts/s ({took:.2f} s), server CPU {cpu / n * 1e6:.0f} us/put",
                      flush=True)
        for name in times:
            t, c = times[name], cpus[name]
            print(f"{name:5}: wall best {n / min(t):.0f} puts/s, median {n / statistics.median(t):.0f} puts/s; "
                  f"server CPU best {min(c) / n * 1e6:.1f} us/put, median {statistics.median(c) / n * 1e6:.1f} us/put")
        for what, d in [("wall time", times), ("server CPU", cpus)]:
            best = min(d["stats"]) / min(d["base"]) - 1
            median = statistics.median(d["stats"]) / statistics.median(d["base"]) - 1
            print(f"overhead of the counters in {what}: {best * 100:+.2f}% (best of {rounds}), {median * 100:+.2f}% (median)")
        print(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        world.stop()
        shutil.rmtree(world.base, ignore_errors=True)


if __name__ == "__main__":
    main()
