//! An upload of a server file whose key is known only once it is hashed
//! (`dj_attach_put_file`): the first pass ([`survey`]) learns the key hash
//! and every part's MD5; the second pass only sends, reading each part anew
//! from its offset, up to `max_parallel` parts at once.
//!
//! The file may change between the passes, and what is stored under a key
//! must always hash to it. So every sent part is confirmed to be the bytes
//! the first pass hashed before the upload is completed: by the server
//! refusing a body that does not match its `Content-MD5`, or by the part's
//! ETag being the MD5 it was sent with (true of most servers, which report
//! the MD5 of what they received), or else (servers whose ETags are
//! something else, and that may not check `Content-MD5`; s3s-fs checks it
//! on no part) by reading the part again: a part that now differs means the
//! file changed, and the upload is aborted; one that does not is sent once
//! more, hashed as it goes, and such servers are remembered so later
//! uploads hash while sending from the start. An object of at most
//! [`SINGLE_PUT_MAX`] bytes is read into memory and checked before its one
//! `PUT`: some servers (s3s-fs) store a `PUT` before checking its
//! `Content-MD5`.

use super::client::{OpenBody, Payload};
use super::quirks::{self, Quirk};
use super::survey::{survey, Survey};
use super::upload::{base64, PartBuffer, SINGLE_PUT_MAX};
use super::S3Store;
use crate::datajoint::hash::{to_hex, Hash, Hasher};
use crate::error::{Error, Result, S3Problem};
use crate::store::{ObjectStore, Source};
use std::fs::File;
use std::io::{self, Read, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// What sending one part gave: its ETag, and its MD5 when it was hashed on the way.
struct Sent {
    etag: String,
    hashed: Option<[u8; 16]>,
}

impl S3Store {
    /// `put_by_hash` for S3; see the module documentation.
    pub(super) fn put_two_pass(
        &self,
        scope: &str,
        src: &mut dyn Source,
        hasher: Hasher,
        key_of: &dyn Fn(&Hash) -> String,
    ) -> Result<(Hash, u64, bool)> {
        let read_err = |e| Error::io("read source for", self.describe(scope), e);
        let start = src.stream_position().map_err(read_err)?;
        let hint = src.file().and_then(|f| f.metadata().ok()).map(|m| m.len().saturating_sub(start));
        if hint.is_some_and(|n| n <= SINGLE_PUT_MAX as u64) && self.conditional_writes() {
            // One pass: the bytes sent are the bytes hashed, in one
            // conditional PUT and no lookup first.
            let mut buf = PartBuffer::new();
            if buf.fill(src, SINGLE_PUT_MAX).map_err(read_err)? {
                let mut h = hasher.clone();
                h.update(buf.filled());
                let hash = h.finish();
                let written = self.put_fitting(&key_of(&hash), buf.filled(), hasher, hash)?;
                return Ok((hash, buf.len as u64, written));
            }
            // grown past one PUT since its size was read: two passes after all
            src.seek(SeekFrom::Start(start)).map_err(|e| Error::io("rewind source for", self.describe(scope), e))?;
        }
        let survey = survey(src, hasher.clone(), hint).map_err(read_err)?;
        let relative = key_of(&survey.hash);
        if self.size(&relative)? == Some(survey.size) {
            return Ok((survey.hash, survey.size, false));
        }
        let (key, _) = self.keys(&relative);
        let changed = |actual: Hash| Error::ChecksumMismatch {
            what: format!("source for {}", self.describe(&relative)),
            expected: to_hex(&survey.hash),
            actual: to_hex(&actual),
        };
        if survey.size <= SINGLE_PUT_MAX as u64 {
            src.seek(SeekFrom::Start(start)).map_err(|e| Error::io("rewind source for", self.describe(&relative), e))?;
            let mut buf = PartBuffer::new();
            buf.fill(&mut Read::take(&mut *src, survey.size), SINGLE_PUT_MAX).map_err(read_err)?;
            let mut again = hasher;
            again.update(buf.filled());
            let got = again.finish();
            if got != survey.hash || buf.len as u64 != survey.size {
                return Err(changed(got));
            }
            self.put_single(&key, Payload::Bytes(buf.filled()), &base64(&survey.parts[0]), &[], false)?;
            return Ok((survey.hash, survey.size, true));
        }
        let upload_id = self.create_upload(&key, &[])?;
        // Marked first, so that a sweep finds the upload if this server dies.
        let marker = match self.mark_upload(&key, &upload_id) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.abort_upload(&key, &upload_id);
                return Err(e);
            }
        };
        let result = self.send_parts(&key, &upload_id, src, start, &survey).and_then(|etags| match etags {
            Ok(etags) => self.complete_upload(&key, &upload_id, &etags, survey.size),
            Err(()) => Err(changed(self.rehash(src, start, survey.size, hasher))),
        });
        // Parts of an unfinished upload are never visible; aborting frees
        // them. The marker goes once the upload is completed or aborted.
        if result.is_ok() || self.abort_upload(&key, &upload_id).is_ok() {
            self.unmark_upload(marker);
        }
        result.map(|()| (survey.hash, survey.size, true))
    }

    /// Sends every part and confirms it; `Ok(Err(()))` when the source no
    /// longer holds the surveyed bytes, else the ETags in part order.
    fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        src: &mut dyn Source,
        start: u64,
        survey: &Survey,
    ) -> Result<std::result::Result<Vec<String>, ()>> {
        let numbers: Vec<usize> = (0..survey.parts.len()).collect();
        let hash_on_the_way = quirks::has(&self.client.endpoint, Quirk::OpaqueEtags);
        let sent = match src.file() {
            Some(file) => crate::parallel::all_or_none(&numbers, self.max_parallel, |&i| {
                self.send_file_part(key, upload_id, file, start, survey, i, hash_on_the_way)
            }),
            None => {
                // Not a file (tests): one part after the other, through one buffer.
                let mut buf = PartBuffer::new();
                numbers.iter().map(|&i| self.send_buffered_part(key, upload_id, src, start, survey, i, &mut buf).map_err(|e| (i, e))).collect()
            }
        };
        let sent = match sent {
            Ok(sent) => sent,
            // A part the server refused as not matching its Content-MD5 is
            // a changed file unless the part still reads as surveyed.
            Err((i, e)) if bad_digest(&e) && self.part_md5_now(src, start, survey, i).ok() != Some(survey.parts[i]) => return Ok(Err(())),
            Err((_, e)) => return Err(e),
        };
        let mut etags = Vec::with_capacity(sent.len());
        let mut buf = PartBuffer::new();
        for (i, s) in sent.into_iter().enumerate() {
            let want = survey.parts[i];
            if s.hashed == Some(want) || (s.hashed.is_none() && quirks::etag_is_md5(&s.etag, &want)) {
                etags.push(s.etag);
                continue;
            }
            if s.hashed.is_some() {
                return Ok(Err(()));
            }
            // The ETag says nothing: is the part still what was surveyed?
            if self.part_md5_now(src, start, survey, i).map_err(|e| Error::io("read source for", self.describe_key(key), e))? != want {
                return Ok(Err(()));
            }
            quirks::learn(&self.client.endpoint, Quirk::OpaqueEtags);
            let again = match src.file() {
                Some(file) => self.send_file_part(key, upload_id, file, start, survey, i, true)?,
                None => self.send_buffered_part(key, upload_id, src, start, survey, i, &mut buf)?,
            };
            if again.hashed.is_some_and(|h| h != want) {
                return Ok(Err(()));
            }
            etags.push(again.etag);
        }
        Ok(Ok(etags))
    }

    /// Sends part `i` straight from the file, read at its offset (several
    /// parts at once share the file), hashing it on the way when `hash` says so.
    #[allow(clippy::too_many_arguments)]
    fn send_file_part(&self, key: &str, upload_id: &str, file: &File, start: u64, survey: &Survey, i: usize, hash: bool) -> Result<Sent> {
        let (at, len) = survey.part(i);
        let part = FilePart { file, pos: start + at, len, digest: hash.then(|| Mutex::new(None)) };
        let etag = self.upload_part(key, upload_id, i + 1, Payload::Reader { len, open: &part }, &base64(&survey.parts[i]))?;
        Ok(Sent { etag, hashed: part.digest.and_then(|d| d.into_inner().unwrap_or_else(|p| p.into_inner())) })
    }

    /// Sends part `i` of a source that is not a file, read into `buf`; it
    /// counts as hashed only on a server known for opaque ETags.
    #[allow(clippy::too_many_arguments)]
    fn send_buffered_part(
        &self,
        key: &str,
        upload_id: &str,
        src: &mut dyn Source,
        start: u64,
        survey: &Survey,
        i: usize,
        buf: &mut PartBuffer,
    ) -> Result<Sent> {
        let (at, len) = survey.part(i);
        let read_err = |e| Error::io("read source for", self.describe_key(key), e);
        src.seek(SeekFrom::Start(start + at)).map_err(read_err)?;
        buf.fill(&mut Read::take(&mut *src, len), len as usize).map_err(read_err)?;
        let hashed = quirks::has(&self.client.endpoint, Quirk::OpaqueEtags).then(|| crate::datajoint::hash::digest(b"", buf.filled()));
        let etag = self.upload_part(key, upload_id, i + 1, Payload::Bytes(buf.filled()), &base64(&survey.parts[i]))?;
        Ok(Sent { etag, hashed })
    }

    /// The MD5 of part `i` as the source holds it now.
    fn part_md5_now(&self, src: &mut dyn Source, start: u64, survey: &Survey, i: usize) -> io::Result<[u8; 16]> {
        let (at, len) = survey.part(i);
        src.seek(SeekFrom::Start(start + at))?;
        crate::store::hash_all(&mut Read::take(&mut *src, len), Hasher::default()).map(|(md5, _)| md5)
    }

    /// The key hash of the source as it is now, for the message about a change.
    fn rehash(&self, src: &mut dyn Source, start: u64, size: u64, hasher: Hasher) -> Hash {
        let mut hasher = hasher;
        if src.seek(SeekFrom::Start(start)).is_ok() {
            let _ = crate::store::copy_hashing(&mut Read::take(&mut *src, size), &mut io::sink(), &mut hasher);
        }
        hasher.finish()
    }

    fn describe_key(&self, key: &str) -> String {
        format!("object '{key}' in bucket '{}' of store '{}'", self.bucket.name(), self.name)
    }
}

