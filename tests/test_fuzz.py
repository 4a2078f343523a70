"""Random arity, types, NULLs and long values against every function through
the real server: any SQL error is fine, a lost connection or a dead server is
not."""

import os
import random

import pymysql
import pytest

# mysql.func's ret: what a loadable function declared it returns.
RESULT_TYPES = {0: (bytes, str), 1: (float,), 2: (int,), 4: (bytes, str, int, float)}

CALLS = int(os.environ.get("DJ_FUZZ_CALLS", "3000"))


def values(rng, world):
    imp = str(world.dirs["import"])
    return [
        None, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, float("1e308"),
        "", "main", "localattach", "data", "same", "remote", "s3attach", "s3data", "MAIN", "nosuch", "a", "x" * 70, "../x", "a`b",
        "t_fuzz", "/etc/passwd", imp, imp + "/f.bin", imp + "/../outside", "/", "//", "\0", "a\0b", ".", "..",
        "sub/dir/file.dat", "d41d8cd98f00b204e9800998ecf8427e", "6f5902ac-2370-24bd-d0c1-76cb93063dc4",
        os.urandom(16), os.urandom(rng.randint(0, 64)), b"dj0\0" + os.urandom(rng.randint(0, 300)),
        b"mYm\0", "ü" * rng.randint(1, 300), "x" * rng.randint(200, 5000),
        os.urandom(rng.choice([255, 256, 1000, 70_000])), str(world.dirs["export"]), str(world.dirs["stage"]) + "/f",
    ]


def registered_functions(cur):
    """The library's loadable functions as the server has them registered: name -> ret."""
    cur.execute("SELECT name, ret FROM mysql.func WHERE dl = 'dj_udf.so' ORDER BY name")
    return dict(cur.fetchall())


def stored_functions(cur):
    """The stored functions of the dj_udf database: `dj_udf.name` -> number of parameters."""
    cur.execute("SELECT CONCAT('dj_udf.', SPECIFIC_NAME), COUNT(*) FROM information_schema.PARAMETERS "
                "WHERE SPECIFIC_SCHEMA = 'dj_udf' AND ROUTINE_TYPE = 'FUNCTION' AND ORDINAL_POSITION > 0 "
                "GROUP BY SPECIFIC_NAME ORDER BY SPECIFIC_NAME")
    return dict(cur.fetchall())


def test_fuzz_every_function(world, capsys):
    rng = random.Random(20261125)
    (world.dirs["import"] / "f.bin").write_bytes(b"fuzz input")
    pid = world.server_pid()
    conn = world.connect()
    with conn.cursor() as cur:
        functions, routines = registered_functions(cur), stored_functions(cur)
        cur.execute("CREATE DATABASE IF NOT EXISTS t_fuzz")
    assert functions, "mysql.func lists no function of dj_udf.so"
    assert routines, "the dj_udf database has no stored function"
    names = sorted(functions)
    called, returned, errors = dict.fromkeys(names, 0), dict.fromkeys(names, 0), 0
    for i in range(CALLS):
        if rng.random() < 0.85:
            name = names[i] if i < len(names) else rng.choice(names)  # each one at least once
            nargs = rng.randint(0, 8)
        else:
            name, nargs = rng.choice(list(routines.items()))
        args = [rng.choice(values(rng, world)) for _ in range(nargs)]
        q = f"SELECT {name}({', '.join(['%s'] * nargs)})"
        if name in functions:
            called[name] += 1
        try:
            with conn.cursor() as cur:
                cur.execute(q, args)
                (result,), = cur.fetchall()
            if name in functions:
                returned[name] += 1
                assert result is None or isinstance(result, RESULT_TYPES[functions[name]]), (q, args, result)
        except pymysql.err.OperationalError as e:
            if e.args[0] in (2006, 2013, 2003):
                pytest.fail(f"connection lost on call {i}: {q} {args!r:.300}")
            errors += 1
        except pymysql.err.MySQLError:
            errors += 1
    conn.close()
    assert world.alive() and world.server_pid() == pid, "the server must not restart or die"
    log = world.error_log()
    assert "Got signal" not in log and "crashed" not in log.lower()
    assert 0 < errors < CALLS, "the fuzz must exercise both failures and successes"
    assert all(called.values()), called
    with capsys.disabled():
        print(f"\n  fuzzed {len(names)} functions registered for dj_udf.so and {len(routines)} stored functions "
              f"with {CALLS} calls; per function, calls made/returned a value: "
              + ", ".join(f"{n} {called[n]}/{returned[n]}" for n in names))
