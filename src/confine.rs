//! File access that cannot leave a configured root.
//!
//! A UDF runs with the server's OS rights and needs no SQL privilege, so any
//! path that reaches it from SQL is hostile until proven otherwise. Paths are
//! checked lexically (absolute, no `.`/`..`), then walked one component at a
//! time with `openat(O_NOFOLLOW)` from a handle on the root, so neither `..`
//! nor a symlink planted inside a root (even after the check) can lead out.

use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns the kernel's answer to O_NOFOLLOW on a link into a readable one.
fn explain(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            io::Error::new(e.kind(), "a symbolic link or non-directory is in the way (links are not followed inside store roots)")
        }
        _ => e,
    }
}

impl Dir {
    /// Opens a configured root. Roots come from the DBA's config, so a link in
    /// the root's own path is accepted; only what lies below it is confined.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let c = cstr(&path.to_string_lossy())?;
        let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: path.display().to_string() })
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}/{}", self.path.trim_end_matches('/'), name)
    }

    /// Descends through `components`, creating missing folders when `create`.
    pub fn walk<'a>(&self, components: impl IntoIterator<Item = &'a str>, create: bool) -> io::Result<Dir> {
        let mut cur: Option<Dir> = None;
        for comp in components {
            let parent = cur.as_ref().unwrap_or(self);
            let c = cstr(comp)?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            let mut fd = unsafe { libc::openat(parent.fd.as_raw_fd(), c.as_ptr(), flags) };
            if fd < 0 && create && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                let r = unsafe { libc::mkdirat(parent.fd.as_raw_fd(), c.as_ptr(), 0o775) };
                if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                fd = unsafe { libc::openat(parent.fd.as_raw_fd(), c.as_ptr(), flags) };
            }
            let fd = cvt(fd).map_err(explain)?;
            let next = Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: parent.child_path(comp) };
            cur = Some(next);
        }
        match cur {
            Some(d) => Ok(d),
            None => self.reopen(),
        }
    }

    fn reopen(&self) -> io::Result<Dir> {
        let fd = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: self.path.clone() })
    }

    /// Opens a regular file for reading; links and special files are refused.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let fd = cvt(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) }).map_err(explain)?;
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        // O_NONBLOCK only kept a FIFO from blocking the open; reads are plain.
        unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
        Ok(file)
    }

    /// The size of a regular file, `None` when there is nothing by that name.
    pub fn size_of(&self, name: &str) -> io::Result<Option<u64>> {
        let c = cstr(name)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(e) };
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "exists but is not a regular file"));
        }
        Ok(Some(st.st_size as u64))
    }

    /// Creates a fresh temporary file here, named so that concurrent writers
    /// of the same object never share one; DataJoint's `.saving` suffix marks it.
    pub fn create_temp(&self) -> io::Result<(String, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".dj-{}-{}-{}.saving", std::process::id(), n, nanos());
            let c = cstr(&name)?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, 0o664 as libc::c_uint) };
            if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                continue;
            }
            let fd = cvt(fd)?;
            return Ok((name, unsafe { File::from_raw_fd(fd) }));
        }
    }

    /// Atomically moves `tmp` (in this folder) to `name` in `target`, then
    /// makes the new directory entry durable.
    pub fn rename_into(&self, tmp: &str, target: &Dir, name: &str) -> io::Result<()> {
        let (a, b) = (cstr(tmp)?, cstr(name)?);
        cvt(unsafe { libc::renameat(self.fd.as_raw_fd(), a.as_ptr(), target.fd.as_raw_fd(), b.as_ptr()) })?;
        target.sync()
    }

    /// Gives `tmp` (in this folder) the new name `name`, never replacing a file
    /// that is already there: `false` when `name` exists.
    pub fn link_new(&self, tmp: &str, name: &str) -> io::Result<bool> {
        let (a, b) = (cstr(tmp)?, cstr(name)?);
        let fd = self.fd.as_raw_fd();
        let r = unsafe { libc::linkat(fd, a.as_ptr(), fd, b.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EEXIST) { Ok(false) } else { Err(e) };
        }
        Ok(true)
    }

    /// The entries of this folder, sorted by name: `(name, is_dir, size,
    /// mtime)` for regular files and folders only; links and other kinds
    /// are left out, as are `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let fd = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            unsafe { libc::close(fd) };
            return Err(e);
        }
        // The stream owns `fd` from here on; closedir releases both.
        struct Stream(*mut libc::DIR);
        impl Drop for Stream {
            fn drop(&mut self) {
                unsafe { libc::closedir(self.0) };
            }
        }
        let stream = Stream(dir);
        unsafe { libc::rewinddir(stream.0) };
        let mut names = Vec::new();
        loop {
            let ent = unsafe { libc::readdir(stream.0) };
            if ent.is_null() {
                break;
            }
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
            match name.to_bytes() {
                b"." | b".." => continue,
                bytes => match std::str::from_utf8(bytes) {
                    Ok(n) => names.push(n.to_string()),
                    Err(_) => continue, // not a name DataJoint could have written
                },
            }
        }
        drop(stream);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let c = cstr(&name)?;
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
                continue; // removed meanwhile
            }
            let kind = st.st_mode & libc::S_IFMT;
            if kind == libc::S_IFDIR || kind == libc::S_IFREG {
                out.push(Entry { name, is_dir: kind == libc::S_IFDIR, size: st.st_size as u64, mtime: st.st_mtime });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a file; `false` when it was already gone.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let c = cstr(name)?;
        let r = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(false) } else { Err(e) };
        }
        Ok(true)
    }

    pub fn sync(&self) -> io::Result<()> {
        cvt(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(|_| ())
    }

    pub fn display(&self, name: &str) -> String {
        self.child_path(name)
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

/// Resolves an absolute server path against `roots` (canonical folders).
/// The first root that is a component-wise prefix wins.
pub fn resolve(path: &str, roots: &[&Path]) -> Result<Confined> {
    let shown = crate::layout::shown(path);
    if !path.starts_with('/') {
        return Err(Error::confine(shown, "server paths must be absolute"));
    }
    let comps = components(path).map_err(|m| Error::confine(shown.clone(), m))?;
    for root in roots {
        let root_comps = components(&root.to_string_lossy()).unwrap_or_default();
        if comps.len() > root_comps.len() && comps[..root_comps.len()] == root_comps[..] {
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
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dj-confine-{tag}-{}-{}", std::process::id(), nanos()));
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
    fn temp_write_and_rename() {
        let root = tmpdir("write");
        let dir = Dir::open_root(&root).unwrap();
        let sub = dir.walk(["a", "b"], true).unwrap();
        let (tmp, mut f) = dir.create_temp().unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        dir.rename_into(&tmp, &sub, "obj").unwrap();
        assert_eq!(sub.size_of("obj").unwrap(), Some(5));
        assert_eq!(dir.size_of(&tmp).unwrap(), None);
        let mut s = String::new();
        sub.open_read("obj").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(sub.remove("obj").unwrap());
        assert!(!sub.remove("obj").unwrap());
    }
}
