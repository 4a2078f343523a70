//! The `s3` protocol: objects in a bucket of an S3-compatible server.
//!
//! rusty-s3 presigns each request (SigV4, path-style
//! `http(s)://endpoint/bucket/key`) and ureq sends it on the calling thread:
//! no async runtime and no background thread, so nothing keeps running when
//! the database server unloads the library. Every request has a connect
//! timeout and a stall timeout; a connection failure or a 5xx answer is
//! retried a bounded number of times with exponential backoff.
//!
//! Memory stays bounded by one part buffer whatever the object size:
//! downloads stream, uploads go in one `PUT` up to [`SINGLE_PUT_MAX`] bytes
//! and as a multipart upload of [`PART_SIZE`] parts above, every request
//! body with its `Content-MD5`. A multipart upload is completed only once
//! the whole object hashed as expected, and aborted on any failure, so a
//! reader never sees a partial or wrong object under its key.

use super::{check_source, hash_all, now_secs, Listed, ObjectStore, Source};
use crate::config::{S3Config, StoreConfig};
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::{Error, Result, S3Problem};

mod answers;
mod keys;
mod upload;

use answers::shorten;
pub use answers::{classify, error_fields};
pub use keys::{location_prefix, object_keys, parse_time};
use rusty_s3::actions::{CreateMultipartUpload, ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use std::io::{self, Read, SeekFrom};
use std::sync::OnceLock;
use std::time::Duration;
pub use upload::{content_md5, parts_for, plan, Upload, MAX_OBJECT, MAX_PARTS, PART_SIZE, SINGLE_PUT_MAX};
use ureq::http::Response;
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, RequestBuilder};
use url::Url;

/// How long a presigned URL stays valid; each attempt signs anew.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15 * 60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The most of an error or XML answer that is read.
const ANSWER_LIMIT: usize = 1 << 20;
/// The first read buffer; it doubles up to [`PART_SIZE`] only for large objects.
const FIRST_BUFFER: usize = 64 << 10;

/// How long a bucket that answered `HEAD bucket` is taken to exist.
const BUCKET_SEEN_FOR: Duration = Duration::from_secs(60);

/// Buckets recently seen to exist, by `endpoint/bucket` (a handful at most:
/// one per configured S3 store).
static BUCKETS_SEEN: std::sync::Mutex<Vec<(String, std::time::Instant)>> = std::sync::Mutex::new(Vec::new());

fn bucket_seen(id: &str) -> bool {
    let seen = BUCKETS_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.iter().any(|(b, at)| b == id && at.elapsed() < BUCKET_SEEN_FOR)
}

fn remember_bucket(id: String) {
    let mut seen = BUCKETS_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|(b, at)| *b != id && at.elapsed() < BUCKET_SEEN_FOR);
    seen.push((id, std::time::Instant::now()));
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verb {
    Head,
    Get,
    Put,
    Post,
    Delete,
}

/// One S3 request, signed anew for each attempt.
struct Call<'a> {
    op: &'static str,
    verb: Verb,
    /// The object key, for messages.
    key: &'a str,
    url: &'a dyn Fn() -> Url,
    headers: &'a [(String, String)],
    body: &'a [u8],
    /// A streamed download: its body has no total time limit, only the stall timeout.
    stream: bool,
    /// Whether a 5xx answer is retried (not for the second-chance lookups,
    /// which some servers answer with 500 as they cannot hold such keys).
    retry_5xx: bool,
}

pub struct S3Store {
    name: String,
    endpoint: String,
    bucket: Bucket,
    creds: Credentials,
    agent: Agent,
    location: String,
    timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    secure: bool,
}

/// Trusted roots for `secure` stores: the system bundle, which admins extend
/// with `update-ca-certificates` for a private CA, else Mozilla's roots.
fn root_certs() -> RootCerts {
    static ROOTS: OnceLock<RootCerts> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"] {
                if let Ok(pem) = std::fs::read(path) {
                    let certs: Vec<_> = parse_pem(&pem)
                        .filter_map(|item| match item {
                            Ok(PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        })
                        .collect();
                    if !certs.is_empty() {
                        return RootCerts::new_with_certs(&certs);
                    }
                }
            }
            RootCerts::WebPki
        })
        .clone()
}

