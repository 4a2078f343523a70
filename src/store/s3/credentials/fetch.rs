//! One HTTP call to a credentials service (STS, IMDS, the container
//! endpoint), on the process-wide connection pool with the store's own
//! timeouts and retries, its answer read up to a small limit and its
//! failures put in words that never quote the request (which may carry a
//! web identity token or an authorization token).

use super::super::client::{retryable, with_headers, with_timeouts, Backoff};
use super::super::pool::{self, Kind};
use std::io::Read;
use std::time::Duration;
use ureq::http::Response;
use ureq::{Body, RequestBuilder};

/// The most of an answer that is read: credentials documents are a few kB.
const ANSWER_LIMIT: u64 = 64 << 10;

/// How a store reaches its credentials service: the same timeouts and
/// retries as its object requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reach {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retries: u32,
    /// The store's `proxy_server`, used for STS only: the metadata and
    /// container endpoints are link-local and never behind a proxy.
    pub proxy: Option<String>,
    pub region: String,
}

#[derive(Clone, Copy, Debug)]
pub enum Method {
    Get,
    Put,
    Post,
}

/// An answer: its status and (at most [`ANSWER_LIMIT`] bytes of) its body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn timed<B>(rb: RequestBuilder<B>, headers: &[(&str, &str)], reach: &Reach) -> RequestBuilder<B> {
    with_timeouts(with_headers(rb, headers), reach.connect_timeout, reach.timeout, reach.timeout, reach.timeout)
}

/// Sends one call, retrying connection failures and 5xx answers up to the
/// store's `retries`; `Err` holds a short description without the URL.
pub fn call(reach: &Reach, proxied: bool, method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
    let kind = Kind { secure: url.starts_with("https:"), proxy: if proxied { reach.proxy.clone() } else { None } };
    let attempts = reach.retries + 1;
    let mut backoff = Backoff::new();
    let mut attempt = 1;
    loop {
        let last = attempt >= attempts;
        let (_, agent) = pool::agent(&kind).map_err(|_| "proxy_server is not usable".to_string())?;
        let sent: Result<Response<Body>, ureq::Error> = match method {
            Method::Get => timed(agent.get(url), headers, reach).call(),
            Method::Put => timed(agent.put(url), headers, reach).send(body),
            Method::Post => timed(agent.post(url), headers, reach).send(body),
        };
        match sent {
            Ok(a) if a.status().is_server_error() && !last => drop(a),
            Ok(a) => {
                let status = a.status().as_u16();
                let mut out = Vec::new();
                a.into_body().into_reader().take(ANSWER_LIMIT).read_to_end(&mut out).map_err(|e| describe_io(&e, reach))?;
                return Ok(Answer { status, body: String::from_utf8_lossy(&out).into_owned() });
            }
            Err(e) if retryable(&e) && !last => drop(e),
            Err(e) => return Err(describe(&e, reach, attempt)),
        }
        backoff.wait();
        attempt += 1;
    }
}

fn describe_io(e: &std::io::Error, reach: &Reach) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut => format!("no answer within {} s (config key 'timeout')", reach.timeout.as_secs_f64()),
        _ => format!("the answer broke off ({})", e.kind()),
    }
}

/// A transport failure in words; never the URL (ureq may quote it).
fn describe(e: &ureq::Error, reach: &Reach, attempts: u32) -> String {
    use std::io::ErrorKind::*;
    let what = match e {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            format!("no connection within {} s (config key 'connect_timeout')", reach.connect_timeout.as_secs_f64())
        }
        ureq::Error::Timeout(_) => format!("no answer within {} s (config key 'timeout')", reach.timeout.as_secs_f64()),
        ureq::Error::HostNotFound => "host name not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::ConnectProxyFailed(_) => "the proxy_server could not connect to it".into(),
        ureq::Error::Io(io) => match io.kind() {
            ConnectionRefused => "connection refused".into(),
            ConnectionReset => "connection reset".into(),
            UnexpectedEof => "connection closed without an answer".into(),
            TimedOut => format!("no answer within {} s (config key 'timeout')", reach.timeout.as_secs_f64()),
            other => format!("{other}"),
        },
        ureq::Error::Tls(m) => format!("TLS: {m}"),
        ureq::Error::Rustls(r) => format!("TLS: {r}"),
        _ => "the request could not be sent".into(),
    };
    if attempts > 1 {
        format!("{what}; {attempts} attempts")
    } else {
        what
    }
}

/// The text between `<name>` and `</name>` in an XML answer, unescaped.
pub fn xml_field(xml: &str, name: &str) -> Option<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let i = xml.find(&open)? + open.len();
    let j = xml[i..].find(&close)?;
    let s = xml[i..i + j].trim();
    Some(s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
}
