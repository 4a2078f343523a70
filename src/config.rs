//! The store registry: DataJoint's `stores` config, read from one JSON file.
//!
//! The file is the only source of store locations and credentials, so SQL can
//! name a store but never point the server at an arbitrary place. It is
//! re-read when it changes on disk, so a DBA edits it without reloading the
//! library.

use crate::datajoint::layout;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod s3_access;
mod uploads;
pub use s3_access::{check_service_url, Addressing, CredentialSource, Encryption, DEFAULT_CONTAINER, DEFAULT_IMDS};
pub use uploads::Uploads;

/// Where the server looks when `DJ_UDF_CONFIG` is not set in its environment.
pub const DEFAULT_PATH: &str = "/etc/mysql/dj_udf.json";

/// The largest object a `*_get` function returns unless the config says
/// otherwise: such a result is held in server memory while it is sent.
pub const DEFAULT_MAX_GET: u64 = 256 << 20;

/// How much each export folder may hold unless the config says otherwise.
pub const DEFAULT_EXPORT_QUOTA: u64 = 16 << 30;

/// The most result bytes all call sites of the server may hold at once
/// unless the config says otherwise: four results of the largest default size.
pub const DEFAULT_MAX_HELD: u64 = 4 * DEFAULT_MAX_GET;

// A few stores per config, parsed once per file version: the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    File,
    S3(S3Config),
}

