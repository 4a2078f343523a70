//! What chunked uploads and ranged reads need from an S3 store, beyond
//! [`ObjectStore`](crate::store::ObjectStore): a multipart upload that lives
//! across many calls (begun, fed one numbered part per call, completed or
//! aborted later), a server-side copy from one key to another, and a ranged
//! `GET`. Keys here are relative to the store's location, as everywhere.

use super::client::{answer_text, Payload, Request, Verb};
use super::requests::SIGNATURE_LIFETIME;
use super::upload::base64;
use super::S3Store;
use crate::datajoint::hash::Hash;
use crate::error::{Result, S3Problem};
use rusty_s3::actions::S3Action;
use rusty_s3::Credentials;
use std::io::Read;

/// The most one `UploadPartCopy` copies: S3 allows 5 GiB; smaller parts keep
/// each request well inside the store's `timeout`.
pub const COPY_PART: u64 = 512 << 20;

impl S3Store {
    /// The key an object is written under (Python ≤ 3.11's form).
    fn written(&self, relative: &str) -> String {
        self.keys(relative).0
    }

    /// Starts a multipart upload to `relative`: its S3 upload id.
    pub fn begin_upload(&self, relative: &str) -> Result<String> {
        self.create_upload(&self.written(relative), &[])
    }

    /// Uploads part `number` (1 to 10 000) whose MD5 the caller computed
    /// already (it is the part's `Content-MD5`): its ETag.
    pub fn send_part(&self, relative: &str, upload_id: &str, number: usize, data: &[u8], md5: &Hash) -> Result<String> {
        self.upload_part(&self.written(relative), upload_id, number, Payload::Bytes(data), &base64(md5))
    }

    /// Completes an upload of `etags` (part 1 first) holding `size` bytes.
    pub fn finish_upload(&self, relative: &str, upload_id: &str, etags: &[String], size: u64) -> Result<()> {
        self.complete_upload(&self.written(relative), upload_id, etags, size)
    }

    /// Aborts an upload; one already gone is no error.
    pub fn cancel_upload(&self, relative: &str, upload_id: &str) -> Result<()> {
        self.abort_upload(&self.written(relative), upload_id)
    }

    /// Removes one key (the written form only); one already gone is no error.
    pub fn remove(&self, relative: &str) -> Result<()> {
        self.delete_key(&self.written(relative))
    }

    /// Copies object `from` (`size` bytes) to `to` inside the bucket: a
    /// multipart upload of `UploadPartCopy` ranges, so that no byte passes
    /// through this server and any size up to S3's limit works. Nothing
    /// appears under `to` unless every range was copied.
    pub fn copy(&self, from: &str, to: &str, size: u64) -> Result<()> {
        let (src, dst) = (self.written(from), self.written(to));
        let upload_id = self.create_upload(&dst, &[])?;
        let copied = (|| {
            let mut etags = Vec::new();
            let mut at = 0u64;
            loop {
                let end = (at + COPY_PART).min(size);
                etags.push(self.copy_part(&src, &dst, &upload_id, etags.len() + 1, at, end)?);
                at = end;
                if at >= size {
                    break;
                }
            }
            self.complete_upload(&dst, &upload_id, &etags, size)
        })();
        if copied.is_err() {
            let _ = self.abort_upload(&dst, &upload_id);
        }
        copied
    }

    /// One `UploadPartCopy` of bytes `[from, to)` of `src`: the part's ETag.
    fn copy_part(&self, src: &str, dst: &str, upload_id: &str, number: usize, from: u64, to: u64) -> Result<String> {
        let op = "UploadPartCopy";
        let part = u16::try_from(number).map_err(|_| self.client.err(dst, S3Problem::Protocol { op, detail: "too many parts".into() }))?;
        let source = format!("/{}/{}", self.bucket.name(), url_path(src));
        // An empty object has no byte range to name: it is copied whole.
        let mut headers = vec![("x-amz-copy-source".to_string(), source)];
        if to > from {
            headers.push(("x-amz-copy-source-range".to_string(), format!("bytes={}-{}", from, to - 1)));
        }
        let url = |c: &Credentials| {
            let mut a = self.bucket.upload_part(Some(c), dst, part, upload_id);
            for (k, v) in &headers {
                a.headers_mut().insert(k.as_str(), v.as_str());
            }
            a.sign(SIGNATURE_LIFETIME)
        };
        let r = Request { headers: &headers, ..Request::new(op, Verb::Put, dst, &url) };
        let answer = self.client.send(&r)?;
        if !answer.status().is_success() {
            return Err(self.client.answer_error(&r, answer));
        }
        let text = answer_text(answer.into_body());
        let (code, message) = super::error_fields(&text);
        if !code.is_empty() {
            return Err(self.client.err(dst, super::classify(op, 200, &code, &message, &self.client.endpoint)));
        }
        etag_of(&text).ok_or_else(|| self.client.err(dst, S3Problem::Protocol { op, detail: "no ETag in the answer".into() }))
    }

    /// Bytes `[offset, offset + len)` of an object as a stream (`len` > 0),
    /// under whichever key form holds it; `Error::Missing` when neither does.
    pub fn read_range(&self, relative: &str, offset: u64, len: u64) -> Result<Box<dyn Read>> {
        let (key, other) = self.keys(relative);
        let key = if self.head(&key, false)?.is_some() {
            key
        } else {
            match other {
                Some(o) if self.head(&o, true)?.is_some() => o,
                _ => return Err(self.missing(relative)),
            }
        };
        let url = |c: &Credentials| self.bucket.get_object(Some(c), &key).sign(SIGNATURE_LIFETIME);
        let headers = [("range".to_string(), format!("bytes={}-{}", offset, offset + len - 1))];
        let r = Request { headers: &headers, stream: true, ..Request::new("GET", Verb::Get, &key, &url) };
        let answer = self.client.send(&r)?;
        match answer.status().as_u16() {
            206 => Ok(Box::new(self.client.download(answer).take(len))),
            // A server that ignores Range sends everything from byte 0.
            200 if offset == 0 => Ok(Box::new(self.client.download(answer).take(len))),
            200 => Err(self.client.err(&key, S3Problem::Protocol { op: "GET", detail: "the server ignored the Range header".into() })),
            _ => Err(self.client.answer_error(&r, answer)),
        }
    }
}

/// The ETag of an `UploadPartCopy` answer (`<ETag>…</ETag>`), as sent.
fn etag_of(xml: &str) -> Option<String> {
    let start = xml.find("<ETag>")? + "<ETag>".len();
    let end = start + xml[start..].find("</ETag>")?;
    Some(xml[start..end].trim().replace("&quot;", "\"").replace("&#34;", "\""))
}

/// A key as `x-amz-copy-source` wants it: each byte outside the unreserved
/// set and `/` percent-encoded.
fn url_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_and_etags() {
        assert_eq!(url_path("dj/a b/ü.bin"), "dj/a%20b/%C3%BC.bin");
        assert_eq!(url_path(".dj-chunked/0af3"), ".dj-chunked/0af3");
        assert_eq!(etag_of("<CopyPartResult><ETag>&quot;abc&quot;</ETag></CopyPartResult>").as_deref(), Some("\"abc\""));
        assert_eq!(etag_of("<CopyPartResult/>"), None);
    }
}
