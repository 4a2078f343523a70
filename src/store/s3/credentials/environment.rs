//! The `env` source: the key pair (and session token) in the database
//! server's own environment, as AWS tools read it.

use rusty_s3::Credentials;

/// What error messages call this source.
pub const DESCRIPTION: &str = "the server's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)";

fn var(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty())).map(|v| v.trim().to_string())
}

/// The credentials in the server's environment now; the error names what
/// is missing (never a value).
pub fn read() -> Result<Credentials, String> {
    let key = var(&["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"]).ok_or("AWS_ACCESS_KEY_ID is not set in the database server's environment")?;
    let secret = var(&["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"]).ok_or("AWS_SECRET_ACCESS_KEY is not set in the database server's environment")?;
    Ok(match var(&["AWS_SESSION_TOKEN"]) {
        Some(token) => Credentials::new_with_token(key, secret, token),
        None => Credentials::new(key, secret),
    })
}