fn with_headers<B>(mut rb: RequestBuilder<B>, headers: &[(String, String)]) -> RequestBuilder<B> {
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    rb
}

/// Connection-level failures worth another attempt. Stalls after connecting
/// are not retried: they already waited the whole `timeout`.
fn retryable(e: &ureq::Error) -> bool {
    use io::ErrorKind::*;
    match e {
        ureq::Error::Io(io) => {
            matches!(io.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected | Interrupted)
        }
        ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect),
        _ => false,
    }
}

/// Reads at most [`ANSWER_LIMIT`] bytes of an answer body, as text.
fn answer_text(body: Body) -> String {
    let mut out = Vec::new();
    let _ = body.into_reader().take(ANSWER_LIMIT as u64).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl S3Store {
    pub fn new(store: &StoreConfig, s3: &S3Config) -> Result<Self> {
        let unusable = |what: &str| Error::Denied { msg: format!("store '{}': {what} is not usable", store.name) };
        let scheme = if s3.secure { "https" } else { "http" };
        let endpoint_url = Url::parse(&format!("{scheme}://{}/", s3.endpoint)).map_err(|_| unusable("endpoint"))?;
        let bucket = Bucket::new(endpoint_url, UrlStyle::Path, s3.bucket.clone(), s3.region.clone()).map_err(|_| unusable("endpoint"))?;
        let proxy = match &s3.proxy_server {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|_| unusable("proxy_server"))?),
            None => None,
        };
        // No global, per-call or resolve timeout: with any of them ureq
        // resolves host names on a spawned thread, and this library must
        // never leave a thread behind. Name lookups are bounded by the
        // system resolver's own timeouts.
        let mut config = Agent::config_builder();
        if s3.secure {
            config = config.tls_config(TlsConfig::builder().root_certs(root_certs()).build());
        }
        let config = config
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(proxy)
            .user_agent(concat!("dj_udf/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(s3.connect_timeout))
            .timeout_send_request(Some(s3.timeout))
            .timeout_recv_response(Some(s3.timeout))
            .timeout_per_read(Some(s3.timeout))
            .timeout_per_write(Some(s3.timeout))
            .max_idle_connections(2)
            .max_idle_connections_per_host(2)
            .build();
        Ok(S3Store {
            name: store.name.clone(),
            endpoint: s3.endpoint.clone(),
            bucket,
            creds: Credentials::new(s3.access_key.clone(), s3.secret_key.clone()),
            agent: Agent::new_with_config(config),
            location: store.location.clone(),
            timeout: s3.timeout,
            connect_timeout: s3.connect_timeout,
            retries: s3.retries,
            secure: s3.secure,
        })
    }

    fn keys(&self, relative: &str) -> (String, Option<String>) {
        object_keys(&self.location, relative)
    }

    /// Replaces the credentials wherever they might appear in foreign text.
    fn scrub(&self, s: &str) -> String {
        let mut s = s.to_string();
        for secret in [self.creds.secret(), self.creds.key()] {
            if !secret.is_empty() {
                s = s.replace(secret, "<redacted>");
            }
        }
        s
    }

    fn err(&self, key: &str, problem: S3Problem) -> Error {
        let problem = match problem {
            S3Problem::Unreachable { endpoint, detail, attempts } => S3Problem::Unreachable { endpoint, detail: self.scrub(&detail), attempts },
            S3Problem::AccessDenied { message } => S3Problem::AccessDenied { message: self.scrub(&message) },
            S3Problem::Failed { op, status, code, message } => {
                S3Problem::Failed { op, status, code: self.scrub(&code), message: self.scrub(&message) }
            }
            S3Problem::Protocol { op, detail } => S3Problem::Protocol { op, detail: self.scrub(&detail) },
            other => other,
        };
        Error::S3 { store: self.name.clone(), bucket: self.bucket.name().to_string(), key: key.to_string(), problem: Box::new(problem) }
    }

    fn transport_problem(&self, op: &'static str, e: &ureq::Error, attempts: u32) -> S3Problem {
        let unreachable = |detail: String| S3Problem::Unreachable { endpoint: self.endpoint.clone(), detail, attempts };
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                unreachable(format!("no connection within {} s, config key 'connect_timeout'", self.connect_timeout.as_secs_f64()))
            }
            ureq::Error::Timeout(_) => S3Problem::Timeout { op, seconds: self.timeout.as_secs_f64() },
            ureq::Error::HostNotFound => unreachable("host name not found".into()),
            ureq::Error::ConnectionFailed => unreachable("connection failed".into()),
            ureq::Error::Io(io) => unreachable(match io.kind() {
                io::ErrorKind::ConnectionRefused => "connection refused".into(),
                io::ErrorKind::ConnectionReset => "connection reset".into(),
                io::ErrorKind::UnexpectedEof => "connection closed by the server".into(),
                io::ErrorKind::TimedOut => "timed out".into(),
                // rustls reports handshake and certificate failures this way
                io::ErrorKind::InvalidData if self.secure => format!("TLS: {}", shorten(&io.to_string())),
                _ => shorten(&io.to_string()),
            }),
            ureq::Error::Tls(m) => unreachable(format!("TLS: {m}")),
            ureq::Error::Rustls(r) => unreachable(format!("TLS: {r}")),
            ureq::Error::Protocol(p) => S3Problem::Protocol { op, detail: shorten(&p.to_string()) },
            // Other variants could quote the request URI, which names the access key.
            _ => S3Problem::Protocol { op, detail: "the request could not be sent".into() },
        }
    }

    fn once(&self, c: &Call) -> std::result::Result<Response<Body>, ureq::Error> {
        let url = (c.url)();
        let url = url.as_str();
        let total = if c.stream { None } else { Some(self.timeout) };
        match c.verb {
            Verb::Head => with_headers(self.agent.head(url), c.headers).config().timeout_recv_body(total).build().call(),
            Verb::Get => with_headers(self.agent.get(url), c.headers).config().timeout_recv_body(total).build().call(),
            Verb::Delete => with_headers(self.agent.delete(url), c.headers).config().timeout_recv_body(total).build().call(),
            Verb::Put => with_headers(self.agent.put(url), c.headers).config().timeout_recv_body(total).build().send(c.body),
            Verb::Post => with_headers(self.agent.post(url), c.headers).config().timeout_recv_body(total).build().send(c.body),
        }
    }

    /// Sends with retries; returns the final answer whatever its status, or
    /// the error once no connection could be had.
    fn send(&self, c: &Call) -> Result<Response<Body>> {
        let attempts = self.retries + 1;
        let mut delay = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let last = attempt >= attempts;
            match self.once(c) {
                Ok(r) if r.status().is_server_error() && c.retry_5xx && !last => drop(r),
                Ok(r) => return Ok(r),
                Err(e) if retryable(&e) && !last => drop(e),
                Err(e) => return Err(self.err(c.key, self.transport_problem(c.op, &e, attempt))),
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// The error an unsuccessful answer stands for.
    fn answer_error(&self, c: &Call, r: Response<Body>) -> Error {
        let status = r.status().as_u16();
        let text = answer_text(r.into_body());
        let (code, message) = error_fields(&text);
        self.err(c.key, classify(c.op, status, &code, &message, &self.endpoint))
    }

    fn missing(&self, relative: &str) -> Error {
        Error::Missing { what: self.describe(relative) }
    }

    /// `HEAD` of one key: its size, `None` on 404. A `second_chance` lookup
    /// (the leading-`/` form of a key, after the main form was not found)
    /// takes any failure answer as "not there": servers that cannot hold such
    /// keys (s3s-fs, MinIO) answer them with 400 or 500.
    fn head(&self, key: &str, second_chance: bool) -> Result<Option<u64>> {
        let url = || self.bucket.head_object(Some(&self.creds), key).sign(SIGNATURE_LIFETIME);
        let retry_5xx = !second_chance;
        let c = Call { op: "HEAD", verb: Verb::Head, key, url: &url, headers: &[], body: &[], stream: false, retry_5xx };
        let r = self.send(&c)?;
        let status = r.status().as_u16();
        if r.status().is_success() {
            let len = r.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
            return len.map(Some).ok_or_else(|| self.err(key, S3Problem::Protocol { op: "HEAD", detail: "no Content-Length".into() }));
        }
        if status == 404 || second_chance {
            return Ok(None);
        }
        if r.status().is_server_error() {
            return Err(self.err(key, classify("HEAD", status, "", "", &self.endpoint)));
        }
        // A HEAD answer has no body to say why: ask again with a GET of one
        // byte, whose error answer names the cause.
        drop(r);
        let url = || self.bucket.get_object(Some(&self.creds), key).sign(SIGNATURE_LIFETIME);
        let headers = [("range".to_string(), "bytes=0-0".to_string())];
        let g = Call { op: "HEAD", verb: Verb::Get, key, url: &url, headers: &headers, body: &[], stream: false, retry_5xx: true };
        let r = self.send(&g)?;
        if r.status().is_success() || r.status().as_u16() == 416 {
            return Err(self.err(key, classify("HEAD", status, "", "", &self.endpoint)));
        }
        Err(self.answer_error(&g, r))
    }

    /// After a 404 for an object: an error if the bucket itself is missing.
    /// A bucket seen to exist is not asked about again for
    /// [`BUCKET_SEEN_FOR`], so that putting many new objects (each first
    /// looked up, and missing) does not cost a bucket request each.
    fn check_bucket(&self, key: &str) -> Result<()> {
        let id = format!("{}/{}", self.endpoint, self.bucket.name());
        if bucket_seen(&id) {
            return Ok(());
        }
        let url = || self.bucket.head_bucket(Some(&self.creds)).sign(SIGNATURE_LIFETIME);
        let c = Call { op: "HEAD bucket", verb: Verb::Head, key, url: &url, headers: &[], body: &[], stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if r.status().as_u16() == 404 {
            return Err(self.err(key, S3Problem::NoSuchBucket { endpoint: self.endpoint.clone() }));
        }
        if r.status().is_success() {
            remember_bucket(id);
        }
        // Anything else (including 403 without ListBucket permission): the
        // object's own answer, 404, stands.
        Ok(())
    }

    /// `GET` of one key as a stream, `None` on 404 `NoSuchKey` (or on any
    /// failure answer for a `second_chance` lookup, as for [`Self::head`]).
    fn get(&self, key: &str, second_chance: bool) -> Result<Option<Box<dyn Read>>> {
        let url = || self.bucket.get_object(Some(&self.creds), key).sign(SIGNATURE_LIFETIME);
        let retry_5xx = !second_chance;
        let c = Call { op: "GET", verb: Verb::Get, key, url: &url, headers: &[], body: &[], stream: true, retry_5xx };
        let r = self.send(&c)?;
        if r.status().is_success() {
            let download = Download { inner: r.into_body().into_reader(), timeout: self.timeout, secrets: self.secrets() };
            return Ok(Some(Box::new(download)));
        }
        if second_chance {
            return Ok(None);
        }
        if r.status().as_u16() == 404 {
            let (code, message) = error_fields(&answer_text(r.into_body()));
            if code.is_empty() || code == "NoSuchKey" {
                return Ok(None);
            }
            return Err(self.err(key, classify("GET", 404, &code, &message, &self.endpoint)));
        }
        Err(self.answer_error(&c, r))
    }

    fn secrets(&self) -> [String; 2] {
        [self.creds.key().to_string(), self.creds.secret().to_string()]
    }

    fn delete_key(&self, key: &str) -> Result<()> {
        let url = || self.bucket.delete_object(Some(&self.creds), key).sign(SIGNATURE_LIFETIME);
        let c = Call { op: "DELETE", verb: Verb::Delete, key, url: &url, headers: &[], body: &[], stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if r.status().is_success() || r.status().as_u16() == 404 {
            return Ok(());
        }
        Err(self.answer_error(&c, r))
    }

    fn put_single(&self, key: &str, data: &[u8], meta: &[(String, String)]) -> Result<()> {
        let mut headers = meta.to_vec();
        headers.push(("content-md5".into(), content_md5(data)));
        let url = || {
            let mut a = self.bucket.put_object(Some(&self.creds), key);
            for (k, v) in &headers {
                a.headers_mut().insert(k.as_str(), v.as_str());
            }
            a.sign(SIGNATURE_LIFETIME)
        };
        let c = Call { op: "PUT", verb: Verb::Put, key, url: &url, headers: &headers, body: data, stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if r.status().is_success() {
            return Ok(());
        }
        Err(self.answer_error(&c, r))
    }

    fn create_upload(&self, key: &str, meta: &[(String, String)]) -> Result<String> {
        let url = || {
            let mut a = self.bucket.create_multipart_upload(Some(&self.creds), key);
            for (k, v) in meta {
                a.headers_mut().insert(k.as_str(), v.as_str());
            }
            a.sign(SIGNATURE_LIFETIME)
        };
        let op = "CreateMultipartUpload";
        let c = Call { op, verb: Verb::Post, key, url: &url, headers: meta, body: &[], stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if !r.status().is_success() {
            return Err(self.answer_error(&c, r));
        }
        let text = answer_text(r.into_body());
        match CreateMultipartUpload::parse_response(&text) {
            Ok(resp) if !resp.upload_id().is_empty() => Ok(resp.upload_id().to_string()),
            _ => Err(self.err(key, S3Problem::Protocol { op, detail: "no UploadId in the answer".into() })),
        }
    }

    fn upload_part(&self, key: &str, upload_id: &str, number: usize, data: &[u8]) -> Result<String> {
        let part = u16::try_from(number).map_err(|_| self.err(key, S3Problem::Protocol { op: "UploadPart", detail: "too many parts".into() }))?;
        let headers = [("content-md5".to_string(), content_md5(data))];
        let url = || {
            let mut a = self.bucket.upload_part(Some(&self.creds), key, part, upload_id);
            a.headers_mut().insert("content-md5", headers[0].1.as_str());
            a.sign(SIGNATURE_LIFETIME)
        };
        let c = Call { op: "UploadPart", verb: Verb::Put, key, url: &url, headers: &headers, body: data, stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if !r.status().is_success() {
            return Err(self.answer_error(&c, r));
        }
        // The ETag only names the part for CompleteMultipartUpload; integrity
        // comes from Content-MD5 and the whole-object hash.
        r.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| self.err(key, S3Problem::Protocol { op: "UploadPart", detail: "no ETag in the answer".into() }))
    }

    fn complete_upload(&self, key: &str, upload_id: &str, etags: &[String], size: u64) -> Result<()> {
        let body = self.bucket.complete_multipart_upload(Some(&self.creds), key, upload_id, etags.iter().map(String::as_str)).body();
        let url = || self.bucket.complete_multipart_upload(Some(&self.creds), key, upload_id, std::iter::empty()).sign(SIGNATURE_LIFETIME);
        let op = "CompleteMultipartUpload";
        let c = Call { op, verb: Verb::Post, key, url: &url, headers: &[], body: body.as_bytes(), stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        let status = r.status().as_u16();
        let ok = r.status().is_success();
        let text = answer_text(r.into_body());
        // S3 may answer 200 and still fail, with an Error document.
        let (code, message) = error_fields(&text);
        if ok && !text.contains("<Error>") {
            return Ok(());
        }
        if code == "NoSuchUpload" && self.head(key, false)? == Some(size) {
            // A retry after a lost answer: the first attempt completed it.
            return Ok(());
        }
        Err(self.err(key, classify(op, status, &code, &message, &self.endpoint)))
    }

    fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = || self.bucket.abort_multipart_upload(Some(&self.creds), key, upload_id).sign(SIGNATURE_LIFETIME);
        let c = Call { op: "AbortMultipartUpload", verb: Verb::Delete, key, url: &url, headers: &[], body: &[], stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if r.status().is_success() || r.status().as_u16() == 404 {
            return Ok(());
        }
        Err(self.answer_error(&c, r))
    }

    /// Uploads the parts (the first already in `buf`), then completes the
    /// upload only if the whole object hashes to `expect`.
    #[allow(clippy::too_many_arguments)]
    fn upload_parts(
        &self,
        relative: &str,
        key: &str,
        upload_id: &str,
        src: &mut dyn Read,
        buf: &mut PartBuffer,
        mut ended: bool,
        mut hasher: Hasher,
        expect: Option<Hash>,
    ) -> Result<(Hash, u64)> {
        let mut etags = Vec::new();
        let mut total = 0u64;
        loop {
            if etags.len() == MAX_PARTS {
                return Err(self.err(key, S3Problem::TooLarge { limit: MAX_OBJECT }));
            }
            hasher.update(buf.filled());
            total += buf.len as u64;
            etags.push(self.upload_part(key, upload_id, etags.len() + 1, buf.filled())?);
            if ended {
                break;
            }
            ended = buf.fill(src, PART_SIZE).map_err(|e| Error::io("read source for", self.describe(relative), e))?;
            if buf.len == 0 {
                break;
            }
        }
        let got = hasher.finish();
        check_source(expect, &got, &self.describe(relative))?;
        self.complete_upload(key, upload_id, &etags, total)?;
        Ok((got, total))
    }
}

/// A reusable upload buffer that grows (by doubling) only as far as the data needs.
struct PartBuffer {
    data: Vec<u8>,
    len: usize,
}

impl PartBuffer {
    fn new() -> Self {
        PartBuffer { data: Vec::new(), len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Replaces the contents with up to `limit` bytes of `src`; returns
    /// whether `src` ended.
    fn fill(&mut self, src: &mut dyn Read, limit: usize) -> io::Result<bool> {
        self.len = 0;
        loop {
            if self.len == limit {
                return Ok(false);
            }
            if self.len == self.data.len() {
                let grown = (self.data.len() * 2).clamp(FIRST_BUFFER, limit);
                self.data.resize(grown, 0);
            }
            match src.read(&mut self.data[self.len..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A download body whose errors never quote the request.
struct Download {
    inner: ureq::BodyReader<'static>,
    timeout: Duration,
    secrets: [String; 2],
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let timed_out = e.kind() == io::ErrorKind::TimedOut
                || e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()).is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            if timed_out {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the S3 server sent nothing for {} s (config key 'timeout')", self.timeout.as_secs_f64()),
                );
            }
            let mut text = shorten(&e.to_string());
            for s in &self.secrets {
                if !s.is_empty() {
                    text = text.replace(s.as_str(), "<redacted>");
                }
            }
            io::Error::new(e.kind(), format!("S3 download interrupted: {text}"))
        })
    }
}

impl ObjectStore for S3Store {
    /// One `ListObjectsV2` page under the written (stripped) key form;
    /// objects only a Python ≥ 3.12 client wrote under the `/…` form are not
    /// listed.
    fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<Listed>> {
        let loc = location_prefix(&self.location);
        let full = |rel: &str| if loc.is_empty() { rel.to_string() } else { format!("{loc}/{rel}") };
        let key_prefix = full(prefix);
        let start_after = (!after.is_empty()).then(|| full(after));
        let url = || {
            let mut a = ListObjectsV2::new(&self.bucket, Some(&self.creds));
            a.with_prefix(key_prefix.as_str());
            if let Some(s) = &start_after {
                a.with_start_after(s.as_str());
            }
            a.with_max_keys(limit.clamp(1, 1000));
            a.sign(SIGNATURE_LIFETIME)
        };
        let c = Call { op: "LIST", verb: Verb::Get, key: &key_prefix, url: &url, headers: &[], body: &[], stream: false, retry_5xx: true };
        let r = self.send(&c)?;
        if !r.status().is_success() {
            return Err(self.answer_error(&c, r));
        }
        let text = answer_text(r.into_body());
        let page =
            ListObjectsV2::parse_response(&text).map_err(|e| self.err(&key_prefix, S3Problem::Protocol { op: "LIST", detail: e.to_string() }))?;
        let now = now_secs();
        let strip = if loc.is_empty() { String::new() } else { format!("{loc}/") };
        Ok(page
            .contents
            .into_iter()
            .filter_map(|o| {
                let key = o.key.strip_prefix(strip.as_str())?.to_string();
                let written = o.last_modified.as_deref().and_then(parse_time).unwrap_or(now);
                Some(Listed { key, size: o.size.unwrap_or(0), age: (now - written).max(0) as u64 })
            })
            .take(limit)
            .collect())
    }

    fn size(&self, relative: &str) -> Result<Option<u64>> {
        let (key, rooted) = self.keys(relative);
        if let Some(n) = self.head(&key, false)? {
            return Ok(Some(n));
        }
        if let Some(rooted) = rooted {
            if let Some(n) = self.head(&rooted, true)? {
                return Ok(Some(n));
            }
        }
        self.check_bucket(&key)?;
        Ok(None)
    }

    fn open(&self, relative: &str) -> Result<Box<dyn Read>> {
        let (key, rooted) = self.keys(relative);
        if let Some(r) = self.get(&key, false)? {
            return Ok(r);
        }
        if let Some(rooted) = rooted {
            if let Some(r) = self.get(&rooted, true)? {
                return Ok(r);
            }
        }
        Err(self.missing(relative))
    }

    fn put(&self, relative: &str, src: &mut dyn Read, mut hasher: Hasher, expect: Option<Hash>, meta: &[(&str, &str)]) -> Result<(Hash, u64)> {
        let (key, _) = self.keys(relative);
        let meta: Vec<(String, String)> = meta.iter().map(|(k, v)| (format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.to_string())).collect();
        let mut buf = PartBuffer::new();
        let ended = buf.fill(src, PART_SIZE).map_err(|e| Error::io("read source for", self.describe(relative), e))?;
        match plan(buf.len, ended) {
            Upload::Single => {
                hasher.update(buf.filled());
                let got = hasher.finish();
                check_source(expect, &got, &self.describe(relative))?;
                self.put_single(&key, buf.filled(), &meta)?;
                Ok((got, buf.len as u64))
            }
            Upload::Multipart => {
                let upload_id = self.create_upload(&key, &meta)?;
                let result = self.upload_parts(relative, &key, &upload_id, src, &mut buf, ended, hasher, expect);
                if result.is_err() {
                    // Best effort: parts of an unfinished upload are never
                    // visible as an object, aborting only frees their space.
                    let _ = self.abort_upload(&key, &upload_id);
                }
                result
            }
        }
    }

    /// Two passes over a seekable source: hash it to learn the key, skip the
    /// upload when an object of that size is already there, else rewind and
    /// upload it with the hash as the expected one. An S3 object cannot be
    /// renamed once written (a server-side copy would cost a second write and
    /// leave a temporary object behind after a crash); reading a server file
    /// twice is cheaper, and a file that changes between the passes fails the
    /// check of the second pass, which leaves nothing stored.
    fn put_by_hash(&self, scope: &str, src: &mut dyn Source, hasher: Hasher, key_of: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)> {
        let start = src.stream_position().map_err(|e| Error::io("read source for", self.describe(scope), e))?;
        let (hash, n) = hash_all(src, hasher.clone()).map_err(|e| Error::io("read source for", self.describe(scope), e))?;
        let relative = key_of(&hash);
        if self.size(&relative)? == Some(n) {
            return Ok((hash, n, false));
        }
        src.seek(SeekFrom::Start(start)).map_err(|e| Error::io("rewind source for", self.describe(&relative), e))?;
        let (_, written) = self.put(&relative, src, hasher, Some(hash), &[])?;
        Ok((hash, written, true))
    }

    fn delete(&self, relative: &str) -> Result<bool> {
        let (key, rooted) = self.keys(relative);
        let mut deleted = false;
        // Both forms: a copy left under the other one would keep the object readable.
        for (k, second_chance) in [(key.clone(), false)].into_iter().chain(rooted.map(|r| (r, true))) {
            if self.head(&k, second_chance)?.is_some() {
                self.delete_key(&k)?;
                deleted = true;
            }
        }
        if !deleted {
            self.check_bucket(&key)?;
        }
        Ok(deleted)
    }

    fn describe(&self, relative: &str) -> String {
        format!("object '{}' in bucket '{}' of store '{}'", self.keys(relative).0, self.bucket.name(), self.name)
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests;
