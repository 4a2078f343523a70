"""Calls the library's functions directly, the way the server does (init,
row, deinit through ctypes, see udf_direct.py), tens of thousands of times
each, and prints this process's resident memory growth per function and
calling pattern as JSON. Used by test_robustness.py: a leak of 1 KiB per
row or per statement shows as megabytes here, where the server's own
memory use would hide it.

    python leak_direct.py LIBRARY CALLS CASES_JSON   (config from DJ_UDF_CONFIG)

CASES_JSON maps a case name to [function, arg, ...] with each arg a string
(sent as UTF-8), {"hex": "…"} (raw bytes) or null. Each case runs in three
patterns: "statements" (init, row, deinit, CALLS times), "rows" (one init,
CALLS rows, one deinit), each after a warm-up of CALLS // 5, and a case
named "!name" runs only its init, which must fail (an init error is not
followed by deinit, as in the server). The output also has each other
case's first result (text, or null for NULL), so a test can check that the
calls did what they were meant to.
"""

import ctypes as C
import json
import pathlib
import sys

from udf_direct import UdfArgs, UdfInit


def rss():
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def value(v):
    if v is None:
        return None
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return v.encode()


class Prepared:
    """One call site: the argument structures built once, reused for every call."""

    def __init__(self, lib, name, values):
        n = len(values)
        self.bufs = [C.create_string_buffer(v, len(v)) if v is not None else None for v in values]
        self.types = (C.c_int * n)(*[0] * n)
        self.ptrs = (C.c_char_p * n)(*[C.cast(b, C.c_char_p) if b is not None else None for b in self.bufs])
        self.lens = (C.c_ulong * n)(*[len(v) if v is not None else 0 for v in values])
        self.args = UdfArgs(n, self.types, self.ptrs, self.lens, None, None, None, None)
        self.initid = UdfInit()
        self.msg = C.create_string_buffer(512)
        self.result = C.create_string_buffer(766)
        self.length, self.is_null, self.error = C.c_ulong(0), C.c_char(b"\0"), C.c_char(b"\0")
        self.init_fn = getattr(lib, name + "_init")
        self.init_fn.restype = C.c_char
        self.row_fn = getattr(lib, name)
        self.row_fn.restype = C.c_void_p
        self.deinit_fn = getattr(lib, name + "_deinit")
        self.deinit_fn.restype = None

    def init(self):
        self.initid.ptr = None
        return self.init_fn(C.byref(self.initid), C.byref(self.args), self.msg) == b"\0"

    def row(self):
        self.is_null.value = b"\0"
        p = self.row_fn(C.byref(self.initid), C.byref(self.args), self.result, C.byref(self.length),
                        C.byref(self.is_null), C.byref(self.error))
        return None if self.is_null.value != b"\0" else C.string_at(p, self.length.value)

    def deinit(self):
        self.deinit_fn(C.byref(self.initid))


def statements(p, n):
    for _ in range(n):
        assert p.init(), p.msg.value
        p.row()
        p.deinit()


def rows(p, n):
    assert p.init(), p.msg.value
    for _ in range(n):
        p.row()
    p.deinit()


def failing_inits(p, n):
    for _ in range(n):
        assert not p.init()


def main():
    lib = C.CDLL(sys.argv[1])
    calls = int(sys.argv[2])
    cases = json.loads(sys.argv[3])
    growth, results = {}, {}
    for case, (fn, *args) in cases.items():
        p = Prepared(lib, fn, [value(a) for a in args])
        if not case.startswith("!"):
            assert p.init(), p.msg.value
            r = p.row()
            p.deinit()
            results[case] = None if r is None else r.decode(errors="replace")[:1000]
        patterns = [("init", failing_inits)] if case.startswith("!") else [("statements", statements), ("rows", rows)]
        for pattern, run in patterns:
            run(p, calls // 5)
            before = rss()
            run(p, calls)
            growth[f"{case} {pattern}"] = rss() - before
    print(json.dumps({"growth": growth, "results": results}))


if __name__ == "__main__":
    main()
