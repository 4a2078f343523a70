//! The config keys that decide how an S3 store is reached and written:
//! where its credentials come from (`credentials`), how its bucket is
//! addressed (`addressing`) and which server-side encryption its writes ask
//! for (`server_side_encryption`, `kms_key_id`).
//!
//! Only the choice is checked here; reading environment variables, files
//! and endpoints happens when a store is used (see `store::s3::credentials`),
//! so a config that names an ambient source can be written before the
//! server has that source.

use super::layout;
use serde_json::{Map, Value};
use std::path::PathBuf;

type KeyError = (Option<&'static str>, String);

/// Where a store's requests get their key pair (and session token).
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `access_key` and `secret_key` in the config file (DataJoint's keys).
    Static { access_key: String, secret_key: String },
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`
    /// of the database server's process.
    Environment,
    /// A profile of a shared credentials file (`~/.aws/credentials` format).
    /// `None`: `AWS_SHARED_CREDENTIALS_FILE` or `$HOME/.aws/credentials`,
    /// and `AWS_PROFILE` or `default`.
    Profile { file: Option<PathBuf>, profile: Option<String> },
    /// STS `AssumeRoleWithWebIdentity` with a token file (EKS service
    /// accounts); `None`s come from `AWS_WEB_IDENTITY_TOKEN_FILE`,
    /// `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME` and the regional STS endpoint.
    WebIdentity { token_file: Option<PathBuf>, role_arn: Option<String>, session_name: Option<String>, sts_endpoint: Option<String> },
    /// The container credentials endpoint (ECS task roles, EKS pod
    /// identity); `None`s come from the `AWS_CONTAINER_*` variables.
    Container { endpoint: Option<String>, full_uri: Option<String>, token_file: Option<PathBuf> },
    /// The instance metadata service, IMDSv2 (EC2 instance profiles).
    Instance { endpoint: Option<String>, role: Option<String> },
}

/// The link-local address of the EC2 instance metadata service.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// The link-local address ECS serves `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on.
pub const DEFAULT_CONTAINER: &str = "http://169.254.170.2";

impl CredentialSource {
    /// The name the config and `dj_stores()` use for the source.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialSource::Static { .. } => "static",
            CredentialSource::Environment => "env",
            CredentialSource::Profile { .. } => "profile",
            CredentialSource::WebIdentity { .. } => "web_identity",
            CredentialSource::Container { .. } => "container",
            CredentialSource::Instance { .. } => "instance",
        }
    }

    /// Whether the credentials expire and are fetched again over the network.
    pub fn temporary(&self) -> bool {
        matches!(self, CredentialSource::WebIdentity { .. } | CredentialSource::Container { .. } | CredentialSource::Instance { .. })
    }

    /// The source's settings as `dj_stores()` shows them: never a secret
    /// (a static key pair shows as redacted; files and endpoints are named).
    pub fn shown(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("source".into(), self.name().into());
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match self {
            CredentialSource::Static { .. } | CredentialSource::Environment => {}
            CredentialSource::Profile { file, profile } => {
                put("file", &path(file));
                put("profile", profile);
            }
            CredentialSource::WebIdentity { token_file, role_arn, session_name, sts_endpoint } => {
                put("token_file", &path(token_file));
                put("role_arn", role_arn);
                put("session_name", session_name);
                put("sts_endpoint", sts_endpoint);
            }
            CredentialSource::Container { endpoint, full_uri, token_file } => {
                put("endpoint", endpoint);
                // Origin only: a task's path can act as a capability.
                put("full_uri", &full_uri.as_deref().map(|u| url::Url::parse(u).map(|u| u.origin().ascii_serialization()).unwrap_or_default()));
                put("token_file", &path(token_file));
            }
            CredentialSource::Instance { endpoint, role } => {
                put("endpoint", endpoint);
                put("role", role);
            }
        }
        o
    }
}

/// Never prints a static key pair, so that no `{:?}` can leak it; the other
/// sources hold no secret (a token file is named, never read here).
impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Static { .. } => f.write_str("Static { <redacted> }"),
            other => write!(f, "{}", Value::Object(other.shown())),
        }
    }
}

/// How request URLs name the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `endpoint/bucket/key`: what MinIO-style servers expect.
    Path,
    /// `bucket.endpoint/key`: what AWS recommends, and requires for new
    /// features and some regions.
    Virtual,
}

impl Addressing {
    pub fn name(self) -> &'static str {
        match self {
            Addressing::Path => "path",
            Addressing::Virtual => "virtual",
        }
    }
}

