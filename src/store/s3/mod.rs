//! The `s3` protocol: objects in a bucket of an S3-compatible server.
//!
//! rusty-s3 presigns each request (SigV4, path-style
//! `http(s)://endpoint/bucket/key`) and ureq sends it on the calling thread:
//! no async runtime and no background thread, so nothing keeps running when
//! the database server unloads the library. Every request has a connect
//! timeout and a stall timeout; a connection failure or a 5xx answer is
//! retried a bounded number of times with exponential backoff.
//!
//! Memory stays bounded by one part buffer whatever the object size:
//! downloads stream, uploads go in one `PUT` up to [`SINGLE_PUT_MAX`] bytes
//! and as a multipart upload of [`PART_SIZE`] parts above, every request
//! body with its `Content-MD5`. A multipart upload is completed only once
//! the whole object hashed as expected, and aborted on any failure, so a
//! reader never sees a partial or wrong object under its key.
//!
//! Each operation sends as few requests as it can (docs/s3.md has the
//! table): a new object is one conditional `PUT`, a read is one `GET`,
//! deletions go 1000 to a `DeleteObjects` request.
//!
//! Its parts: `pool` (the process-wide keep-alive connections), `client`
//! (requests on them: timeouts, retries, failures turned into errors),
//! `requests` (one presigned request per S3 operation), `keys` (where
//! DataJoint puts an object in the bucket), `upload` (how an upload is cut
//! into parts), `survey` and `two_pass` (a server file uploaded in two
//! passes, hashed only in the first), `quirks` (what servers were seen to
//! lack) and `answers` (what an error answer means); this module implements
//! [`ObjectStore`] with them.
//! Its parts: `client` (the HTTP agent, timeouts, retries, failures turned
//! into errors), `requests` (one presigned request per S3 operation), `keys`
//! (where DataJoint puts an object in the bucket), `upload` (how an upload
//! is cut into parts) and `answers` (what an error answer means); this
//! module implements [`ObjectStore`] with them. `parts` offers chunked
//! uploads and ranged reads the multipart, copy and ranged-`GET` steps.

use super::{check_source, now_secs, Listed, ObjectStore, Source};
use crate::config::{Addressing, S3Config, StoreConfig};
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::{Error, Result, S3Problem};

mod answers;
mod client;
mod credentials;
mod keys;
mod leftovers;
mod parts;
mod pool;
mod quirks;
mod requests;
mod survey;
mod two_pass;
mod upload;

pub use answers::{classify, error_fields};
use client::{Client, Payload};
pub use credentials::{iso_time, status as credentials_status};
pub use keys::{location_prefix, object_keys, parse_time};
pub use parts::COPY_PART;
pub use pool::{IDLE_FOR, IDLE_PER_ENDPOINT};
use quirks::Quirk;
use requests::{Written, DELETE_BATCH};
use rusty_s3::{Bucket, UrlStyle};
use std::io::Read;
use upload::PartBuffer;
pub use upload::{content_md5, parts_for, plan, Upload, MAX_OBJECT, MAX_PARTS, PART_SIZE, SINGLE_PUT_MAX};
use url::Url;

/// A configured S3 store: its bucket and location, and the client that
/// sends its requests (and holds its credentials).
pub struct S3Store {
    name: String,
    bucket: Bucket,
    /// The server-side encryption headers of every write that creates an object.
    encryption: Vec<(String, String)>,
    location: String,
    client: Client,
    /// Transfers one call runs at once (the store's `max_parallel`).
    max_parallel: usize,
}

