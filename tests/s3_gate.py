"""An S3 checking proxy for the tests: a threaded HTTP/1.1 server on
127.0.0.1 in front of s3s-fs that forwards every request byte for byte (the
Host header as the client sent it, so SigV4 signatures still verify) and
streams answers back, with keep-alive.

It enforces what s3s-fs checks only partly (s3s-fs checks Content-MD5 only
when present, and never on parts):

- a PUT with a body (a single PUT or an UploadPart) must carry a Content-MD5
  that matches the body, else it is answered 400 `InvalidDigest` (missing)
  or `BadDigest` (wrong) and never reaches s3s-fs. The one exception is a
  header-signed request whose `x-amz-content-sha256` is a real digest (the
  MinIO client that DataJoint uses sends that instead of Content-MD5 over
  plain HTTP): the gate checks that digest against the body instead
  (`XAmzContentSHA256Mismatch`). Presigned requests, which is all the plugin
  sends, have no such header, so they always need Content-MD5;
- any other request whose Content-MD5 is present but wrong gets `BadDigest`.

Request bodies up to BUFFER_LIMIT are read whole before they are forwarded
(so a bad one is refused before s3s-fs sees it); a larger body is streamed
and its Content-MD5 checked on the way (a mismatch is recorded in
`violations`, since it is already forwarded). Answers are always streamed.

Tests read `gate.log` (method, path, query, whether Content-MD5 was sent,
the status, and `conn`, the number of the client connection it came on),
`reset()` it, and register one-shot hooks with `gate.once`: a callable run
in the gate's thread when a matching request arrives, before it is
forwarded; one that returns "close" makes the gate close that connection
without an answer (a pooled connection the server dropped).

When s3s-fs is down, a new request's connection is reset (the plugin sees
an unreachable server, as without the gate); when s3s-fs closes an idle
connection, the gate closes the client's too. The gate keeps its port
across restarts of s3s-fs.
"""

import base64
import datetime
import hashlib
import hmac
import re
import select
import socket
import struct
import threading
import urllib.parse

BUFFER_LIMIT = 17 << 20  # a 16 MiB part and some
CHUNK = 1 << 20
HEAD_LIMIT = 64 << 10


class Closed(Exception):
    """The peer closed its connection."""


class NotHttp(Exception):
    """The client spoke something else (a TLS handshake, say)."""


class Upstream(Exception):
    """s3s-fs could not be reached or dropped the connection."""


