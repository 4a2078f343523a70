//! The `file` protocol: objects are files below the store's location folder.

use super::{check_source, copy_hashing, now_secs, CopyError, Listed, ObjectStore, Source};
use crate::config;
use crate::confine::{self, Dir, TempFile};
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::{Error, Result};
use crate::tree;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub struct FileStore {
    name: String,
    root: PathBuf,
}

impl FileStore {
    pub fn new(store: &config::StoreConfig) -> Self {
        // The config checked the location and keeps it canonical.
        FileStore { name: store.name.clone(), root: PathBuf::from(&store.location) }
    }

    fn locate(&self, key: &str, create: bool) -> Result<(Dir, String)> {
        let c = confine::below(&self.root, key);
        let (dir, name) = c.parent(create)?;
        Ok((dir, name.to_string()))
    }

    fn open_root(&self) -> Result<Dir> {
        Dir::open_root(&self.root).map_err(|e| Error::io("open store location", self.root.display().to_string(), e))
    }

    /// Walks to the folder `relative` (a key's folder, or a scope), creating
    /// what is missing; the folders that gained an entry go to `changed`, to
    /// be fsync'd once the object is in place.
    fn folder(&self, relative: &[&str], changed: &mut Vec<Dir>) -> Result<Dir> {
        let shown = || self.describe(&relative.join("/"));
        self.open_root()?.walk_deferred(relative.iter().copied(), changed).map_err(|e| Error::io("create folder", shown(), e))
    }

    /// Makes the entries of the folders a put created durable: without
    /// this, a crash could take the object's new folder, and the object with it.
    fn sync_created(&self, changed: &[Dir], key: &str) -> Result<()> {
        confine::sync_all(changed).map_err(|e| Error::io("fsync the new folders of", self.describe(key), e))
    }

    /// Writes `src` to a temporary file in `tmp_dir`, hashing it, and fsyncs it.
    fn write_temp<'d>(&self, tmp_dir: &'d Dir, src: &mut dyn Read, hasher: &mut Hasher) -> Result<(TempFile<'d>, u64)> {
        let mut tmp = tmp_dir.create_temp().map_err(|e| Error::io("create temporary file in", &tmp_dir.path, e))?;
        let n = copy_hashing(src, &mut tmp, hasher).map_err(|e| match e {
            CopyError::Read(e) => Error::io("read source for", self.describe_dir(tmp_dir), e),
            CopyError::Write(e) => Error::io("write", tmp.display(), e),
        })?;
        tmp.sync().map_err(|e| Error::io("fsync", tmp.display(), e))?;
        Ok((tmp, n))
    }

    fn describe_dir(&self, d: &Dir) -> String {
        format!("store '{}' folder {}", self.name, d.path)
    }
}

/// A key's folders and its file name.
fn key_parts(key: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = key.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    (parts, name)
}

impl ObjectStore for FileStore {
    fn size(&self, key: &str) -> Result<Option<u64>> {
        let (dir, name) = match self.locate(key, false) {
            Ok(v) => v,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        dir.size_of(&name).map_err(|e| Error::io("stat", self.describe(key), e))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read>> {
        let missing = || Error::Missing { what: self.describe(key) };
        let (dir, name) = match self.locate(key, false) {
            Ok(v) => v,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(e),
        };
        match dir.open_read(&name) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(Error::io("open", self.describe(key), e)),
        }
    }

    /// DataJoint's file protocol keeps no metadata: `meta` is not stored.
    fn put(&self, key: &str, src: &mut dyn Read, mut hasher: Hasher, expect: Option<Hash>, _meta: &[(&str, &str)]) -> Result<(Hash, u64)> {
        let (folders, name) = key_parts(key);
        let mut changed = Vec::new();
        let dir = self.folder(&folders, &mut changed)?;
        let (tmp, n) = self.write_temp(&dir, src, &mut hasher)?;
        let got = hasher.finish();
        check_source(expect, &got, &self.describe(key))?;
        tmp.persist_into(&dir, name).map_err(|e| Error::io("rename into place", self.describe(key), e))?;
        self.sync_created(&changed, key)?;
        Ok((got, n))
    }

    fn put_by_hash(&self, scope: &str, src: &mut dyn Source, mut hasher: Hasher, key_of: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)> {
        // The temporary file lives in the scope (schema) folder, on the same
        // file system as the final folder, so the rename stays atomic.
        let mut changed = Vec::new();
        let scope_dir = self.folder(&scope.split('/').collect::<Vec<_>>(), &mut changed)?;
        let (tmp, n) = self.write_temp(&scope_dir, src, &mut hasher)?;
        let hash = hasher.finish();
        let key = key_of(&hash);
        let (folders, name) = key_parts(&key);
        let dir = self.folder(&folders, &mut changed)?;
        let fresh = dir.size_of(name).map_err(|e| Error::io("stat", self.describe(&key), e))? != Some(n);
        if fresh {
            tmp.persist_into(&dir, name).map_err(|e| Error::io("rename into place", self.describe(&key), e))?;
        }
        self.sync_created(&changed, &key)?;
        Ok((hash, n, fresh))
    }

    /// Depth first in name order (`/` sorts before every character of a
    /// DataJoint name, so this is the order of the keys), skipping every
    /// subtree that sorts wholly before `after`: a page costs the folders
    /// along one path, not the whole tree. Names starting with `.` are
    /// temporary files of writes in progress, never objects.
    fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<Listed>> {
        let top = prefix.trim_end_matches('/');
        let root = Dir::open_root(&self.root).map_err(|e| Error::io("open store location", self.root.display().to_string(), e))?;
        let dir = match root.walk(top.split('/'), false) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("open folder", self.describe(top), e)),
        };
        let (now, mut out) = (now_secs(), Vec::new());
        let mut enter = |child: &str, name: &str| {
            let inside = after.len() > child.len() && after.starts_with(child) && after.as_bytes()[child.len()] == b'/';
            !name.starts_with('.') && (child >= after || inside)
        };
        tree::walk(dir, top, &mut enter, &mut |f| {
            if !f.entry.name.starts_with('.') && f.path > after {
                out.push(Listed { key: f.path.to_string(), size: f.entry.size, age: (now - f.entry.mtime).max(0) as u64 });
            }
            Ok(if out.len() >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })?;
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        let (dir, name) = match self.locate(key, false) {
            Ok(v) => v,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let gone = dir.remove(&name).map_err(|e| Error::io("delete", self.describe(key), e))?;
        dir.sync().map_err(|e| Error::io("fsync folder of", self.describe(key), e))?;
        Ok(gone)
    }

    fn remove_leftovers(&self, min_age: u64) -> Result<u64> {
        super::leftovers::sweep_folder(&self.root, min_age)
    }

    fn describe(&self, key: &str) -> String {
        format!("{}/{key}", self.root.display())
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(self.root.join(key))
    }
}
