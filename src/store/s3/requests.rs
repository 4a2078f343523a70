//! The requests an S3 store makes, one function each: presigned (SigV4, a
//! fresh signature per attempt) `HEAD`, `GET`, single `PUT` (conditional
//! or not), the multipart upload steps, `ListObjectsV2`, `DELETE` and
//! `DeleteObjects`, each answer read into what the store needs.

use super::client::{answer_text, Payload, Request, Verb};
use super::S3Store;
use crate::error::{Result, S3Problem};
use rusty_s3::actions::{CreateMultipartUpload, DeleteObjectsResponse, ListObjectsV2, ListObjectsV2Response, ObjectIdentifier, S3Action};
use rusty_s3::Credentials;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a presigned URL stays valid; each attempt signs anew.
pub(super) const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// How long a bucket that answered `HEAD bucket` is taken to exist.
const BUCKET_SEEN_FOR: Duration = Duration::from_secs(60);

/// How many keys one `DeleteObjects` request may name (S3's limit).
pub const DELETE_BATCH: usize = 1000;

/// What a `PUT` did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// The object is stored.
    Yes,
    /// A conditional `PUT` found an object under the key and wrote nothing
    /// (412, or 409 while another conditional write of it is under way).
    Exists,
    /// The server does not implement conditional writes (501): nothing written.
    Unconditional,
}

/// Buckets recently seen to exist, by `endpoint/bucket` (a handful at most:
/// one per configured S3 store).
static BUCKETS_SEEN: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn bucket_seen(id: &str) -> bool {
    let seen = BUCKETS_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.iter().any(|(b, at)| b == id && at.elapsed() < BUCKET_SEEN_FOR)
}

fn remember_bucket(id: String) {
    let mut seen = BUCKETS_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|(b, at)| *b != id && at.elapsed() < BUCKET_SEEN_FOR);
    seen.push((id, Instant::now()));
}

impl S3Store {
    /// `HEAD` of one key: its size, `None` on 404. A `second_chance` lookup
    /// (the Python ≥ 3.12 form of a key, after the written form was not
    /// found) takes any failure answer as "not there": servers that cannot
    /// hold such keys (often starting with `/`; s3s-fs, MinIO) answer them
    /// with 400 or 500.
    pub(super) fn head(&self, key: &str, second_chance: bool) -> Result<Option<u64>> {
        self.head_again(key, second_chance, false)
    }

    fn head_again(&self, key: &str, second_chance: bool, again: bool) -> Result<Option<u64>> {
        let url = |c: &Credentials| self.bucket.head_object(Some(c), key).sign(SIGNATURE_LIFETIME);
        let r = Request { retry_5xx: !second_chance, ..Request::new("HEAD", Verb::Head, key, &url) };
        let answer = self.client.send(&r)?;
        let status = answer.status().as_u16();
        if answer.status().is_success() {
            let len = answer.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
            self.bucket_exists();
            return len.map(Some).ok_or_else(|| self.client.err(key, S3Problem::Protocol { op: "HEAD", detail: "no Content-Length".into() }));
        }
        if status == 404 || second_chance {
            return Ok(None);
        }
        if answer.status().is_server_error() {
            return Err(self.client.status_error("HEAD", key, status));
        }
        // A HEAD answer has no body to say why: ask again with a GET of one
        // byte, whose error answer names the cause.
        drop(answer);
        let url = |c: &Credentials| self.bucket.get_object(Some(c), key).sign(SIGNATURE_LIFETIME);
        let headers = [("range".to_string(), "bytes=0-0".to_string())];
        let g = Request { headers: &headers, ..Request::new("HEAD", Verb::Get, key, &url) };
        let answer = self.client.send(&g)?;
        if answer.status().is_success() || answer.status().as_u16() == 416 {
            // The GET went through where the HEAD did not: with temporary
            // credentials, the GET's answer may have named them expired
            // (see `Client::send`) and new ones were fetched for it.
            if !again && self.client.temporary_credentials() {
                drop(answer);
                return self.head_again(key, second_chance, true);
            }
            return Err(self.client.status_error("HEAD", key, status));
        }
        Err(self.client.answer_error(&g, answer))
    }

