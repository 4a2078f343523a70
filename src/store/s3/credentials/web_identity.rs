//! The `web_identity` source: STS `AssumeRoleWithWebIdentity` with the
//! token a platform writes to a file (EKS IAM roles for service accounts,
//! GitHub OIDC, …). The call is unsigned: the token is the proof.

use super::fetch::{self, Method, Reach};
use super::Fetched;
use crate::store::s3::parse_time;
use rusty_s3::Credentials;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// The most of a token file that is read (JWTs are a few kB).
const TOKEN_LIMIT: u64 = 64 << 10;

/// The settings, completed from the server's environment.
#[derive(Debug)]
pub struct Resolved {
    pub token_file: PathBuf,
    pub role_arn: String,
    pub session_name: String,
    /// `https://sts.REGION.amazonaws.com` unless the config names one.
    pub sts: String,
}

pub fn resolve(
    token_file: &Option<PathBuf>,
    role_arn: &Option<String>,
    session_name: &Option<String>,
    sts_endpoint: &Option<String>,
    region: &str,
) -> Result<Resolved, String> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let token_file = token_file
        .clone()
        .or_else(|| env("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from))
        .ok_or("no token file: set \"token_file\" or AWS_WEB_IDENTITY_TOKEN_FILE in the server's environment")?;
    let role_arn = role_arn.clone().or_else(|| env("AWS_ROLE_ARN")).ok_or("no role: set \"role_arn\" or AWS_ROLE_ARN in the server's environment")?;
    let session_name = session_name.clone().or_else(|| env("AWS_ROLE_SESSION_NAME")).unwrap_or_else(|| "dj_udf".into());
    let sts = sts_endpoint.clone().unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    Ok(Resolved { token_file, role_arn, session_name, sts })
}

pub fn describe(r: &Resolved) -> String {
    format!("web identity (STS AssumeRoleWithWebIdentity at {} for role {})", r.sts, r.role_arn)
}

/// Reads the token (platforms rotate the file) and asks STS for credentials.
pub fn fetch(r: &Resolved, reach: &Reach) -> Result<Fetched, String> {
    let mut token = String::new();
    std::fs::File::open(&r.token_file)
        .and_then(|f| f.take(TOKEN_LIMIT).read_to_string(&mut token))
        .map_err(|e| format!("cannot read token file {}: {}", r.token_file.display(), e.kind()))?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", &r.role_arn)
        .append_pair("RoleSessionName", &r.session_name)
        .append_pair("WebIdentityToken", token.trim())
        .finish();
    // POST, not GET: the token stays out of URLs and access logs.
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("accept", "application/xml")];
    let a = fetch::call(reach, true, Method::Post, &format!("{}/", r.sts), &headers, body.as_bytes())?;
    if !(200..300).contains(&a.status) {
        let code = fetch::xml_field(&a.body, "Code").unwrap_or_default();
        let message = fetch::xml_field(&a.body, "Message").unwrap_or_default();
        let mut msg = format!("STS answered HTTP {}", a.status);
        if !code.is_empty() {
            msg = format!("{msg} {code}");
        }
        if !message.is_empty() {
            msg = format!("{msg}: {}", crate::text::cut(&message, 200));
        }
        return Err(msg);
    }
    parse(&a.body)
}

/// The credentials in an `AssumeRoleWithWebIdentityResponse`.
pub fn parse(xml: &str) -> Result<Fetched, String> {
    let field = |n: &str| fetch::xml_field(xml, n).filter(|v| !v.is_empty()).ok_or(format!("the STS answer has no {n}"));
    let (key, secret, token) = (field("AccessKeyId")?, field("SecretAccessKey")?, field("SessionToken")?);
    let expires = parse_time(&field("Expiration")?).ok_or("the STS answer has an unreadable Expiration")?;
    Ok(Fetched { creds: Arc::new(Credentials::new_with_token(key, secret, token)), expires: Some(expires), fetched: crate::store::now_secs() })
}

#[cfg(test)]
mod tests {
    /// AWS's documented example answer (shortened).
    const ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&amp;x</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <Provider>www.amazon.com</Provider>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn the_documented_answer_reads() {
        let f = super::parse(ANSWER).unwrap();
        assert_eq!(f.creds.key(), "ASgeIAIOSFODNN7EXAMPLE");
        assert_eq!(f.creds.token(), Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&x"));
        assert_eq!(f.expires, Some(1_414_191_623));
        assert_eq!(super::parse("<x/>").err().unwrap(), "the STS answer has no AccessKeyId");
    }
}
