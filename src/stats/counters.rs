//! The counters of one store, all atomics: what its operations moved, how
//! long they took, how they failed and which S3 requests they sent.

use super::histogram::Histogram;
use crate::error::{Error, S3Problem};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What an operation did to a store's objects. Reads are told apart by the
/// function that made them: a read to audit an object is `Verify`, to copy
/// it into a server folder `Export`, any other `Read`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Put,
    Read,
    Verify,
    Export,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Put, Op::Read, Op::Verify, Op::Export, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Read => "read",
            Op::Verify => "verify",
            Op::Export => "export",
            Op::Delete => "delete",
        }
    }
}

/// Why a call failed, in the kinds a DBA watches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    Missing,
    /// The contents do not hash, or are not the size, the tracking row says.
    Mismatch,
    /// A server path outside every configured folder.
    RefusedPath,
    Timeout,
    /// No connection to the S3 server (or its proxy).
    Unreachable,
    /// The S3 server refused: 4xx answers, bad credentials, no bucket.
    S3Client,
    /// The S3 server failed: 5xx answers, after the retries.
    S3Server,
    /// No purge key, or a wrong one.
    Denied,
    Killed,
    Other,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Missing,
        Failure::Mismatch,
        Failure::RefusedPath,
        Failure::Timeout,
        Failure::Unreachable,
        Failure::S3Client,
        Failure::S3Server,
        Failure::Denied,
        Failure::Killed,
        Failure::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Mismatch => "mismatch",
            Failure::RefusedPath => "refused_path",
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::S3Client => "s3_4xx",
            Failure::S3Server => "s3_5xx",
            Failure::Denied => "denied",
            Failure::Killed => "killed",
            Failure::Other => "other",
        }
    }

    pub fn of(e: &Error) -> Failure {
        match e {
            Error::Missing { .. } => Failure::Missing,
            Error::SizeMismatch { .. } | Error::ChecksumMismatch { .. } => Failure::Mismatch,
            Error::Confinement { .. } => Failure::RefusedPath,
            Error::Denied { .. } => Failure::Denied,
            Error::Killed { .. } => Failure::Killed,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
            Error::S3 { problem, .. } => match **problem {
                S3Problem::Timeout { .. } | S3Problem::TooSlow { .. } => Failure::Timeout,
                S3Problem::Unreachable { .. } | S3Problem::ProxyUnreachable { .. } | S3Problem::ProxyFailed { .. } => Failure::Unreachable,
                S3Problem::BadCredentials { .. } | S3Problem::AccessDenied { .. } | S3Problem::NoSuchBucket { .. } => Failure::S3Client,
                S3Problem::Failed { status, .. } if status >= 500 => Failure::S3Server,
                S3Problem::Failed { status, .. } if status >= 400 => Failure::S3Client,
                _ => Failure::Other,
            },
            _ => Failure::Other,
        }
    }
}

/// The S3 requests counted, by HTTP method.
pub const VERBS: [&str; 5] = ["head", "get", "put", "post", "delete"];

/// How an S3 request ended, after its retries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    /// 1xx to 3xx.
    Ok,
    ClientError,
    ServerError,
    /// No answer: refused, reset, timed out.
    NoAnswer,
}

impl Answer {
    pub const ALL: [Answer; 4] = [Answer::Ok, Answer::ClientError, Answer::ServerError, Answer::NoAnswer];

    pub fn of_status(status: u16) -> Answer {
        match status {
            500.. => Answer::ServerError,
            400.. => Answer::ClientError,
            _ => Answer::Ok,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::ClientError => "4xx",
            Answer::ServerError => "5xx",
            Answer::NoAnswer => "no_answer",
        }
    }
}

struct OpCounters {
    objects: AtomicU64,
    bytes: AtomicU64,
    latency: Histogram,
}

/// Everything counted for one store.
pub struct StoreCounters {
    ops: [OpCounters; Op::ALL.len()],
    failures: [AtomicU64; Failure::ALL.len()],
    retries: AtomicU64,
    requests: [AtomicU64; VERBS.len()],
    answers: [AtomicU64; Answer::ALL.len()],
}

fn index<T: PartialEq>(all: &[T], x: T) -> usize {
    all.iter().position(|y| *y == x).unwrap_or(0)
}

impl Default for StoreCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreCounters {
    pub const fn new() -> Self {
        StoreCounters {
            ops: [const { OpCounters { objects: AtomicU64::new(0), bytes: AtomicU64::new(0), latency: Histogram::new() } }; Op::ALL.len()],
            failures: [const { AtomicU64::new(0) }; Failure::ALL.len()],
            retries: AtomicU64::new(0),
            requests: [const { AtomicU64::new(0) }; VERBS.len()],
            answers: [const { AtomicU64::new(0) }; Answer::ALL.len()],
        }
    }

