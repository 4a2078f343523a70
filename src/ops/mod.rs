//! The engine behind each SQL function family, free of any FFI concern:
//! plain Rust values in, plain Rust values or [`Error`]s out.

pub mod attach;
pub mod batch;
pub mod blob;
pub mod checksum;
pub mod chunked;
pub mod filepath;
pub mod health;
pub mod leftovers;
pub mod objects;
pub mod ranged;
pub mod verify;

use crate::config::{Config, StoreConfig};
use crate::confine::Dir;
use crate::datajoint::hash::{to_hex, Hash, Hasher};
use crate::datajoint::layout::Object;
use crate::error::{Error, Result};
use crate::held::Claim;
use crate::store::{self, CopyError, ObjectStore};
use std::io::Read;
use std::path::Path;

/// A configured store together with its protocol implementation.
pub struct Opened<'c> {
    /// The store's settings from the config file.
    pub spec: &'c StoreConfig,
    /// Its objects, through the store's protocol.
    pub objects: Box<dyn ObjectStore>,
}

impl Opened<'_> {
    /// An attachment name this store can hold (a file store's names are shorter).
    pub fn check_attachment_name(&self, name: &str) -> Result<()> {
        match self.spec.protocol {
            crate::config::Protocol::File => crate::datajoint::layout::check_file_store_name(name),
            crate::config::Protocol::S3(_) => crate::datajoint::layout::check_attachment_name(name),
        }
    }

    pub fn key(&self, obj: &Object) -> String {
        obj.key(&self.spec.subfolding)
    }

    /// The object and where it lives (path, or bucket and key), for messages.
    pub fn what(&self, obj: &Object, key: &str) -> String {
        format!("{} ({})", obj.describe(&self.spec.name), self.objects.describe(key))
    }
}

pub fn open<'c>(cfg: &'c Config, store: &str) -> Result<Opened<'c>> {
    let st = cfg.store(store)?;
    Ok(Opened { spec: st, objects: store::open(st)? })
}

