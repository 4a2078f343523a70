//! Where an S3 store's requests get their credentials: the config's key
//! pair, or an ambient source of the database server (its environment, a
//! shared credentials file, a web identity token, the container or
//! instance metadata endpoint), so that no secret needs to sit in the
//! config file.
//!
//! Fixed credentials (static, env, profile) are read when a store is opened,
//! for each call. Temporary ones (web identity, container, instance) live
//! in the process-wide [`cache`] and are asked for by every request attempt
//! just before it is signed, so a long call picks up refreshed credentials
//! and their session token goes into every presigned URL
//! (`X-Amz-Security-Token`). One file per source: `environment`, `profile`,
//! `web_identity`, `container`, `instance`; `fetch` is their HTTP call.

mod cache;
mod container;
mod environment;
mod fetch;
mod instance;
mod profile;
mod web_identity;

use crate::config::{CredentialSource, S3Config, StoreConfig};
use crate::error::{Error, Result};
use fetch::Reach;
use rusty_s3::Credentials;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Credentials as a source handed them out.
pub struct Fetched {
    pub creds: Arc<Credentials>,
    /// When they lapse (seconds since the epoch); `None`: not said.
    pub expires: Option<i64>,
    /// When they were fetched.
    pub fetched: i64,
}

/// A temporary source, its settings completed from the server's environment.
#[derive(Debug)]
enum Temporary {
    WebIdentity(web_identity::Resolved),
    Container(container::Resolved),
    Instance(instance::Resolved),
}

impl Temporary {
    fn resolve(source: &CredentialSource, region: &str) -> std::result::Result<Option<Self>, String> {
        Ok(Some(match source {
            CredentialSource::WebIdentity { token_file, role_arn, session_name, sts_endpoint } => {
                Temporary::WebIdentity(web_identity::resolve(token_file, role_arn, session_name, sts_endpoint, region)?)
            }
            CredentialSource::Container { endpoint, full_uri, token_file } => {
                Temporary::Container(container::resolve(endpoint, full_uri, token_file)?)
            }
            CredentialSource::Instance { endpoint, role } => Temporary::Instance(instance::resolve(endpoint, role)),
            _ => return Ok(None),
        }))
    }

    fn describe(&self) -> String {
        match self {
            Temporary::WebIdentity(r) => web_identity::describe(r),
            Temporary::Container(r) => container::describe(r),
            Temporary::Instance(r) => instance::describe(r),
        }
    }

    fn fetch(&self, reach: &Reach) -> std::result::Result<Fetched, String> {
        match self {
            Temporary::WebIdentity(r) => web_identity::fetch(r, reach),
            Temporary::Container(r) => container::fetch(r, reach),
            Temporary::Instance(r) => instance::fetch(r, reach),
        }
    }
}

/// What error messages call a source before its settings are complete.
fn generic_description(source: &CredentialSource) -> &'static str {
    match source {
        CredentialSource::Static { .. } => "the config file",
        CredentialSource::Environment => environment::DESCRIPTION,
        CredentialSource::Profile { .. } => "a shared credentials file",
        CredentialSource::WebIdentity { .. } => "web identity (STS AssumeRoleWithWebIdentity)",
        CredentialSource::Container { .. } => "the container credentials endpoint",
        CredentialSource::Instance { .. } => "the instance metadata service (IMDSv2)",
    }
}

/// A store's credentials for its requests.
pub(super) struct Provider {
    store: String,
    held: Held,
    /// The source as messages name it; `None` for the config's key pair.
    ambient: Option<String>,
}

enum Held {
    Fixed(Arc<Credentials>),
    Cached { key: String, source: Temporary, reach: Reach },
}

/// The cache key: the store and everything that decides what its source
/// hands out (no secret: only temporary sources are cached).
fn key_of(store: &str, source: &Temporary, region: &str) -> String {
    format!("{store}\n{source:?}\n{region}")
}

fn reach(s3: &S3Config) -> Reach {
    Reach { connect_timeout: s3.connect_timeout, timeout: s3.timeout, retries: s3.retries, proxy: s3.proxy_server.clone(), region: s3.region.clone() }
}