    /// Whether the bucket was seen to exist within [`BUCKET_SEEN_FOR`].
    pub(super) fn bucket_seen(&self) -> bool {
        bucket_seen(&format!("{}/{}", self.client.endpoint, self.bucket.name()))
    }

    /// Remembers that the bucket exists: an object in it was just found.
    fn bucket_exists(&self) {
        if !self.bucket_seen() {
            remember_bucket(format!("{}/{}", self.client.endpoint, self.bucket.name()));
        }
    }

    /// After a 404 for an object: an error if the bucket itself is missing.
    /// A bucket seen to exist is not asked about again for
    /// [`BUCKET_SEEN_FOR`], so that putting many new objects (each first
    /// looked up, and missing) does not cost a bucket request each.
    pub(super) fn check_bucket(&self, key: &str) -> Result<()> {
        let id = format!("{}/{}", self.client.endpoint, self.bucket.name());
        if bucket_seen(&id) {
            return Ok(());
        }
        let url = |c: &Credentials| self.bucket.head_bucket(Some(c)).sign(SIGNATURE_LIFETIME);
        let answer = self.client.send(&Request::new("HEAD bucket", Verb::Head, key, &url))?;
        if answer.status().as_u16() == 404 {
            return Err(self.client.err(key, S3Problem::NoSuchBucket { endpoint: self.client.endpoint.clone() }));
        }
        if answer.status().is_success() {
            remember_bucket(id);
        }
        // Anything else (including 403 without ListBucket permission): the
        // object's own answer, 404, stands.
        Ok(())
    }

    /// `GET` of one key as a stream, with its length when the answer says
    /// it; `None` on 404 `NoSuchKey` (or on any failure answer for a
    /// `second_chance` lookup, as for [`Self::head`]). A missing bucket is
    /// an error: the answer's body tells it from a missing key.
    pub(super) fn get(&self, key: &str, second_chance: bool) -> Result<Option<crate::store::Reading>> {
        let url = |c: &Credentials| self.bucket.get_object(Some(c), key).sign(SIGNATURE_LIFETIME);
        let r = Request { stream: true, retry_5xx: !second_chance, ..Request::new("GET", Verb::Get, key, &url) };
        let answer = self.client.send(&r)?;
        if answer.status().is_success() {
            let len = answer.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
            self.bucket_exists();
            return Ok(Some((Box::new(self.client.download(answer)), len)));
        }
        if second_chance {
            return Ok(None);
        }
        if answer.status().as_u16() == 404 {
            let (code, message) = super::error_fields(&answer_text(answer.into_body()));
            if code.is_empty() || code == "NoSuchKey" {
                return Ok(None);
            }
            return Err(self.client.err(key, super::classify("GET", 404, &code, &message, &self.client.endpoint)));
        }
        Err(self.client.answer_error(&r, answer))
    }

    /// One `ListObjectsV2` page: up to `max_keys` keys that start with
    /// `prefix` and sort after `start_after`.
    pub(super) fn list_page(&self, prefix: &str, start_after: Option<&str>, max_keys: usize) -> Result<ListObjectsV2Response> {
        let url = |c: &Credentials| {
            let mut a = ListObjectsV2::new(&self.bucket, Some(c));
            a.with_prefix(prefix);
            if let Some(s) = start_after {
                a.with_start_after(s);
            }
            a.with_max_keys(max_keys);
            a.sign(SIGNATURE_LIFETIME)
        };
        let r = Request::new("LIST", Verb::Get, prefix, &url);
        let answer = self.client.send(&r)?;
        if !answer.status().is_success() {
            return Err(self.client.answer_error(&r, answer));
        }
        let text = answer_text(answer.into_body());
        ListObjectsV2::parse_response(&text).map_err(|e| self.client.err(prefix, S3Problem::Protocol { op: "LIST", detail: e.to_string() }))
    }

    /// `DELETE` of one key; a key already gone is no error.
    pub(super) fn delete_key(&self, key: &str) -> Result<()> {
        let url = |c: &Credentials| self.bucket.delete_object(Some(c), key).sign(SIGNATURE_LIFETIME);
        let r = Request::new("DELETE", Verb::Delete, key, &url);
        let answer = self.client.send(&r)?;
        if answer.status().is_success() || answer.status().as_u16() == 404 {
            return Ok(());
        }
        Err(self.client.answer_error(&r, answer))
    }

