//! Unit tests of the S3 store: pure parts, and requests against a fake server.

use super::upload::{base64, FIRST_BUFFER};
use super::*;
use std::io::SeekFrom;
use std::time::Duration;

#[test]
fn location_prefix_strips_root_drive_and_empty_parts() {
    assert_eq!(location_prefix("dj/store"), "dj/store");
    assert_eq!(location_prefix("/dj/store"), "dj/store");
    assert_eq!(location_prefix("/dj/store/"), "dj/store");
    assert_eq!(location_prefix("//dj//./store"), "dj/store");
    assert_eq!(location_prefix("C:\\data\\dj"), "data/dj");
    assert_eq!(location_prefix("\\data"), "data");
    assert_eq!(location_prefix(""), "");
    assert_eq!(location_prefix("/"), "");
    assert_eq!(location_prefix("."), "");
}

#[test]
fn s3_timestamps() {
    assert_eq!(parse_time("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(parse_time("2026-11-25T12:00:00.000Z"), Some(1_795_608_000));
    assert_eq!(parse_time("2000-02-29T23:59:59Z"), Some(951_868_799));
    assert_eq!(parse_time("not a date"), None);
}

#[test]
fn keys_and_the_leading_slash_form() {
    let rel = "mydb/67/6d/676de6356c1b33e8084921c02b8cdea6";
    assert_eq!(object_keys("dj", rel), (format!("dj/{rel}"), None));
    assert_eq!(object_keys("/dj/x", rel), (format!("dj/x/{rel}"), Some(format!("/dj/x/{rel}"))));
    assert_eq!(object_keys("/", rel), (rel.to_string(), Some(format!("/{rel}"))));
    assert_eq!(object_keys("", "a/b.dat"), ("a/b.dat".to_string(), None));
    assert_eq!(object_keys("C:\\dj", "f"), ("dj/f".to_string(), None));
}

#[test]
fn content_md5_is_base64_of_the_raw_digest() {
    // RFC 1864 / AWS examples
    assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    assert_eq!(content_md5(b"hello world\n"), "b1kCrCNwJL3QwXbLkwY9xA==");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
}

#[test]
fn upload_plan_and_part_sizing() {
    assert_eq!(plan(0, true), Upload::Single);
    assert_eq!(plan(SINGLE_PUT_MAX, true), Upload::Single);
    assert_eq!(plan(SINGLE_PUT_MAX + 1, true), Upload::Multipart);
    assert_eq!(plan(PART_SIZE, false), Upload::Multipart);
    assert_eq!(parts_for(0), Some(1));
    assert_eq!(parts_for(PART_SIZE as u64), Some(1));
    assert_eq!(parts_for(PART_SIZE as u64 + 1), Some(2));
    assert_eq!(parts_for(300 << 20), Some(19));
    assert_eq!(parts_for(MAX_OBJECT), Some(MAX_PARTS));
    assert_eq!(parts_for(MAX_OBJECT + 1), None);
    const { assert!(PART_SIZE >= 5 << 20, "S3 parts other than the last must be at least 5 MiB") };
}

#[test]
fn part_buffer_grows_only_as_needed_and_is_reused() {
    let data = vec![7u8; 200_000];
    let mut src = &data[..];
    let mut b = PartBuffer::new();
    assert!(!b.fill(&mut src, 150_000).unwrap());
    assert_eq!(b.len, 150_000);
    assert!(b.data.len() <= 150_000);
    assert!(b.fill(&mut src, 150_000).unwrap());
    assert_eq!(b.len, 50_000);
    assert!(b.fill(&mut src, 150_000).unwrap());
    assert_eq!(b.len, 0);
    let mut small = &b"abc"[..];
    let mut b = PartBuffer::new();
    assert!(b.fill(&mut small, PART_SIZE).unwrap());
    assert_eq!(b.filled(), b"abc");
    assert_eq!(b.data.len(), FIRST_BUFFER);
}

#[test]
fn error_documents_are_read_and_classified() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match &amp; so on</Message>
<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId></Error>"#;
    let (code, message) = error_fields(xml);
    assert_eq!(code, "SignatureDoesNotMatch");
    assert_eq!(message, "The request signature we calculated does not match & so on");
    let p = classify("GET", 403, &code, &message, "h:9000");
    assert_eq!(p, S3Problem::BadCredentials { code: "SignatureDoesNotMatch".into() });
    assert!(p.to_string().starts_with("bad credentials"), "{p}");
    assert!(!p.to_string().contains("AKIDEXAMPLE"));
    assert_eq!(classify("PUT", 403, "InvalidAccessKeyId", "", "h"), S3Problem::BadCredentials { code: "InvalidAccessKeyId".into() });
    assert_eq!(classify("PUT", 404, "NoSuchBucket", "x", "h:1"), S3Problem::NoSuchBucket { endpoint: "h:1".into() });
    assert!(matches!(classify("PUT", 403, "AccessDenied", "no", "h"), S3Problem::AccessDenied { .. }));
    let p = classify("PUT", 500, "", "", "h");
    assert_eq!(p.to_string(), "PUT failed: HTTP 500: internal server error");
    let p = classify("UploadPart", 400, "BadDigest", "whatever", "h");
    assert!(p.to_string().contains("BadDigest") && p.to_string().contains("Content-MD5"), "{p}");
    assert_eq!(error_fields("not xml"), (String::new(), String::new()));
    let long = "x".repeat(1000);
    assert!(classify("GET", 400, "Odd", &long, "h").to_string().len() < 300);
}

#[test]
fn errors_name_store_bucket_and_key() {
    let e = Error::S3 {
        store: "s3data".into(),
        bucket: "djtest".into(),
        key: "dj/sch/a.dat".into(),
        problem: Box::new(S3Problem::Unreachable { endpoint: "127.0.0.1:9".into(), detail: "connection refused".into(), attempts: 4 }),
    };
    assert_eq!(
        e.to_string(),
        "store 's3data': S3 endpoint 127.0.0.1:9 is unreachable (connection refused; 4 attempts); bucket 'djtest', key 'dj/sch/a.dat'"
    );
    assert_eq!(e.status(), format!("error: {e}"));
}

fn store(location: &str) -> S3Store {
    store_at("127.0.0.1:1", location, "")
}

fn store_at(endpoint: &str, location: &str, extra: &str) -> S3Store {
    let cfg = crate::config::Config::parse(
        std::path::Path::new("/etc/t.json"),
        &format!(
            r#"{{"stores": {{"s": {{"protocol": "s3", "endpoint": "{endpoint}", "bucket": "b", "location": "{location}",
                "access_key": "AKIDSECRETACCESS", "secret_key": "SECRETKEYVALUE123"{extra}}}}}}}"#
        ),
    )
    .unwrap();
    let st = cfg.store("s").unwrap();
    let crate::config::Protocol::S3(s3) = &st.protocol else { unreachable!() };
    S3Store::new(st, s3).unwrap()
}

