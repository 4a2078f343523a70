//! How an upload is cut into requests, the buffer its parts are read into,
//! and the `Content-MD5` each one carries.

use std::io::{self, Read};

/// Objects up to this size go in a single `PUT`.
pub const SINGLE_PUT_MAX: usize = 8 << 20;
/// The part size of multipart uploads, and so the largest buffer a call holds.
pub const PART_SIZE: usize = 16 << 20;
/// S3 numbers parts from 1 to 10 000.
pub const MAX_PARTS: usize = 10_000;
/// The largest object this store can write (about 156 GiB).
pub const MAX_OBJECT: u64 = (PART_SIZE as u64) * (MAX_PARTS as u64);
/// The first read buffer; it doubles up to [`PART_SIZE`] only for large objects.
pub(super) const FIRST_BUFFER: usize = 64 << 10;

/// `Content-MD5`: the base64 of the body's raw MD5.
pub fn content_md5(data: &[u8]) -> String {
    base64(&crate::datajoint::hash::digest(b"", data))
}

pub(super) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How an object of which `first` bytes were read (and `ended` tells whether
/// that was all) is uploaded.
#[derive(Debug, PartialEq, Eq)]
pub enum Upload {
    Single,
    Multipart,
}

pub fn plan(first: usize, ended: bool) -> Upload {
    if ended && first <= SINGLE_PUT_MAX {
        Upload::Single
    } else {
        Upload::Multipart
    }
}

/// The parts a multipart upload of `size` bytes takes, or `None` when it
/// needs more than S3 allows.
pub fn parts_for(size: u64) -> Option<usize> {
    let n = size.div_ceil(PART_SIZE as u64).max(1);
    (n <= MAX_PARTS as u64).then_some(n as usize)
}

/// A reusable upload buffer that grows (by doubling) only as far as the data needs.
pub(super) struct PartBuffer {
    pub(super) data: Vec<u8>,
    pub(super) len: usize,
}

impl PartBuffer {
    pub(super) fn new() -> Self {
        PartBuffer { data: Vec::new(), len: 0 }
    }

    pub(super) fn filled(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Replaces the contents with up to `limit` bytes of `src`; returns
    /// whether `src` ended.
    pub(super) fn fill(&mut self, src: &mut dyn Read, limit: usize) -> io::Result<bool> {
        self.len = 0;
        loop {
            if self.len == limit {
                return Ok(false);
            }
            if self.len == self.data.len() {
                let grown = (self.data.len() * 2).clamp(FIRST_BUFFER, limit);
                self.data.resize(grown, 0);
            }
            match src.read(&mut self.data[self.len..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
