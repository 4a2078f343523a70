//! The HTTP side of an S3 store: requests sent on the process-wide
//! connection pool ([`super::pool`]) with per-request timeouts, bounded
//! retries and backoff, and transport failures and error answers turned into
//! [`Error`]s that never quote the credentials.

use super::answers::{classify, error_fields, shorten};
use super::credentials::Provider;
use super::pool::{self, Kind};
use crate::config::{S3Config, StoreConfig};
use crate::error::{Error, Result, S3Problem};
use rusty_s3::Credentials;
use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;
use ureq::http::Response;
use ureq::tls::{parse_pem, PemItem, RootCerts};
use ureq::{Body, RequestBuilder, SendBody};
use url::Url;

/// The pause before each next attempt: 0.5 s, doubling up to 8 s.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff(Duration::from_millis(500))
    }

    pub(super) fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(8));
    }
}

/// The most of an error or XML answer that is read.
const ANSWER_LIMIT: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Verb {
    Head,
    Get,
    Put,
    Post,
    Delete,
}

/// One S3 request, signed anew for each attempt with the credentials of
/// that moment (temporary ones may have been refreshed since the last).
pub(super) struct Request<'a> {
    pub op: &'static str,
    pub verb: Verb,
    /// The object key, for messages.
    pub key: &'a str,
    pub url: &'a dyn Fn(&Credentials) -> Url,
    pub headers: &'a [(String, String)],
    pub body: Payload<'a>,
    /// A streamed download: its body may take up to `transfer_timeout`, not `timeout`.
    pub stream: bool,
    /// Whether a 5xx answer is retried (not for the second-chance lookups,
    /// which some servers answer with 500 as they cannot hold such keys).
    pub retry_5xx: bool,
}

impl<'a> Request<'a> {
    /// A request without headers or body, whose answer is read whole, with
    /// 5xx answers retried.
    pub fn new(op: &'static str, verb: Verb, key: &'a str, url: &'a dyn Fn(&Credentials) -> Url) -> Self {
        Request { op, verb, key, url, headers: &[], body: Payload::Bytes(&[]), stream: false, retry_5xx: true }
    }
}