impl Provider {
    /// Fixed credentials are read here; a temporary source is only
    /// described, and fetched on first use.
    pub fn new(store: &StoreConfig, s3: &S3Config) -> Result<Self> {
        let fail = |source: String, detail: String| Error::Credentials { store: store.name.clone(), source, detail };
        let (held, ambient) = match &s3.credentials {
            CredentialSource::Static { access_key, secret_key } => {
                (Held::Fixed(Arc::new(Credentials::new(access_key.clone(), secret_key.clone()))), None)
            }
            CredentialSource::Environment => (
                Held::Fixed(Arc::new(environment::read().map_err(|d| fail(environment::DESCRIPTION.into(), d))?)),
                Some(environment::DESCRIPTION.to_string()),
            ),
            CredentialSource::Profile { file, profile } => {
                let (file, profile) = profile::resolve(file, profile).map_err(|d| fail("a shared credentials file".into(), d))?;
                let what = profile::describe(&file, &profile);
                (Held::Fixed(Arc::new(profile::read(&file, &profile).map_err(|d| fail(what.clone(), d))?)), Some(what))
            }
            other => {
                let what = generic_description(other);
                let source = Temporary::resolve(other, &s3.region)
                    .map_err(|d| fail(what.into(), d))?
                    .ok_or_else(|| fail(what.into(), "not a temporary source".into()))?;
                let what = source.describe();
                (Held::Cached { key: key_of(&store.name, &source, &s3.region), source, reach: reach(s3) }, Some(what))
            }
        };
        Ok(Provider { store: store.name.clone(), held, ambient })
    }

    /// The ambient source as messages name it; `None` for the config's key pair.
    pub fn ambient(&self) -> Option<&str> {
        self.ambient.as_deref()
    }

    /// Credentials to sign a request with now: valid, and refreshed when
    /// they near their expiry.
    pub fn current(&self) -> Result<Arc<Credentials>> {
        match &self.held {
            Held::Fixed(c) => Ok(c.clone()),
            Held::Cached { key, source, reach } => cache::get(key, &|| source.fetch(reach))
                .map(|f| f.creds.clone())
                .map_err(|detail| Error::Credentials { store: self.store.clone(), source: source.describe(), detail }),
        }
    }

    /// Whether the credentials are temporary, fetched and cached.
    pub fn temporary(&self) -> bool {
        matches!(self.held, Held::Cached { .. })
    }

    /// Drops `used` from the cache after S3 refused them as expired or
    /// invalid, so that the next use fetches new ones (unless another
    /// thread already did).
    pub fn forget(&self, used: &Arc<Credentials>) {
        if let Held::Cached { key, .. } = &self.held {
            cache::forget(key, used);
        }
    }

    /// The values to scrub from foreign text: the credentials last handed
    /// out (key, secret and token), without fetching any.
    pub fn secrets(&self) -> Vec<String> {
        let latest = match &self.held {
            Held::Fixed(c) => Some(c.clone()),
            Held::Cached { key, .. } => cache::peek(key).0.map(|f| f.creds.clone()),
        };
        latest.map(|c| [Some(c.secret()), Some(c.key()), c.token()].into_iter().flatten().map(str::to_string).collect()).unwrap_or_default()
    }
}

/// What `dj_stores()` adds about a store's credentials: where a temporary
/// source was found and when what it last handed out expires. Nothing is
/// fetched and no secret is shown.
pub fn status(store: &StoreConfig, s3: &S3Config) -> Map<String, Value> {
    let mut o = Map::new();
    if !s3.credentials.temporary() {
        return o;
    }
    match Temporary::resolve(&s3.credentials, &s3.region) {
        Err(e) => {
            o.insert("error".into(), e.into());
        }
        Ok(None) => {}
        Ok(Some(source)) => {
            o.insert("from".into(), source.describe().into());
            let (current, failure) = cache::peek(&key_of(&store.name, &source, &s3.region));
            o.insert("expires".into(), current.as_ref().and_then(|f| f.expires).map(iso_time).into());
            o.insert("fetched".into(), current.as_ref().map(|f| iso_time(f.fetched)).into());
            if let Some(f) = failure {
                o.insert("last_refresh_error".into(), f.into());
            }
        }
    }
    o
}

/// The container and instance endpoints' JSON answer
/// (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`).
fn from_json(body: &str) -> std::result::Result<Fetched, String> {
    let v: Value = serde_json::from_str(body).map_err(|_| "the answer is not JSON".to_string())?;
    if let Some(code) = v.get("Code").and_then(Value::as_str).filter(|c| *c != "Success") {
        return Err(format!("the answer says {}", crate::text::cut(code, 100)));
    }
    let field = |n: &str| v.get(n).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(format!("the answer has no {n}"));
    let (key, secret) = (field("AccessKeyId")?, field("SecretAccessKey")?);
    let creds = match v.get("Token").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(t) => Credentials::new_with_token(key, secret, t),
        None => Credentials::new(key, secret),
    };
    let expires = match v.get("Expiration").and_then(Value::as_str) {
        Some(e) => Some(super::parse_time(e).ok_or("the answer has an unreadable Expiration")?),
        None => None,
    };
    Ok(Fetched { creds: Arc::new(creds), expires, fetched: crate::store::now_secs() })
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm), the inverse of `parse_time`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests;
