#!/usr/bin/env python3
"""The S3 key DataJoint 0.14.9 gives one object, for a table of store locations.

DataJoint derives the key in datajoint/external.py
(ExternalTable._make_external_filepath) with pathlib; Python 3.12 changed how a
PureWindowsPath is converted into a PurePosixPath, so Python <= 3.11 and
>= 3.12 clients give different keys for some locations. This script runs
DataJoint's exact expression (copied below; DataJoint itself is not needed):

    python3 scripts/s3_key_table.py                  # the keys under this Python
    python3 scripts/s3_key_table.py PY_OLD PY_NEW    # both, side by side
    python3 scripts/s3_key_table.py --rust PY_OLD PY_NEW   # the rows of the test in src/store/s3/keys.rs

PY_OLD and PY_NEW are interpreters (any python3 >= 3.8), e.g.
/root/.pyenv/versions/3.11.7/bin/python and /root/.pyenv/versions/3.12.1/bin/python.
"""

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

RELATIVE = "s/ab/cd/f"

LOCATIONS = [
    "dj/x",
    "/dj/x",
    "/dj/x/",
    "//dj//./x",
    "\\dj\\x",
    "\\dj",
    "C:\\dj\\x",
    "C:/dj",
    "C:dj",
    "c:",
    "C:\\",
    "/",
    "\\",
    "",
    ".",
    "./",
    "./dj",
    "dj\\x",
    "dj//x",
    "dj/x/.",
    "a/../b",
    "//",
    "///dj",
    "//server/share/x",
    "\\\\server\\share\\x",
    "//server/share",
    "\\\\server",
    "\\\\server\\\\share",
    "\\\\?\\C:\\dj",
    "\\\\?\\UNC\\server\\share\\x",
    "//./C:/dj",
    "/C:/dj",
    "dj:x/y",
    "/dj:x",
    " /dj",
    "/dj/Ströme",
]


def external_filepath(location, relative_filepath):
    """ExternalTable._make_external_filepath of DataJoint 0.14.9, s3 branch."""
    posix_path = PurePosixPath(PureWindowsPath(location))
    location_path = (
        Path(*posix_path.parts[1:])
        if len(location) > 0
        and any(case in posix_path.parts[0] for case in ("\\", ":"))
        else Path(posix_path)
    )
    return PurePosixPath(location_path, relative_filepath)


def keys_here():
    """{location: key or None (DataJoint fails)} under this interpreter."""
    out = {}
    for loc in LOCATIONS:
        try:
            out[loc] = str(external_filepath(loc, RELATIVE))
        except Exception:  # DataJoint fails on it too
            out[loc] = None
    return out


def keys_under(python):
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], check=True, capture_output=True, text=True).stdout.strip()
    text = subprocess.run([python, __file__, "--json"], check=True, capture_output=True, text=True).stdout
    return version, json.loads(text)


def rust(s):
    return "None" if s is None else f"Some({json.dumps(s, ensure_ascii=False)})"


def main(args):
    if args == ["--json"]:
        print(json.dumps(keys_here()))
        return
    if not args:
        version = sys.version.split()[0]
        print(f"relative key {RELATIVE!r}, Python {version}")
        for loc, key in keys_here().items():
            print(f"{loc!r:32} {'DataJoint fails' if key is None else repr(key)}")
        return
    as_rust = args[0] == "--rust"
    if as_rust:
        args = args[1:]
    if len(args) != 2:
        sys.exit(__doc__)
    (v_old, old), (v_new, new) = keys_under(args[0]), keys_under(args[1])
    if as_rust:
        print(f"    // (location, key under Python {v_old}, key under Python {v_new} when it differs); None: DataJoint fails")
        for loc in LOCATIONS:
            other = new[loc] if new[loc] != old[loc] else None
            print(f"    ({json.dumps(loc, ensure_ascii=False)}, {rust(old[loc])}, {rust(other)}),")
        return
    print(f"relative key {RELATIVE!r}")
    print(f"{'location':32} {'Python ' + v_old:28} {'Python ' + v_new}")
    for loc in LOCATIONS:
        shown = ["DataJoint fails" if k is None else repr(k) for k in (old[loc], new[loc])]
        same = "" if old[loc] != new[loc] else "  (same)"
        print(f"{loc!r:32} {shown[0]:28} {shown[1]}{same}")


if __name__ == "__main__":
    main(sys.argv[1:])
