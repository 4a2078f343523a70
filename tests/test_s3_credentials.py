"""S3 stores without secrets in the config file: credentials from the
server's environment, a shared credentials file, web identity (STS), the
container credentials endpoint and the instance metadata service (IMDSv2),
against fake services on 127.0.0.1 (tests/cred_servers.py) that hand out
the key pair s3s-fs accepts with a session token. The stores talk to s3s-fs
through a TokenGate, which refuses any request without a valid, unexpired
and signed session token, so each passing put shows the token was sent.

Also here: virtual-hosted addressing (through a CONNECT proxy, since bucket
host names do not resolve) and server-side encryption headers (recorded by
the session's S3 gate)."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import MiB, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3S_FS, attach_hash, free_port, need
from cred_servers import (ECS_AUTH, ROLE_ARN, WEB_TOKEN, ConnectProxy, CredServer, TokenGate, Tokens)


@pytest.fixture(scope="module")
def fakes(world):
    """The token registry, a TokenGate in front of the session's s3s-fs, and
    fake STS, IMDS and container endpoints."""
    need("s3s-fs")
    tokens = Tokens()
    gate = TokenGate(world.s3_backend_port, tokens)
    servers = {kind: CredServer(kind, tokens, S3_ACCESS_KEY, S3_SECRET_KEY) for kind in ("sts", "imds", "ecs")}
    token_file = world.base / "web-identity-token"
    token_file.write_text(WEB_TOKEN + "\n")
    ecs_token_file = world.base / "ecs-auth-token"
    ecs_token_file.write_text(ECS_AUTH)

    class Fakes:
        pass

    f = Fakes()
    f.tokens, f.gate, f.token_file, f.ecs_token_file = tokens, gate, token_file, ecs_token_file
    f.sts, f.imds, f.ecs = servers["sts"], servers["imds"], servers["ecs"]
    yield f
    for s in servers.values():
        s.close()
    gate.close()


def base_store(fakes, location, **extra):
    s = {"protocol": "s3", "endpoint": f"127.0.0.1:{fakes.gate.port}", "bucket": S3_BUCKET, "location": location,
         "timeout": 5, "connect_timeout": 2, "retries": 0}
    s.update(extra)
    return s


def sources(world, fakes):
    return {
        "s3sts": base_store(fakes, "dj/sts", credentials={
            "source": "web_identity", "token_file": str(fakes.token_file), "role_arn": ROLE_ARN,
            "sts_endpoint": fakes.sts.url}),
        "s3imds": base_store(fakes, "dj/imds", credentials={"source": "instance", "endpoint": fakes.imds.url}),
        "s3ecs": base_store(fakes, "dj/ecs", credentials={
            "source": "container", "full_uri": f"{fakes.ecs.url}/v2/credentials/task-1",
            "token_file": str(fakes.ecs_token_file)}),
    }


def with_stores(world, stores):
    all_stores = dict(world.base_config["stores"])
    all_stores.update(stores)
    world.write_config(dict(world.base_config, stores=all_stores))


def put_and_get(db, store, data):
    """An attachment `a.bin` put and read back; its hash."""
    h = db.one("SELECT dj_attach_put(%s, %s, 'a.bin', %s)", (store, db.schema, data))
    assert h is not None, db.last_error()
    assert h == attach_hash("a.bin", data)
    assert db.one("SELECT dj_attach_get(%s, %s, %s, 'a.bin')", (store, db.schema, h)) == data, db.last_error()
    return h


@pytest.mark.parametrize("store", ["s3sts", "s3imds", "s3ecs"])
def test_each_temporary_source_signs_requests_s3_accepts(db, world, fakes, store):
    with_stores(world, sources(world, fakes))
    fakes.gate.reset()
    fakes.gate.refusals.clear()
    data = os.urandom(1000) + store.encode()
    put_and_get(db, store, data)
    assert not fakes.gate.refusals, fakes.gate.refusals
    assert fakes.gate.log, "the requests went through the token gate"
    # every request carried a token the fake service handed out
    prefix = {"s3sts": "sts", "s3imds": "imds", "s3ecs": "ecs"}[store]
    assert fakes.gate.seen_tokens and all(t.startswith(prefix + "-") for t in fakes.gate.seen_tokens[-len(fakes.gate.log):])


def test_imds_is_asked_token_first_then_role_then_credentials(db, world, fakes):
    # a store of its own: its own cache entry
    with_stores(world, {"s3imds2": dict(sources(world, fakes)["s3imds"], location="dj/imds-order")})
    fakes.imds.log.clear()
    put_and_get(db, "s3imds2", b"imds order")
    got = [(m, p) for m, p, _, _ in fakes.imds.log]
    assert got[:3] == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/iam/security-credentials/"),
                       ("GET", "/latest/meta-data/iam/security-credentials/dj-test-role")], got
    assert fakes.imds.log[1][2].get("x-aws-ec2-metadata-token"), "IMDSv2: the session token on every GET"
    # the credentials are cached: more requests, no more fetches
    put_and_get(db, "s3imds2", b"imds order 2")
    assert len(fakes.imds.log) == 3


def test_temporary_credentials_are_refreshed_before_they_expire(db, world, fakes):
    """Credentials valid for 4 s: the plugin fetches new ones half-way,
    lazily, and no request ever reaches the gate with an expired token."""
    imds = CredServer("imds", fakes.tokens, S3_ACCESS_KEY, S3_SECRET_KEY, lifetime=4)
    try:
        with_stores(world, {"s3short": base_store(fakes, "dj/short", credentials={"source": "instance", "endpoint": imds.url})})
        fakes.gate.refusals.clear()
        fakes.gate.seen_tokens.clear()
        deadline = time.monotonic() + 9
        n = 0
        while time.monotonic() < deadline:
            put_and_get(db, "s3short", b"refresh %d" % n)
            n += 1
            time.sleep(0.2)
        assert not fakes.gate.refusals, fakes.gate.refusals
        assert imds.issued >= 3, f"{imds.issued} fetches over 9 s of 4 s credentials"
        assert len(set(fakes.gate.seen_tokens)) >= 3
        shown = json.loads(db.one("SELECT dj_stores()"))["stores"]["s3short"]["credentials"]
        assert shown["source"] == "instance" and shown["expires"] and shown["expires"].endswith("Z"), shown
    finally:
        imds.close()


def test_credentials_s3_calls_expired_are_fetched_anew(db, world, fakes):
    """S3 may call a session expired before its Expiration (a clock ahead,
    a revoked session): the request is signed again with new credentials
    and nothing fails."""
    imds = CredServer("imds", fakes.tokens, S3_ACCESS_KEY, S3_SECRET_KEY, lifetime=3600)
    try:
        with_stores(world, {"s3revoked": base_store(fakes, "dj/revoked", credentials={"source": "instance", "endpoint": imds.url})})
        put_and_get(db, "s3revoked", b"before")
        assert imds.issued == 1
        fakes.gate.refusals.clear()
        for token in imds.issued_tokens:
            fakes.tokens.add(token, 0)  # the gate now calls them expired
        put_and_get(db, "s3revoked", b"after")
        assert imds.issued == 2
        assert fakes.gate.refusals and {code for _, _, code in fakes.gate.refusals} == {"ExpiredToken"}
    finally:
        imds.close()


def test_a_session_token_is_required_and_checked(db, world, fakes):
    """The token gate itself: a static key pair (no token) is refused with
    InvalidToken, so the passing tests above did send theirs."""
    with_stores(world, {"s3notoken": base_store(fakes, "dj/notoken", access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY)})
    fakes.gate.refusals.clear()
    assert db.one("SELECT dj_attach_put('s3notoken', %s, 'a.bin', 'x')", (db.schema,)) is None
    assert "(InvalidToken); check access_key and secret_key in the config file" in db.last_error(), db.last_error()
    assert fakes.gate.refusals and fakes.gate.refusals[0][2] == "InvalidToken"
    # credentials from a source that S3 refuses: the message names the source
    token, _ = fakes.tokens.issue("profile", 3600)
    f = world.base / "aws-credentials-wrong"
    f.write_text(f"[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = wrong\naws_session_token = {token}\n")
    with_stores(world, {"s3wrong": base_store(fakes, "dj/wrong", credentials={"source": "profile", "file": str(f)})})
    assert db.one("SELECT dj_attach_put('s3wrong', %s, 'a.bin', 'x')", (db.schema,)) is None
    assert (f"(SignatureDoesNotMatch); they came from profile 'default' of credentials file {f} (config key 'credentials')"
            in db.last_error()), db.last_error()


def test_multipart_uploads_carry_the_session_token_on_every_part(db, world, fakes):
    with_stores(world, sources(world, fakes))
    fakes.gate.reset()
    fakes.gate.refusals.clear()
    data = os.urandom(20 * MiB)
    put_and_get(db, "s3ecs", data)
    assert not fakes.gate.refusals
    parts = [r for r in fakes.gate.log if r.method == "PUT" and "partNumber" in r.params()]
    assert len(parts) == 2, fakes.gate.log
    assert all(r.params().get("X-Amz-Security-Token", "").startswith("ecs-") for r in fakes.gate.log)


@pytest.mark.parametrize("case", ["refused", "silent", "denied"])
def test_a_failing_source_ends_in_time_and_is_named(db, world, fakes, case):
    down = f"http://127.0.0.1:{world.down_port}"
    silent = f"http://127.0.0.1:{world.silent.getsockname()[1]}"
    stores = {
        "refused": base_store(fakes, "dj/f1", credentials={"source": "instance", "endpoint": down}),
        "silent": base_store(fakes, "dj/f2", timeout=2, credentials={"source": "container", "full_uri": silent + "/v2/credentials/x"}),
        "denied": base_store(fakes, "dj/f3", credentials={
            "source": "web_identity", "token_file": str(fakes.token_file), "role_arn": "arn:aws:iam::1:role/other",
            "sts_endpoint": fakes.sts.url}),
    }
    with_stores(world, {"s3failing": stores[case]})
    t = time.monotonic()
    assert db.one("SELECT dj_attach_put('s3failing', %s, 'a.bin', 'x')", (db.schema,)) is None
    took = time.monotonic() - t
    msg = db.last_error()
    want = {
        "refused": f"store 's3failing': no credentials from the instance metadata service (IMDSv2) at {down}: session token: connection refused",
        "silent": "store 's3failing': no credentials from the container credentials endpoint "
                  f"{silent}: no answer within 2 s (config key 'timeout')",
        "denied": f"store 's3failing': no credentials from web identity (STS AssumeRoleWithWebIdentity at {fakes.sts.url} "
                  "for role arn:aws:iam::1:role/other): STS answered HTTP 403 AccessDenied: Not authorized",
    }[case]
    assert msg.startswith("dj_attach_put: " + want), msg
    assert msg.endswith("(config key 'credentials')"), msg
    assert took < 4, took
    assert S3_SECRET_KEY not in msg and WEB_TOKEN not in msg


def test_profile_source_reads_a_shared_credentials_file(db, world, fakes):
    token, expires = fakes.tokens.issue("profile", 3600)
    f = world.base / "aws-credentials"
    f.write_text(f"[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n"
                 f"[datajoint]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"
                 f"aws_session_token = {token}\n")
    with_stores(world, {
        "s3profile": base_store(fakes, "dj/profile", credentials={"source": "profile", "file": str(f), "profile": "datajoint"}),
        "s3noprofile": base_store(fakes, "dj/profile", credentials={"source": "profile", "file": str(f), "profile": "lab"}),
    })
    put_and_get(db, "s3profile", b"from a profile")
    assert db.one("SELECT dj_attach_put('s3noprofile', %s, 'a.bin', 'x')", (db.schema,)) is None
    assert db.last_error() == (f"dj_attach_put: store 's3noprofile': no credentials from profile 'lab' of credentials file {f}: "
                               "the file has no profile [lab] (config key 'credentials')")


def test_dj_stores_names_sources_and_expiry_never_secrets(db, world, fakes):
    with_stores(world, sources(world, fakes))
    put_and_get(db, "s3sts", b"for dj_stores")
    text = db.one("SELECT dj_stores()").decode()
    stores = json.loads(text)["stores"]
    sts = stores["s3sts"]["credentials"]
    assert sts["source"] == "web_identity" and sts["role_arn"] == ROLE_ARN, sts
    assert sts["from"].startswith("web identity (STS AssumeRoleWithWebIdentity at http://127.0.0.1:"), sts
    assert sts["expires"] > sts["fetched"], sts
    assert stores["s3imds"]["credentials"]["source"] == "instance"
    assert stores["s3attach"]["credentials"] == {"source": "static"}
    assert stores["s3attach"]["access_key"] == "<redacted>"
    assert "access_key" not in stores["s3sts"]
    for secret in [S3_SECRET_KEY, S3_ACCESS_KEY, WEB_TOKEN, ECS_AUTH, *fakes.tokens.expiry]:
        assert secret not in text


def test_env_and_web_identity_from_the_server_environment(world, fakes, tmp_path):
    """A server started with AWS_* variables: the `env` source (with a
    session token) and `web_identity` with its token file and role from the
    environment."""
    from servers import Server
    token, _ = fakes.tokens.issue("env", 3600)
    cfg = tmp_path / "dj_udf.json"
    cfg.write_text(json.dumps({"stores": {
        "s3env": base_store(fakes, "dj/env", credentials="env"),
        "s3wi": base_store(fakes, "dj/wi", credentials={"source": "web_identity", "sts_endpoint": fakes.sts.url}),
    }}))
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_SESSION_TOKEN": token,
           "AWS_WEB_IDENTITY_TOKEN_FILE": str(fakes.token_file), "AWS_ROLE_ARN": ROLE_ARN}
    srv = Server(tmp_path / "srv", cfg, env=env)
    try:
        fakes.gate.refusals.clear()
        fakes.gate.seen_tokens.clear()
        for store, data in [("s3env", b"env source"), ("s3wi", b"web identity from env")]:
            h = srv.sql("SELECT dj_attach_put(%s, 'envschema', 'a.bin', %s)", (store, data))[0][0]
            assert h == attach_hash("a.bin", data), srv.sql("SELECT dj_last_error()")
            assert srv.sql("SELECT dj_attach_get(%s, 'envschema', %s, 'a.bin')", (store, h))[0][0] == data
        assert token in fakes.gate.seen_tokens
        assert any(t.startswith("sts-") for t in fakes.gate.seen_tokens)
        assert not fakes.gate.refusals
        shown = json.loads(srv.sql("SELECT dj_stores()")[0][0])["stores"]
        assert shown["s3env"]["credentials"] == {"source": "env"}
        assert token not in json.dumps(shown) and S3_SECRET_KEY not in json.dumps(shown)
    finally:
        srv.stop()


def test_env_source_without_variables_names_them(db, world, fakes):
    """The session's server has no AWS_* variables."""
    with_stores(world, {"s3env": base_store(fakes, "dj/env", credentials="env")})
    assert db.one("SELECT dj_attach_put('s3env', %s, 'a.bin', 'x')", (db.schema,)) is None
    assert db.last_error().startswith(
        "dj_attach_put: store 's3env': no credentials from the server's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_SESSION_TOKEN): AWS_ACCESS_KEY_ID is not set in the database server's environment"), db.last_error()