#[test]
fn describe_scrub_and_local_path() {
    let s = store("/dj/loc");
    assert_eq!(s.describe("sch/a.txt"), "object 'dj/loc/sch/a.txt' in bucket 'b' of store 's'");
    assert_eq!(s.local_path("x"), None);
    assert_eq!(s.client.scrub("key AKIDSECRETACCESS secret SECRETKEYVALUE123"), "key <redacted> secret <redacted>");
    let e = s.client.err("k", S3Problem::Failed { op: "GET", status: 400, code: "X".into(), message: "echo SECRETKEYVALUE123".into() });
    assert!(!e.to_string().contains("SECRETKEYVALUE123"), "{e}");
}

#[test]
fn connection_refused_is_reported_without_secrets_and_quickly() {
    // Port 1 on localhost refuses at once; one retry, 0.5 s backoff.
    let mut s = store("dj");
    s.client.retries = 1;
    let t = std::time::Instant::now();
    let e = s.size("sch/x").unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.starts_with("store 's': S3 endpoint 127.0.0.1:1 is unreachable (connection refused; 2 attempts)"), "{e}");
    assert!(e.ends_with("bucket 'b', key 'dj/sch/x'"), "{e}");
    assert!(!e.contains("AKIDSECRETACCESS") && !e.contains("SECRETKEYVALUE123"), "{e}");
}