/// Stores bytes whose hash is already known, skipping the write when an
/// object of that key and size is already there (keys embed the hash).
pub fn put_known(st: &Opened, key: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<()> {
    st.objects.put_once(key, data, hasher, hash)
}

/// Reads a whole object into memory, checking its size and hash on the way:
/// DataJoint never verifies blobs and attachments on read; we always do.
/// The memory is claimed from the server-wide budget before it is taken.
pub fn read_verified(cfg: &Config, st: &Opened, obj: &Object, hasher: Hasher, expect: &Hash, claim: &Claim) -> Result<Vec<u8>> {
    let (key, limit) = (st.key(obj), cfg.max_get_bytes);
    let what = st.what(obj, &key);
    let (mut src, size) = st.objects.open_sized(&key).map_err(|e| match e {
        Error::Missing { .. } => Error::Missing { what: what.clone() },
        e => e,
    })?;
    if let Some(size) = size.filter(|s| *s > limit) {
        return Err(Error::TooLarge { what, size, limit });
    }
    // A store that does not say the size up front is claimed for the limit.
    let expected = size.unwrap_or(limit);
    claim.resize(expected, cfg.max_held_bytes)?;
    let mut hasher = hasher;
    let data = store::read_limited(&mut *src, &mut hasher, limit, expected, &what)?;
    let got = hasher.finish();
    if &got != expect {
        return Err(Error::ChecksumMismatch { what, expected: to_hex(expect), actual: to_hex(&got) });
    }
    Ok(data)
}

/// What a downloaded copy must be before it gets its name.
pub struct Expected {
    /// The hash its bytes must have; `None`: not checked.
    pub hash: Option<Hash>,
    /// Its size in bytes; `None`: not checked.
    pub size: Option<u64>,
    /// The copy as a checksum mismatch names it.
    pub what: String,
}

/// How a verified copy takes its name in the folder.
pub enum Naming<'a> {
    /// Renamed to this name, replacing any file there.
    Replace(&'a str),
    /// Linked under the first of these names that is free: nothing is replaced.
    FirstFree(&'a mut dyn Iterator<Item = String>),
}

/// Downloads object `key` into `dir`: streams it into a temporary file there,
/// hashing it on the way, makes it durable, checks it against `expect`, and
/// only then gives it its name, so a reader of `dir` never sees a partial or
/// unverified file and no temporary file is left behind. Returns the name
/// taken, `None` when every `FirstFree` name was taken.
pub fn download_verified(st: &Opened, key: &str, hasher: Hasher, expect: &Expected, dir: &Dir, naming: Naming) -> Result<Option<String>> {
    let src = st.objects.open(key)?;
    copy_verified(st, key, src, hasher, expect, dir, naming)
}

/// [`download_verified`] from a stream of the object already opened, for
/// callers that must know the object exists before they create anything.
pub fn copy_verified(
    st: &Opened,
    key: &str,
    mut src: Box<dyn Read>,
    hasher: Hasher,
    expect: &Expected,
    dir: &Dir,
    naming: Naming,
) -> Result<Option<String>> {
    let mut tmp = dir.create_temp().map_err(|e| Error::io("create temporary file in", &dir.path, e))?;
    let mut hasher = hasher;
    let n = store::copy_hashing(&mut *src, &mut tmp, &mut hasher).map_err(|e| match e {
        CopyError::Read(e) => Error::io("read", st.objects.describe(key), e),
        CopyError::Write(e) => Error::io("write", tmp.display(), e),
    })?;
    tmp.sync().map_err(|e| Error::io("fsync", tmp.display(), e))?;
    if let Some(size) = expect.size.filter(|s| *s != n) {
        return Err(Error::SizeMismatch { what: st.objects.describe(key), expected: size, actual: n });
    }
    let got = hasher.finish();
    if let Some(want) = expect.hash.filter(|w| *w != got) {
        return Err(Error::ChecksumMismatch { what: expect.what.clone(), expected: to_hex(&want), actual: to_hex(&got) });
    }
    match naming {
        Naming::Replace(name) => {
            tmp.persist_into(dir, name).map_err(|e| Error::io("rename into place", dir.display(name), e))?;
            Ok(Some(name.to_string()))
        }
        Naming::FirstFree(names) => {
            for name in names {
                if tmp.link_new(&name).map_err(|e| Error::io("create", dir.display(&name), e))? {
                    return Ok(Some(name));
                }
                // Someone took the name meanwhile: move on to the next one.
            }
            Ok(None)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::tests::tmpdir;
    use crate::confine::Dir;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn downloads_are_named_only_once_verified() {
        let (location, target) = (tmpdir("store"), tmpdir("target"));
        let text = format!(r#"{{"stores": {{"f": {{"protocol": "file", "location": "{}"}}}}}}"#, location.display());
        let cfg = Config::parse(Path::new("/etc/t.json"), &text).unwrap();
        let st = open(&cfg, "f").unwrap();
        std::fs::write(location.join("obj"), b"contents").unwrap();
        let good = crate::datajoint::hash::digest(b"", b"contents");
        let dir = Dir::open_root(&target).unwrap();
        let expect = |hash, size| Expected { hash, size, what: "the copy".into() };

        let e = download_verified(&st, "obj", Hasher::default(), &expect(Some([0; 16]), None), &dir, Naming::Replace("a")).unwrap_err();
        assert!(matches!(&e, Error::ChecksumMismatch { what, .. } if what == "the copy"), "{e}");
        let e = download_verified(&st, "obj", Hasher::default(), &expect(Some(good), Some(9)), &dir, Naming::Replace("a")).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { expected: 9, actual: 8, .. }), "{e}");
        assert!(names(&target).is_empty(), "nothing named and no temporary file left");

        std::fs::write(target.join("a"), b"old").unwrap();
        let got = download_verified(&st, "obj", Hasher::default(), &expect(Some(good), Some(8)), &dir, Naming::Replace("a")).unwrap();
        assert_eq!(got.as_deref(), Some("a"));
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"contents");

        let mut free = ["a", "b"].iter().map(|s| s.to_string());
        let got = download_verified(&st, "obj", Hasher::default(), &expect(None, None), &dir, Naming::FirstFree(&mut free)).unwrap();
        assert_eq!(got.as_deref(), Some("b"));
        let mut taken = ["a", "b"].iter().map(|s| s.to_string());
        let got = download_verified(&st, "obj", Hasher::default(), &expect(None, None), &dir, Naming::FirstFree(&mut taken)).unwrap();
        assert_eq!(got, None);
        assert_eq!(names(&target), ["a", "b"]);
        assert!(matches!(
            download_verified(&st, "nope", Hasher::default(), &expect(None, None), &dir, Naming::Replace("c")),
            Err(Error::Missing { .. })
        ));
    }
}
