//! One error type for the core, worded for the DBA who has to fix the cause.
//!
//! Every variant names the thing to look at (config file and key, store and
//! object key, server path) because the message is all a SQL user ever sees.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// The config file is missing, unreadable or wrong.
    Config {
        file: PathBuf,
        store: Option<String>,
        key: Option<String>,
        msg: String,
    },
    /// SQL named a store the config file does not define.
    UnknownStore {
        store: String,
        file: PathBuf,
        known: Vec<String>,
    },
    /// An argument is malformed (bad hash, bad name, wrong kind of value).
    Argument {
        what: &'static str,
        msg: String,
    },
    /// A server path lies outside every configured root, or tries to leave one.
    Confinement {
        path: String,
        msg: String,
    },
    /// The object or file that should be there is not.
    Missing {
        what: String,
    },
    /// Contents do not match what the tracking row records.
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// The store already holds other contents under a filepath's key.
    OccupiedKey {
        relative: String,
        location: String,
    },
    /// A local file is in the way of a fetched copy, differs from it, and
    /// the caller did not ask to replace it.
    LocalFileDiffers {
        path: String,
    },
    /// An export would take its folder over `export_quota_bytes`.
    QuotaExceeded {
        folder: String,
        used: u64,
        wanted: u64,
        quota: u64,
    },
    /// The result would not fit in what the function may return.
    TooLarge {
        what: String,
        size: u64,
        limit: u64,
    },
    /// Results held by all call sites would exceed the server-wide budget.
    OverBudget {
        wanted: u64,
        held: u64,
        limit: u64,
    },
    /// The statement was killed while this call was working; whatever it
    /// was writing was discarded.
    Killed {
        during: String,
    },
    /// The operation is switched off or the caller lacks the key for it.
    Denied {
        msg: String,
    },
    /// An object's work in a batch was not done, or not finished: the
    /// statement was killed, another part of the same transfer failed, or a
    /// bug was caught (`why` says which).
    Stopped {
        why: String,
    },
    /// One failure that several objects of a batch share (one request for
    /// all of them failed); `msg` is that failure's message.
    Shared {
        msg: String,
    },
    /// An operating-system error during `op` on `path`.
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    /// A request to an S3-compatible server failed. The fields never hold
    /// credentials: requests are presigned, and their URLs (which name the
    /// access key) are never put into a message.
    S3 {
        store: String,
        bucket: String,
        key: String,
        problem: Box<S3Problem>,
    },
    /// An S3 store's credentials source gave none: `source` names it (the
    /// variable, file or endpoint tried), `detail` says why; neither ever
    /// holds a secret.
    Credentials {
        store: String,
        source: String,
        detail: String,
    },
}