    /// One `PUT` of a whole object with its `Content-MD5` (base64, of the
    /// body), user metadata and the store's server-side encryption headers. With `if_absent` it carries
    /// `If-None-Match: *`: the server writes only when no object has the key,
    /// in the same request, where a lookup first would cost a round trip.
    pub(super) fn put_single(&self, key: &str, body: Payload, md5: &str, meta: &[(String, String)], if_absent: bool) -> Result<Written> {
        let mut headers = meta.to_vec();
        headers.extend(self.encryption.iter().cloned());
        headers.push(("content-md5".into(), md5.to_string()));
        if if_absent {
            headers.push(("if-none-match".into(), "*".into()));
        }
        let url = |c: &Credentials| {
            let mut a = self.bucket.put_object(Some(c), key);
            for (k, v) in &headers {
                a.headers_mut().insert(k.as_str(), v.as_str());
            }
            a.sign(SIGNATURE_LIFETIME)
        };
        let r = Request { headers: &headers, body, ..Request::new("PUT", Verb::Put, key, &url) };
        let answer = self.client.send(&r)?;
        match answer.status().as_u16() {
            200..=299 => Ok(Written::Yes),
            412 | 409 if if_absent => Ok(Written::Exists),
            501 if if_absent => Ok(Written::Unconditional),
            _ => Err(self.client.answer_error(&r, answer)),
        }
    }

    /// `CreateMultipartUpload` with the object's user metadata: the upload id.
    /// The store's server-side encryption headers go here, not on the
    /// parts: S3 applies them to the whole object and refuses them on `UploadPart`.
    pub(super) fn create_upload(&self, key: &str, meta: &[(String, String)]) -> Result<String> {
        let mut headers = meta.to_vec();
        headers.extend(self.encryption.iter().cloned());
        let url = |c: &Credentials| {
            let mut a = self.bucket.create_multipart_upload(Some(c), key);
            for (k, v) in &headers {
                a.headers_mut().insert(k.as_str(), v.as_str());
            }
            a.sign(SIGNATURE_LIFETIME)
        };
        let op = "CreateMultipartUpload";
        let r = Request { headers: &headers, ..Request::new(op, Verb::Post, key, &url) };
        let answer = self.client.send(&r)?;
        if !answer.status().is_success() {
            return Err(self.client.answer_error(&r, answer));
        }
        let text = answer_text(answer.into_body());
        match CreateMultipartUpload::parse_response(&text) {
            Ok(resp) if !resp.upload_id().is_empty() => Ok(resp.upload_id().to_string()),
            _ => Err(self.client.err(key, S3Problem::Protocol { op, detail: "no UploadId in the answer".into() })),
        }
    }