/// Server-side encryption a store's writes ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3: `x-amz-server-side-encryption: AES256`.
    S3Managed,
    /// SSE-KMS with the given key (`None`: the account's `aws/s3` key).
    Kms { key_id: Option<String> },
}

impl Encryption {
    /// The headers of every write that creates an object (`PutObject`,
    /// `CreateMultipartUpload`): S3 refuses them on `UploadPart`.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Encryption::S3Managed => vec![("x-amz-server-side-encryption".into(), "AES256".into())],
            Encryption::Kms { key_id } => {
                let mut h = vec![("x-amz-server-side-encryption".into(), "aws:kms".into())];
                if let Some(k) = key_id {
                    h.push(("x-amz-server-side-encryption-aws-kms-key-id".into(), k.clone()));
                }
                h
            }
        }
    }

    pub fn shown(&self) -> Value {
        match self {
            Encryption::S3Managed => "AES256".into(),
            Encryption::Kms { .. } => "aws:kms".into(),
        }
    }
}

fn text(o: &Map<String, Value>, key: &'static str) -> Result<Option<String>, KeyError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err((Some("credentials"), format!("'{key}' must be a non-empty string"))),
    }
}

fn absolute(o: &Map<String, Value>, key: &'static str) -> Result<Option<PathBuf>, KeyError> {
    match text(o, key)? {
        Some(p) if p.starts_with('/') => Ok(Some(PathBuf::from(p))),
        Some(p) => Err((Some("credentials"), format!("'{key}': '{}' must be an absolute path", layout::shown(&p)))),
        None => Ok(None),
    }
}

/// An endpoint URL of a credentials service: `http(s)://host[:port]`, with a
/// path only where `with_path`.
fn service_url(o: &Map<String, Value>, key: &'static str, with_path: bool) -> Result<Option<String>, KeyError> {
    let Some(s) = text(o, key)? else { return Ok(None) };
    check_service_url(&s, with_path).map_err(|m| (Some("credentials"), format!("'{key}': {m}")))?;
    Ok(Some(s.trim_end_matches('/').to_string()))
}

/// Checks a credentials service URL (from the config or the server's environment).
pub fn check_service_url(s: &str, with_path: bool) -> Result<url::Url, String> {
    let bad = || format!("'{}' is not an http:// or https:// URL{}", layout::shown(s), if with_path { "" } else { " without a path" });
    let u = url::Url::parse(s).map_err(|_| bad())?;
    let ok = matches!(u.scheme(), "http" | "https")
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && u.fragment().is_none()
        && (with_path || (u.path() == "/" && u.query().is_none()));
    if ok {
        Ok(u)
    } else {
        Err(bad())
    }
}

/// Reads `credentials` (a source name, or an object with `source` and its
/// settings) next to DataJoint's `access_key` and `secret_key`, which stay
/// the default: a store with a key pair and no `credentials` uses the pair.
pub fn parse(spec: &Map<String, Value>) -> Result<CredentialSource, KeyError> {
    let pair = |spec: &Map<String, Value>| -> Result<(Option<String>, Option<String>), KeyError> {
        let get = |k: &'static str| match spec.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((Some(k), "must be a string".to_string())),
        };
        Ok((get("access_key")?, get("secret_key")?))
    };
    let (access, secret) = pair(spec)?;
    let empty = Map::new();
    let (name, o) = match spec.get("credentials") {
        None | Some(Value::Null) => ("static", &empty),
        Some(Value::String(s)) => (s.as_str(), &empty),
        Some(Value::Object(o)) => match o.get("source") {
            Some(Value::String(s)) => (s.as_str(), o),
            _ => {
                return Err((
                    Some("credentials"),
                    "an object needs \"source\": one of static, env, profile, web_identity, container, instance".into(),
                ))
            }
        },
        Some(_) => return Err((Some("credentials"), "must be a source name or an object with \"source\"".into())),
    };
    let known: &[&str] = match name {
        "static" => &["source"],
        "env" => &["source"],
        "profile" => &["source", "file", "profile"],
        "web_identity" => &["source", "token_file", "role_arn", "session_name", "sts_endpoint"],
        "container" => &["source", "endpoint", "full_uri", "token_file"],
        "instance" => &["source", "endpoint", "role"],
        other => {
            return Err((
                Some("credentials"),
                format!("unknown source '{}' (use static, env, profile, web_identity, container or instance)", layout::shown(other)),
            ))
        }
    };
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err((Some("credentials"), format!("'{}' is not a setting of source '{name}' (it has: {})", layout::shown(k), known[1..].join(", "))));
    }
    if name == "static" {
        let access_key = access.ok_or((Some("access_key"), "missing (required for this protocol, or name a \"credentials\" source)".to_string()))?;
        let secret_key = secret.ok_or((Some("secret_key"), "missing (required for this protocol, or name a \"credentials\" source)".to_string()))?;
        return Ok(CredentialSource::Static { access_key, secret_key });
    }
    // A key pair next to another source would be dead text that looks live.
    if access.is_some() || secret.is_some() {
        return Err((Some("credentials"), format!("source '{name}' replaces access_key and secret_key: remove them from this store")));
    }
    Ok(match name {
        "env" => CredentialSource::Environment,
        "profile" => CredentialSource::Profile { file: absolute(o, "file")?, profile: text(o, "profile")? },
        "web_identity" => CredentialSource::WebIdentity {
            token_file: absolute(o, "token_file")?,
            role_arn: text(o, "role_arn")?,
            session_name: text(o, "session_name")?,
            sts_endpoint: service_url(o, "sts_endpoint", false)?,
        },
        "container" => CredentialSource::Container {
            endpoint: service_url(o, "endpoint", false)?,
            full_uri: service_url(o, "full_uri", true)?,
            token_file: absolute(o, "token_file")?,
        },
        _ => CredentialSource::Instance { endpoint: service_url(o, "endpoint", false)?, role: text(o, "role")? },
    })
}