/// Why an S3 request failed, in the terms a DBA acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum S3Problem {
    /// No answer: connection refused or reset, unknown host, TLS failure,
    /// connect timeout; `attempts` counts the first try and the retries.
    Unreachable { endpoint: String, detail: String, attempts: u32 },
    /// The store's `proxy_server` could not be reached (same details as
    /// `Unreachable`): the S3 endpoint itself was never contacted, so the
    /// message must not send the DBA to it.
    ProxyUnreachable { proxy: String, endpoint: String, detail: String, attempts: u32 },
    /// The proxy answered, but could not connect to the S3 endpoint.
    ProxyFailed { proxy: String, endpoint: String, detail: String },
    /// The server rejected the signature or the access key.
    BadCredentials { code: String },
    /// The server rejected credentials that came from an ambient `source`
    /// (named as in [`Error::Credentials`]), not from the config's key pair.
    RefusedCredentials { code: String, source: String },
    /// The credentials are valid but may not do this.
    AccessDenied { message: String },
    /// The configured bucket does not exist on the server.
    NoSuchBucket { endpoint: String },
    /// The transfer stalled for the configured time after connecting.
    Timeout { op: &'static str, seconds: f64 },
    /// A request body or an answer took longer than `transfer_timeout` in all.
    TooSlow { op: &'static str, seconds: f64 },
    /// Any other error answer, after the retries for 5xx answers.
    Failed { op: &'static str, status: u16, code: String, message: String },
    /// An answer the plugin cannot use (missing ETag, unreadable XML, …).
    Protocol { op: &'static str, detail: String },
    /// The object needs more parts than a multipart upload may have.
    TooLarge { limit: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        if crate::interrupt::is_killed(&source) {
            return Error::Killed { during: format!("{op} '{}'", path.into()) };
        }
        Error::Io { op, path: path.into(), source }
    }

    pub fn arg(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Argument { what, msg: msg.into() }
    }

    pub fn confine(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Confinement { path: path.into(), msg: msg.into() }
    }

    /// The short status word used by `dj_verify` for this error.
    pub fn status(&self) -> String {
        match self {
            Error::Missing { .. } => "missing".into(),
            Error::SizeMismatch { .. } => "size mismatch".into(),
            Error::ChecksumMismatch { .. } => "checksum mismatch".into(),
            other => format!("error: {other}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Store and key first: the server shows only the start of a
            // message raised while a statement is prepared.
            Error::Config { file, store: None, key: None, msg } => write!(f, "config file {}: {msg}", file.display()),
            Error::Config { file, store, key, msg } => {
                if let Some(s) = store {
                    write!(f, "store '{s}'")?;
                }
                if let Some(k) = key {
                    write!(f, "{}key '{k}'", if store.is_some() { ", " } else { "" })?;
                }
                write!(f, ": {msg}; config file {}", file.display())
            }
            Error::UnknownStore { store, file, known } => write!(
                f,
                "unknown store '{store}'; configured: {}; file {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") },
                file.display()
            ),
            Error::Argument { what, msg } => write!(f, "invalid {what}: {msg}"),
            Error::Confinement { path, msg } => write!(f, "path '{path}' refused: {msg}"),
            Error::Missing { what } => write!(f, "{what} does not exist"),
            Error::SizeMismatch { what, expected, actual } => {
                write!(f, "{what}: size mismatch, tracking row says {expected} bytes, found {actual}")
            }
            Error::ChecksumMismatch { what, expected, actual } => {
                write!(f, "{what}: checksum mismatch, expected {expected}, contents hash to {actual}")
            }
            Error::OccupiedKey { relative, location } => write!(
                f,
                "A different version of '{relative}' is already in the store at {location}; it is kept (delete it there first if no tracking row uses it)"
            ),
            Error::LocalFileDiffers { path } => write!(
                f,
                "'{path}' already exists and differs from the stored file; it is kept (dj_filepath_get with replace = 1 replaces it with the stored version)"
            ),
            Error::QuotaExceeded { folder, used, wanted, quota } => write!(
                f,
                "export refused: {folder} already holds {used} bytes and this file has {wanted}, over its quota of {quota} bytes (config key export_quota_bytes)"
            ),
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} is {size} bytes, over the limit of {limit} bytes (config key max_get_bytes)")
            }
            Error::OverBudget { wanted, held, limit } => write!(
                f,
                "this result needs {wanted} bytes, but results held by all running statements already take {held} of the {limit} bytes allowed (config key max_held_bytes): fetch fewer objects per statement, or raise max_held_bytes"
            ),
            Error::Killed { during } => write!(f, "stopped, the statement was killed (during {during}); nothing half-written is left"),
            Error::Denied { msg } => write!(f, "{msg}"),
            Error::Stopped { why } => write!(f, "not done: {why}"),
            Error::Shared { msg } => write!(f, "{msg}"),
            Error::Io { op, path, source } => write!(f, "{op} '{path}': {source}"),
            // The problem first: a SIGNAL message is cut at 512 bytes and
            // keys can be long.
            Error::S3 { store, bucket, key, problem } => write!(f, "store '{store}': {problem}; bucket '{bucket}', key '{key}'"),
            Error::Credentials { store, source, detail } => {
                write!(f, "store '{store}': no credentials from {source}: {detail} (config key 'credentials')")
            }
        }
    }
}

impl fmt::Display for S3Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Problem::Unreachable { endpoint, detail, attempts } => {
                write!(f, "S3 endpoint {endpoint} is unreachable ({detail}")?;
                if *attempts > 1 {
                    write!(f, "; {attempts} attempts")?;
                }
                write!(f, ")")
            }
            S3Problem::ProxyUnreachable { proxy, endpoint, detail, attempts } => {
                write!(f, "proxy_server {proxy} is unreachable ({detail}")?;
                if *attempts > 1 {
                    write!(f, "; {attempts} attempts")?;
                }
                write!(f, "); S3 endpoint {endpoint} was not contacted")
            }
            S3Problem::ProxyFailed { proxy, endpoint, detail } => {
                write!(f, "proxy_server {proxy} could not connect to S3 endpoint {endpoint} ({detail})")
            }
            S3Problem::BadCredentials { code } => write!(
                f,
                "bad credentials: the S3 server rejected the request signature or access key ({code}); check access_key and secret_key in the config file"
            ),
            S3Problem::RefusedCredentials { code, source } => write!(
                f,
                "bad credentials: the S3 server rejected the request signature or credentials ({code}); they came from {source} (config key 'credentials')"
            ),
            S3Problem::AccessDenied { message } => write!(f, "access denied by the S3 server (AccessDenied: {message})"),
            S3Problem::NoSuchBucket { endpoint } => write!(f, "the bucket does not exist on S3 endpoint {endpoint} (NoSuchBucket)"),
            S3Problem::Timeout { op, seconds } => {
                write!(f, "{op} timed out: the S3 server sent nothing for {seconds} s (config key 'timeout')")
            }
            S3Problem::TooSlow { op, seconds } => {
                write!(f, "{op} took longer than {seconds} s in all (config key 'transfer_timeout')")
            }
            S3Problem::Failed { op, status, code, message } => {
                write!(f, "{op} failed: HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            S3Problem::Protocol { op, detail } => write!(f, "{op}: unexpected answer from the S3 server: {detail}"),
            S3Problem::TooLarge { limit } => {
                write!(f, "the object is larger than {limit} bytes, the most 10000 multipart parts of 16 MiB hold")
            }
        }
    }
}

impl std::error::Error for Error {}
