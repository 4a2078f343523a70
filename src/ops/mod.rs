//! The engine behind each SQL function family, free of any FFI concern:
//! plain Rust values in, plain Rust values or [`Error`]s out.

pub mod admin;
pub mod attach;
pub mod blob;
pub mod checksum;
pub mod filepath;
pub mod verify;

use crate::config::{Config, Store};
use crate::error::{Error, Result};
use crate::hash::{to_hex, Hash, Hasher};
use crate::layout::Object;
use crate::store::{self, ObjectStore};
use std::path::Path;

/// A configured store together with its protocol implementation.
pub struct Opened<'c> {
    pub cfg: &'c Store,
    pub io: Box<dyn ObjectStore>,
}

impl Opened<'_> {
    pub fn key(&self, obj: &Object) -> String {
        obj.key(&self.cfg.subfolding)
    }

    /// The object and where it lives (path, or bucket and key), for messages.
    pub fn what(&self, obj: &Object, key: &str) -> String {
        format!("{} ({})", obj.describe(&self.cfg.name), self.io.describe(key))
    }
}

pub fn open<'c>(cfg: &'c Config, store: &str) -> Result<Opened<'c>> {
    let st = cfg.store(store)?;
    Ok(Opened { cfg: st, io: store::open(st)? })
}

/// Stores bytes whose hash is already known, skipping the write when an
/// object of that key and size is already there (keys embed the hash).
pub fn put_known(st: &Opened, key: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<()> {
    if st.io.size(key)? == Some(data.len() as u64) {
        return Ok(());
    }
    let mut src = data;
    st.io.put(key, &mut src, hasher, Some(hash), &[]).map(|_| ())
}

/// Reads a whole object into memory, checking its size and hash on the way:
/// DataJoint never verifies blobs and attachments on read; we always do.
pub fn read_verified(st: &Opened, obj: &Object, hasher: Hasher, expect: &Hash, limit: u64) -> Result<Vec<u8>> {
    let key = st.key(obj);
    let what = st.what(obj, &key);
    let size = st.io.size(&key)?.ok_or_else(|| Error::Missing { what: what.clone() })?;
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    let mut hasher = hasher;
    let mut src = st.io.open(&key)?;
    let data = store::read_limited(&mut *src, &mut hasher, limit, &what)?;
    let got = hasher.finish();
    if &got != expect {
        return Err(Error::ChecksumMismatch { what, expected: to_hex(expect), actual: to_hex(&got) });
    }
    Ok(data)
}

/// Every folder a server path may be read from: import folders, stages and
/// file-store locations.
pub fn readable_roots(cfg: &Config) -> Vec<&Path> {
    let mut roots: Vec<&Path> = cfg.import_dirs.iter().map(|p| p.as_path()).collect();
    for s in &cfg.stores {
        if let Some(stage) = &s.stage {
            roots.push(stage);
        }
        if s.protocol == crate::config::Protocol::File {
            roots.push(Path::new(&s.location));
        }
    }
    roots
}
