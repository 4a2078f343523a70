//! The `profile` source: one profile of a shared credentials file in the
//! format of `~/.aws/credentials`, read anew for each call so that a
//! rotated key takes effect without a reload.

use rusty_s3::Credentials;
use std::io::Read;
use std::path::PathBuf;

/// The most of the file that is read: credentials files are small.
const FILE_LIMIT: u64 = 1 << 20;

/// The file and profile a store reads: the config's, else
/// `AWS_SHARED_CREDENTIALS_FILE` or `$HOME/.aws/credentials` of the server
/// process, and `AWS_PROFILE` or `default`.
pub fn resolve(file: &Option<PathBuf>, profile: &Option<String>) -> Result<(PathBuf, String), String> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let profile = profile.clone().or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let file = match file {
        Some(f) => f.clone(),
        None => match (env("AWS_SHARED_CREDENTIALS_FILE"), env("HOME")) {
            (Some(f), _) => PathBuf::from(f),
            (None, Some(home)) => PathBuf::from(home).join(".aws/credentials"),
            (None, None) => return Err("no credentials file: set \"file\" (the server has no HOME)".into()),
        },
    };
    Ok((file, profile))
}

pub fn describe(file: &std::path::Path, profile: &str) -> String {
    format!("profile '{profile}' of credentials file {}", file.display())
}

/// The profile's key pair (and session token).
pub fn read(file: &std::path::Path, profile: &str) -> Result<Credentials, String> {
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(FILE_LIMIT).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the file: {}", e.kind()))?;
    parse(&text, profile)
}

/// Reads `[profile]` (or `[profile name]`, as in AWS's config file) of an
/// INI text; the error names a missing key, never a value.
pub fn parse(text: &str, profile: &str) -> Result<Credentials, String> {
    let mut inside = false;
    let mut found = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside = name == profile || name.strip_prefix("profile ").is_some_and(|n| n.trim() == profile);
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    if !found {
        return Err(format!("the file has no profile [{profile}]"));
    }
    let key = key.ok_or("the profile has no aws_access_key_id")?;
    let secret = secret.ok_or("the profile has no aws_secret_access_key")?;
    Ok(match token {
        Some(t) => Credentials::new_with_token(key, secret, t),
        None => Credentials::new(key, secret),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn profiles_are_told_apart() {
        let text = "[default]\naws_access_key_id = AK1\naws_secret_access_key=S1\n\n# lab\n[profile lab]\naws_access_key_id=AK2\n aws_secret_access_key = S2\naws_session_token = T2\n[broken]\naws_access_key_id=AK3\n";
        let d = parse(text, "default").unwrap();
        assert_eq!((d.key(), d.secret(), d.token()), ("AK1", "S1", None));
        let l = parse(text, "lab").unwrap();
        assert_eq!((l.key(), l.secret(), l.token()), ("AK2", "S2", Some("T2")));
        assert_eq!(parse(text, "broken").err().unwrap(), "the profile has no aws_secret_access_key");
        assert_eq!(parse(text, "none").err().unwrap(), "the file has no profile [none]");
    }
}