/// A request as the fake server saw it.
#[derive(Debug)]
struct Seen {
    /// Method and path, without the query (which holds the signature).
    line: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A throwaway HTTP server: answers each connection with `answer(request)`,
/// or never answers when it returns `None`. Ends after `n` connections and
/// returns what it saw.
fn fake_server(n: usize, answer: fn(&Seen) -> Option<String>) -> (String, std::thread::JoinHandle<Vec<Seen>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut held = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let (target, _) = line.trim_end().rsplit_once(' ').unwrap_or((&line, ""));
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let mut req = Seen { line: path.to_string(), query: query.to_string(), headers, body: Vec::new() };
            let len = req.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            req.body = vec![0; len];
            reader.read_exact(&mut req.body).unwrap();
            match answer(&req) {
                Some(reply) => conn.write_all(reply.as_bytes()).unwrap(),
                None => held.push(conn),
            }
            seen.push(req);
        }
        std::thread::sleep(Duration::from_millis(1500));
        seen
    });
    (addr, handle)
}

fn reply(status: &str, headers: &str, body: &str) -> Option<String> {
    Some(format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()))
}

/// Answers a multipart upload the way S3 does.
fn multipart_answer(req: &Seen) -> Option<String> {
    const NS: &str = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";
    let q = &req.query;
    if req.line.starts_with("HEAD") {
        reply("404 Not Found", "", "")
    } else if req.line.starts_with("POST") && q.contains("uploads") {
        reply("200 OK", "", &format!("<InitiateMultipartUploadResult {NS}><UploadId>UP1</UploadId></InitiateMultipartUploadResult>"))
    } else if req.line.starts_with("PUT") {
        let n = q.split('&').find_map(|kv| kv.strip_prefix("partNumber=")).unwrap_or("?");
        reply("200 OK", &format!("ETag: \"etag{n}\"\r\n"), "")
    } else if req.line.starts_with("POST") {
        reply("200 OK", "", &format!("<CompleteMultipartUploadResult {NS}><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>"))
    } else {
        reply("204 No Content", "", "")
    }
}

/// Whether a request writes or deletes an upload's marker (see `leftovers.rs`).
fn is_marker(r: &Seen) -> bool {
    r.line.contains(" /b/dj/.dj-uploads/")
}

fn two_part_object() -> Vec<u8> {
    (0..PART_SIZE + 5).map(|i| (i % 251) as u8).collect()
}

#[test]
fn multipart_parts_carry_content_md5_and_complete_in_order() {
    let (addr, server) = fake_server(6, multipart_answer);
    let s = store_at(&addr, "dj", "");
    let data = two_part_object();
    let want = crate::datajoint::hash::digest(b"", &data);
    let mut src = &data[..];
    let (got, n) = s.put("sch/big", &mut src, Hasher::default(), Some(want), &[("contents_hash", "u-u-i-d")]).unwrap();
    assert_eq!((got, n), (want, data.len() as u64));
    let mut seen = server.join().unwrap();
    // The upload's marker is written once it has an id, and deleted once it is complete.
    let marker: Vec<_> = seen.iter().enumerate().filter(|(_, r)| is_marker(r)).map(|(i, r)| (i, r.line.split(' ').next().unwrap())).collect();
    assert_eq!(marker, [(1, "PUT"), (5, "DELETE")]);
    assert!(String::from_utf8_lossy(&seen[1].body).contains(r#""upload_id":"UP1""#));
    seen.retain(|r| !is_marker(r));
    let lines: Vec<_> = seen.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines, ["POST /b/dj/sch/big", "PUT /b/dj/sch/big", "PUT /b/dj/sch/big", "POST /b/dj/sch/big"]);
    assert_eq!(seen[0].header("x-amz-meta-contents_hash"), Some("u-u-i-d"));
    let parts = [&data[..PART_SIZE], &data[PART_SIZE..]];
    for (req, part) in seen[1..3].iter().zip(parts) {
        assert_eq!(req.body.len(), part.len());
        assert_eq!(req.header("content-md5"), Some(content_md5(part).as_str()));
        assert!(req.query.contains("uploadId=UP1"), "{}", req.query);
    }
    let complete = String::from_utf8_lossy(&seen[3].body);
    let first = complete.find("<PartNumber>1</PartNumber>").unwrap();
    let second = complete.find("<PartNumber>2</PartNumber>").unwrap();
    assert!(first < second && complete.contains("etag1") && complete.contains("etag2"), "{complete}");
}

#[test]
fn multipart_with_unexpected_hash_is_aborted_not_completed() {
    let (addr, server) = fake_server(6, multipart_answer);
    let s = store_at(&addr, "dj", "");
    let data = two_part_object();
    let mut src = &data[..];
    let e = s.put("sch/big", &mut src, Hasher::default(), Some([0; 16]), &[]).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("object 'dj/sch/big' in bucket 'b' of store 's'"), "{e}");
    let seen = server.join().unwrap();
    let lines: Vec<_> = seen.iter().map(|r| (r.line.as_str(), r.query.contains("uploadId=UP1"))).collect();
    assert_eq!(lines[..4], [("POST /b/dj/sch/big", false), lines[1], ("PUT /b/dj/sch/big", true), ("PUT /b/dj/sch/big", true)]);
    assert_eq!(lines[4], ("DELETE /b/dj/sch/big", true), "aborted");
    assert!(is_marker(&seen[1]) && is_marker(&seen[5]) && seen[5].line.starts_with("DELETE"), "then its marker goes: {lines:?}");
}