class Stream:
    """A socket with a read buffer, so the gate knows whether bytes are pending."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            raise Closed()
        self.buf += data

    def head(self, request=True):
        """The bytes up to and including the blank line; None on a clean EOF before any byte."""
        while True:
            if request and self.buf and not re.match(rb"[A-Z]{1,20}( |$)", bytes(self.buf[:21])):
                raise NotHttp()
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                out = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return out
            if len(self.buf) > HEAD_LIMIT:
                raise ValueError("header too large")
            try:
                self._fill()
            except Closed:
                if not self.buf:
                    return None
                raise

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i + 2])
                del self.buf[:i + 2]
                return out
            if len(self.buf) > HEAD_LIMIT:
                raise ValueError("line too long")
            self._fill()

    def exact(self, n):
        """The next n bytes, received straight into one buffer."""
        out = bytearray(n)
        have = min(n, len(self.buf))
        out[:have] = self.buf[:have]
        del self.buf[:have]
        view = memoryview(out)
        while have < n:
            got = self.sock.recv_into(view[have:], min(n - have, 4 * CHUNK))
            if not got:
                raise Closed()
            have += got
        return out

    def relay(self, n, dest, hasher=None):
        """Sends the next n bytes (or all until EOF when n is None) to dest."""
        if self.buf:
            take = len(self.buf) if n is None else min(n, len(self.buf))
            part = bytes(self.buf[:take])
            del self.buf[:take]
            if hasher:
                hasher.update(part)
            dest.sendall(part)
            if n is not None:
                n -= take
        block = bytearray(CHUNK)
        view = memoryview(block)
        while n is None or n > 0:
            got = self.sock.recv_into(view, CHUNK if n is None else min(n, CHUNK))
            if not got:
                if n is None:
                    return
                raise Closed()
            if hasher:
                hasher.update(view[:got])
            dest.sendall(view[:got])
            if n is not None:
                n -= got


class Request:
    """What the gate saw of one request (the log's entries and the hooks' argument)."""

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] as sent
        parts = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(parts.path)
        self.query = parts.query
        self.status = None
        self.content_md5 = self.header("content-md5") is not None
        self.conn = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def params(self):
        """The query parameters (presigned requests carry the signature here)."""
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))

    def deletes(self):
        """A deletion: `DELETE` of one key, or `DeleteObjects` (a `POST
        ?delete` whose body lists the keys, which the gate does not read)."""
        return self.method == "DELETE" or (self.method == "POST" and "delete" in self.params())

    def __repr__(self):
        return f"<{self.method} {self.path}?{self.query[:40]} -> {self.status}>"


class Hook:
    def __init__(self, predicate, action):
        self.predicate = predicate
        self.action = action
        self.fired = threading.Event()
        self.request = None
        self.error = None


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    return first, headers


def header_of(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def error_answer(code, message, resource, with_body=True):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource>"
        "<RequestId>s3-gate</RequestId></Error>"
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nx-amz-request-id: s3-gate\r\n\r\n"
    ).encode()
    return head + body if with_body else head


def reset(sock):
    """Closes with RST, as a vanished server would look."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class S3Gate:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.log = []
        self.rejected = []
        self.violations = []
        self.errors = []
        self._hooks = []
        self.accepted = 0  # client connections so far
        self._lock = threading.Lock()
        self._conns = set()
        self._closed = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="s3-gate", daemon=True)
        self._thread.start()

    # ---- what tests use -------------------------------------------------
    def reset(self):
        """Forgets the log, the refusals and any hook that has not fired."""
        with self._lock:
            self.log = []
            self.rejected = []
            self._hooks = []

    def once(self, predicate, action):
        """Runs action(request) in the gate when the first request matching
        predicate(request) arrives, before forwarding it. Returns the Hook
        (its `fired` event, `request` and any `error` the action raised)."""
        h = Hook(predicate, action)
        with self._lock:
            self._hooks.append(h)
        return h

    def close(self):
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(5)

    # ---- the server -----------------------------------------------------
    def _accept(self):
        while not self._closed.is_set():
            try:
                r, _, _ = select.select([self._listener], [], [], 0.5)
                if not r:
                    continue
                conn, _ = self._listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, self.accepted), name="s3-gate-conn", daemon=True).start()

    def _track(self, sock, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _fire_hooks(self, req):
        """Runs the matching hooks; True when one asks to close the connection."""
        close = False
        with self._lock:
            hit = [h for h in self._hooks if h.predicate(req)]
            for h in hit:
                self._hooks.remove(h)
        for h in hit:
            h.request = req
            try:
                close = h.action(req) == "close" or close
            except Exception as e:  # noqa: BLE001 - the test reads it
                h.error = e
            h.fired.set()
        return close

    def _serve(self, client, number):
        self._track(client, True)
        cs = Stream(client)
        cs.number = number
        up = None
        us = None
        try:
            while not self._closed.is_set():
                if not cs.buf:
                    watch = [client] + ([up] if up else [])
                    r, _, _ = select.select(watch, [], [], 0.5)
                    if not r:
                        continue
                    if up in r:
                        # s3s-fs closed the idle connection (or died): so does the gate
                        return
                client.settimeout(120)
                head = cs.head()
                if head is None:
                    return
                keep = self._one(client, cs, head, self._connect, up, us)
                if keep is None:
                    return
                up, us = keep
        except NotHttp:
            # as s3s-fs (hyper) answers bytes that are not HTTP
            try:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            except OSError:
                pass
        except (Closed, OSError, ValueError):
            pass
        except Upstream:
            self._track(client, False)
            reset(client)
            client = None
        except Exception as e:  # noqa: BLE001 - a gate bug must show, not hang
            self.errors.append(repr(e))
        finally:
            if up is not None:
                up.close()
            if client is not None:
                client.close()
                self._track(client, False)

    def _connect(self):
        try:
            s = socket.create_connection(self.upstream, timeout=10)
        except OSError as e:
            raise Upstream(str(e)) from e
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(300)
        return s, Stream(s)

    def _one(self, client, cs, head, connect, up, us):
        """Handles one request; returns the upstream connection to keep, or None to close."""
        (method, target, version), headers = parse_head(head)
        req = Request(method, target, version, headers)
        req.conn = getattr(cs, "number", None)
        self.log.append(req)
        if self._fire_hooks(req):
            req.status = "closed"
            return None

        chunked = "chunked" in (req.header("transfer-encoding") or "").lower()
        length = int(req.header("content-length") or 0) if not chunked else None
        if chunked:
            # No client of this suite sends one; refuse loudly rather than guess.
            req.status = 501
            client.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        if (req.header("expect") or "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"expect:"))
        md5_header = req.header("content-md5")
        sha_header = (req.header("x-amz-content-sha256") or "").lower()
        signed_sha = re.fullmatch(r"[0-9a-f]{64}", sha_header) is not None
        must = method == "PUT" and length > 0

        def refuse(code, message):
            req.status = 400
            self.rejected.append((method, req.path, code))
            client.sendall(error_answer(code, message, req.path, with_body=method != "HEAD"))
            return up, us  # the connection stays usable

        body = None
        streamed_md5 = None
        if (must or md5_header is not None) and length <= BUFFER_LIMIT:
            body = cs.exact(length)
            if md5_header is None:
                if not signed_sha:
                    return refuse("InvalidDigest", "The Content-MD5 you specified is not valid (it is missing).")
                if hashlib.sha256(body).hexdigest() != sha_header:
                    return refuse("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
            elif md5_header != base64.b64encode(hashlib.md5(body).digest()).decode():
                return refuse("BadDigest", "The Content-MD5 you specified did not match what we received.")
        elif must and md5_header is None and not signed_sha:
            cs.relay(length, _Sink())
            return refuse("InvalidDigest", "The Content-MD5 you specified is not valid (it is missing).")
        elif md5_header is not None:
            streamed_md5 = hashlib.md5()

        if up is None:
            up, us = connect()
        try:
            up.sendall(head)
            if body is not None:
                up.sendall(body)
            elif length:
                cs.relay(length, up, streamed_md5)
        except OSError as e:
            raise Upstream(str(e)) from e
        if streamed_md5 is not None and base64.b64encode(streamed_md5.digest()).decode() != md5_header:
            self.violations.append((method, req.path, "BadDigest on a streamed body"))
            return None

        # The answer, streamed back.
        while True:
            try:
                rhead = us.head(request=False)
            except (Closed, OSError) as e:
                raise Upstream(str(e)) from e
            if rhead is None:
                raise Upstream("closed before answering")
            (rversion, status, *_), rheaders = parse_head(rhead)
            code = int(status)
            if 100 <= code < 200 and code != 101:
                client.sendall(rhead)
                continue
            break
        req.status = code
        client.sendall(rhead)
        close = "close" in (header_of(rheaders, "connection") or "").lower() or \
                "close" in (req.header("connection") or "").lower()
        if method == "HEAD" or code in (204, 304):
            pass
        elif "chunked" in (header_of(rheaders, "transfer-encoding") or "").lower():
            while True:
                size_line = us.line()
                client.sendall(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = us.line()
                        client.sendall(t)
                        if t == b"\r\n":
                            break
                    break
                us.relay(size + 2, client)
        elif header_of(rheaders, "content-length") is not None:
            us.relay(int(header_of(rheaders, "content-length")), client)
        else:
            us.relay(None, client)
            close = True
        if close:
            return None
        return up, us


class _Sink:
    def sendall(self, _data):
        pass


# ---- a minimal SigV4 presigner, for requests the tests send themselves ----

def presign(method, host, path, access_key, secret_key, region="us-east-1", expires=300, query=None):
    """A path-style URL signed for `host` (host:port) that signs only the Host header."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    scope = f"{day}/{region}/s3/aws4_request"
    params = dict(query or {})
    params.update({
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    })
    canonical_path = urllib.parse.quote(path, safe="/-_.~")
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join([method, canonical_path, canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])

    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = h(h(h(h(("AWS4" + secret_key).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{canonical_path}?{canonical_query}&X-Amz-Signature={signature}"