/// Reads `addressing`; without it, AWS endpoints (`*.amazonaws.com`) get
/// virtual-hosted style, as AWS asks, unless the bucket name has a dot and
/// the store uses TLS (the bucket would not match AWS's wildcard
/// certificate), and every other server path style, which MinIO-style
/// servers expect.
pub fn addressing(spec: &Map<String, Value>, endpoint: &str, bucket: &str, secure: bool) -> Result<Addressing, KeyError> {
    match spec.get("addressing") {
        None | Some(Value::Null) => {
            let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { endpoint });
            let aws = host.to_ascii_lowercase().ends_with(".amazonaws.com");
            Ok(if aws && !(secure && bucket.contains('.')) { Addressing::Virtual } else { Addressing::Path })
        }
        Some(Value::String(s)) if s == "path" => Ok(Addressing::Path),
        Some(Value::String(s)) if s == "virtual" => {
            let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-');
            if bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.') && bucket.split('.').all(label_ok) {
                Ok(Addressing::Virtual)
            } else {
                Err((Some("addressing"), format!("bucket '{}' cannot be a host name: use \"path\"", layout::shown(bucket))))
            }
        }
        Some(_) => Err((Some("addressing"), "must be \"virtual\" or \"path\"".into())),
    }
}

/// Reads `server_side_encryption` (`AES256` or `aws:kms`) and `kms_key_id`.
pub fn encryption(spec: &Map<String, Value>) -> Result<Option<Encryption>, KeyError> {
    let key_id = match spec.get("kms_key_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => Some(s.clone()),
        Some(_) => return Err((Some("kms_key_id"), "must be a key id, ARN or alias".into())),
    };
    let sse = match spec.get("server_side_encryption") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "AES256" => Some(Encryption::S3Managed),
        Some(Value::String(s)) if s == "aws:kms" => Some(Encryption::Kms { key_id: key_id.clone() }),
        Some(_) => return Err((Some("server_side_encryption"), "must be \"AES256\" (SSE-S3) or \"aws:kms\" (SSE-KMS)".into())),
    };
    if key_id.is_some() && !matches!(sse, Some(Encryption::Kms { .. })) {
        return Err((Some("kms_key_id"), "needs \"server_side_encryption\": \"aws:kms\"".into()));
    }
    Ok(sse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str::<Value>(json).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn a_key_pair_stays_the_default_and_other_sources_replace_it() {
        let s = parse(&obj(r#"{"access_key": "AK", "secret_key": "SK"}"#)).unwrap();
        assert_eq!(s, CredentialSource::Static { access_key: "AK".into(), secret_key: "SK".into() });
        assert_eq!(format!("{s:?}"), "Static { <redacted> }");
        assert_eq!(parse(&obj(r#"{"credentials": "env"}"#)).unwrap(), CredentialSource::Environment);
        let e = parse(&obj(r#"{"credentials": "env", "access_key": "AK"}"#)).unwrap_err();
        assert!(e.1.contains("replaces access_key"), "{e:?}");
        let e = parse(&obj(r#"{"access_key": "AK"}"#)).unwrap_err();
        assert_eq!(e.0, Some("secret_key"));
        let e = parse(&obj(r#"{"credentials": "magic"}"#)).unwrap_err();
        assert!(e.1.starts_with("unknown source 'magic'"), "{e:?}");
        let e = parse(&obj(r#"{"credentials": {"source": "instance", "role_arn": "x"}}"#)).unwrap_err();
        assert!(e.1.contains("'role_arn' is not a setting of source 'instance'"), "{e:?}");
    }

    #[test]
    fn each_source_reads_its_settings() {
        let p = parse(&obj(r#"{"credentials": {"source": "profile", "file": "/etc/mysql/aws", "profile": "dj"}}"#)).unwrap();
        assert_eq!(p, CredentialSource::Profile { file: Some("/etc/mysql/aws".into()), profile: Some("dj".into()) });
        assert!(parse(&obj(r#"{"credentials": {"source": "profile", "file": "rel/aws"}}"#)).is_err());
        let w =
            parse(&obj(r#"{"credentials": {"source": "web_identity", "role_arn": "arn:aws:iam::1:role/r", "sts_endpoint": "http://127.0.0.1:9/"}}"#))
                .unwrap();
        let CredentialSource::WebIdentity { sts_endpoint, token_file: None, .. } = &w else { panic!("{w:?}") };
        assert_eq!(sts_endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(parse(&obj(r#"{"credentials": {"source": "web_identity", "sts_endpoint": "ftp://h"}}"#)).is_err());
        assert!(parse(&obj(r#"{"credentials": {"source": "instance", "endpoint": "http://h/latest"}}"#)).is_err());
        let c = parse(&obj(r#"{"credentials": {"source": "container", "full_uri": "http://127.0.0.1:5/creds?x=1"}}"#)).unwrap();
        assert_eq!(c.shown().get("full_uri").unwrap(), "http://127.0.0.1:5");
        let CredentialSource::Container { full_uri, .. } = &c else { panic!("{c:?}") };
        assert_eq!(full_uri.as_deref(), Some("http://127.0.0.1:5/creds?x=1"));
        assert!(c.temporary() && !CredentialSource::Environment.temporary());
    }

    #[test]
    fn aws_endpoints_default_to_virtual_hosts() {
        let none = Map::new();
        assert_eq!(addressing(&none, "s3.eu-west-1.amazonaws.com", "dj-data", true).unwrap(), Addressing::Virtual);
        assert_eq!(addressing(&none, "s3.amazonaws.com:443", "dj-data", true).unwrap(), Addressing::Virtual);
        assert_eq!(addressing(&none, "s3.amazonaws.com", "dj.data", true).unwrap(), Addressing::Path);
        assert_eq!(addressing(&none, "minio.lab:9000", "dj-data", false).unwrap(), Addressing::Path);
        assert_eq!(addressing(&obj(r#"{"addressing": "virtual"}"#), "minio.lab:9000", "dj", false).unwrap(), Addressing::Virtual);
        assert_eq!(addressing(&obj(r#"{"addressing": "path"}"#), "s3.amazonaws.com", "dj", true).unwrap(), Addressing::Path);
        assert!(addressing(&obj(r#"{"addressing": "virtual"}"#), "h", "Dj_Data", false).is_err());
        assert!(addressing(&obj(r#"{"addressing": "vhost"}"#), "h", "dj", false).is_err());
    }

    #[test]
    fn encryption_settings() {
        assert_eq!(encryption(&Map::new()).unwrap(), None);
        let s3 = encryption(&obj(r#"{"server_side_encryption": "AES256"}"#)).unwrap().unwrap();
        assert_eq!(s3.headers(), vec![("x-amz-server-side-encryption".to_string(), "AES256".to_string())]);
        let kms = encryption(&obj(r#"{"server_side_encryption": "aws:kms", "kms_key_id": "alias/dj"}"#)).unwrap().unwrap();
        assert_eq!(kms.headers()[1], ("x-amz-server-side-encryption-aws-kms-key-id".to_string(), "alias/dj".to_string()));
        assert!(encryption(&obj(r#"{"kms_key_id": "alias/dj"}"#)).is_err());
        assert!(encryption(&obj(r#"{"server_side_encryption": "aes256"}"#)).is_err());
    }
}
