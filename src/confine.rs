//! File access that cannot leave a configured root.
//!
//! A UDF runs with the server's OS rights and needs no SQL privilege, so any
//! path that reaches it from SQL is hostile until proven otherwise. Paths are
//! checked lexically (absolute, no `.`/`..`), then walked one component at a
//! time with `openat(O_NOFOLLOW)` from a handle on the root, so neither `..`
//! nor a symlink planted inside a root (even after the check) can lead out.

use crate::error::{Error, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An open directory; every access below it is relative to this handle.
pub struct Dir {
    fd: OwnedFd,
    /// For messages only.
    pub path: String,
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Turns the kernel's answer to O_NOFOLLOW on a link into a readable one.
fn explain(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR => {
            io::Error::new(io::Error::from(e).kind(), "a symbolic link or non-directory is in the way (links are not followed inside store roots)")
        }
        _ => e.into(),
    }
}

impl Dir {
    /// Opens a configured root. Roots come from the DBA's config, so a link in
    /// the root's own path is accepted; only what lies below it is confined.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let c = cstr(&path.to_string_lossy())?;
        let fd = rustix::fs::open(c.as_c_str(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Dir { fd, path: path.display().to_string() })
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}/{}", self.path.trim_end_matches('/'), name)
    }

    /// Descends through `components`, creating missing folders when
    /// `create`; a folder it creates is durable when this returns (its
    /// parent is fsync'd), so a file made durable inside it survives a crash.
    pub fn walk<'a>(&self, components: impl IntoIterator<Item = &'a str>, create: bool) -> io::Result<Dir> {
        if !create {
            return self.descend(components, None);
        }
        let mut changed = Vec::new();
        let dir = self.descend(components, Some(&mut changed))?;
        sync_all(&changed)?;
        Ok(dir)
    }

    /// Descends through `components`, creating missing folders, and adds to
    /// `changed` every folder that gained an entry: the caller fsyncs them
    /// ([`sync_all`]) before it reports success. Syncing them after the file
    /// written below costs less than at once: its own fsync commits the
    /// new entries too, on journaling file systems.
    pub fn walk_deferred<'a>(&self, components: impl IntoIterator<Item = &'a str>, changed: &mut Vec<Dir>) -> io::Result<Dir> {
        self.descend(components, Some(changed))
    }

    fn descend<'a>(&self, components: impl IntoIterator<Item = &'a str>, mut create: Option<&mut Vec<Dir>>) -> io::Result<Dir> {
        let mut cur: Option<Dir> = None;
        for comp in components {
            let parent = cur.as_ref().unwrap_or(self);
            let c = cstr(comp)?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut made = false;
            let opened = match rustix::fs::openat(&parent.fd, c.as_c_str(), flags, Mode::empty()) {
                Err(Errno::NOENT) if create.is_some() => {
                    // Made by a concurrent writer (EXIST) counts too: its
                    // creator's fsync may not have happened yet.
                    match rustix::fs::mkdirat(&parent.fd, c.as_c_str(), Mode::from_raw_mode(0o775)) {
                        Ok(()) | Err(Errno::EXIST) => made = true,
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(&parent.fd, c.as_c_str(), flags, Mode::empty())
                }
                other => other,
            };
            let fd = opened.map_err(explain)?;
            let child = Dir { fd, path: parent.child_path(comp) };
            let left = cur.replace(child);
            if let (true, Some(changed)) = (made, create.as_deref_mut()) {
                changed.push(match left {
                    Some(d) => d,
                    None => self.reopen()?,
                });
            }
        }
        match cur {
            Some(d) => Ok(d),
            None => self.reopen(),
        }
    }

    fn reopen(&self) -> io::Result<Dir> {
        // F_DUPFD_CLOEXEC
        Ok(Dir { fd: self.fd.try_clone()?, path: self.path.clone() })
    }

    /// Opens a regular file for reading; links and special files are refused.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let file = File::from(rustix::fs::openat(&self.fd, c.as_c_str(), flags, Mode::empty()).map_err(explain)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        // O_NONBLOCK only kept a FIFO from blocking the open; reads are plain.
        // (Clearing it cannot matter for the regular file this now is.)
        let _ = rustix::fs::fcntl_setfl(&file, OFlags::empty());
        // Read front to back: a larger readahead (advice only; nothing to report).
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        Ok(file)
    }

    /// The size of a regular file, `None` when there is nothing by that name.
    pub fn size_of(&self, name: &str) -> io::Result<Option<u64>> {
        let c = cstr(name)?;
        let st = match rustix::fs::statat(&self.fd, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "exists but is not a regular file"));
        }
        Ok(Some(st.st_size as u64))
    }

    /// Creates a fresh temporary file here, named so that concurrent writers
    /// of the same object never share one; DataJoint's `.saving` suffix marks it.
    /// It stays locked (`flock`) while its writer lives, so that a sweep of
    /// leftovers ([`Dir::remove_abandoned`]) never takes a write in progress.
    pub fn create_temp(&self) -> io::Result<TempFile<'_>> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".dj-{}-{}-{}.saving", std::process::id(), n, nanos());
            let c = cstr(&name)?;
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&self.fd, c.as_c_str(), flags, Mode::from_raw_mode(0o664)) {
                Ok(fd) => {
                    // Best effort: a file system without locks falls back on the sweep's age rule.
                    let _ = rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive);
                    return Ok(TempFile { dir: self, name, file: File::from(fd), gone: false, written: 0, queued: 0, waited: 0 });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The entries of this folder, sorted by name: `(name, is_dir, size,
    /// mtime)` for regular files and folders only; links and other kinds
    /// are left out, as are `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        // A stream of its own (a fresh open of "."), read from the start.
        let stream = rustix::fs::Dir::read_from(&self.fd)?;
        let mut names = Vec::new();
        for ent in stream {
            let ent = ent?;
            match ent.file_name().to_bytes() {
                b"." | b".." => continue,
                bytes => match std::str::from_utf8(bytes) {
                    Ok(n) => names.push(n.to_string()),
                    Err(_) => continue, // not a name DataJoint could have written
                },
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let c = cstr(&name)?;
            let Ok(st) = rustix::fs::statat(&self.fd, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // removed meanwhile
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Directory || kind == FileType::RegularFile {
                out.push(Entry { name, is_dir: kind == FileType::Directory, size: st.st_size as u64, mtime: st.st_mtime });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the temporary file `name` (see [`is_temp_name`]) when no
    /// writer holds its lock and it was last written at least `min_age`
    /// seconds ago; `false` when it is kept or already gone. Both are checked
    /// again under the lock, on the very file the name still names.
    pub fn remove_abandoned(&self, name: &str, min_age: u64) -> io::Result<bool> {
        let c = cstr(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, c.as_c_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let held = rustix::fs::fstat(&fd)?;
        let age = (nanos() / 1_000_000_000) as i64 - held.st_mtime;
        if FileType::from_raw_mode(held.st_mode) != FileType::RegularFile || age < min_age as i64 {
            return Ok(false);
        }
        match rustix::fs::statat(&self.fd, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(named) if named.st_dev == held.st_dev && named.st_ino == held.st_ino => {}
            Ok(_) | Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.remove(name)
    }

    /// Removes a file; `false` when it was already gone.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let c = cstr(name)?;
        match rustix::fs::unlinkat(&self.fd, c.as_c_str(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    pub fn display(&self, name: &str) -> String {
        self.child_path(name)
    }
}

/// Moving a file in from outside the root: a chunked upload's finished
/// bytes, from the configured upload folder into a store folder.
impl Dir {
    /// Renames `from` (an absolute path the config vouches for) to `name`
    /// here, replacing any file of that name, and makes the entry durable.
    /// Fails with `EXDEV` when `from` is on another file system.
    pub fn adopt(&self, from: &Path, name: &str) -> io::Result<()> {
        let (a, b) = (cstr(&from.to_string_lossy())?, cstr(name)?);
        rustix::fs::renameat(rustix::fs::CWD, a.as_c_str(), &self.fd, b.as_c_str())?;
        self.sync()
    }
}

/// A temporary file being written in a folder ([`Dir::create_temp`]). It is
/// removed when dropped unless it got its final name first, so no error path
/// leaves it behind.
pub struct TempFile<'d> {
    dir: &'d Dir,
    name: String,
    file: File,
    /// Whether the temporary name is gone (renamed, or removed after a link).
    gone: bool,
    /// Bytes written, bytes whose writeback was started, bytes written back.
    written: u64,
    queued: u64,
    waited: u64,
}

/// How much is written before its writeback starts: the final `fsync` then
/// waits for little more than the last window instead of the whole file.
pub const WRITEBACK_WINDOW: u64 = 8 << 20;

/// How many windows may be under writeback at once before the writer waits
/// for the oldest: the server's page cache holds no more of a transfer
/// dirty or in flight, and the disk still has several requests queued
/// (waiting for each window at once halved throughput here).
pub const WRITEBACK_AHEAD: u64 = 4;

impl TempFile<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is, for messages.
    pub fn display(&self) -> String {
        self.dir.display(&self.name)
    }

    /// Makes the contents written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()
    }

    /// Atomically renames it to `name` in `target` (a folder on the same file
    /// system), replacing any file of that name, then makes the new
    /// directory entry durable.
    pub fn persist_into(mut self, target: &Dir, name: &str) -> io::Result<()> {
        let (a, b) = (cstr(&self.name)?, cstr(name)?);
        rustix::fs::renameat(&self.dir.fd, a.as_c_str(), &target.fd, b.as_c_str())?;
        self.gone = true;
        target.sync()
    }

    /// Gives it the name `name` in its folder as well (a hard link), never
    /// replacing a file that is already there: `false` when `name` exists,
    /// and it stays a temporary file. Once linked, the folder is made durable
    /// and the temporary name removed.
    pub fn link_new(&mut self, name: &str) -> io::Result<bool> {
        let (a, b) = (cstr(&self.name)?, cstr(name)?);
        match rustix::fs::linkat(&self.dir.fd, a.as_c_str(), &self.dir.fd, b.as_c_str(), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.dir.sync()?;
        self.discard();
        Ok(true)
    }

    /// Removes the temporary name (best effort: it is a hidden `.saving` file).
    fn discard(&mut self) {
        if !self.gone {
            let _ = self.dir.remove(&self.name);
            self.gone = true;
        }
    }
}

impl TempFile<'_> {
    /// Starts writeback of each full window as soon as it is written, so
    /// that writing to disk overlaps with what the caller does next
    /// (hashing, reading), and waits for the windows more than
    /// [`WRITEBACK_AHEAD`] behind.
    fn write_behind(&mut self) -> io::Result<()> {
        use std::os::fd::AsFd;
        if self.written - self.queued < WRITEBACK_WINDOW {
            return Ok(());
        }
        crate::ffi::os::sync_file_range(self.file.as_fd(), self.queued, self.written - self.queued, false)?;
        self.queued = self.written;
        let keep = (WRITEBACK_AHEAD - 1) * WRITEBACK_WINDOW;
        if self.queued - self.waited > WRITEBACK_AHEAD * WRITEBACK_WINDOW {
            let upto = self.queued - keep;
            crate::ffi::os::sync_file_range(self.file.as_fd(), self.waited, upto - self.waited, true)?;
            self.waited = upto;
        }
        Ok(())
    }
}

impl Write for TempFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.write_behind()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        self.discard();
    }
}

/// One entry of [`Dir::entries`].
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// Whether `name` is a temporary file of this library ([`Dir::create_temp`]):
/// `.dj-<pid>-<n>-<nanos>.saving`. DataJoint's own `<name>.saving` files are
/// not recognized: an attachment or a filepath may end in `.saving` too.
pub fn is_temp_name(name: &str) -> bool {
    let Some(middle) = name.strip_prefix(".dj-").and_then(|n| n.strip_suffix(".saving")) else { return false };
    let parts: Vec<&str> = middle.split('-').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Fsyncs each folder, for the entries [`Dir::walk_deferred`] added.
pub fn sync_all(dirs: &[Dir]) -> io::Result<()> {
    dirs.iter().try_for_each(Dir::sync)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A server path resolved against the roots it may live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    pub root: PathBuf,
    /// The path below the root, as POSIX components (never empty).
    pub components: Vec<String>,
}

impl Confined {
    pub fn relative(&self) -> String {
        self.components.join("/")
    }

    /// Opens the file for reading (a regular file; links and special files
    /// are refused).
    pub fn open_read(&self) -> Result<File> {
        let (dir, name) = self.parent(false)?;
        dir.open_read(name).map_err(|e| Error::io("open", self.display(), e))
    }

    /// Opens the root and walks to the parent folder of the final component.
    pub fn parent(&self, create: bool) -> Result<(Dir, &str)> {
        let root = Dir::open_root(&self.root).map_err(|e| Error::io("open root", self.root.display().to_string(), e))?;
        let (name, dirs) = self.components.split_last().expect("confined paths are never empty");
        let dir = root.walk(dirs.iter().map(String::as_str), create).map_err(|e| Error::io("open folder of", self.display(), e))?;
        Ok((dir, name))
    }

    pub fn display(&self) -> String {
        format!("{}/{}", self.root.display(), self.relative())
    }
}

/// Splits a path into components, refusing anything that could climb.
fn components(path: &str) -> std::result::Result<Vec<String>, &'static str> {
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" => continue,
            "." | ".." => return Err("'.' and '..' components are not allowed"),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// The longest server path accepted (Linux's PATH_MAX, its NUL included).
pub const MAX_PATH: usize = 4095;

/// Resolves an absolute server path against `roots` (canonical folders).
/// It may lie at most [`crate::tree::MAX_DEPTH`] folders below its root.
/// The first root that is a component-wise prefix wins.
pub fn resolve(path: &str, roots: &[&Path]) -> Result<Confined> {
    let shown = crate::datajoint::layout::shown(path);
    if !path.starts_with('/') {
        return Err(Error::confine(shown, "server paths must be absolute"));
    }
    if path.len() > MAX_PATH {
        return Err(Error::confine(shown, format!("it is longer than {MAX_PATH} bytes")));
    }
    let comps = components(path).map_err(|m| Error::confine(shown.clone(), m))?;
    for root in roots {
        let root_comps = components(&root.to_string_lossy()).unwrap_or_default();
        if comps.len() > root_comps.len() && comps[..root_comps.len()] == root_comps[..] {
            if comps.len() - root_comps.len() > crate::tree::MAX_DEPTH {
                return Err(Error::confine(shown, format!("it is more than {} folders below {}", crate::tree::MAX_DEPTH, root.display())));
            }
            return Ok(Confined { root: root.to_path_buf(), components: comps[root_comps.len()..].to_vec() });
        }
    }
    let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(Error::confine(
        shown,
        if allowed.is_empty() { "no folder is configured for this function".to_string() } else { format!("it is not inside {}", allowed.join(", ")) },
    ))
}

/// A relative path (already checked by `layout`) below a root.
pub fn below(root: &Path, relative: &str) -> Confined {
    Confined { root: root.to_path_buf(), components: relative.split('/').map(str::to_string).collect() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// A fresh, canonical scratch folder for one test (unit tests of other
    /// modules that work on folders use it too).
    pub(crate) fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dj-{tag}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn resolve_accepts_paths_inside_roots_only() {
        let a = Path::new("/srv/a");
        let b = Path::new("/srv/bb");
        let r = resolve("/srv/bb/x//y.dat", &[a, b]).unwrap();
        assert_eq!(r.root, b);
        assert_eq!(r.relative(), "x/y.dat");
        for bad in ["/srv/a/../etc/passwd", "/srv/a/./x", "relative/x", "/srv/b/x", "/srv/a", "/srv/a/x\0y", "/etc/passwd"] {
            assert!(resolve(bad, &[a, b]).is_err(), "{bad}");
        }
        assert!(resolve("/srv/ab/x", &[a]).is_err(), "prefix must be component-wise");
    }

    #[test]
    fn symlinks_inside_a_root_are_not_followed() {
        let root = tmpdir("root");
        let outside = tmpdir("outside");
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("filelink")).unwrap();
        let c = resolve(&format!("{}/link/secret", root.display()), &[&root]).unwrap();
        assert!(c.parent(false).is_err());
        let c = resolve(&format!("{}/filelink", root.display()), &[&root]).unwrap();
        let (dir, name) = c.parent(false).unwrap();
        assert!(dir.open_read(name).is_err());
        assert!(dir.size_of(name).is_err());
    }

    #[test]
    fn fifos_do_not_block_and_links_in_the_way_are_explained() {
        let root = tmpdir("special");
        let dir = Dir::open_root(&root).unwrap();
        rustix::fs::mknodat(&dir.fd, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let e = dir.open_read("fifo").unwrap_err();
        assert_eq!(e.to_string(), "not a regular file");
        std::fs::write(root.join("file"), b"x").unwrap();
        let e = dir.walk(["file", "below"], false).err().expect("a file is not a folder");
        assert!(e.to_string().starts_with("a symbolic link or non-directory is in the way"), "{e}");
        std::os::unix::fs::symlink(&root, root.join("up")).unwrap();
        let e = dir.walk(["up"], true).err().expect("links are not followed");
        assert!(e.to_string().starts_with("a symbolic link or non-directory is in the way"), "{e}");
        assert!(dir.open_read("nul\0name").is_err());
    }

    #[test]
    fn entries_are_sorted_plain_and_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let root = tmpdir("entries");
        for name in ["b", "a.txt", ".hidden"] {
            std::fs::write(root.join(name), name).unwrap();
        }
        std::fs::create_dir(root.join("c")).unwrap();
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"x").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let dir = Dir::open_root(&root).unwrap();
        let got: Vec<(String, bool, u64)> =
            dir.entries().unwrap().into_iter().map(|e| (e.name, e.is_dir, if e.is_dir { 0 } else { e.size })).collect();
        let want = [(".hidden", false, 7), ("a.txt", false, 5), ("b", false, 1), ("c", true, 0)];
        assert_eq!(got, want.map(|(n, d, s)| (n.to_string(), d, s)));
        // A second listing reads the folder from its start again.
        assert_eq!(dir.entries().unwrap().len(), 4);
    }

    #[test]
    fn link_new_never_replaces_and_drops_the_temporary_name() {
        let root = tmpdir("link");
        let dir = Dir::open_root(&root).unwrap();
        let mut tmp = dir.create_temp().unwrap();
        let tmp_name = tmp.name().to_string();
        tmp.write_all(b"new").unwrap();
        std::fs::write(root.join("taken"), b"old").unwrap();
        assert!(!tmp.link_new("taken").unwrap());
        assert_eq!(std::fs::read(root.join("taken")).unwrap(), b"old");
        assert_eq!(dir.size_of(&tmp_name).unwrap(), Some(3), "still there after a taken name");
        assert!(tmp.link_new("free").unwrap());
        assert_eq!(std::fs::read(root.join("free")).unwrap(), b"new");
        assert_eq!(dir.size_of(&tmp_name).unwrap(), None, "the temporary name is removed once linked");
        drop(tmp);
        assert_eq!(std::fs::read(root.join("free")).unwrap(), b"new");
    }

    #[test]
    fn only_abandoned_temporaries_are_removed() {
        let root = tmpdir("abandoned");
        let dir = Dir::open_root(&root).unwrap();
        let mut tmp = dir.create_temp().unwrap();
        tmp.write_all(b"in progress").unwrap();
        let name = tmp.name().to_string();
        assert!(is_temp_name(&name), "{name}");
        assert!(!dir.remove_abandoned(&name, 0).unwrap(), "its writer holds it");
        // A writer that died (as after kill -9) holds no lock.
        let orphan = ".dj-1-2-3.saving";
        std::fs::write(root.join(orphan), b"left").unwrap();
        assert!(!dir.remove_abandoned(orphan, 3600).unwrap(), "younger than the grace period");
        assert!(dir.remove_abandoned(orphan, 0).unwrap());
        assert!(!root.join(orphan).exists());
        drop(tmp);
        for other in [".dj-1-2.saving", "x.saving", ".dj-a-2-3.saving", ".dj-1-2-3.saving.x", "abc.txt"] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn temp_files_not_persisted_are_removed() {
        let root = tmpdir("drop");
        let dir = Dir::open_root(&root).unwrap();
        let mut tmp = dir.create_temp().unwrap();
        tmp.write_all(b"partial").unwrap();
        let name = tmp.name().to_string();
        assert!(name.starts_with(".dj-") && name.ends_with(".saving"), "{name}");
        assert_eq!(dir.size_of(&name).unwrap(), Some(7));
        drop(tmp);
        assert_eq!(dir.size_of(&name).unwrap(), None);
        assert!(dir.entries().unwrap().is_empty());
    }

    #[test]
    fn written_behind_files_keep_every_byte() {
        let root = tmpdir("behind");
        let dir = Dir::open_root(&root).unwrap();
        let mut tmp = dir.create_temp().unwrap();
        let block: Vec<u8> = (0..(1u32 << 20) + 3).map(|i| (i % 251) as u8).collect();
        for _ in 0..48 {
            tmp.write_all(&block).unwrap();
        }
        assert!(tmp.waited > 0 && tmp.queued > tmp.waited, "writeback started and waited for in windows");
        tmp.sync().unwrap();
        tmp.persist_into(&dir, "big").unwrap();
        let got = std::fs::read(root.join("big")).unwrap();
        assert_eq!(got.len(), 48 * block.len());
        assert!(got.chunks(block.len()).all(|c| c == block.as_slice()));
    }

    #[test]
    fn temp_write_and_rename() {
        let root = tmpdir("write");
        let dir = Dir::open_root(&root).unwrap();
        let sub = dir.walk(["a", "b"], true).unwrap();
        let mut tmp = dir.create_temp().unwrap();
        tmp.write_all(b"hello").unwrap();
        tmp.sync().unwrap();
        let tmp_name = tmp.name().to_string();
        tmp.persist_into(&sub, "obj").unwrap();
        assert_eq!(sub.size_of("obj").unwrap(), Some(5));
        assert_eq!(dir.size_of(&tmp_name).unwrap(), None);
        let mut s = String::new();
        sub.open_read("obj").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(sub.remove("obj").unwrap());
        assert!(!sub.remove("obj").unwrap());
    }
}
