"""Random arity, types, NULLs and long values against every function through
the real server: any SQL error is fine, a lost connection or a dead server is
not."""

import os
import random

import pymysql
import pytest

FUNCTIONS = [
    "dj_checksum", "dj_file_checksum", "dj_blob_put", "dj_blob_get", "dj_attach_put", "dj_attach_put_file",
    "dj_attach_get", "dj_attach_export", "dj_filepath_info", "dj_filepath_put", "dj_filepath_get", "dj_verify",
    "dj_object_size", "dj_delete_object", "dj_last_error", "dj_stores", "dj_version",
]
ROUTINES = {
    "dj_udf.blob_get": 3, "dj_udf.attach_get": 4, "dj_udf.attach_export": 5, "dj_udf.filepath_get": 4,
}

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


def test_fuzz_every_function(world):
    rng = random.Random(20261125)
    (world.dirs["import"] / "f.bin").write_bytes(b"fuzz input")
    pid = world.server_pid()
    conn = world.connect()
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS t_fuzz")
    errors = 0
    for i in range(CALLS):
        if rng.random() < 0.85:
            name = rng.choice(FUNCTIONS)
            nargs = rng.randint(0, 8)
        else:
            name, n = rng.choice(list(ROUTINES.items()))
            nargs = n
        args = [rng.choice(values(rng, world)) for _ in range(nargs)]
        q = f"SELECT {name}({', '.join(['%s'] * nargs)})"
        try:
            with conn.cursor() as cur:
                cur.execute(q, args)
                cur.fetchall()
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
