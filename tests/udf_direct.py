"""Calls the library's exported functions directly, the way the server does
(init, row, deinit with UDF_ARGS/UDF_INIT), from a single-threaded process.
Used by test_robustness.py under strace: any thread the library started,
even briefly, would show as a clone in this process.

    python udf_direct.py LIBRARY SCHEMA STORE...   (config from DJ_UDF_CONFIG)
"""

import ctypes as C
import os
import sys


class UdfArgs(C.Structure):
    _fields_ = [("arg_count", C.c_uint), ("arg_type", C.POINTER(C.c_int)), ("args", C.POINTER(C.c_char_p)),
                ("lengths", C.POINTER(C.c_ulong)), ("maybe_null", C.c_char_p), ("attributes", C.POINTER(C.c_char_p)),
                ("attribute_lengths", C.POINTER(C.c_ulong)), ("extension", C.c_void_p)]


class UdfInit(C.Structure):
    _fields_ = [("maybe_null", C.c_char), ("decimals", C.c_uint), ("max_length", C.c_ulong), ("ptr", C.c_void_p),
                ("const_item", C.c_char), ("extension", C.c_void_p)]


def call(lib, name, *values):
    """One statement with one row: returns the bytes, or None for NULL."""
    n = len(values)
    bufs = [C.create_string_buffer(v, len(v)) if v is not None else None for v in values]
    args = UdfArgs(n, (C.c_int * n)(*[0] * n), (C.c_char_p * n)(*[C.cast(b, C.c_char_p) if b else None for b in bufs]),
                   (C.c_ulong * n)(*[len(v) if v is not None else 0 for v in values]), None, None, None, None)
    init = UdfInit()
    msg = C.create_string_buffer(512)
    init_fn = getattr(lib, name + "_init")
    init_fn.restype = C.c_char
    if init_fn(C.byref(init), C.byref(args), msg) != b"\0":
        raise RuntimeError(msg.value.decode())
    row = getattr(lib, name)
    row.restype = C.c_void_p
    length, is_null, error = C.c_ulong(0), C.c_char(b"\0"), C.c_char(b"\0")
    result = C.create_string_buffer(766)
    p = row(C.byref(init), C.byref(args), result, C.byref(length), C.byref(is_null), C.byref(error))
    out = None if is_null.value != b"\0" else C.string_at(p, length.value)
    getattr(lib, name + "_deinit")(C.byref(init))
    return out


def main():
    lib = C.CDLL(sys.argv[1])
    schema = sys.argv[2].encode()
    data = os.urandom(20 << 20)  # multipart on S3
    for store in sys.argv[3:]:
        s = store.encode()
        h = call(lib, "dj_attach_put", s, schema, b"direct.bin", data)
        assert h is not None, call(lib, "dj_last_error")
        assert call(lib, "dj_attach_get", s, schema, h, b"direct.bin") == data
        assert call(lib, "dj_verify", s, schema, h, str(len(data)).encode(), b"direct.bin", None, None) == b"ok"
        assert call(lib, "dj_attach_get", s, schema, b"0" * 32, b"missing.bin") is None
    print("ok", len(sys.argv) - 3, "stores")


if __name__ == "__main__":
    main()