# ---------------------------------------------------------------------------
# Virtual-hosted addressing
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vhost_s3(world):
    """An s3s-fs that serves virtual-hosted requests for *.s3.test:PORT (it
    matches the Host header with its port), and a
    CONNECT proxy in front of it (bucket host names do not resolve here:
    through an HTTP proxy the plugin never looks them up)."""
    need("s3s-fs")
    root = world.base / "vhost-root"
    (root / S3_BUCKET).mkdir(parents=True)
    port = free_port()
    log = open(world.base / "s3s-fs-vhost.log", "ab")
    proc = subprocess.Popen([S3S_FS, "--host", "127.0.0.1", "--port", str(port), "--access-key", S3_ACCESS_KEY,
                             "--secret-key", S3_SECRET_KEY, "--domain", f"s3.test:{port}", str(root)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "s3s-fs did not start"
            time.sleep(0.05)
    proxy = ConnectProxy(port)
    yield port, proxy, root
    proxy.close()
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(root, ignore_errors=True)


def test_virtual_hosted_addressing_puts_the_bucket_in_the_host(db, world, vhost_s3):
    port, proxy, root = vhost_s3
    store = {"protocol": "s3", "endpoint": f"s3.test:{port}", "bucket": S3_BUCKET, "location": "dj/vhost",
             "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY, "addressing": "virtual",
             "proxy_server": f"127.0.0.1:{proxy.port}", "retries": 0}
    with_stores(world, {"s3vhost": store})
    data = os.urandom(3000)
    h = put_and_get(db, "s3vhost", data)
    assert proxy.targets and set(proxy.targets) == {f"{S3_BUCKET}.s3.test:{port}"}, proxy.targets
    assert proxy.hosts and set(proxy.hosts) == {f"{S3_BUCKET}.s3.test:{port}"}, proxy.hosts
    # the path names the key alone, not the bucket
    assert all(not ln.split(" ")[1].startswith(f"/{S3_BUCKET}/") for ln in proxy.lines), proxy.lines
    stored = root / S3_BUCKET / "dj" / "vhost" / db.schema / h.hex()[:2] / h.hex()[2:4] / f"{h.hex()}.a.bin"
    assert stored.read_bytes() == data
    assert json.loads(db.one("SELECT dj_stores()"))["stores"]["s3vhost"]["addressing"] == "virtual"
    # path style (the default for such servers) names the bucket in the path
    proxy.lines.clear()
    with_stores(world, {"s3vhost": dict(store, addressing="path", endpoint=f"127.0.0.1:{world.s3_port}", proxy_server=None)})
    assert json.loads(db.one("SELECT dj_stores()"))["stores"]["s3vhost"]["addressing"] == "path"


# ---------------------------------------------------------------------------
# Server-side encryption
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_sse_headers_go_on_every_write_and_never_on_parts(db, world, gate, sse):
    extra = {"server_side_encryption": sse}
    if sse == "aws:kms":
        extra["kms_key_id"] = "alias/dj-test"
    with_stores(world, {"s3sse": dict(world.base_config["stores"]["s3attach"], location="dj/sse", **extra)})
    gate.reset()
    small = os.urandom(5000)
    put_and_get(db, "s3sse", small)
    big = os.urandom(20 * MiB)
    put_and_get(db, "s3sse", big)
    src = world.dirs["import"] / f"{db.schema}-sse.bin"
    src.write_bytes(os.urandom(17 * MiB))
    h = db.one("SELECT dj_attach_put_file('s3sse', %s, %s)", (db.schema, str(src)))
    assert h is not None, db.last_error()
    writes = [r for r in gate.log if r.method == "PUT" and "partNumber" not in r.params()
              or r.method == "POST" and "uploads" in r.params()]
    parts = [r for r in gate.log if r.method == "PUT" and "partNumber" in r.params()]
    assert len([r for r in writes if r.method == "POST"]) >= 2 and len(parts) >= 4, gate.log
    for r in writes:
        assert r.header("x-amz-server-side-encryption") == sse, r
        signed = r.params()["X-Amz-SignedHeaders"].split(";")
        assert "x-amz-server-side-encryption" in signed, signed
        if sse == "aws:kms":
            assert r.header("x-amz-server-side-encryption-aws-kms-key-id") == "alias/dj-test"
            assert "x-amz-server-side-encryption-aws-kms-key-id" in signed
    for r in parts:
        assert r.header("x-amz-server-side-encryption") is None, r
        assert r.header("x-amz-server-side-encryption-aws-kms-key-id") is None, r
    shown = json.loads(db.one("SELECT dj_stores()"))["stores"]["s3sse"]
    assert shown["server_side_encryption"] == sse and "alias/dj-test" not in json.dumps(shown)
    src.unlink()
