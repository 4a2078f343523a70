//! Ranged reads: bytes `[offset, offset + length)` of a blob, attachment or
//! filepath object, so that a client streams an object of any size out one
//! packet at a time, and learns from the call that returns the last bytes
//! whether the whole object matched its tracking row.
//!
//! A connection that reads an object from offset 0 onward in order has its
//! bytes hashed as they are served (the MD5 state waits here between calls,
//! a few hundred bytes per reader); the call that serves the last byte then
//! compares the whole object's hash with the row's and fails instead of
//! answering if they differ. A reader that skips, goes back or switches
//! connections gets the same check at its last call from one more full
//! read of the object.

use super::{open, Opened};
use crate::config::{Config, Protocol};
use crate::confine;
use crate::datajoint::hash::{to_hex, Hash, Hasher};
use crate::datajoint::layout::{Object, TrackingRow};
use crate::error::{Error, Result};
use crate::store::{self, s3::S3Store};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Readers whose hash is kept between calls; the oldest is dropped first
/// (it then gets the full check at its end).
const KEPT: usize = 64;

/// One reader's progress: who reads what, how far, and the hash so far.
struct Chain {
    reader: (u64, String),
    next: u64,
    hasher: Hasher,
}

static CHAINS: Mutex<Vec<Chain>> = Mutex::new(Vec::new());

fn chains<R>(f: impl FnOnce(&mut Vec<Chain>) -> R) -> R {
    f(&mut CHAINS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The hash a row's bytes must have and the seed they are hashed with;
/// `None` for a filepath row without `contents_hash` (size only).
fn identity(obj: &Object, row: &TrackingRow) -> Option<(Hash, Hasher)> {
    match obj {
        Object::Blob { hash, .. } => Some((*hash, Hasher::default())),
        Object::Attach { hash, name, .. } => Some((*hash, Hasher::for_attachment(name))),
        Object::Filepath { .. } => row.contents_hash.map(|h| (h, Hasher::default())),
    }
}

/// Reads up to `length` bytes from `offset` of the row's object into `out`
/// (fewer at its end, none at or past it), checking the stored size against
/// the row and, at the last byte, the whole object's hash.
pub fn read(cfg: &Config, store: &str, row: &TrackingRow, offset: u64, length: u64, out: &mut Vec<u8>) -> Result<()> {
    if length > cfg.max_get_bytes {
        return Err(Error::TooLarge { what: "a ranged read".into(), size: length, limit: cfg.max_get_bytes });
    }
    let obj = row.object()?;
    let st = open(cfg, store)?;
    let key = st.key(&obj);
    let what = st.what(&obj, &key);
    let size = st.objects.size(&key)?.ok_or_else(|| Error::Missing { what: what.clone() })?;
    if size != row.size {
        return Err(Error::SizeMismatch { what, expected: row.size, actual: size });
    }
    if offset > size {
        return Err(Error::arg("offset", format!("{offset} is past the end of the object ({size} bytes)")));
    }
    let n = length.min(size - offset);
    out.clear();
    if n > 0 {
        out.try_reserve_exact(n as usize).map_err(|_| Error::TooLarge { what: "a ranged read".into(), size: n, limit: cfg.max_get_bytes })?;
        let mut src = ranged(&st, &key, offset, n)?;
        src.read_to_end(out).map_err(|e| Error::io("read", &what, e))?;
        if out.len() as u64 != n {
            return Err(Error::SizeMismatch { what, expected: n, actual: out.len() as u64 });
        }
    }
    let Some((want, seed)) = identity(&obj, row) else { return Ok(()) };
    let reader = (crate::ffi::server::connection_id().unwrap_or(0), format!("{store}\0{}\0{key}", to_hex(&row.hash)));
    let finished = offset + n == size && (n > 0 || size == 0);
    let chained = chains(|all| {
        let at = all.iter().position(|c| c.reader == reader);
        let mut chain = match at {
            Some(i) if all[i].next == offset && offset > 0 => all.remove(i),
            Some(i) => {
                all.remove(i);
                if offset > 0 {
                    return None;
                }
                Chain { reader: reader.clone(), next: 0, hasher: seed.clone() }
            }
            None if offset == 0 => Chain { reader: reader.clone(), next: 0, hasher: seed.clone() },
            None => return None,
        };
        chain.hasher.update(out);
        chain.next += n;
        if finished {
            return Some(Some(chain.hasher));
        }
        if all.len() >= KEPT {
            all.remove(0);
        }
        all.push(chain);
        Some(None)
    });
    if !finished {
        return Ok(());
    }
    let got = match chained {
        Some(Some(hasher)) => hasher.finish(),
        // Not read in order on this connection: one full pass decides.
        _ => {
            let mut src = st.objects.open(&key)?;
            let (h, _) = store::hash_all(&mut *src, seed).map_err(|e| Error::io("read", &what, e))?;
            h
        }
    };
    if got != want {
        return Err(Error::ChecksumMismatch { what, expected: to_hex(&want), actual: to_hex(&got) });
    }
    Ok(())
}

/// A stream of bytes `[offset, offset + n)` of object `key` (n > 0).
fn ranged(st: &Opened, key: &str, offset: u64, n: u64) -> Result<Box<dyn Read>> {
    match &st.spec.protocol {
        Protocol::File => {
            let c = confine::below(std::path::Path::new(&st.spec.location), key);
            let (dir, name) = c.parent(false)?;
            let mut f = dir.open_read(name).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::Missing { what: st.objects.describe(key) },
                _ => Error::io("open", st.objects.describe(key), e),
            })?;
            f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", st.objects.describe(key), e))?;
            Ok(Box::new(f.take(n)))
        }
        Protocol::S3(s3) => S3Store::new(st.spec, s3)?.read_range(key, offset, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datajoint::hash::attachment;
    use std::path::Path;

    #[test]
    fn ranges_in_order_are_verified_at_the_last_byte() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let root = std::env::temp_dir().join(format!("dj-ranged-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let text = format!(r#"{{"stores": {{"f": {{"protocol": "file", "location": "{}", "subfolding": null}}}}}}"#, root.display());
        let cfg = Config::parse(Path::new("/etc/t.json"), &text).unwrap();
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let h = attachment("r.bin", &bytes);
        std::fs::create_dir_all(root.join("lab")).unwrap();
        let path = root.join("lab").join(format!("{}.r.bin", to_hex(&h)));
        std::fs::write(&path, &bytes).unwrap();
        let row = TrackingRow { schema: "lab", hash: h, size: 1000, attachment_name: Some("r.bin"), filepath: None, contents_hash: None };
        let mut out = Vec::new();
        let mut got = Vec::new();
        for off in (0..1000).step_by(300) {
            read(&cfg, "f", &row, off, 300, &mut out).unwrap();
            got.extend_from_slice(&out);
        }
        assert_eq!(got, bytes);
        read(&cfg, "f", &row, 1000, 10, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(read(&cfg, "f", &row, 1001, 10, &mut out).is_err());

        // the same size, other bytes: caught at the last byte, in order or not
        let mut bad = bytes.clone();
        bad[500] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        read(&cfg, "f", &row, 0, 600, &mut out).unwrap();
        let e = read(&cfg, "f", &row, 600, 600, &mut out).unwrap_err();
        assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
        let e = read(&cfg, "f", &row, 900, 600, &mut out).unwrap_err();
        assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
        std::fs::write(&path, &bytes[..999]).unwrap();
        assert!(matches!(read(&cfg, "f", &row, 0, 10, &mut out).unwrap_err(), Error::SizeMismatch { .. }));
    }
}
