//! The `instance` source: the EC2 instance metadata service, IMDSv2 only
//! (a session token is asked for with a `PUT` first, which a request
//! forwarded by an open proxy or a server-side request forgery cannot do).

use super::fetch::{self, Method, Reach};
use super::Fetched;
use crate::config::DEFAULT_IMDS;

/// How long the IMDS session token is asked for; one is used per fetch.
const TOKEN_TTL: &str = "60";

#[derive(Debug)]
pub struct Resolved {
    pub endpoint: String,
    pub role: Option<String>,
}

pub fn resolve(endpoint: &Option<String>, role: &Option<String>) -> Resolved {
    Resolved { endpoint: endpoint.clone().unwrap_or_else(|| DEFAULT_IMDS.to_string()), role: role.clone() }
}

pub fn describe(r: &Resolved) -> String {
    format!("the instance metadata service (IMDSv2) at {}", r.endpoint)
}

/// Token, then role name (unless configured), then the role's credentials.
pub fn fetch(r: &Resolved, reach: &Reach) -> Result<Fetched, String> {
    let a = fetch::call(
        reach,
        false,
        Method::Put,
        &format!("{}/latest/api/token", r.endpoint),
        &[("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)],
        &[],
    )
    .map_err(|e| format!("session token: {e}"))?;
    if a.status != 200 || a.body.trim().is_empty() {
        return Err(format!("session token: HTTP {} (IMDSv2 must be enabled, with a hop limit that reaches this server)", a.status));
    }
    let token = a.body.trim().to_string();
    let headers = [("x-aws-ec2-metadata-token", token.as_str())];
    let base = format!("{}/latest/meta-data/iam/security-credentials/", r.endpoint);
    let role = match &r.role {
        Some(role) => role.clone(),
        None => {
            let a = fetch::call(reach, false, Method::Get, &base, &headers, &[]).map_err(|e| format!("role name: {e}"))?;
            match a.body.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                Some(role) if a.status == 200 => role.to_string(),
                _ if a.status == 404 || a.status == 200 => return Err("the instance has no IAM role (instance profile)".into()),
                _ => return Err(format!("role name: HTTP {}", a.status)),
            }
        }
    };
    let url = format!("{base}{}", url::form_urlencoded::byte_serialize(role.as_bytes()).collect::<String>());
    let a = fetch::call(reach, false, Method::Get, &url, &headers, &[]).map_err(|e| format!("credentials of role {role}: {e}"))?;
    if a.status != 200 {
        return Err(format!("credentials of role {role}: HTTP {}", a.status));
    }
    super::from_json(&a.body).map_err(|e| format!("credentials of role {role}: {e}"))
}
