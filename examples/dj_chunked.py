#!/usr/bin/env python3
"""Moves objects of any size in and out of a dj_udf store from a client
machine, through SQL only, with PyMySQL and nothing else.

    dj_chunked.py put STORE SCHEMA FILE [--name NAME | --blob]   prints the hash (hex)
    dj_chunked.py get STORE SCHEMA HASH FILE                     writes the object to FILE

FILE may be '-' (standard input or output). Connection options: --host,
--port, --user, --password, --socket, or the DJ_HOST, DJ_PORT, DJ_USER,
DJ_PASSWORD environment variables. A progress bar goes to standard error
when it is a terminal (or with --progress).

put: opens a chunked upload (dj_udf.upload_open), sends numbered parts of
--part-size bytes (default: 64 MiB or the server's max_allowed_packet,
whichever is smaller), checks the MD5 the server returns for each against
its own and sends a part again when they differ, then finishes with the
list of part MD5s and the object's hash it computed while reading
(dj_udf.upload_finish), which writes the tracking row. The printed hash is
ready for the INSERT of the user row. Parts go as server-side prepared
statement parameters sent with COM_STMT_SEND_LONG_DATA, so a part may be as
large as max_allowed_packet and the server holds it once; --text-protocol
sends them as ordinary statements instead (parts must then be well below
the packet limit). --resume ID continues an upload after a failure,
sending only the parts the server lacks (FILE must be a regular file).

get: reads the tracking row (size and name), then the object in --chunk
byte ranges (dj_read_range), hashes what it receives exactly as DataJoint
hashes the object and compares the result with the row's hash. The file is
written under a temporary name and renamed only when the hash matched; the
exit status is 0 only then. The server also checks the whole object when it
serves the last byte.
"""

import argparse
import hashlib
import os
import struct
import sys
import time

import pymysql
from pymysql.constants import COMMAND

MiB = 1 << 20
DEFAULT_PART = 64 * MiB
LONG_DATA_PIECE = 4 * MiB  # one COM_STMT_SEND_LONG_DATA packet
RETRIES = 3
# MariaDB copies every constant string argument of a loadable function
# before the call (to end it with a zero byte), and a statement parameter is
# a constant: passed bare, a 64 MiB part would sit in server memory twice.
# IF(RAND() >= 0, ?, NULL) is the part itself, but not a constant, so the
# function reads it where the parameter holds it.
PART_SQL = "SELECT dj_upload_part(?, CURRENT_USER(), ?, IF(RAND() >= 0, ?, NULL)) INTO @dj_part_md5"


class Progress:
    """A one-line progress bar on standard error."""

    def __init__(self, total, label, enabled):
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.start, self.shown = 0, time.monotonic(), 0.0

    def add(self, n):
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.shown > 0.2 or self.done == self.total):
            self.shown = now
            rate = self.done / max(now - self.start, 1e-6) / 1e6
            if self.total:
                filled = int(30 * self.done / self.total)
                bar = f"[{'#' * filled}{'-' * (30 - filled)}] {100 * self.done / self.total:5.1f}%"
            else:
                bar = "[...]"
            sys.stderr.write(f"\r{self.label} {bar} {self.done / MiB:,.0f}/{(self.total or 0) / MiB:,.0f} MiB {rate:,.0f} MB/s")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