#[test]
fn a_single_put_with_unexpected_hash_sends_nothing() {
    let s = store("dj"); // nothing listens: any request would fail otherwise
    let mut src = &b"small"[..];
    let e = s.put("sch/x", &mut src, Hasher::default(), Some([0; 16]), &[]).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
}

#[test]
fn objects_under_the_leading_slash_form_are_found() {
    fn answer(req: &Seen) -> Option<String> {
        let found = req.line.ends_with(" /b//dj/x/sch/a.txt");
        Some(match (req.line.starts_with("GET"), found) {
            (_, false) => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            (false, true) => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".into(),
            (true, true) => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".into(),
        })
    }
    let (addr, server) = fake_server(4, answer);
    let s = store_at(&addr, "/dj/x", "");
    assert_eq!(s.size("sch/a.txt").unwrap(), Some(5));
    let mut body = String::new();
    s.open("sch/a.txt").unwrap().read_to_string(&mut body).unwrap();
    assert_eq!(body, "hello");
    let seen: Vec<_> = server.join().unwrap().into_iter().map(|r| r.line).collect();
    assert_eq!(seen, ["HEAD /b/dj/x/sch/a.txt", "HEAD /b//dj/x/sch/a.txt", "GET /b/dj/x/sch/a.txt", "GET /b//dj/x/sch/a.txt"].map(String::from));
}

#[test]
fn a_silent_server_times_out() {
    let (addr, _server) = fake_server(1, |_| None);
    let s = store_at(&addr, "dj", r#", "timeout": 0.5, "retries": 2"#);
    let t = std::time::Instant::now();
    let e = s.size("sch/x").unwrap_err().to_string();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "{took:?}");
    assert!(e.contains("HEAD timed out: the S3 server sent nothing for 0.5 s (config key 'timeout')"), "{e}");
}

