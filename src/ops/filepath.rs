//! `filepath@store`: files managed by relative path below the store's stage,
//! uploaded to the store once and synced back to the stage on fetch.

use super::{download_verified, open, Expected, Naming};
use crate::config::{Config, StoreConfig};
use crate::confine::{self, Confined};
use crate::datajoint::hash::{self, to_hex, Hash, Hasher};
use crate::datajoint::layout;
use crate::error::{Error, Result};
use crate::store;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// What a tracking row for a staged file will hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub hash: Hash,
    pub relative: String,
    pub size: u64,
    /// `None` above `filepath_checksum_size_limit_insert`, as in DataJoint 0.14.8+.
    pub contents_hash: Option<Hash>,
}

impl Info {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "hash": to_hex(&self.hash),
            "filepath": self.relative,
            "size": self.size,
            "contents_hash": self.contents_hash.as_ref().map(to_hex),
        })
        .to_string()
    }
}

fn stage(st: &StoreConfig) -> Result<&Path> {
    st.stage
        .as_deref()
        .ok_or_else(|| Error::Denied { msg: format!("store '{}' has no 'stage' in the config; filepath attributes need one", st.name) })
}

/// The folder Python's `pathlib.PurePosixPath(path).parent` names: DataJoint
/// quotes it, not the file, when a path is outside the stage.
fn pathlib_parent(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let root = if path.starts_with('/') { "/" } else { "" };
    match parts.split_last() {
        Some((_, dirs)) if !dirs.is_empty() => format!("{root}{}", dirs.join("/")),
        _ if root.is_empty() => ".".into(),
        _ => root.into(),
    }
}

/// Resolves a server path that must lie in the store's stage, with
/// DataJoint 0.14's wording (`upload_filepath`) when it does not.
fn staged(st: &StoreConfig, path: &str) -> Result<Confined> {
    let stage = stage(st)?;
    let c = confine::resolve(path, &[stage]).map_err(|e| match e {
        Error::Confinement { path: shown, msg } if msg.starts_with("it is not inside") => {
            Error::Confinement { msg: format!("The path {} is not in stage {}", layout::shown(&pathlib_parent(path)), stage.display()), path: shown }
        }
        other => other,
    })?;
    layout::check_relative_path(&c.relative())?;
    Ok(c)
}

pub fn info(cfg: &Config, store: &str, path: &str) -> Result<Info> {
    let st = cfg.store(store)?;
    let c = staged(st, path)?;
    let mut f = c.open_read()?;
    let size = f.metadata().map_err(|e| Error::io("stat", c.display(), e))?.len();
    let contents_hash = match cfg.checksum_size_limit_insert {
        Some(limit) if size > limit => None,
        _ => Some(store::hash_all(&mut f, Hasher::default()).map_err(|e| Error::io("read", c.display(), e))?.0),
    };
    let relative = c.relative();
    Ok(Info { hash: hash::filepath(&relative), relative, size, contents_hash })
}

/// Uploads a staged file to `location/<relative path>` and returns
/// MD5(relative path). An object already there is kept if identical and is
/// never replaced by a different version: DataJoint overwrites an untracked
/// one, but a direct call of this function cannot see the tracking table and
/// must not be able to replace a tracked file.
pub fn put(cfg: &Config, store: &str, path: &str, expect: Option<Hash>) -> Result<Hash> {
    let st = open(cfg, store)?;
    let c = staged(st.spec, path)?;
    let rel = c.relative();
    super::objects::refuse_object_key(&st, &rel)?;
    let h = hash::filepath(&rel);
    let same_file = st.objects.local_path(&rel).is_some_and(|p| p == c.root.join(&rel));
    let mut src = c.open_read()?;
    let hash_source =
        |src: &mut std::fs::File| -> Result<Hash> { Ok(store::hash_all(src, Hasher::default()).map_err(|e| Error::io("read", c.display(), e))?.0) };
    if same_file {
        // Stage and location are one folder: the file already is the object.
        if let Some(want) = expect {
            let got = hash_source(&mut src)?;
            if got != want {
                return Err(Error::ChecksumMismatch { what: c.display(), expected: to_hex(&want), actual: to_hex(&got) });
            }
        }
        return Ok(h);
    }
    if st.objects.size(&rel)?.is_some() {
        let want = match expect {
            Some(w) => w,
            None => hash_source(&mut src)?,
        };
        let mut existing = st.objects.open(&rel)?;
        let (have, _) = store::hash_all(&mut *existing, Hasher::default()).map_err(|e| Error::io("read", st.objects.describe(&rel), e))?;
        return if have == want { Ok(h) } else { Err(Error::OccupiedKey { location: st.objects.describe(&rel), relative: rel }) };
    }
    // DataJoint stores a filepath object on S3 with the metadata
    // `contents_hash` = the UUID text of its MD5. For a remote
    // store without a given hash, hash the file first (within that limit):
    // the metadata must be sent before the contents.
    let remote = st.objects.local_path(&rel).is_none();
    let expect = match expect {
        None if remote => {
            let size = src.metadata().map_err(|e| Error::io("stat", c.display(), e))?.len();
            if cfg.checksum_size_limit_insert.is_none_or(|limit| size <= limit) {
                let got = hash_source(&mut src)?;
                src.seek(SeekFrom::Start(0)).map_err(|e| Error::io("rewind", c.display(), e))?;
                Some(got)
            } else {
                None
            }
        }
        given => given,
    };
    // DataJoint writes an empty `contents_hash` when it skipped the hash, and
    // then fails to fetch the file (uuid.UUID("")): leave the key out instead.
    let uuid = expect.as_ref().map(hash::to_uuid);
    let meta: Vec<(&str, &str)> = uuid.iter().map(|u| ("contents_hash", u.as_str())).collect();
    st.objects.put(&rel, &mut src, Hasher::default(), expect, &meta)?;
    Ok(h)
}