/// Whether the server refused a body as not matching its `Content-MD5`.
fn bad_digest(e: &Error) -> bool {
    matches!(e, Error::S3 { problem, .. } if matches!(&**problem, S3Problem::Failed { code, .. } if code == "BadDigest"))
}

/// A part of a file as a request body, hashed on the way when `digest` is
/// there to hold its MD5.
struct FilePart<'f> {
    file: &'f File,
    pos: u64,
    len: u64,
    digest: Option<Mutex<Option<[u8; 16]>>>,
}

impl OpenBody for FilePart<'_> {
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        let part = At { file: self.file, pos: self.pos, left: self.len };
        Ok(match &self.digest {
            Some(into) => Box::new(Hashing { inner: part, left: self.len, md5: Hasher::default(), into }),
            None => Box::new(part),
        })
    }
}

/// `left` bytes of a file from `pos`, read at offsets so that several
/// parts can be read at once through one open file.
struct At<'f> {
    file: &'f File,
    pos: u64,
    left: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than when it was hashed"));
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader of `left` bytes that leaves their MD5 in `into` once it has
/// read them all (the HTTP client stops reading at the declared length).
struct Hashing<'d, R> {
    inner: R,
    left: u64,
    md5: Hasher,
    into: &'d Mutex<Option<[u8; 16]>>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        self.left = self.left.saturating_sub(n as u64);
        if self.left == 0 {
            *self.into.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::mem::take(&mut self.md5).finish());
        }
        Ok(n)
    }
}