#[test]
fn server_errors_are_retried_then_reported() {
    let (addr, server) = fake_server(3, |_| Some("HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()));
    let s = store_at(&addr, "dj", r#", "retries": 2"#);
    let t = std::time::Instant::now();
    let e = s.size("sch/x").unwrap_err().to_string();
    // backoff 0.5 s then 1 s
    assert!(t.elapsed() >= Duration::from_millis(1500), "{:?}", t.elapsed());
    assert!(e.contains("HEAD failed: HTTP 503: service unavailable"), "{e}");
    assert_eq!(server.join().unwrap().len(), 3);
}

/// A seekable source whose bytes change (same length) once it is rewound
/// after being read: a server file edited between the two passes of
/// `put_by_hash`.
struct ChangesWhenRewound {
    data: Vec<u8>,
    pos: usize,
    changed: bool,
}

impl Read for ChangesWhenRewound {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl crate::store::Source for ChangesWhenRewound {}

impl std::io::Seek for ChangesWhenRewound {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        if let SeekFrom::Start(p) = to {
            if self.pos > 0 && !self.changed {
                let mid = self.data.len() / 2;
                self.data[mid] ^= 0xff;
                self.changed = true;
            }
            self.pos = p as usize;
        }
        Ok(self.pos as u64)
    }
}

#[test]
fn a_source_that_changes_between_the_two_passes_stores_nothing() {
    // The object is missing (HEAD 404) in a bucket that exists.
    fn answer(req: &Seen) -> Option<String> {
        if req.line == "HEAD /b" || req.line == "HEAD /b/" {
            return reply("200 OK", "", "");
        }
        multipart_answer(req)
    }
    let (addr, server) = fake_server(9, answer);
    let s = store_at(&addr, "dj", "");
    let key_of = |h: &crate::datajoint::hash::Hash| format!("sch/{}", crate::datajoint::hash::to_hex(h));
    let small = b"the first version of a small file".to_vec();
    let large = two_part_object();
    assert!(small.len() <= SINGLE_PUT_MAX && large.len() > SINGLE_PUT_MAX);
    for data in [small, large] {
        let mut src = ChangesWhenRewound { data, pos: 0, changed: false };
        let e = s.put_by_hash("sch", &mut src, Hasher::default(), &key_of).unwrap_err();
        assert!(src.changed, "the source was read twice");
        assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
        assert!(e.to_string().starts_with("source for object 'dj/sch/"), "{e}");
    }
    let mut seen = server.join().unwrap();
    // The large one's marker, written and deleted around its upload.
    assert_eq!(seen.iter().filter(|r| is_marker(r)).count(), 2);
    seen.retain(|r| !is_marker(r));
    let lines: Vec<_> = seen.iter().map(|r| (r.line.as_str(), r.query.contains("uploadId=UP1"))).collect();
    assert!(seen.iter().all(|r| r.line == "HEAD /b" || r.line == "HEAD /b/" || r.line.contains(" /b/dj/sch/")), "{lines:?}");
    let kinds: Vec<_> = lines.iter().map(|(l, up)| (l.split(' ').next().unwrap(), *up)).collect();
    // Small: the lookups, then nothing sent. Large: parts sent, never completed, aborted.
    assert_eq!(
        kinds,
        [("HEAD", false), ("HEAD", false), ("HEAD", false), ("POST", false), ("PUT", true), ("PUT", true), ("DELETE", true)],
        "{lines:?}"
    );
    assert!(!seen.iter().any(|r| r.line.starts_with("PUT") && !r.query.contains("uploadId")), "no single PUT");
    assert!(!seen.iter().any(|r| r.line.starts_with("POST") && r.query.contains("uploadId")), "no CompleteMultipartUpload");
}

#[test]
fn an_unreachable_proxy_is_named_instead_of_the_endpoint() {
    let p = S3Problem::ProxyUnreachable {
        proxy: "http://redacted@proxy.lab:3128/".into(),
        endpoint: "s3.lab:9000".into(),
        detail: "connection refused".into(),
        attempts: 2,
    };
    assert_eq!(
        p.to_string(),
        "proxy_server http://redacted@proxy.lab:3128/ is unreachable (connection refused; 2 attempts); S3 endpoint s3.lab:9000 was not contacted"
    );
}

#[test]
fn sse_headers_go_on_the_upload_and_its_marker_never_on_parts() {
    let (addr, server) = fake_server(6, multipart_answer);
    let s = store_at(&addr, "dj", r#", "server_side_encryption": "aws:kms", "kms_key_id": "alias/dj""#);
    let data = two_part_object();
    let mut src = &data[..];
    s.put("sch/big", &mut src, Hasher::default(), None, &[]).unwrap();
    let seen = server.join().unwrap();
    fn sse(r: &Seen) -> (Option<&str>, Option<&str>) {
        (r.header("x-amz-server-side-encryption"), r.header("x-amz-server-side-encryption-aws-kms-key-id"))
    }
    let (mut created, mut parts) = (0, 0);
    for r in &seen {
        let creates = r.line.starts_with("POST") && r.query.contains("uploads") || r.line.starts_with("PUT") && is_marker(r);
        let part = r.line.starts_with("PUT") && r.query.contains("partNumber=");
        created += usize::from(creates);
        parts += usize::from(part);
        if creates {
            assert_eq!(sse(r), (Some("aws:kms"), Some("alias/dj")), "{r:?}");
            assert!(r.query.contains("x-amz-server-side-encryption%3Bx-amz-server-side-encryption-aws-kms-key-id"), "signed: {}", r.query);
        } else if part {
            assert_eq!(sse(r), (None, None), "{r:?}");
        }
    }
    assert_eq!((created, parts), (2, 2), "{seen:?}");
}

#[test]
fn virtual_hosted_requests_name_the_bucket_in_the_host() {
    // The URL requests are signed for (tests/test_s3_credentials.py sends them).
    let s = store_at("minio.lab:9000", "dj", r#", "addressing": "virtual""#);
    assert_eq!(s.bucket.object_url("dj/k").as_str(), "http://b.minio.lab:9000/dj/k");
    let s = store_at("minio.lab:9000", "dj", "");
    assert_eq!(s.bucket.object_url("dj/k").as_str(), "http://minio.lab:9000/b/dj/k");
}
