//! Object stores behind one small interface, so every function works the same
//! on each protocol; keys come from [`crate::datajoint::layout`].

pub mod counted;
pub mod file;
pub mod leftovers;
pub mod pump;
pub mod s3;

use crate::config::{self, Protocol};
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::{Error, Result};
use std::io::{self, Read, Seek, Write};

/// A source that can be read more than once (server files are): stores
/// that must know an object's key before writing it rewind it.
pub trait Source: Read + Seek {
    /// The file behind the source, when it is one: read at offsets, it
    /// lets several parts of an upload be read at once.
    fn file(&self) -> Option<&std::fs::File> {
        None
    }
}

impl Source for std::fs::File {
    fn file(&self) -> Option<&std::fs::File> {
        Some(self)
    }
}

/// What a protocol must do. Writes are all-or-nothing: a reader never sees a
/// partial object under its final key. Batch calls share one store between
/// their worker threads, hence `Sync`.
pub trait ObjectStore: Sync {
    /// The object's size, `None` when it does not exist.
    fn size(&self, key: &str) -> Result<Option<u64>>;
    /// A streaming reader; `Error::Missing` when it does not exist.
    fn open(&self, key: &str) -> Result<Box<dyn Read>>;
    /// A streaming reader and the object's size; `Error::Missing` when it
    /// does not exist. Protocols where one request answers both override it.
    fn open_sized(&self, key: &str) -> Result<Reading> {
        let r = self.open(key)?;
        Ok((r, self.size(key)?))
    }
    /// Stores everything `src` yields under `key`, feeding it to `hasher`,
    /// and replaces the object only once it is complete and durable. When
    /// `expect` is given and the bytes hash otherwise, nothing is stored.
    /// `meta` is user metadata (name, value) for protocols that keep it with
    /// the object (S3's `x-amz-meta-<name>`); the file protocol has none.
    fn put(&self, key: &str, src: &mut dyn Read, hasher: Hasher, expect: Option<Hash>, meta: &[(&str, &str)]) -> Result<(Hash, u64)>;
    /// Stores bytes already in memory, whose hash `hash` names the object,
    /// unless an object of that key and size is already there (keys embed
    /// the hash). Protocols that can write only-if-absent in one request
    /// override it.
    fn put_once(&self, key: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<()> {
        if self.size(key)? == Some(data.len() as u64) {
            return Ok(());
        }
        let mut src = data;
        self.put(key, &mut src, hasher, Some(hash), &[]).map(|_| ())
    }
    /// Stores bytes whose hash, and so whose key, is known only at the end;
    /// `key_of` names the object once it is hashed. The file protocol reads
    /// `src` once (temporary file, then rename); S3 reads it twice (see
    /// [`s3::S3Store`]). Returns the hash, the size and whether anything new
    /// was written.
    fn put_by_hash(&self, scope: &str, src: &mut dyn Source, hasher: Hasher, key_of: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)>;
    /// Up to `limit` objects whose keys start with `prefix` (a folder such
    /// as `<schema>/`) and sort after `after`, in key order; for sweeping
    /// objects that no tracking row names.
    fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<Listed>>;
    /// Removes the object; `false` when it was already gone.
    fn delete(&self, key: &str) -> Result<bool>;
    /// Removes what interrupted writes left and nobody is writing any more,
    /// untouched for at least `min_age` seconds: temporary files (file
    /// protocol) or unfinished multipart uploads (S3). Returns how many.
    fn remove_leftovers(&self, min_age: u64) -> Result<u64>;
    /// Removes many objects, up to `workers` at once; one result each, in order.
    fn delete_many(&self, keys: &[String], workers: usize) -> Vec<Result<bool>> {
        crate::parallel::map(keys, workers, |k| self.delete(k))
    }
    /// Where the object lives, for messages (never with credentials).
    fn describe(&self, key: &str) -> String;
    /// The server-local path of the object, when the protocol has one.
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf>;
}

/// An object being read, and its size when the protocol learned it on the way.
pub type Reading = (Box<dyn Read>, Option<u64>);

/// One object found by [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key relative to the store's location, as [`crate::datajoint::layout`] makes it.
    pub key: String,
    pub size: u64,
    /// Seconds since it was last written.
    pub age: u64,
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The implementation for a configured store, counted (see [`counted`]).
pub fn open(store: &config::StoreConfig) -> Result<Box<dyn ObjectStore>> {
    let inner: Box<dyn ObjectStore> = match &store.protocol {
        Protocol::File => Box::new(file::FileStore::new(store)),
        Protocol::S3(s3) => Box::new(s3::S3Store::new(store, s3)?),
    };
    Ok(Box::new(counted::Counted::new(&store.name, inner)))
}

/// The error for bytes that did not hash to what the caller expected;
/// `Ok` when nothing was expected or the hashes agree.
pub fn check_source(expect: Option<Hash>, got: &Hash, location: &str) -> Result<()> {
    match expect {
        Some(want) if &want != got => Err(Error::ChecksumMismatch {
            what: format!("source for {location}"),
            expected: crate::datajoint::hash::to_hex(&want),
            actual: crate::datajoint::hash::to_hex(got),
        }),
        _ => Ok(()),
    }
}

/// Copies `src` to `dst`, hashing on the way (on a second core, see [`pump`]).
/// Read and write errors are told apart because they point at different places.
pub fn copy_hashing(src: &mut dyn Read, dst: &mut dyn Write, hasher: &mut Hasher) -> std::result::Result<u64, CopyError> {
    pump::pump(src, hasher, &mut |b: &[u8]| dst.write_all(b)).map_err(|e| match e {
        pump::Failure::Read(e) => CopyError::Read(e),
        pump::Failure::Sink(e) => CopyError::Write(e),
        pump::Failure::Hashing => CopyError::Read(hashing_stopped()),
    })
}

/// Hashes everything `src` yields; returns the hash and the byte count.
pub fn hash_all(src: &mut dyn Read, mut hasher: Hasher) -> io::Result<(Hash, u64)> {
    let n = pump::pump(src, &mut hasher, &mut |_: &[u8]| Ok::<(), io::Error>(())).map_err(|e| match e {
        pump::Failure::Read(e) | pump::Failure::Sink(e) => e,
        pump::Failure::Hashing => hashing_stopped(),
    })?;
    Ok((hasher.finish(), n))
}

/// Reads at most `limit` bytes into memory, hashing them; more is an error.
/// `expected` (the size the store reported) sizes the buffer once: grown by
/// doubling instead, it would reach twice the object and copy it on the way.
pub fn read_limited(src: &mut dyn Read, hasher: &mut Hasher, limit: u64, expected: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(expected.min(limit) as usize);
    let mut keep = |b: &[u8]| {
        if out.len() as u64 + b.len() as u64 > limit {
            return Err(Error::TooLarge { what: what.to_string(), size: out.len() as u64 + b.len() as u64, limit });
        }
        out.extend_from_slice(b);
        Ok(())
    };
    match pump::pump(src, hasher, &mut keep) {
        Ok(_) => Ok(out),
        Err(pump::Failure::Read(e)) => Err(Error::io("read", what, e)),
        Err(pump::Failure::Sink(e)) => Err(e),
        Err(pump::Failure::Hashing) => Err(Error::io("read", what, hashing_stopped())),
    }
}

/// The error for a hashing worker that stopped (a bug, caught as a panic).
fn hashing_stopped() -> io::Error {
    io::Error::other("internal error in dj_udf: the hashing thread stopped")
}

pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    pub fn into_io(self) -> io::Error {
        match self {
            CopyError::Read(e) | CopyError::Write(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_read_into_memory_is_allocated_once() {
        let data = vec![7u8; 3 * pump::CHUNK + 5];
        let mut h = Hasher::default();
        let out = read_limited(&mut data.as_slice(), &mut h, 1 << 30, data.len() as u64, "obj").unwrap();
        assert!(out == data);
        assert_eq!(out.capacity(), data.len(), "no growth by doubling");
        let e = read_limited(&mut data.as_slice(), &mut Hasher::default(), 100, data.len() as u64, "obj").unwrap_err();
        assert!(matches!(e, Error::TooLarge { limit: 100, .. }), "{e}");
    }
}
