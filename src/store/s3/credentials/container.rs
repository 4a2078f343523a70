//! The `container` source: the credentials endpoint a container platform
//! serves to its tasks (ECS task roles on 169.254.170.2 with a relative
//! URI, EKS pod identity and others with a full URI and an authorization
//! token).

use super::fetch::{self, Method, Reach};
use super::Fetched;
use crate::config::{check_service_url, DEFAULT_CONTAINER};
use std::io::Read;
use std::path::PathBuf;

/// The settings, completed from the server's environment.
#[derive(Debug)]
pub struct Resolved {
    pub uri: String,
    /// Where the authorization token is read from for each fetch.
    pub token: Token,
}

#[derive(Debug)]
pub enum Token {
    None,
    File(PathBuf),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`: in the environment already.
    Env,
}

/// Hosts a full URI may name over plain HTTP: the token must not cross a
/// network in clear (the rule of the AWS SDKs).
fn plain_http_allowed(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => {
            a.is_loopback() || a == std::net::Ipv4Addr::new(169, 254, 170, 2) || a == std::net::Ipv4Addr::new(169, 254, 170, 23)
        }
        Some(url::Host::Ipv6(a)) => a.is_loopback() || a.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23],
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub fn resolve(endpoint: &Option<String>, full_uri: &Option<String>, token_file: &Option<PathBuf>) -> Result<Resolved, String> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let uri = match (full_uri.clone(), env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
        (Some(u), _, _) => u,
        (None, Some(rel), _) => format!("{}/{}", endpoint.as_deref().unwrap_or(DEFAULT_CONTAINER), rel.trim_start_matches('/')),
        (None, None, Some(u)) => u,
        (None, None, None) => {
            return Err("no endpoint: set \"full_uri\", or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI in the server's environment".into())
        }
    };
    let u = check_service_url(&uri, true)?;
    if u.scheme() == "http" && !plain_http_allowed(&u) {
        return Err(format!("{} must use https (plain http only to this machine or the container endpoints)", shown(&uri)));
    }
    let token = if let Some(f) = token_file.clone().or_else(|| env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from)) {
        Token::File(f)
    } else if env("AWS_CONTAINER_AUTHORIZATION_TOKEN").is_some() {
        Token::Env
    } else {
        Token::None
    };
    Ok(Resolved { uri, token })
}

/// The URI without path or query, which can be a per-task capability.
pub fn shown(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "<unreadable URI>".into(),
    }
}

pub fn describe(r: &Resolved) -> String {
    format!("the container credentials endpoint {}", shown(&r.uri))
}

pub fn fetch(r: &Resolved, reach: &Reach) -> Result<Fetched, String> {
    let token = match &r.token {
        Token::None => None,
        Token::Env => std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN").ok(),
        Token::File(f) => {
            let mut t = String::new();
            std::fs::File::open(f)
                .and_then(|h| h.take(16 << 10).read_to_string(&mut t))
                .map_err(|e| format!("cannot read authorization token file {}: {}", f.display(), e.kind()))?;
            Some(t)
        }
    };
    let token = token.map(|t| t.trim().to_string());
    let mut headers = vec![("accept", "application/json")];
    if let Some(t) = &token {
        headers.push(("authorization", t.as_str()));
    }
    let a = fetch::call(reach, false, Method::Get, &r.uri, &headers, &[])?;
    if !(200..300).contains(&a.status) {
        return Err(format!("the endpoint answered HTTP {}", a.status));
    }
    super::from_json(&a.body)
}
