"""An S3 store behind a proxy_server: when the proxy cannot be reached, the
error names the proxy, and says the S3 endpoint was never contacted."""


def with_proxied_store(world, proxy):
    stores = dict(world.base_config["stores"])
    stores["s3proxied"] = dict(stores["s3attach"], location="dj/proxied", proxy_server=proxy, connect_timeout=2, retries=1)
    world.write_config(dict(world.base_config, stores=stores))


def test_an_unreachable_proxy_is_named_not_the_endpoint(db, world):
    endpoint = world.base_config["stores"]["s3attach"]["endpoint"]
    with_proxied_store(world, f"127.0.0.1:{world.down_port}")
    assert db.one("SELECT dj_attach_put('s3proxied', %s, 'a.txt', 'x')", (db.schema,)) is None
    msg = db.last_error()
    assert f"proxy_server http://127.0.0.1:{world.down_port} is unreachable (connection refused; 2 attempts)" in msg, msg
    assert f"S3 endpoint {endpoint} was not contacted" in msg, msg
    assert f"S3 endpoint {endpoint} is unreachable" not in msg, msg

    # the routines raise the same text; a proxy's password never shows
    db.sql("CALL dj_udf.create_tracking_table(%s, 's3proxied')", (db.schema,))
    with_proxied_store(world, f"http://labuser:proxy-secret@127.0.0.1:{world.down_port}")
    msg = db.error("CALL dj_udf.attach_put('s3proxied', %s, 'a.txt', 'x', @h)", (db.schema,))
    assert msg.startswith("dj_udf.attach_put: dj_attach_put: store 's3proxied': proxy_server http://redacted@127.0.0.1:"), msg
    assert "proxy-secret" not in msg and "labuser" not in msg