class LongData:
    """A server-side prepared statement whose last parameter travels as
    COM_STMT_SEND_LONG_DATA pieces: the server accepts such a parameter up
    to max_allowed_packet bytes and keeps one copy of it. PyMySQL has no
    prepared statements, so this speaks those four commands itself over
    PyMySQL's connection (its _execute_command and _read_packet, PyMySQL
    1.x); the statement must answer with an OK packet (no result set)."""

    def __init__(self, conn, sql):
        self.conn = conn
        conn._execute_command(COMMAND.COM_STMT_PREPARE, sql)
        head = conn._read_packet().get_all_data()
        self.id, columns, self.params = struct.unpack("<xIHH", head[:9])
        for count in (self.params, columns):
            if count:
                for _ in range(count):
                    conn._read_packet()
                conn._read_packet()  # EOF (PyMySQL never asks for CLIENT_DEPRECATE_EOF)

    def run(self, values, data):
        """Executes with `values` (text) for the first parameters and `data`
        (bytes) for the last."""
        assert len(values) + 1 == self.params
        last = len(values)
        view = memoryview(data)
        for at in range(0, max(len(data), 1), LONG_DATA_PIECE):
            piece = bytes(view[at:at + LONG_DATA_PIECE])
            self.conn._execute_command(COMMAND.COM_STMT_SEND_LONG_DATA, struct.pack("<IH", self.id, last) + piece)
        body = struct.pack("<IBI", self.id, 0, 1)
        body += bytes((self.params + 7) // 8)  # no NULLs
        body += b"\x01" + b"\xfe\x00" * last + b"\xfb\x00"  # types: strings, then a LONG_BLOB
        for v in values:
            b = str(v).encode()
            body += lenenc(len(b)) + b
        self.conn._execute_command(COMMAND.COM_STMT_EXECUTE, body)
        ok = self.conn._read_packet()  # raises the server's error
        if not ok.is_ok_packet():
            raise RuntimeError("the prepared statement answered with a result set")

    def close(self):
        self.conn._execute_command(COMMAND.COM_STMT_CLOSE, struct.pack("<I", self.id))


def lenenc(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def connect(args):
    kw = dict(user=args.user, password=args.password, autocommit=True, charset="utf8mb4")
    if args.socket:
        kw["unix_socket"] = args.socket
    else:
        kw.update(host=args.host, port=args.port)
    return pymysql.connect(**kw)


def one(cur, sql, params=None):
    cur.execute(sql, params)
    return cur.fetchone()


def last_error(cur, what):
    err = one(cur, "SELECT CONVERT(dj_last_error() USING utf8mb4)")[0]
    return RuntimeError(f"{what}: {err or 'failed without a message'}")


def read_exactly(src, n):
    """Up to n bytes; fewer only at the end of the source."""
    chunks, got = [], 0
    while got < n:
        b = src.read(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def put(args):
    conn = connect(args)
    cur = conn.cursor()
    name = None if args.blob else (args.name or (os.path.basename(args.file) if args.file != "-" else None))
    if not args.blob and not name:
        sys.exit("put: --name is needed for standard input (or --blob)")
    packet = one(cur, "SELECT @@max_allowed_packet")[0]
    part_size = args.part_size or min(DEFAULT_PART, packet if not args.text_protocol else packet // 3)
    src = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    total = None if args.file == "-" else os.fstat(src.fileno()).st_size
    if args.resume:
        upload_id = args.resume
        import json
        status = json.loads(one(cur, "SELECT dj_udf.upload_status(%s)", (upload_id,))[0])
        part_size = status["part_size"]
        have = {p["part"]: p["md5"] for p in status["parts"]}
    else:
        cur.execute("CALL dj_udf.upload_open(%s, %s, %s, %s, @dj_upload_id)", (args.store, args.schema, name, part_size))
        upload_id = one(cur, "SELECT @dj_upload_id")[0]
        have = {}
    sender = None if args.text_protocol else LongData(conn, PART_SQL)

    def send(n, data):
        if sender is None:
            cur.execute("CALL dj_udf.upload_part(%s, %s, %s, @dj_part_md5)", (upload_id, n, data))
            return one(cur, "SELECT @dj_part_md5")[0]
        sender.run([upload_id, n], data)
        got = one(cur, "SELECT @dj_part_md5")[0]
        if got is None:
            raise last_error(cur, f"part {n}")
        return got.decode() if isinstance(got, bytes) else got

    whole = hashlib.md5((name.encode() + b"\0") if name is not None else b"")
    md5s = []
    progress = Progress(total, "put", args.progress or sys.stderr.isatty())
    try:
        n = 0
        while True:
            data = read_exactly(src, part_size)
            if not data and n > 0:
                break
            n += 1
            whole.update(data)
            mine = hashlib.md5(data).hexdigest()
            md5s.append(mine)
            if have.get(n) != mine:
                for attempt in range(1, RETRIES + 1):
                    try:
                        if send(n, data) == mine:
                            break
                        problem = "the server received other bytes"
                    except pymysql.err.OperationalError as e:
                        if attempt == RETRIES or e.args[0] in (2006, 2013):  # connection gone: resume later
                            raise
                        problem = str(e)
                    if attempt == RETRIES:
                        raise RuntimeError(f"part {n}: {problem} after {RETRIES} attempts")
            progress.add(len(data))
            if len(data) < part_size:
                break
        progress.close()
        cur.execute("CALL dj_udf.upload_finish(%s, %s, %s, %s, @dj_hash)", (upload_id, n, ",".join(md5s), whole.digest()))
        h = one(cur, "SELECT HEX(@dj_hash)")[0]
    except BaseException:
        progress.close()
        print(f"put: upload {upload_id} left unfinished; --resume {upload_id} continues it", file=sys.stderr)
        raise
    finally:
        if sender is not None:
            sender.close()
        conn.close()
    print(h.lower())


def get(args):
    conn = connect(args)
    cur = conn.cursor()
    row = one(cur, f"SELECT size, attachment_name, filepath, contents_hash FROM `{args.schema}`.`~external_{args.store}` "
                   "WHERE hash = UNHEX(%s)", (args.hash,))
    if row is None:
        sys.exit(f"get: no tracking row for {args.hash} in {args.schema}.~external_{args.store}")
    size, name, filepath, contents_hash = row
    if filepath is not None:
        want, h = contents_hash, hashlib.md5()
    else:
        want = bytes.fromhex(args.hash)
        h = hashlib.md5((name.encode() + b"\0") if name is not None else b"")
    out_path = None if args.file == "-" else args.file
    tmp = None if out_path is None else f"{out_path}.part{os.getpid()}"
    out = sys.stdout.buffer if out_path is None else open(tmp, "wb")
    progress = Progress(size, "get", args.progress or sys.stderr.isatty())
    try:
        offset = 0
        while offset < size or size == 0:
            cur.execute("SELECT dj_read_range(%s, %s, UNHEX(%s), %s, %s, %s, %s, %s, %s)",
                        (args.store, args.schema, args.hash, size, name, filepath, contents_hash, offset, args.chunk))
            data = cur.fetchone()[0]
            if data is None:
                raise last_error(cur, f"bytes from {offset}")
            if not data and size:
                raise RuntimeError(f"no bytes at offset {offset} of {size}")
            h.update(data)
            out.write(data)
            offset += len(data)
            progress.add(len(data))
            if size == 0:
                break
        progress.close()
        out.flush()
        if want is not None and h.digest() != want:
            raise RuntimeError(f"the bytes received hash to {h.hexdigest()}, not {want.hex()}: discarded")
        if out_path is not None:
            os.fsync(out.fileno())
            out.close()
            os.replace(tmp, out_path)
            tmp = None
    finally:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
        conn.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("DJ_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("DJ_PORT", "3306")))
    p.add_argument("--user", default=os.environ.get("DJ_USER", os.environ.get("USER", "root")))
    p.add_argument("--password", default=os.environ.get("DJ_PASSWORD", ""))
    p.add_argument("--socket", default=os.environ.get("DJ_SOCKET"))
    p.add_argument("--progress", action="store_true", help="show the progress bar even when standard error is not a terminal")
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("put")
    pp.add_argument("store")
    pp.add_argument("schema")
    pp.add_argument("file")
    kind = pp.add_mutually_exclusive_group()
    kind.add_argument("--name", help="the attachment name (default: the file's base name)")
    kind.add_argument("--blob", action="store_true", help="the file holds a serialized blob (datajoint.blob.pack)")
    pp.add_argument("--part-size", type=int)
    pp.add_argument("--text-protocol", action="store_true")
    pp.add_argument("--resume", metavar="UPLOAD_ID")
    pg = sub.add_parser("get")
    pg.add_argument("store")
    pg.add_argument("schema")
    pg.add_argument("hash", help="32 hex digits")
    pg.add_argument("file")
    pg.add_argument("--chunk", type=int, default=DEFAULT_PART)
    args = p.parse_args(argv)
    try:
        (put if args.command == "put" else get)(args)
    except (RuntimeError, pymysql.err.MySQLError) as e:
        sys.exit(f"{args.command}: {e}")


if __name__ == "__main__":
    main()
