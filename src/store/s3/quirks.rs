//! What this process has learned about S3 servers that differ from the
//! common case, by endpoint: no conditional writes (`If-None-Match: *`
//! answered 501), or part ETags that are not the parts' MD5 (AWS with
//! SSE-KMS, for one). Learned once, so that later requests go the way that
//! works at once; forgotten only when the library is unloaded.

use std::sync::Mutex;

/// Endpoints remembered at once (one per configured S3 server, in practice).
const MOST: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Quirk {
    /// `If-None-Match: *` on a `PUT` is not implemented.
    NoConditionalWrites,
    /// A part's ETag is not the hex MD5 of the part.
    OpaqueEtags,
}

static LEARNED: Mutex<Vec<(String, Quirk)>> = Mutex::new(Vec::new());

/// Whether `endpoint` was seen to have `quirk`.
pub(super) fn has(endpoint: &str, quirk: Quirk) -> bool {
    LEARNED.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|(e, q)| e == endpoint && *q == quirk)
}

/// Remembers that `endpoint` has `quirk`.
pub(super) fn learn(endpoint: &str, quirk: Quirk) {
    let mut learned = LEARNED.lock().unwrap_or_else(|p| p.into_inner());
    if learned.iter().any(|(e, q)| e == endpoint && *q == quirk) {
        return;
    }
    if learned.len() >= MOST {
        learned.remove(0);
    }
    learned.push((endpoint.to_string(), quirk));
}

/// Whether an ETag (quoted or not, any case) is the hex of `md5`.
pub(super) fn etag_is_md5(etag: &str, md5: &[u8; 16]) -> bool {
    let e = etag.trim().trim_start_matches("W/").trim_matches('"');
    e.len() == 32 && e.eq_ignore_ascii_case(&crate::datajoint::hash::to_hex(md5))
}
