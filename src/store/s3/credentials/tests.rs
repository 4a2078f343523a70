use super::*;

#[test]
fn iso_time_is_the_inverse_of_parse_time() {
    for t in ["1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2014-10-24T23:00:23Z", "2038-01-19T03:14:08Z", "2100-03-01T00:00:00Z"] {
        assert_eq!(iso_time(crate::store::s3::parse_time(t).unwrap()), t);
    }
}

#[test]
fn endpoint_answers_read_and_refusals_are_named() {
    let f = from_json(r#"{"Code": "Success", "AccessKeyId": "ASIA1", "SecretAccessKey": "s", "Token": "tok", "Expiration": "2030-01-01T00:00:00Z"}"#)
        .unwrap();
    assert_eq!((f.creds.key(), f.creds.token()), ("ASIA1", Some("tok")));
    assert_eq!(f.expires, crate::store::s3::parse_time("2030-01-01T00:00:00Z"));
    let e = from_json(r#"{"Code": "AssumeRoleUnauthorizedAccess", "AccessKeyId": "x"}"#).err().unwrap();
    assert_eq!(e, "the answer says AssumeRoleUnauthorizedAccess");
    assert_eq!(from_json("<html>").err().unwrap(), "the answer is not JSON");
    assert_eq!(from_json(r#"{"AccessKeyId": "x"}"#).err().unwrap(), "the answer has no SecretAccessKey");
}

#[test]
fn container_tokens_never_cross_a_network_in_clear() {
    let full = |u: &str| container::resolve(&None, &Some(u.to_string()), &None);
    assert!(full("http://127.0.0.1:5/creds").is_ok());
    assert!(full("http://169.254.170.23/v1/credentials").is_ok());
    assert!(full("https://creds.example.org/v1").is_ok());
    let e = full("http://creds.example.org/v1").unwrap_err();
    assert!(e.contains("must use https") && e.starts_with("http://creds.example.org "), "{e}");
    assert_eq!(container::shown("http://169.254.170.2/v2/credentials/secret-uuid"), "http://169.254.170.2");
}

/// A temporary source's session token goes into every presigned URL, in
/// the signed query (`X-Amz-Security-Token` is part of the canonical query
/// string, so a request without it, or with another, fails the signature).
#[test]
fn presigned_urls_carry_the_session_token() {
    use rusty_s3::{Bucket, S3Action, UrlStyle};
    let creds = Credentials::new_with_token("ASIAKEY", "secret", "the/session+token=");
    let bucket = Bucket::new("http://127.0.0.1:9000/".parse().unwrap(), UrlStyle::Path, "b", "us-east-1").unwrap();
    let url = bucket.put_object(Some(&creds), "k").sign(std::time::Duration::from_secs(60));
    let q: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(q.contains(&("X-Amz-Security-Token".into(), "the/session+token=".into())), "{url}");
    let signed_after = q.iter().position(|(k, _)| k == "X-Amz-Signature").unwrap();
    let token_at = q.iter().position(|(k, _)| k == "X-Amz-Security-Token").unwrap();
    assert!(token_at < signed_after);
    let part = bucket.upload_part(Some(&creds), "k", 1, "up").sign(std::time::Duration::from_secs(60));
    assert!(part.as_str().contains("X-Amz-Security-Token=the%2Fsession%2Btoken%3D"), "{part}");
}