/// Makes `stage/<relative>` a checked copy of the stored file and returns its
/// path: an existing local copy is kept when it passes the checks.
pub fn get(cfg: &Config, store: &str, relative: &str, contents_hash: Option<Hash>, size: u64) -> Result<String> {
    layout::check_relative_path(relative)?;
    let st = open(cfg, store)?;
    let stage = stage(st.spec)?;
    let target = confine::below(stage, relative);
    let shown = target.display();
    // DataJoint skips the checksum at or above filepath_checksum_size_limit;
    // a row without contents_hash can only be checked by size.
    let check = contents_hash.filter(|_| cfg.checksum_size_limit.is_none_or(|limit| size < limit));
    // Ok(None) when the file passes, Ok(Some((expected, actual))) when its checksum differs.
    let mismatch = |src: &mut dyn std::io::Read| -> Result<Option<(Hash, Hash)>> {
        let (got, n) = store::hash_all(src, Hasher::default()).map_err(|e| Error::io("read", shown.clone(), e))?;
        if n != size {
            return Err(Error::SizeMismatch { what: shown.clone(), expected: size, actual: n });
        }
        Ok(check.filter(|want| *want != got).map(|want| (want, got)))
    };
    let (dir, name) = target.parent(true)?;
    let local = dir.size_of(name).map_err(|e| Error::io("stat", shown.clone(), e))?;
    let same_file = st.objects.local_path(relative).is_some_and(|p| p == stage.join(relative));
    if local == Some(size) || same_file {
        let mut f = match dir.open_read(name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing { what: st.objects.describe(relative) }),
            Err(e) => return Err(Error::io("open", shown, e)),
        };
        let skip_read = check.is_none() && local == Some(size);
        match if skip_read { Ok(None) } else { mismatch(&mut f) } {
            Ok(None) => return Ok(shown),
            Ok(Some((want, got))) if same_file => {
                return Err(Error::ChecksumMismatch { what: shown.clone(), expected: to_hex(&want), actual: to_hex(&got) })
            }
            Err(e) if same_file => return Err(e),
            _ => {} // a stale local copy: fetch it again below
        }
    }
    let expect = Expected {
        hash: check,
        size: Some(size),
        what: format!("'{shown}' downloaded but did not pass checksum ({})", st.objects.describe(relative)),
    };
    download_verified(&st, relative, Hasher::default(), &expect, &dir, Naming::Replace(name))?;
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::pathlib_parent;

    /// `str(pathlib.PurePosixPath(p).parent)` for each input, as Python 3.11 prints it.
    #[test]
    fn parent_as_pathlib_names_it() {
        for (path, parent) in
            [("/a/b/c.dat", "/a/b"), ("/a/b/", "/a"), ("/a//b/./c", "/a/b"), ("/c.dat", "/"), ("/", "/"), ("c.dat", "."), ("d/c.dat", "d"), ("", ".")]
        {
            assert_eq!(pathlib_parent(path), parent, "{path}");
        }
    }
}