impl S3Store {
    pub fn new(store: &StoreConfig, s3: &S3Config) -> Result<Self> {
        let unusable = |what: &str| Error::Denied { msg: format!("store '{}': {what} is not usable", store.name) };
        let scheme = if s3.secure { "https" } else { "http" };
        let endpoint_url = Url::parse(&format!("{scheme}://{}/", s3.endpoint)).map_err(|_| unusable("endpoint"))?;
        let style = match s3.addressing {
            Addressing::Path => UrlStyle::Path,
            Addressing::Virtual => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(endpoint_url, style, s3.bucket.clone(), s3.region.clone()).map_err(|_| unusable("endpoint"))?;
        Ok(S3Store {
            name: store.name.clone(),
            bucket,
            encryption: s3.encryption.as_ref().map(|e| e.headers()).unwrap_or_default(),
            location: store.location.clone(),
            client: Client::new(store, s3)?,
            max_parallel: store.max_parallel(),
        })
    }

    /// The key an object is written under, and the other key a DataJoint
    /// client may have given it (see [`object_keys`]), also looked up and deleted.
    fn keys(&self, relative: &str) -> (String, Option<String>) {
        object_keys(&self.location, relative)
    }

    fn missing(&self, relative: &str) -> Error {
        Error::Missing { what: self.describe(relative) }
    }

    /// Uploads the parts (the first already in `buf`), then completes the
    /// upload only if the whole object hashes to `expect`.
    #[allow(clippy::too_many_arguments)]
    fn upload_parts(
        &self,
        relative: &str,
        key: &str,
        upload_id: &str,
        src: &mut dyn Read,
        buf: &mut PartBuffer,
        mut ended: bool,
        mut hasher: Hasher,
        expect: Option<Hash>,
        marker: &mut leftovers::Marker,
    ) -> Result<(Hash, u64)> {
        let mut etags = Vec::new();
        let mut total = 0u64;
        loop {
            self.refresh_mark(marker)?;
            // A killed statement stops between parts; the caller aborts the upload.
            crate::interrupt::check(|| format!("the upload of {}", self.describe(relative)))?;
            if etags.len() == MAX_PARTS {
                return Err(self.client.err(key, S3Problem::TooLarge { limit: MAX_OBJECT }));
            }
            hasher.update(buf.filled());
            total += buf.len as u64;
            let md5 = content_md5(buf.filled());
            etags.push(self.upload_part(key, upload_id, etags.len() + 1, Payload::Bytes(buf.filled()), &md5)?);
            if ended {
                break;
            }
            ended = buf.fill(src, PART_SIZE).map_err(|e| Error::io("read source for", self.describe(relative), e))?;
            if buf.len == 0 {
                break;
            }
        }
        let got = hasher.finish();
        check_source(expect, &got, &self.describe(relative))?;
        self.complete_upload(key, upload_id, &etags, total)?;
        Ok((got, total))
    }

    /// One conditional `PUT` for an object that fits one; only when the key
    /// is taken, a `HEAD` to see that what is there has the size (keys
    /// embed the hash), and a plain `PUT` over an object of another size.
    /// Servers without conditional writes get the lookup first, and so does
    /// a bucket not seen within a minute (a lookup that misses checks it;
    /// one that finds an object shows it): some servers (s3s-fs) create a
    /// missing bucket on a `PUT` instead of refusing it. Whether it wrote.
    pub(super) fn put_fitting(&self, relative: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<bool> {
        if data.len() <= SINGLE_PUT_MAX && self.conditional_writes() {
            let (key, _) = self.keys(relative);
            match self.put_single(&key, Payload::Bytes(data), &content_md5(data), &[], true)? {
                Written::Yes => return Ok(true),
                Written::Exists if self.size(relative)? == Some(data.len() as u64) => return Ok(false),
                Written::Exists => return self.put_single(&key, Payload::Bytes(data), &content_md5(data), &[], false).map(|_| true),
                Written::Unconditional => quirks::learn(&self.client.endpoint, Quirk::NoConditionalWrites),
            }
        }
        if self.size(relative)? == Some(data.len() as u64) {
            return Ok(false);
        }
        let mut src = data;
        self.put(relative, &mut src, hasher, Some(hash), &[]).map(|_| true)
    }

    /// Whether a `PUT` may be sent before any lookup: the server is not
    /// known to ignore `If-None-Match`, and the bucket was seen lately.
    pub(super) fn conditional_writes(&self) -> bool {
        !quirks::has(&self.client.endpoint, Quirk::NoConditionalWrites) && self.bucket_seen()
    }
}

impl ObjectStore for S3Store {
    /// One `ListObjectsV2` page under the written key form (Python ≤ 3.11's,
    /// see [`object_keys`]); objects that only a Python ≥ 3.12 client wrote, under
    /// a key that differs from it, are not listed.
    fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<Listed>> {
        let loc = location_prefix(&self.location);
        let full = |rel: &str| if loc.is_empty() { rel.to_string() } else { format!("{loc}/{rel}") };
        let key_prefix = full(prefix);
        let start_after = (!after.is_empty()).then(|| full(after));
        let page = self.list_page(&key_prefix, start_after.as_deref(), limit.clamp(1, 1000))?;
        let now = now_secs();
        let strip = if loc.is_empty() { String::new() } else { format!("{loc}/") };
        Ok(page
            .contents
            .into_iter()
            .filter_map(|o| {
                let key = o.key.strip_prefix(strip.as_str())?.to_string();
                let written = o.last_modified.as_deref().and_then(parse_time).unwrap_or(now);
                Some(Listed { key, size: o.size.unwrap_or(0), age: (now - written).max(0) as u64 })
            })
            .take(limit)
            .collect())
    }

    fn size(&self, relative: &str) -> Result<Option<u64>> {
        let (key, other) = self.keys(relative);
        if let Some(n) = self.head(&key, false)? {
            return Ok(Some(n));
        }
        if let Some(other) = other {
            if let Some(n) = self.head(&other, true)? {
                return Ok(Some(n));
            }
        }
        self.check_bucket(&key)?;
        Ok(None)
    }

    fn open(&self, relative: &str) -> Result<Box<dyn Read>> {
        Ok(self.open_sized(relative)?.0)
    }

    /// One `GET` (two for a key with a second form that is not under the
    /// first), whose answer also tells the size. While the bucket has not
    /// been seen within a minute, a `HEAD` goes first (checking the bucket
    /// after a miss, as [`ObjectStore::size`] does): some servers (s3s-fs)
    /// answer a `GET` in a missing bucket as a missing key.
    fn open_sized(&self, relative: &str) -> Result<super::Reading> {
        if !self.bucket_seen() && self.size(relative)?.is_none() {
            return Err(self.missing(relative));
        }
        let (key, other) = self.keys(relative);
        if let Some(r) = self.get(&key, false)? {
            return Ok(r);
        }
        if let Some(other) = other {
            if let Some(r) = self.get(&other, true)? {
                return Ok(r);
            }
        }
        Err(self.missing(relative))
    }

    fn put_once(&self, relative: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<()> {
        self.put_fitting(relative, data, hasher, hash).map(|_| ())
    }

    fn put(&self, relative: &str, src: &mut dyn Read, mut hasher: Hasher, expect: Option<Hash>, meta: &[(&str, &str)]) -> Result<(Hash, u64)> {
        let (key, _) = self.keys(relative);
        let meta: Vec<(String, String)> = meta.iter().map(|(k, v)| (format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.to_string())).collect();
        let mut buf = PartBuffer::new();
        let ended = buf.fill(src, PART_SIZE).map_err(|e| Error::io("read source for", self.describe(relative), e))?;
        match plan(buf.len, ended) {
            Upload::Single => {
                hasher.update(buf.filled());
                let got = hasher.finish();
                check_source(expect, &got, &self.describe(relative))?;
                self.put_single(&key, Payload::Bytes(buf.filled()), &content_md5(buf.filled()), &meta, false)?;
                Ok((got, buf.len as u64))
            }
            Upload::Multipart => {
                let upload_id = self.create_upload(&key, &meta)?;
                // Marked first, so that a sweep finds the upload if this server dies.
                let mut marker = match self.mark_upload(&key, &upload_id) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = self.abort_upload(&key, &upload_id);
                        return Err(e);
                    }
                };
                let result = self.upload_parts(relative, &key, &upload_id, src, &mut buf, ended, hasher, expect, &mut marker);
                // Best effort: parts of an unfinished upload are never visible
                // as an object, aborting only frees their space. The marker
                // goes once the upload is completed or aborted; when the
                // abort fails too, it stays for a sweep to find.
                if result.is_ok() || self.abort_upload(&key, &upload_id).is_ok() {
                    self.unmark_upload(marker);
                }
                result
            }
        }
    }

    /// Two passes over a seekable source (see `two_pass`): an S3 object
    /// cannot be renamed once written (a server-side copy would cost a
    /// second write and leave a temporary object behind after a crash), and
    /// reading a server file twice is cheaper; only the first pass hashes.
    fn put_by_hash(&self, scope: &str, src: &mut dyn Source, hasher: Hasher, key_of: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)> {
        self.put_two_pass(scope, src, hasher, key_of)
    }

    fn delete(&self, relative: &str) -> Result<bool> {
        let (key, other) = self.keys(relative);
        let mut deleted = false;
        // Both forms: a copy left under the other one would keep the object readable.
        for (k, second_chance) in [(key.clone(), false)].into_iter().chain(other.map(|r| (r, true))) {
            if self.head(&k, second_chance)?.is_some() {
                self.delete_key(&k)?;
                deleted = true;
            }
        }
        if !deleted {
            self.check_bucket(&key)?;
        }
        Ok(deleted)
    }

    fn remove_leftovers(&self, min_age: u64) -> Result<u64> {
        self.abort_stale_uploads(min_age)
    }

    /// `DeleteObjects`, up to 1000 keys a request (and the Python >= 3.12
    /// forms in requests of their own, where a location gives them): each
    /// object reads as deleted once it is gone, whether or not it was there.
    fn delete_many(&self, relatives: &[String], _workers: usize) -> Vec<Result<bool>> {
        let keys: Vec<(String, Option<String>)> = relatives.iter().map(|r| self.keys(r)).collect();
        let written: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        let others: Vec<(usize, String)> = keys.iter().enumerate().filter_map(|(i, (_, o))| o.clone().map(|o| (i, o))).collect();
        let mut out: Vec<Result<bool>> = Vec::with_capacity(relatives.len());
        for batch in written.chunks(DELETE_BATCH) {
            match self.delete_keys(batch, false) {
                Ok(each) => out.extend(batch.iter().zip(each).map(|(k, r)| {
                    r.map(|()| true)
                        .map_err(|m| self.client.err(k, S3Problem::Failed { op: "DeleteObjects", status: 200, code: String::new(), message: m }))
                })),
                Err(e) => out.extend(batch.iter().map(|_| Err(Error::Shared { msg: e.to_string() }))),
            }
        }
        for batch in others.chunks(DELETE_BATCH) {
            let keys: Vec<String> = batch.iter().map(|(_, k)| k.clone()).collect();
            if let Err(e) = self.delete_keys(&keys, true) {
                for (i, _) in batch {
                    out[*i] = Err(Error::Shared { msg: e.to_string() });
                }
            }
        }
        out
    }

    fn describe(&self, relative: &str) -> String {
        format!("object '{}' in bucket '{}' of store '{}'", self.keys(relative).0, self.bucket.name(), self.name)
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests;