/// Seconds to wait for a TCP (and TLS) connection unless `connect_timeout` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds a request may stall (no byte sent or received, no answer) unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds one download or part upload may take in all unless `transfer_timeout` says
/// otherwise: a server that keeps sending a byte now and then must not hold a
/// server thread for ever.
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Retries after a connection failure or a 5xx answer unless `retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;
/// The SigV4 region unless `region` says otherwise (what MinIO and DataJoint's client assume).
pub const DEFAULT_REGION: &str = "us-east-1";

/// S3 settings under DataJoint's key names, plus the plugin's own
/// `region`, `connect_timeout`, `timeout`, `retries`, `credentials`,
/// `addressing` and `server_side_encryption` (see docs/s3.md).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    /// DataJoint's `access_key` and `secret_key`, or an ambient source.
    pub credentials: CredentialSource,
    pub addressing: Addressing,
    pub encryption: Option<Encryption>,
    pub secure: bool,
    pub proxy_server: Option<String>,
    pub region: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub transfer_timeout: Duration,
    pub retries: u32,
}

impl S3Config {
    /// The proxy as messages and `dj_stores()` show it: without any
    /// `user:password@`.
    pub fn proxy_shown(&self) -> Option<String> {
        self.proxy_server.as_deref().map(redact_userinfo)
    }
}

/// Never prints the credentials, so that no `{:?}` can leak them
/// ([`CredentialSource`]'s own `Debug` redacts a key pair).
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("credentials", &self.credentials)
            .field("addressing", &self.addressing)
            .field("encryption", &self.encryption)
            .field("secure", &self.secure)
            .field("proxy_server", &self.proxy_server)
            .field("region", &self.region)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("transfer_timeout", &self.transfer_timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub name: String,
    pub protocol: Protocol,
    /// A folder (file) or a key prefix (s3), used as DataJoint uses it.
    pub location: String,
    pub subfolding: Vec<usize>,
    /// The local folder that filepath objects are put from and synced to.
    pub stage: Option<PathBuf>,
    /// `max_parallel` as the file sets it; `None`: [`DEFAULT_MAX_PARALLEL`].
    pub max_parallel_setting: Option<usize>,
}

/// Transfers a batch call (and a multipart upload) runs at once unless the
/// store's `max_parallel` says otherwise.
pub const DEFAULT_MAX_PARALLEL: usize = 8;
/// The most `max_parallel` may ask for: each transfer is a thread of the
/// database server for the length of the call.
pub const MAX_PARALLEL: usize = 64;

impl StoreConfig {
    /// How many transfers of this store one call runs at once (1: one after the other).
    pub fn max_parallel(&self) -> usize {
        self.max_parallel_setting.unwrap_or(DEFAULT_MAX_PARALLEL)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub stores: Vec<StoreConfig>,
    pub checksum_size_limit: Option<u64>,
    pub checksum_size_limit_insert: Option<u64>,
    /// Extra folders that `dj_file_checksum` and `dj_attach_put_file` may read.
    pub import_dirs: Vec<PathBuf>,
    /// Folders that `dj_attach_export` may write into.
    pub export_dirs: Vec<PathBuf>,
    /// How many bytes each export folder may hold; `None`: no quota.
    pub export_quota_bytes: Option<u64>,
    /// The secret that authorizes object deletion; deletion is off without it.
    pub purge_key: Option<String>,
    pub max_get_bytes: u64,
    /// The most result bytes all call sites of the server hold at once.
    pub max_held_bytes: u64,
    /// Chunked uploads: folder, limits and expiry (`upload_*` keys).
    pub uploads: Uploads,
}

impl Config {
    pub fn store(&self, name: &str) -> Result<&StoreConfig> {
        self.stores.iter().find(|s| s.name.eq_ignore_ascii_case(name)).ok_or_else(|| Error::UnknownStore {
            store: layout::shown(name),
            file: self.file.clone(),
            known: self.stores.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// Parses and checks a config document; `file` is only used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<Config> {
        let err = |store: Option<&str>, key: Option<&str>, msg: String| Error::Config {
            file: file.to_path_buf(),
            store: store.map(str::to_string),
            key: key.map(str::to_string),
            msg,
        };
        let doc: Value = serde_json::from_str(text).map_err(|e| err(None, None, format!("not valid JSON: {e}")))?;
        let top = doc.as_object().ok_or_else(|| err(None, None, "the document must be a JSON object".into()))?;
        let stores_v = top.get("stores").ok_or_else(|| err(None, Some("stores"), "missing".into()))?;
        let stores_o = stores_v.as_object().ok_or_else(|| err(None, Some("stores"), "must be an object of store name to settings".into()))?;
        let mut stores = Vec::new();
        for (name, spec) in stores_o {
            layout::check_store_name(name).map_err(|e| err(Some(name), None, e.to_string()))?;
            let spec = spec.as_object().ok_or_else(|| err(Some(name), None, "settings must be an object".into()))?;
            stores.push(parse_store(name, spec).map_err(|(key, msg)| err(Some(name), key, msg))?);
        }
        let limit = |key: &str| -> Result<Option<u64>> {
            match top.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| err(None, Some(key), "must be a non-negative integer or null".into())),
            }
        };
        let dirs = |key: &str| -> Result<Vec<PathBuf>> {
            let Some(v) = top.get(key) else { return Ok(Vec::new()) };
            let list = v.as_array().ok_or_else(|| err(None, Some(key), "must be a list of absolute folders".into()))?;
            list.iter()
                .map(|d| {
                    let d = d.as_str().ok_or_else(|| err(None, Some(key), "entries must be strings".into()))?;
                    existing_dir(d).map_err(|m| err(None, Some(key), m))
                })
                .collect()
        };
        let purge_key = match top.get("purge_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) if k.len() >= 16 => Some(k.clone()),
            Some(_) => return Err(err(None, Some("purge_key"), "must be a string of at least 16 characters".into())),
        };
        let uploads = uploads::parse(top).map_err(|(key, msg)| err(None, Some(key), msg))?;
        let (import_dirs, export_dirs) = (dirs("import_dirs")?, dirs("export_dirs")?);
        if let Some(dir) = &uploads.dir {
            let mut roots: Vec<(String, &Path)> = Vec::new();
            for st in &stores {
                if st.protocol == Protocol::File {
                    roots.push((format!("store '{}' location", st.name), Path::new(&st.location)));
                }
                if let Some(stage) = &st.stage {
                    roots.push((format!("store '{}' stage", st.name), stage));
                }
            }
            roots.extend(import_dirs.iter().map(|d| ("import_dirs".to_string(), d.as_path())));
            roots.extend(export_dirs.iter().map(|d| ("export_dirs".to_string(), d.as_path())));
            uploads::check_apart(dir, &roots).map_err(|msg| err(None, Some("upload_dir"), msg))?;
        }
        Ok(Config {
            file: file.to_path_buf(),
            stores,
            checksum_size_limit: limit("filepath_checksum_size_limit")?,
            checksum_size_limit_insert: limit("filepath_checksum_size_limit_insert")?,
            import_dirs,
            export_dirs,
            export_quota_bytes: match top.get("export_quota_bytes") {
                None => Some(DEFAULT_EXPORT_QUOTA),
                Some(_) => limit("export_quota_bytes")?,
            },
            purge_key,
            max_get_bytes: limit("max_get_bytes")?.unwrap_or(DEFAULT_MAX_GET),
            max_held_bytes: limit("max_held_bytes")?.unwrap_or(DEFAULT_MAX_HELD),
            uploads,
        })
    }

    /// The stores as JSON for `dj_stores()`, with credentials replaced.
    pub fn redacted_json(&self) -> String {
        self.redacted_json_with(&|_, _| Map::new())
    }

    /// [`Self::redacted_json`] with what `live` adds to each S3 store's
    /// `credentials` (when temporary credentials expire): the config knows
    /// where credentials come from, the store module what it last got.
    pub fn redacted_json_with(&self, live: &dyn Fn(&StoreConfig, &S3Config) -> Map<String, Value>) -> String {
        let mut stores = Map::new();
        for s in &self.stores {
            let mut o = Map::new();
            match &s.protocol {
                Protocol::File => {
                    o.insert("protocol".into(), "file".into());
                }
                Protocol::S3(s3) => {
                    o.insert("protocol".into(), "s3".into());
                    o.insert("endpoint".into(), s3.endpoint.clone().into());
                    o.insert("bucket".into(), s3.bucket.clone().into());
                    if matches!(s3.credentials, CredentialSource::Static { .. }) {
                        o.insert("access_key".into(), "<redacted>".into());
                        o.insert("secret_key".into(), "<redacted>".into());
                    }
                    let mut creds = s3.credentials.shown();
                    creds.extend(live(s, s3));
                    o.insert("credentials".into(), Value::Object(creds));
                    o.insert("addressing".into(), s3.addressing.name().into());
                    if let Some(e) = &s3.encryption {
                        o.insert("server_side_encryption".into(), e.shown());
                    }
                    o.insert("secure".into(), s3.secure.into());
                    if let Some(p) = s3.proxy_shown() {
                        o.insert("proxy_server".into(), p.into());
                    }
                    o.insert("region".into(), s3.region.clone().into());
                    o.insert("connect_timeout".into(), s3.connect_timeout.as_secs_f64().into());
                    o.insert("timeout".into(), s3.timeout.as_secs_f64().into());
                    o.insert("transfer_timeout".into(), s3.transfer_timeout.as_secs_f64().into());
                    o.insert("retries".into(), s3.retries.into());
                }
            }
            o.insert("location".into(), s.location.clone().into());
            o.insert("subfolding".into(), s.subfolding.clone().into());
            o.insert("stage".into(), s.stage.as_ref().map(|p| p.display().to_string()).into());
            if let Some(n) = s.max_parallel_setting {
                o.insert("max_parallel".into(), n.into());
            }
            stores.insert(s.name.clone(), Value::Object(o));
        }
        let mut top = Map::new();
        top.insert("config_file".into(), self.file.display().to_string().into());
        top.insert("warnings".into(), self.warnings().into());
        top.insert("stores".into(), Value::Object(stores));
        top.insert("filepath_checksum_size_limit".into(), self.checksum_size_limit.into());
        top.insert("filepath_checksum_size_limit_insert".into(), self.checksum_size_limit_insert.into());
        let dirs = |d: &[PathBuf]| Value::from(d.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        top.insert("import_dirs".into(), dirs(&self.import_dirs));
        top.insert("export_dirs".into(), dirs(&self.export_dirs));
        top.insert("export_quota_bytes".into(), self.export_quota_bytes.into());
        top.insert("purge_enabled".into(), self.purge_key.is_some().into());
        top.insert("max_get_bytes".into(), self.max_get_bytes.into());
        top.insert("max_held_bytes".into(), self.max_held_bytes.into());
        self.uploads.json(&mut top);
        Value::Object(top).to_string()
    }
}

impl Config {
    /// What a DBA should know about settings that work but are unsafe.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stores {
            if let Protocol::S3(s3) = &s.protocol {
                if !s3.secure && !is_loopback(&s3.endpoint) {
                    out.push(format!(
                        "store '{}': secure is false, so objects and the signed requests that grant access to them travel unencrypted to {}; set \"secure\": true",
                        s.name, s3.endpoint
                    ));
                }
            }
        }
        out
    }
}

/// Whether an endpoint is this machine, where plain HTTP never leaves it.
fn is_loopback(endpoint: &str) -> bool {
    match url::Url::parse(&format!("http://{endpoint}/")).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

type KeyError = (Option<&'static str>, String);

/// A string setting of a store; `None` when absent or null.
fn text(spec: &Map<String, Value>, key: &'static str) -> std::result::Result<Option<String>, KeyError> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err((Some(key), "must be a string".into())),
    }
}

/// A string setting the store's protocol cannot do without.
fn required(spec: &Map<String, Value>, key: &'static str) -> std::result::Result<String, KeyError> {
    text(spec, key)?.filter(|s| !s.is_empty()).ok_or((Some(key), "missing (required for this protocol)".into()))
}

fn parse_store(name: &str, spec: &Map<String, Value>) -> std::result::Result<StoreConfig, KeyError> {
    let protocol = required(spec, "protocol")?;
    let location = required(spec, "location")?;
    let subfolding = match spec.get("subfolding") {
        None => vec![2, 2],
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(levels)) => levels
            .iter()
            .map(|l| l.as_u64().map(|n| n as usize).ok_or((Some("subfolding"), "levels must be positive integers".to_string())))
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err((Some("subfolding"), "must be a list of integers or null".into())),
    };
    layout::check_subfolding(&subfolding).map_err(|m| (Some("subfolding"), m))?;
    let stage = match text(spec, "stage")? {
        None => None,
        Some(s) => Some(existing_dir(&s).map_err(|m| (Some("stage"), m))?),
    };
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "file" => Protocol::File,
        "s3" => Protocol::S3(parse_s3(spec)?),
        other => return Err((Some("protocol"), format!("unknown protocol '{other}' (use 'file' or 's3')"))),
    };
    // A file store's folder is kept canonical, like stages and the import and
    // export folders, so that every path comparison sees one spelling.
    let location = match protocol {
        Protocol::File => existing_dir(&location).map_err(|m| (Some("location"), m))?.display().to_string(),
        Protocol::S3(_) => location,
    };
    let max_parallel_setting = match spec.get("max_parallel") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_PARALLEL as u64).contains(&n) => Some(n as usize),
            _ => return Err((Some("max_parallel"), format!("must be an integer from 1 to {MAX_PARALLEL}"))),
        },
    };
    Ok(StoreConfig { name: name.to_string(), protocol, location, subfolding, stage, max_parallel_setting })
}

/// The settings of an `s3` store: DataJoint's, then the plugin's own.
fn parse_s3(spec: &Map<String, Value>) -> std::result::Result<S3Config, KeyError> {
    let endpoint = required(spec, "endpoint")?;
    check_endpoint(&endpoint).map_err(|m| (Some("endpoint"), m))?;
    let bucket = required(spec, "bucket")?;
    check_bucket(&bucket).map_err(|m| (Some("bucket"), m))?;
    let secure = match spec.get("secure") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err((Some("secure"), "must be true or false".into())),
    };
    let proxy_server = match text(spec, "proxy_server")?.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(check_proxy(&p).map_err(|m| (Some("proxy_server"), m))?),
    };
    let region = match text(spec, "region")? {
        None => DEFAULT_REGION.to_string(),
        Some(r) if !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => r,
        Some(r) => return Err((Some("region"), format!("'{}' is not a region name like us-east-1", layout::shown(&r)))),
    };
    let seconds = |key: &'static str, default: Duration, max: f64| -> std::result::Result<Duration, KeyError> {
        match spec.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s <= max => Ok(Duration::from_secs_f64(s)),
                _ => Err((Some(key), format!("must be a number of seconds above 0 and at most {max}"))),
            },
        }
    };
    let retries = match spec.get("retries") {
        None | Some(Value::Null) => DEFAULT_RETRIES,
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_RETRIES as u64 => n as u32,
            _ => return Err((Some("retries"), format!("must be an integer from 0 to {MAX_RETRIES}"))),
        },
    };
    Ok(S3Config {
        credentials: s3_access::parse(spec)?,
        addressing: s3_access::addressing(spec, &endpoint, &bucket, secure)?,
        encryption: s3_access::encryption(spec)?,
        endpoint,
        bucket,
        secure,
        proxy_server,
        region,
        connect_timeout: seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT, 300.0)?,
        timeout: seconds("timeout", DEFAULT_TIMEOUT, 3600.0)?,
        transfer_timeout: seconds("transfer_timeout", DEFAULT_TRANSFER_TIMEOUT, 7.0 * 86400.0)?,
        retries,
    })
}

/// The most `retries` a store may ask for: with exponential backoff more would
/// keep a server thread waiting for minutes.
pub const MAX_RETRIES: u32 = 10;

/// DataJoint's `endpoint` is `host[:port]`: no scheme, path, user or query.
fn check_endpoint(endpoint: &str) -> std::result::Result<(), String> {
    let bad = || format!("'{}' must be host[:port] without scheme or path", layout::shown(endpoint));
    if endpoint.contains("://") || endpoint.contains(['/', '?', '#', '@', '\\']) || endpoint.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    match url::Url::parse(&format!("http://{endpoint}/")) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) && u.path() == "/" => Ok(()),
        _ => Err(bad()),
    }
}

/// Bucket names go into the URL path as one segment; S3 allows lowercase
/// letters, digits, '.' and '-', and older servers also '_' and uppercase.
fn check_bucket(bucket: &str) -> std::result::Result<(), String> {
    let ok =
        bucket.len() <= 255 && bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) && bucket != "." && bucket != "..";
    if ok {
        Ok(())
    } else {
        Err(format!("'{}' is not a bucket name (letters, digits, '.', '-', '_')", layout::shown(bucket)))
    }
}

/// DataJoint passes `proxy_server` to its HTTP client as a proxy URL; a bare
/// `host:port` means an HTTP proxy. Returns the URL the plugin will use.
fn check_proxy(proxy: &str) -> std::result::Result<String, String> {
    let full = if proxy.contains("://") { proxy.to_string() } else { format!("http://{proxy}") };
    match url::Url::parse(&full) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(full),
        Ok(_) => Err("must be an http:// or https:// proxy URL or host:port".into()),
        Err(e) => Err(format!("not a proxy URL: {e}")),
    }
}

/// A proxy URL with any `user:password@` replaced, for display.
fn redact_userinfo(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("redacted");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => proxy.to_string(),
        Err(_) => "<redacted>".into(),
    }
}

/// A configured folder must be absolute and exist; it is used canonicalized
/// so that later prefix checks compare like with like.
fn existing_dir(path: &str) -> std::result::Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("'{path}' must be an absolute path"));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => p.canonicalize().map_err(|e| format!("'{path}': {e}")),
        Ok(_) => Err(format!("'{path}' is not a directory")),
        Err(e) => Err(format!("'{path}' does not exist or cannot be read by the server: {e}")),
    }
}

/// The config file the server reads: `$DJ_UDF_CONFIG`, else [`DEFAULT_PATH`].
pub fn path() -> PathBuf {
    std::env::var_os("DJ_UDF_CONFIG").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// What identifies one version of the file: device, inode, mtime, size.
type Stamp = (u64, u64, i64, i64, u64);
static CACHE: Mutex<Option<(PathBuf, Stamp, Arc<Config>)>> = Mutex::new(None);

/// The current config, re-read only when the file's identity or mtime changed.
pub fn current() -> Result<Arc<Config>> {
    let file = path();
    let meta = std::fs::metadata(&file).map_err(|e| Error::Config {
        file: file.clone(),
        store: None,
        key: None,
        msg: format!("{e} (set DJ_UDF_CONFIG in the server's environment or create {DEFAULT_PATH})"),
    })?;
    let stamp = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.size());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((f, s, cfg)) = cache.as_ref() {
        if *f == file && *s == stamp {
            return Ok(cfg.clone());
        }
    }
    let text = std::fs::read_to_string(&file).map_err(|e| Error::Config { file: file.clone(), store: None, key: None, msg: e.to_string() })?;
    let cfg = Arc::new(Config::parse(&file, &text)?);
    *cache = Some((file, stamp, cfg.clone()));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/etc/test.json"), text)
    }

    fn msg(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn file_store_defaults() {
        let c = parse(r#"{"stores": {"main": {"protocol": "file", "location": "/tmp"}}, "database.host": "x"}"#).unwrap();
        let s = c.store("MAIN").unwrap();
        assert_eq!(s.protocol, Protocol::File);
        assert_eq!(s.subfolding, vec![2, 2]);
        assert_eq!(s.stage, None);
        assert_eq!(c.max_get_bytes, DEFAULT_MAX_GET);
        let c = parse(r#"{"stores": {"main": {"protocol": "file", "location": "/tmp", "subfolding": null}}}"#).unwrap();
        assert!(c.stores[0].subfolding.is_empty());
    }

    #[test]
    fn errors_name_file_store_and_key() {
        assert!(msg("{").starts_with("config file /etc/test.json: not valid JSON"));
        assert_eq!(msg("{}"), "key 'stores': missing; config file /etc/test.json");
        assert_eq!(
            msg(r#"{"stores": {"main": {"protocol": "ftp", "location": "/tmp"}}}"#),
            "store 'main', key 'protocol': unknown protocol 'ftp' (use 'file' or 's3'); config file /etc/test.json"
        );
        assert_eq!(
            msg(r#"{"stores": {"main": {"protocol": "file"}}}"#),
            "store 'main', key 'location': missing (required for this protocol); config file /etc/test.json"
        );
        let m = msg(r#"{"stores": {"main": {"protocol": "file", "location": "/nonexistent/dir"}}}"#);
        assert!(m.starts_with("store 'main', key 'location': '/nonexistent/dir' does not exist"), "{m}");
        let m = msg(r#"{"stores": {"main": {"protocol": "file", "location": "relative/dir"}}}"#);
        assert!(m.contains("must be an absolute path"), "{m}");
        let m = msg(r#"{"stores": {"main": {"protocol": "s3", "location": "x", "endpoint": "h:9000", "bucket": "b", "access_key": "a"}}}"#);
        assert_eq!(
            m,
            "store 'main', key 'secret_key': missing (required for this protocol, or name a \"credentials\" source); config file /etc/test.json"
        );
        let m = msg(r#"{"stores": {"main": {"protocol": "file", "location": "/tmp", "subfolding": [0]}}}"#);
        assert!(m.contains("key 'subfolding'"), "{m}");
        let m = msg(r#"{"stores": {"bad name": {"protocol": "file", "location": "/tmp"}}}"#);
        assert!(m.contains("invalid store name"), "{m}");
        let m = msg(r#"{"stores": {}, "purge_key": "short"}"#);
        assert!(m.contains("key 'purge_key'"), "{m}");
    }

    #[test]
    fn unknown_store_lists_known_ones() {
        let c = parse(r#"{"stores": {"a": {"protocol": "file", "location": "/tmp"}}}"#).unwrap();
        assert_eq!(c.store("zz").unwrap_err().to_string(), "unknown store 'zz'; configured: a; file /etc/test.json");
    }

    #[test]
    fn redaction_hides_credentials() {
        let c = parse(
            r#"{"stores": {"s": {"protocol": "s3", "location": "/x", "endpoint": "127.0.0.1:9000", "bucket": "b",
                "access_key": "AKIAEXAMPLE", "secret_key": "verysecretvalue"}}}"#,
        )
        .unwrap();
        let j = c.redacted_json();
        assert!(!j.contains("AKIAEXAMPLE") && !j.contains("verysecretvalue"), "{j}");
        assert!(j.contains("\"bucket\":\"b\""), "{j}");
    }

    fn s3(extra: &str) -> Result<Config> {
        parse(&format!(
            r#"{{"stores": {{"s": {{"protocol": "s3", "location": "/x", "endpoint": "minio.lab:9000", "bucket": "dj-data",
                "access_key": "AKIAEXAMPLE", "secret_key": "verysecretvalue"{extra}}}}}}}"#
        ))
    }

    #[test]
    fn s3_defaults_and_transfer_settings() {
        let c = s3("").unwrap();
        let Protocol::S3(s) = &c.stores[0].protocol else { panic!("not s3") };
        assert_eq!((s.secure, s.region.as_str(), s.retries), (false, "us-east-1", 3));
        assert_eq!((s.connect_timeout, s.timeout), (Duration::from_secs(5), Duration::from_secs(60)));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AKIAEXAMPLE") && !dbg.contains("verysecretvalue"), "{dbg}");
        let c = s3(r#", "secure": true, "connect_timeout": 1.5, "timeout": 30, "retries": 0, "region": "eu-west-1""#).unwrap();
        let Protocol::S3(s) = &c.stores[0].protocol else { panic!("not s3") };
        assert_eq!((s.secure, s.region.as_str(), s.retries), (true, "eu-west-1", 0));
        assert_eq!((s.connect_timeout, s.timeout), (Duration::from_millis(1500), Duration::from_secs(30)));
        let j = c.redacted_json();
        assert!(j.contains(r#""connect_timeout":1.5"#) && j.contains(r#""retries":0"#) && j.contains(r#""timeout":30.0"#), "{j}");
    }

    #[test]
    fn max_parallel_defaults_to_eight_and_is_shown_once_set() {
        let c = s3("").unwrap();
        assert_eq!(c.stores[0].max_parallel(), DEFAULT_MAX_PARALLEL);
        assert!(!c.redacted_json().contains("max_parallel"));
        let c = s3(r#", "max_parallel": 1"#).unwrap();
        assert_eq!(c.stores[0].max_parallel(), 1);
        assert!(c.redacted_json().contains(r#""max_parallel":1"#));
        let f = parse(r#"{"stores": {"f": {"protocol": "file", "location": "/tmp", "max_parallel": 64}}}"#).unwrap();
        assert_eq!(f.stores[0].max_parallel(), 64);
        for bad in ["0", "65", "2.5", "\"8\""] {
            let m = s3(&format!(r#", "max_parallel": {bad}"#)).unwrap_err().to_string();
            assert!(m.starts_with("store 's', key 'max_parallel': must be an integer from 1 to 64"), "{m}");
        }
    }

    #[test]
    fn s3_settings_are_checked_with_file_store_and_key() {
        let m = |extra: &str| s3(extra).unwrap_err().to_string();
        assert_eq!(
            m(r#", "timeout": 0"#),
            "store 's', key 'timeout': must be a number of seconds above 0 and at most 3600; config file /etc/test.json"
        );
        assert!(m(r#", "connect_timeout": "5""#).starts_with("store 's', key 'connect_timeout': must be a number"));
        assert!(m(r#", "retries": 11"#).starts_with("store 's', key 'retries': must be an integer from 0 to 10"));
        assert!(m(r#", "retries": -1"#).starts_with("store 's', key 'retries'"));
        assert!(m(r#", "region": "us east""#).starts_with("store 's', key 'region'"));
        assert!(m(r#", "proxy_server": "ftp://p:1""#).starts_with("store 's', key 'proxy_server'"));
        for bad in ["http://h:9000", "h:9000/path", "user@h", "h:port", ""] {
            let m = parse(&format!(
                r#"{{"stores": {{"s": {{"protocol": "s3", "location": "x", "endpoint": "{bad}", "bucket": "b", "access_key": "a", "secret_key": "s"}}}}}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(m.starts_with("store 's', key 'endpoint'"), "{bad}: {m}");
        }
        let m = parse(
            r#"{"stores": {"s": {"protocol": "s3", "location": "x", "endpoint": "h", "bucket": "a/b", "access_key": "a", "secret_key": "s"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(m.starts_with("store 's', key 'bucket'"), "{m}");
    }

    #[test]
    fn plain_http_beyond_this_machine_is_warned_about() {
        let on = |endpoint: &str, secure: bool| {
            parse(&format!(
                r#"{{"stores": {{"s": {{"protocol": "s3", "location": "x", "endpoint": "{endpoint}", "bucket": "b", "access_key": "a", "secret_key": "k", "secure": {secure}}}}}}}"#
            ))
            .unwrap()
            .warnings()
        };
        assert_eq!(on("s3.lab.org:9000", false).len(), 1);
        assert!(on("s3.lab.org:9000", false)[0].starts_with("store 's': secure is false"));
        assert!(on("10.0.0.5", false)[0].contains("unencrypted to 10.0.0.5"));
        for quiet in [("s3.lab.org", true), ("127.0.0.1:9000", false), ("localhost:9000", false), ("[::1]:9000", false)] {
            assert!(on(quiet.0, quiet.1).is_empty(), "{quiet:?}");
        }
    }

    #[test]
    fn proxy_credentials_are_redacted() {
        let c = s3(r#", "proxy_server": "http://user:pw@proxy.lab:3128""#).unwrap();
        let j = c.redacted_json();
        assert!(!j.contains("pw@") && !j.contains("user:") && j.contains("proxy.lab:3128"), "{j}");
        let c = s3(r#", "proxy_server": "proxy.lab:3128""#).unwrap();
        let Protocol::S3(s) = &c.stores[0].protocol else { panic!("not s3") };
        assert_eq!(s.proxy_server.as_deref(), Some("http://proxy.lab:3128"));
    }
}