/// A request body: bytes in memory, or `len` bytes read anew for each
/// attempt (a part of a server file, sent without holding it in memory).
#[derive(Clone, Copy)]
pub(super) enum Payload<'a> {
    Bytes(&'a [u8]),
    Reader { len: u64, open: &'a dyn OpenBody },
}

/// Opens a streamed request body from its start, once per attempt.
pub(super) trait OpenBody {
    fn open(&self) -> io::Result<Box<dyn Read + '_>>;
}

/// Sends one store's requests and names their failures.
pub(super) struct Client {
    /// Which of the pool's agents carries the requests.
    kind: Kind,
    /// What errors name: the store, its bucket and its endpoint.
    store: String,
    bucket: String,
    pub endpoint: String,
    /// The proxy every request goes through, as messages show it.
    proxy: Option<String>,
    /// Where each attempt gets its credentials (also scrubbed from foreign text).
    creds: Provider,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// The total a download or a request body may take.
    pub transfer_timeout: Duration,
    pub retries: u32,
    secure: bool,
}

/// Trusted roots for `secure` stores: the system bundle, which admins extend
/// with `update-ca-certificates` for a private CA, else Mozilla's roots.
pub(super) fn root_certs() -> RootCerts {
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

pub(super) fn with_headers<B, K: AsRef<str>, V: AsRef<str>>(mut rb: RequestBuilder<B>, headers: &[(K, V)]) -> RequestBuilder<B> {
    for (k, v) in headers {
        rb = rb.header(k.as_ref(), v.as_ref());
    }
    rb
}

/// Every timeout of one request (no resolve, global or per-call timeout:
/// see `pool::build`): `exchange` for sending the request, waiting for the
/// answer and each read or write, and the two for the bodies.
pub(super) fn with_timeouts<B>(
    rb: RequestBuilder<B>,
    connect: Duration,
    exchange: Duration,
    send_body: Duration,
    recv_body: Duration,
) -> RequestBuilder<B> {
    rb.config()
        .timeout_connect(Some(connect))
        .timeout_send_request(Some(exchange))
        .timeout_recv_response(Some(exchange))
        .timeout_per_read(Some(exchange))
        .timeout_per_write(Some(exchange))
        .timeout_send_body(Some(send_body))
        .timeout_recv_body(Some(recv_body))
        .build()
}

/// Connection-level failures worth another attempt. Stalls after connecting
/// are not retried: they already waited the whole `timeout`.
pub(super) fn retryable(e: &ureq::Error) -> bool {
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

/// A connection that died under a request: what a pooled connection the
/// server had closed or forgotten looks like (a refused connection, by
/// contrast, was new).
fn dropped(e: &ureq::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e, ureq::Error::Io(io) if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof))
}

/// Reads at most [`ANSWER_LIMIT`] bytes of an answer body, as text.
pub(super) fn answer_text(body: Body) -> String {
    let mut out = Vec::new();
    let _ = body.into_reader().take(ANSWER_LIMIT as u64).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Client {
    pub fn new(store: &StoreConfig, s3: &S3Config) -> Result<Self> {
        let kind = Kind { secure: s3.secure, proxy: s3.proxy_server.clone() };
        pool::agent(&kind).map_err(|_| Error::Denied { msg: format!("store '{}': proxy_server is not usable", store.name) })?;
        Ok(Client {
            kind,
            store: store.name.clone(),
            bucket: s3.bucket.clone(),
            endpoint: s3.endpoint.clone(),
            proxy: s3.proxy_shown(),
            creds: Provider::new(store, s3)?,
            timeout: s3.timeout,
            connect_timeout: s3.connect_timeout,
            transfer_timeout: s3.transfer_timeout,
            retries: s3.retries,
            secure: s3.secure,
        })
    }

    /// Whether the store signs with temporary credentials, which S3 may
    /// call expired before our clock does.
    pub fn temporary_credentials(&self) -> bool {
        self.creds.temporary()
    }

    /// Replaces the credentials wherever they might appear in foreign text.
    pub fn scrub(&self, s: &str) -> String {
        scrub(s, &self.creds.secrets())
    }

    /// The error for `problem` with the object `key`, scrubbed of credentials.
    pub fn err(&self, key: &str, problem: S3Problem) -> Error {
        let problem = match problem {
            S3Problem::Unreachable { endpoint, detail, attempts } => S3Problem::Unreachable { endpoint, detail: self.scrub(&detail), attempts },
            S3Problem::ProxyUnreachable { proxy, endpoint, detail, attempts } => {
                S3Problem::ProxyUnreachable { proxy, endpoint, detail: self.scrub(&detail), attempts }
            }
            S3Problem::ProxyFailed { proxy, endpoint, detail } => S3Problem::ProxyFailed { proxy, endpoint, detail: self.scrub(&detail) },
            // Not the config's key pair: send the DBA to the source instead.
            S3Problem::BadCredentials { code } if self.creds.ambient().is_some() => {
                S3Problem::RefusedCredentials { code, source: self.creds.ambient().unwrap_or_default().to_string() }
            }
            S3Problem::AccessDenied { message } => S3Problem::AccessDenied { message: self.scrub(&message) },
            S3Problem::Failed { op, status, code, message } => {
                S3Problem::Failed { op, status, code: self.scrub(&code), message: self.scrub(&message) }
            }
            S3Problem::Protocol { op, detail } => S3Problem::Protocol { op, detail: self.scrub(&detail) },
            other => other,
        };
        Error::S3 { store: self.store.clone(), bucket: self.bucket.clone(), key: key.to_string(), problem: Box::new(problem) }
    }

    /// The error an answer with `status` and no error document stands for.
    pub fn status_error(&self, op: &'static str, key: &str, status: u16) -> Error {
        self.err(key, classify(op, status, "", "", &self.endpoint))
    }

    fn transport_problem(&self, op: &'static str, e: &ureq::Error, attempts: u32) -> S3Problem {
        // Through a proxy, every connection is made to the proxy: a failure
        // to connect says nothing about the endpoint behind it.
        let unreachable = |detail: String| match &self.proxy {
            Some(proxy) => S3Problem::ProxyUnreachable { proxy: proxy.clone(), endpoint: self.endpoint.clone(), detail, attempts },
            None => S3Problem::Unreachable { endpoint: self.endpoint.clone(), detail, attempts },
        };
        match e {
            ureq::Error::ConnectProxyFailed(m) => {
                S3Problem::ProxyFailed { proxy: self.proxy.clone().unwrap_or_default(), endpoint: self.endpoint.clone(), detail: shorten(m) }
            }
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                unreachable(format!("no connection within {} s, config key 'connect_timeout'", self.connect_timeout.as_secs_f64()))
            }
            ureq::Error::Timeout(ureq::Timeout::SendBody | ureq::Timeout::RecvBody) => {
                S3Problem::TooSlow { op, seconds: self.transfer_timeout.as_secs_f64() }
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

    /// The request's headers and this store's timeouts.
    fn timed<B>(&self, rb: RequestBuilder<B>, r: &Request) -> RequestBuilder<B> {
        let recv_body = if r.stream { self.transfer_timeout } else { self.timeout };
        with_timeouts(with_headers(rb, r.headers), self.connect_timeout, self.timeout, self.transfer_timeout, recv_body)
    }

    /// One attempt, on a connection of `agent`'s pool.
    fn once(&self, r: &Request, agent: &ureq::Agent, creds: &Credentials) -> std::result::Result<Response<Body>, ureq::Error> {
        let url = (r.url)(creds);
        let url = url.as_str();
        let send = |rb: RequestBuilder<ureq::typestate::WithBody>| match r.body {
            Payload::Bytes(b) => self.timed(rb, r).send(b),
            Payload::Reader { len, open } => {
                let mut reader = open.open()?;
                // A declared length: the body goes length-delimited, never chunked.
                self.timed(rb.header("content-length", len.to_string()), r).send(SendBody::from_reader(&mut reader))
            }
        };
        match r.verb {
            Verb::Head => self.timed(agent.head(url), r).call(),
            Verb::Get => self.timed(agent.get(url), r).call(),
            Verb::Delete => self.timed(agent.delete(url), r).call(),
            Verb::Put => send(agent.put(url)),
            Verb::Post => send(agent.post(url)),
        }
    }

    /// Sends with retries; returns the final answer whatever its status, or
    /// the error once no connection could be had. A pooled connection that
    /// turns out dead (the server closed or restarted meanwhile) is no
    /// failure of the server: the pool's idle connections are dropped and
    /// the request is sent again at once on a new one, once, without
    /// counting as a retry; so is one whose temporary credentials S3 calls
    /// expired or invalid, with credentials fetched anew.
    pub fn send(&self, r: &Request) -> Result<Response<Body>> {
        let attempts = self.retries + 1;
        let mut backoff = Backoff::new();
        let mut attempt = 1;
        let mut renewed = false;
        let mut refetched = false;
        loop {
            let last = attempt >= attempts;
            let (generation, agent) = pool::agent(&self.kind)
                .map_err(|_| self.err(r.key, S3Problem::Protocol { op: r.op, detail: "proxy_server is not usable".into() }))?;
            let creds = self.creds.current()?;
            match self.once(r, &agent, &creds) {
                Ok(a) if a.status().is_server_error() && r.retry_5xx && !last => drop(a),
                Ok(a) if matches!(a.status().as_u16(), 400 | 403) && self.creds.temporary() && !refetched => {
                    // Temporary credentials S3 calls expired or invalid
                    // (a clock ahead of ours, a revoked session): fetched
                    // anew once, at once, without counting as a retry.
                    let (parts, body) = a.into_parts();
                    let text = answer_text(body);
                    if matches!(error_fields(&text).0.as_str(), "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired") {
                        refetched = true;
                        self.creds.forget(&creds);
                        continue;
                    }
                    return Ok(self.counted(r, attempt, Response::from_parts(parts, Body::builder().data(text))));
                }
                Ok(a) => return Ok(self.counted(r, attempt, a)),
                Err(e) if dropped(&e) && !renewed => {
                    renewed = true;
                    pool::renew(&self.kind, generation);
                    continue;
                }
                Err(e) if retryable(&e) && !last => drop(e),
                Err(e) => return Err(self.counted(r, attempt, self.err(r.key, self.transport_problem(r.op, &e, attempt)))),
            }
            backoff.wait();
            attempt += 1;
        }
    }

    /// Counts a request that ended after `attempts` attempts, with an
    /// answer or an error, for its store (see [`crate::stats`]).
    fn counted<T: super::super::counted::Outcome>(&self, r: &Request, attempts: u32, outcome: T) -> T {
        let verb = match r.verb {
            Verb::Head => "head",
            Verb::Get => "get",
            Verb::Put => "put",
            Verb::Post => "post",
            Verb::Delete => "delete",
        };
        crate::stats::counters(crate::stats::slot_of(&self.store)).request(verb, attempts - 1, outcome.answer());
        outcome
    }

    /// The error an unsuccessful answer stands for.
    pub fn answer_error(&self, r: &Request, answer: Response<Body>) -> Error {
        let status = answer.status().as_u16();
        let text = answer_text(answer.into_body());
        let (code, message) = error_fields(&text);
        self.err(r.key, classify(r.op, status, &code, &message, &self.endpoint))
    }

    /// The body of a successful `GET` as a stream whose errors say what
    /// happened without quoting the request.
    pub fn download(&self, answer: Response<Body>) -> Download {
        Download {
            inner: answer.into_body().into_reader(),
            timeout: self.timeout,
            transfer_timeout: self.transfer_timeout,
            started: std::time::Instant::now(),
            secrets: self.creds.secrets(),
        }
    }
}

fn scrub(s: &str, secrets: &[String]) -> String {
    let mut s = s.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            s = s.replace(secret.as_str(), "<redacted>");
        }
    }
    s
}

/// A download body whose errors never quote the request.
pub(super) struct Download {
    inner: ureq::BodyReader<'static>,
    timeout: Duration,
    transfer_timeout: Duration,
    started: std::time::Instant,
    secrets: Vec<String>,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let cause = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>());
            let timed_out = e.kind() == io::ErrorKind::TimedOut || cause.is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            let too_long = matches!(cause, Some(ureq::Error::Timeout(ureq::Timeout::RecvBody))) || self.started.elapsed() >= self.transfer_timeout;
            if timed_out && too_long {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the download took longer than {} s in all (config key 'transfer_timeout')", self.transfer_timeout.as_secs_f64()),
                );
            }
            if timed_out {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the S3 server sent nothing for {} s (config key 'timeout')", self.timeout.as_secs_f64()),
                );
            }
            let text = scrub(&shorten(&e.to_string()), &self.secrets);
            io::Error::new(e.kind(), format!("S3 download interrupted: {text}"))
        })
    }
}
