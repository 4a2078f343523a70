//! What an S3 error answer means, in words for the DBA.

use crate::error::S3Problem;

/// Server-provided text kept in a message (messages must stay short).
const MESSAGE_LIMIT: usize = 200;

/// The `Code` and `Message` of an S3 error document (empty when absent).
pub fn error_fields(xml: &str) -> (String, String) {
    let field = |name: &str| -> String {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        xml.find(&open)
            .and_then(|i| {
                let rest = &xml[i + open.len()..];
                rest.find(&close).map(|j| unescape(rest[..j].trim()))
            })
            .unwrap_or_default()
    };
    (field("Code"), field("Message"))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Server text cut to what a message may carry.
pub(super) fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MESSAGE_LIMIT {
        return s.to_string();
    }
    format!("{}…", crate::text::cut(s, MESSAGE_LIMIT))
}

/// What an error answer means for the DBA.
pub fn classify(op: &'static str, status: u16, code: &str, message: &str, endpoint: &str) -> S3Problem {
    match code {
        "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "InvalidToken" | "ExpiredToken" | "InvalidSecurity" => {
            S3Problem::BadCredentials { code: code.to_string() }
        }
        "NoSuchBucket" => S3Problem::NoSuchBucket { endpoint: endpoint.to_string() },
        "AccessDenied" => S3Problem::AccessDenied { message: shorten(message) },
        "BadDigest" => S3Problem::Failed {
            op,
            status,
            code: code.to_string(),
            message: "the bytes the server received do not match their Content-MD5 (corrupted in transit)".into(),
        },
        _ => S3Problem::Failed {
            op,
            status,
            code: code.to_string(),
            message: if code.is_empty() && message.is_empty() { reason(status).into() } else { shorten(message) },
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        301 | 307 => "redirected: check endpoint and region",
        400 => "bad request",
        403 => "forbidden",
        404 => "not found",
        500 => "internal server error",
        503 => "service unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status: u16, code: &str, message: &str) -> String {
        match classify("GET", status, code, message, "h:9000") {
            S3Problem::Failed { message, .. } => message,
            other => panic!("{other:?}"),
        }
    }

    /// An answer without an error document still says what its status means.
    #[test]
    fn bare_statuses_are_named() {
        for (status, says) in [
            (301, "redirected: check endpoint and region"),
            (307, "redirected: check endpoint and region"),
            (400, "bad request"),
            (403, "forbidden"),
            (404, "not found"),
            (500, "internal server error"),
            (503, "service unavailable"),
            (418, ""),
        ] {
            assert_eq!(failed(status, "", ""), says, "{status}");
        }
        // A code or a message of the server's own wins over the status word.
        assert_eq!(failed(404, "", "gone fishing"), "gone fishing");
        assert_eq!(failed(404, "Weird", ""), "");
    }

    #[test]
    fn server_text_is_trimmed_and_cut() {
        assert_eq!(shorten("  short  "), "short");
        let long = "é".repeat(MESSAGE_LIMIT);
        let cut = shorten(&long);
        assert!(cut.ends_with('…') && cut.len() <= MESSAGE_LIMIT + '…'.len_utf8(), "{}", cut.len());
        assert!(long.starts_with(cut.trim_end_matches('…')));
        assert_eq!(shorten(&"x".repeat(MESSAGE_LIMIT)), "x".repeat(MESSAGE_LIMIT), "exactly the limit is kept whole");
    }
}