    /// `UploadPart` with its `Content-MD5` (base64, of the body): the part's ETag.
    pub(super) fn upload_part(&self, key: &str, upload_id: &str, number: usize, body: Payload, md5: &str) -> Result<String> {
        let part =
            u16::try_from(number).map_err(|_| self.client.err(key, S3Problem::Protocol { op: "UploadPart", detail: "too many parts".into() }))?;
        let headers = [("content-md5".to_string(), md5.to_string())];
        let url = |c: &Credentials| {
            let mut a = self.bucket.upload_part(Some(c), key, part, upload_id);
            a.headers_mut().insert("content-md5", headers[0].1.as_str());
            a.sign(SIGNATURE_LIFETIME)
        };
        let r = Request { headers: &headers, body, ..Request::new("UploadPart", Verb::Put, key, &url) };
        let answer = self.client.send(&r)?;
        if !answer.status().is_success() {
            return Err(self.client.answer_error(&r, answer));
        }
        // The ETag names the part for CompleteMultipartUpload; where it is
        // the part's MD5 (most servers) it also confirms what arrived.
        answer
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| self.client.err(key, S3Problem::Protocol { op: "UploadPart", detail: "no ETag in the answer".into() }))
    }

    /// `CompleteMultipartUpload` of the parts in order; `size` recognizes an
    /// upload that an earlier attempt completed.
    pub(super) fn complete_upload(&self, key: &str, upload_id: &str, etags: &[String], size: u64) -> Result<()> {
        let body = self.bucket.complete_multipart_upload(None, key, upload_id, etags.iter().map(String::as_str)).body();
        let url = |c: &Credentials| self.bucket.complete_multipart_upload(Some(c), key, upload_id, std::iter::empty()).sign(SIGNATURE_LIFETIME);
        let op = "CompleteMultipartUpload";
        let r = Request { body: Payload::Bytes(body.as_bytes()), ..Request::new(op, Verb::Post, key, &url) };
        let answer = self.client.send(&r)?;
        let status = answer.status().as_u16();
        let ok = answer.status().is_success();
        let text = answer_text(answer.into_body());
        // S3 may answer 200 and still fail, with an Error document.
        let (code, message) = super::error_fields(&text);
        if ok && !text.contains("<Error>") {
            return Ok(());
        }
        if code == "NoSuchUpload" && self.head(key, false)? == Some(size) {
            // A retry after a lost answer: the first attempt completed it.
            return Ok(());
        }
        Err(self.client.err(key, super::classify(op, status, &code, &message, &self.client.endpoint)))
    }

    /// `AbortMultipartUpload`: frees the parts of an upload that will not be completed.
    pub(super) fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = |c: &Credentials| self.bucket.abort_multipart_upload(Some(c), key, upload_id).sign(SIGNATURE_LIFETIME);
        let r = Request::new("AbortMultipartUpload", Verb::Delete, key, &url);
        let answer = self.client.send(&r)?;
        if answer.status().is_success() || answer.status().as_u16() == 404 {
            return Ok(());
        }
        Err(self.client.answer_error(&r, answer))
    }

    /// `DeleteObjects` of up to [`DELETE_BATCH`] keys in one request: for
    /// each key, `Ok` once it is gone (S3 does not tell whether it was
    /// there) or the server's error for it. A `second_chance` batch (keys
    /// of the Python >= 3.12 form, which some servers cannot hold) takes a
    /// failure of the whole request as "none there", as for [`Self::head`].
    pub(super) fn delete_keys(&self, keys: &[String], second_chance: bool) -> Result<Vec<std::result::Result<(), String>>> {
        let objects: Vec<ObjectIdentifier> = keys.iter().map(|k| ObjectIdentifier::new(k.clone())).collect();
        let ids = || objects.iter();
        let (body, md5) = self.bucket.delete_objects(None, ids()).body_with_md5();
        let headers = [("content-md5".to_string(), md5)];
        let url = |c: &Credentials| {
            let mut a = self.bucket.delete_objects(Some(c), ids());
            a.headers_mut().insert("content-md5", headers[0].1.as_str());
            a.sign(SIGNATURE_LIFETIME)
        };
        let first = keys.first().map(String::as_str).unwrap_or("");
        let op = "DeleteObjects";
        let r = Request {
            headers: &headers,
            body: Payload::Bytes(body.as_bytes()),
            retry_5xx: !second_chance,
            ..Request::new(op, Verb::Post, first, &url)
        };
        let answer = self.client.send(&r)?;
        if !answer.status().is_success() {
            if second_chance {
                return Ok(keys.iter().map(|_| Ok(())).collect());
            }
            return Err(self.client.answer_error(&r, answer));
        }
        let text = answer_text(answer.into_body());
        let parsed = DeleteObjectsResponse::parse(&text).map_err(|e| self.client.err(first, S3Problem::Protocol { op, detail: e.to_string() }))?;
        let failed = |k: &str| parsed.errors.iter().find(|e| e.key == k);
        Ok(keys
            .iter()
            .map(|k| match failed(k) {
                Some(_) if second_chance => Ok(()),
                Some(e) => Err(self.client.scrub(&format!("{} {}", e.code, super::answers::shorten(&e.message)))),
                None if parsed.deleted.iter().any(|d| d.key == *k) => Ok(()),
                None if second_chance => Ok(()),
                None => Err("the server's answer does not name this key".into()),
            })
            .collect())
    }
}