    /// One object done: `bytes` moved in `took`.
    pub fn done(&self, op: Op, bytes: u64, took: Duration) {
        let c = &self.ops[index(&Op::ALL, op)];
        c.objects.fetch_add(1, Relaxed);
        c.bytes.fetch_add(bytes, Relaxed);
        c.latency.record(took);
    }

    pub fn failed(&self, why: Failure) {
        self.failures[index(&Failure::ALL, why)].fetch_add(1, Relaxed);
    }

    /// One S3 request (`verb` one of [`VERBS`]) after `retries` retries.
    pub fn request(&self, verb: &str, retries: u32, answer: Answer) {
        self.requests[VERBS.iter().position(|v| *v == verb).unwrap_or(0)].fetch_add(1, Relaxed);
        self.retries.fetch_add(u64::from(retries), Relaxed);
        self.answers[index(&Answer::ALL, answer)].fetch_add(1, Relaxed);
    }

    pub fn reset(&self) {
        for c in &self.ops {
            c.objects.store(0, Relaxed);
            c.bytes.store(0, Relaxed);
            c.latency.reset();
        }
        for a in self.failures.iter().chain(&self.requests).chain(&self.answers).chain([&self.retries]) {
            a.store(0, Relaxed);
        }
    }

    /// Flat fields (`objects_put`, `bytes_put`, …, `errors_missing`, …,
    /// `retries`, `s3_get`, …, `s3_answers_5xx`, …) and `latency`, one
    /// entry per operation with its count and percentiles in milliseconds.
    pub fn to_json(&self, into: &mut Map<String, Value>) {
        let mut latency = Vec::new();
        for (op, c) in Op::ALL.iter().zip(&self.ops) {
            into.insert(format!("objects_{}", op.name()), c.objects.load(Relaxed).into());
            into.insert(format!("bytes_{}", op.name()), c.bytes.load(Relaxed).into());
            let h = c.latency.snapshot();
            latency.push(json!({
                "op": op.name(),
                "count": h.count(),
                "p50_ms": h.percentile_ms(0.50),
                "p95_ms": h.percentile_ms(0.95),
                "p99_ms": h.percentile_ms(0.99),
            }));
        }
        for (f, n) in Failure::ALL.iter().zip(&self.failures) {
            into.insert(format!("errors_{}", f.name()), n.load(Relaxed).into());
        }
        into.insert("retries".into(), self.retries.load(Relaxed).into());
        for (v, n) in VERBS.iter().zip(&self.requests) {
            into.insert(format!("s3_{v}"), n.load(Relaxed).into());
        }
        for (a, n) in Answer::ALL.iter().zip(&self.answers) {
            into.insert(format!("s3_answers_{}", a.name()), n.load(Relaxed).into());
        }
        into.insert("latency".into(), latency.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fall_into_their_kinds() {
        let s3 = |problem| Error::S3 { store: "s".into(), bucket: "b".into(), key: "k".into(), problem: Box::new(problem) };
        assert_eq!(Failure::of(&Error::Missing { what: "x".into() }), Failure::Missing);
        assert_eq!(Failure::of(&Error::confine("/etc", "outside")), Failure::RefusedPath);
        assert_eq!(Failure::of(&s3(S3Problem::Timeout { op: "GET", seconds: 1.0 })), Failure::Timeout);
        let failed = |status| s3(S3Problem::Failed { op: "PUT", status, code: String::new(), message: String::new() });
        assert_eq!(Failure::of(&failed(503)), Failure::S3Server);
        assert_eq!(Failure::of(&failed(409)), Failure::S3Client);
        assert_eq!(Failure::of(&s3(S3Problem::BadCredentials { code: "SignatureDoesNotMatch".into() })), Failure::S3Client);
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(Failure::of(&Error::io("read", "x", timed_out)), Failure::Timeout);
    }

    #[test]
    fn counts_show_and_reset() {
        let c = StoreCounters::new();
        c.done(Op::Put, 4096, Duration::from_millis(2));
        c.done(Op::Put, 100, Duration::from_millis(2));
        c.failed(Failure::Missing);
        c.request("get", 2, Answer::of_status(503));
        let mut m = Map::new();
        c.to_json(&mut m);
        assert_eq!(m["objects_put"], 2);
        assert_eq!(m["bytes_put"], 4196);
        assert_eq!(m["errors_missing"], 1);
        assert_eq!(m["retries"], 2);
        assert_eq!(m["s3_get"], 1);
        assert_eq!(m["s3_answers_5xx"], 1);
        assert_eq!(m["latency"][0]["count"], 2);
        c.reset();
        let mut m = Map::new();
        c.to_json(&mut m);
        assert_eq!(m["objects_put"], 0);
        assert_eq!(m["retries"], 0);
        assert_eq!(m["latency"][0]["p50_ms"], Value::Null);
    }
}
