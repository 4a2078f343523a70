"""Fake AWS credentials services and S3 proxies for tests/test_s3_credentials.py,
all on 127.0.0.1:

- `CredServer`: STS (AssumeRoleWithWebIdentity), the instance metadata
  service (IMDSv2: token PUT, role name, credentials) and the container
  credentials endpoint, each handing out the key pair s3s-fs accepts with a
  fresh session token per fetch, valid for `lifetime` seconds, and logging
  every request;
- `TokenGate`: the S3 gate (tests/s3_gate.py) that also refuses any request
  without a session token it knows, or with one that has expired; since
  the plugin presigns, the token is a query parameter, which s3s-fs then
  checks as part of the signed canonical query;
- `ConnectProxy`: an HTTP CONNECT proxy that tunnels every target to one
  port and records the CONNECT targets and the Host headers inside the
  tunnels (how virtual-hosted requests are seen without DNS for bucket
  names).
"""

import datetime
import json
import select
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from s3_gate import Request, S3Gate, _Sink, parse_head

ROLE = "dj-test-role"
ROLE_ARN = "arn:aws:iam::123456789012:role/dj-test-role"
WEB_TOKEN = "eyJ.web-identity.token"
ECS_AUTH = "ecs-authorization-token-42"
IMDS_SESSION = "imds-session-token-abc"


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Tokens:
    """The session tokens handed out so far and when each expires (epoch seconds)."""

    def __init__(self):
        self.expiry = {}
        self.lock = threading.Lock()

    def issue(self, prefix, lifetime):
        with self.lock:
            token = f"{prefix}-{len(self.expiry) + 1}-{time.time_ns()}"
            self.expiry[token] = int(time.time()) + lifetime
            return token, self.expiry[token]

    def add(self, token, expires):
        with self.lock:
            self.expiry[token] = expires


class CredServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kind, tokens, key, secret, lifetime=3600):
        self.kind = kind  # "sts", "imds" or "ecs"
        self.tokens = tokens
        self.key, self.secret = key, secret
        self.lifetime = lifetime
        self.log = []  # (method, path, headers, body)
        self.issued = 0
        self.issued_tokens = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def issue(self):
        token, expires = self.tokens.issue(self.kind, self.lifetime)
        self.issued += 1
        self.issued_tokens.append(token)
        return token, expires

    def close(self):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _answer(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method):
        srv = self.server
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        srv.log.append((method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        getattr(self, "_" + srv.kind)(method, body)

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")

    def do_POST(self):
        self._handle("POST")

    def _json_creds(self, extra=None):
        token, expires = self.server.issue()
        doc = {"AccessKeyId": self.server.key, "SecretAccessKey": self.server.secret, "Token": token, "Expiration": iso(expires)}
        doc.update(extra or {})
        self._answer(200, json.dumps(doc), "application/json")

    def _imds(self, method, _body):
        base = "/latest/meta-data/iam/security-credentials/"
        if method == "PUT" and self.path == "/latest/api/token":
            if not self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                return self._answer(400, "ttl missing")
            return self._answer(200, IMDS_SESSION)
        if self.headers.get("x-aws-ec2-metadata-token") != IMDS_SESSION:
            return self._answer(401, "IMDSv2 token missing")
        if method == "GET" and self.path == base:
            return self._answer(200, ROLE + "\n")
        if method == "GET" and self.path == base + ROLE:
            return self._json_creds({"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": iso(time.time())})
        self._answer(404, "not found")

    def _ecs(self, method, _body):
        if method != "GET" or not self.path.startswith("/v2/credentials/"):
            return self._answer(404, "not found")
        if self.headers.get("authorization") != ECS_AUTH:
            return self._answer(403, json.dumps({"code": "AccessDenied"}), "application/json")
        self._json_creds()

    def _sts(self, method, body):
        form = dict(urllib.parse.parse_qsl(body))
        ok = (method == "POST" and form.get("Action") == "AssumeRoleWithWebIdentity" and form.get("RoleArn") == ROLE_ARN
              and form.get("WebIdentityToken") == WEB_TOKEN and form.get("RoleSessionName"))
        if not ok:
            return self._answer(
                403,
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                "<Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>",
                "text/xml")
        token, expires = self.server.issue()
        self._answer(200, f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{self.server.secret}</SecretAccessKey>
      <Expiration>{iso(expires)}</Expiration>
      <AccessKeyId>{self.server.key}</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""", "text/xml")


def _refusal(status, code, message, with_body=True):
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            "<RequestId>token-gate</RequestId></Error>").encode()
    reason = {400: "Bad Request", 403: "Forbidden"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body if with_body else head


class TokenGate(S3Gate):
    """The S3 gate, refusing requests whose session token is missing, unknown
    or expired (as S3 does: 403 InvalidToken, 400 ExpiredToken)."""

    def __init__(self, upstream_port, tokens):
        self.tokens = tokens
        self.seen_tokens = []
        self.refusals = []
        super().__init__(upstream_port)

    def _one(self, client, cs, head, connect, up, us):
        (method, target, version), headers = parse_head(head)
        req = Request(method, target, version, headers)
        token = req.params().get("X-Amz-Security-Token")
        signed = token is not None  # a presigned query is signed whole
        if token is None and req.header("x-amz-security-token") is not None:
            token = req.header("x-amz-security-token")
            auth = req.header("authorization") or ""
            signed = "x-amz-security-token" in auth.partition("SignedHeaders=")[2].split(",")[0].split(";")
        expires = self.tokens.expiry.get(token)
        problem = None
        if token is None:
            problem = (403, "InvalidToken", "The request has no session token.")
        elif not signed:
            problem = (403, "SignatureDoesNotMatch", "The session token is not a signed header.")
        elif expires is None:
            problem = (403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        elif time.time() >= expires:
            problem = (400, "ExpiredToken", "The provided token has expired.")
        if problem:
            length = int(req.header("content-length") or 0)
            if length:
                cs.relay(length, _Sink())
            self.refusals.append((method, req.path, problem[1]))
            client.sendall(_refusal(*problem, with_body=method != "HEAD"))
            return up, us
        self.seen_tokens.append(token)
        return super()._one(client, cs, head, connect, up, us)


class ConnectProxy:
    """Tunnels every CONNECT to 127.0.0.1:`port`; records the targets and
    the Host header of each request inside the tunnels."""

    def __init__(self, port):
        self.port_to = port
        self.targets = []
        self.hosts = []
        self.lines = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._closed = True
        self._listener.close()

    def _accept(self):
        while not self._closed:
            try:
                c, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _sniff(self, data):
        # Request heads inside the tunnel (plain HTTP: the test stores are not secure).
        for block in data.split(b"\r\n\r\n"):
            lines = block.split(b"\r\n")
            if lines and lines[0].split(b" ")[0] in (b"GET", b"PUT", b"POST", b"HEAD", b"DELETE"):
                self.lines.append(lines[0].decode("latin-1"))
                for ln in lines[1:]:
                    k, _, v = ln.decode("latin-1").partition(":")
                    if k.lower() == "host":
                        self.hosts.append(v.strip())

    def _serve(self, c):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                got = c.recv(4096)
                if not got:
                    return
                head += got
            first = head.split(b"\r\n")[0].decode("latin-1").split(" ")
            if first[0] != "CONNECT":
                c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(first[1])
            up = socket.create_connection(("127.0.0.1", self.port_to), timeout=10)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                self._sniff(rest)
                up.sendall(rest)
            socks = [c, up]
            while True:
                r, _, _ = select.select(socks, [], [], 30)
                if not r:
                    return
                for s in r:
                    data = s.recv(1 << 16)
                    if not data:
                        return
                    if s is c:
                        self._sniff(data)
                        up.sendall(data)
                    else:
                        c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
