//! Where an upload's parts go until it is finished, per protocol: into the
//! upload folder's `data` file at each part's offset (file stores, so that
//! the finished file is renamed into place), or into an S3 multipart upload
//! under a temporary key in the store (S3 stores, so that nothing large
//! touches the server's disk; the finished object is copied to its key
//! inside the bucket).

use super::record::{Folder, Record, DATA};
use super::running::Running;
use crate::config::{Protocol, StoreConfig};
use crate::confine;
use crate::datajoint::hash::{Hash, Hasher};
use crate::datajoint::layout::Object;
use crate::error::{Error, Result};
use crate::store::pump::CHUNK;
use crate::store::s3::S3Store;
use crate::store::{self, ObjectStore};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

pub enum Backend {
    File { root: PathBuf },
    S3(Box<S3Store>),
}

/// S3's least part size (all parts but the last).
pub const S3_MIN_PART: u64 = 5 << 20;
/// S3's largest part size.
pub const S3_MAX_PART: u64 = 5 << 30;

impl Backend {
    pub fn for_store(spec: &StoreConfig) -> Result<Backend> {
        Ok(match &spec.protocol {
            Protocol::File => Backend::File { root: PathBuf::from(&spec.location) },
            Protocol::S3(s3) => Backend::S3(Box::new(S3Store::new(spec, s3)?)),
        })
    }

    /// The key, relative to the store's location, of an S3 upload's bytes
    /// until it is finished: outside every schema folder, never an object.
    pub fn temp_key(id: &str) -> String {
        format!(".dj-chunked/{id}")
    }

    /// Starts the upload's storage: the S3 upload id, if any.
    pub fn begin(&self, id: &str) -> Result<Option<String>> {
        match self {
            Backend::File { .. } => Ok(None),
            Backend::S3(s3) => s3.begin_upload(&Self::temp_key(id)).map(Some),
        }
    }

    /// Stores one part durably: its S3 ETag, if any.
    pub fn put_part(&self, folder: &Folder, rec: &Record, n: usize, data: &[u8], md5: &Hash) -> Result<Option<String>> {
        match self {
            Backend::File { .. } => {
                let f = folder.data_for_write(&rec.id)?;
                let shown = || folder.path(&rec.id).join(DATA).display().to_string();
                f.write_all_at(data, (n as u64 - 1) * rec.part_size).map_err(|e| Error::io("write part into", shown(), e))?;
                f.sync_data().map_err(|e| Error::io("fsync", shown(), e))?;
                Ok(None)
            }
            Backend::S3(s3) => {
                let upload = rec.s3_upload.as_deref().ok_or_else(|| damaged(rec, "no S3 upload id"))?;
                s3.send_part(&Self::temp_key(&rec.id), upload, n, data, md5).map(Some)
            }
        }
    }

    /// Whether the bytes of received parts can be read back before the
    /// upload is finished (to hash them in order once a gap is filled).
    pub fn rereadable(&self) -> bool {
        matches!(self, Backend::File { .. })
    }

    /// Reads part `n` (of `size` bytes) back into `hasher` (file stores).
    pub fn hash_part(&self, folder: &Folder, rec: &Record, n: usize, size: u64, hasher: &mut Running) -> Result<()> {
        let mut f = folder.data_for_read(&rec.id)?.ok_or_else(|| damaged(rec, "its data file is missing"))?;
        let at = (n as u64 - 1) * rec.part_size;
        f.seek(SeekFrom::Start(at)).map_err(|e| Error::io("read", folder.path(&rec.id).join(DATA).display().to_string(), e))?;
        feed(&mut f.take(size), size, hasher, &folder.path(&rec.id).join(DATA).display().to_string())
    }

    /// Makes the parts one object (S3: completes the multipart upload under
    /// the temporary key) and hashes what `hasher` (parts 1..=hashed) lacks.
    pub fn seal(&self, folder: &Folder, rec: &Record, count: usize, total: u64, mut hasher: Running) -> Result<Hash> {
        let from = rec.parts.range(..=rec.hashed).map(|(_, p)| p.size).sum::<u64>();
        match self {
            Backend::File { .. } => {
                if from < total {
                    let what = folder.path(&rec.id).join(DATA).display().to_string();
                    let mut f = folder.data_for_read(&rec.id)?.ok_or_else(|| damaged(rec, "its data file is missing"))?;
                    f.seek(SeekFrom::Start(from)).map_err(|e| Error::io("read", &what, e))?;
                    feed(&mut f.take(total - from), total - from, &mut hasher, &what)?;
                }
            }
            Backend::S3(s3) => {
                let upload = rec.s3_upload.as_deref().ok_or_else(|| damaged(rec, "no S3 upload id"))?;
                let etags: Vec<String> = (1..=count).map(|n| rec.parts[&n].etag.clone().unwrap_or_default()).collect();
                let temp = Self::temp_key(&rec.id);
                s3.finish_upload(&temp, upload, &etags, total)?;
                if from < total {
                    let mut src = s3.read_range(&temp, from, total - from)?;
                    feed(&mut *src, total - from, &mut hasher, &s3.describe(&temp))?;
                }
            }
        }
        Ok(hasher.finish())
    }

    /// Puts the sealed, verified bytes under the object's key (unless an
    /// object of that key and size is there already) and lets go of the
    /// upload's storage. Safe to repeat after a crash at any point.
    pub fn place(&self, spec: &StoreConfig, folder: &Folder, rec: &Record, obj: &Object, size: u64) -> Result<()> {
        let key = obj.key(&spec.subfolding);
        match self {
            Backend::File { root } => {
                let target = confine::below(root, &key);
                let (dir, name) = target.parent(true)?;
                let there = dir.size_of(name).map_err(|e| Error::io("stat", dir.display(name), e))?;
                let Some(data) = folder.data_for_read(&rec.id)? else {
                    // Renamed into place by an earlier finish that then stopped.
                    return match there {
                        Some(n) if n == size => Ok(()),
                        _ => Err(damaged(rec, "its data file is gone and the object is not in place; upload it again")),
                    };
                };
                if there == Some(size) {
                    return Ok(());
                }
                let data_path = folder.path(&rec.id).join(DATA);
                // A last part sent again shorter left bytes of the longer one behind it.
                let shown = || data_path.display().to_string();
                let f = folder.data_for_write(&rec.id)?;
                f.set_len(size).and_then(|_| f.sync_all()).map_err(|e| Error::io("truncate", shown(), e))?;
                // A fresh time stamp: sweep must not take the new object for
                // an old orphan before its tracking row is written.
                touch(&data_path).map_err(|e| Error::io("set the time of", data_path.display().to_string(), e))?;
                match dir.adopt(&data_path, name) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        // Another file system: a verified copy instead.
                        let st = store::open(spec)?;
                        let mut src = data;
                        st.put(&key, &mut src, hasher_for(rec), Some(obj_hash(obj)), &[]).map(|_| ())
                    }
                    Err(e) => Err(Error::io("rename into place", dir.display(name), e)),
                }
            }
            Backend::S3(s3) => {
                let temp = Self::temp_key(&rec.id);
                if s3.size(&key)? != Some(size) {
                    s3.copy(&temp, &key, size)?;
                }
                s3.remove(&temp)
            }
        }
    }

    /// Frees whatever an unfinished upload holds in the store (S3: its
    /// multipart upload and any sealed temporary object).
    pub fn discard(&self, rec: &Record) -> Result<()> {
        match self {
            Backend::File { .. } => Ok(()),
            Backend::S3(s3) => {
                let temp = Self::temp_key(&rec.id);
                if let Some(upload) = &rec.s3_upload {
                    s3.cancel_upload(&temp, upload)?;
                }
                s3.remove(&temp)
            }
        }
    }
}

fn obj_hash(obj: &Object) -> Hash {
    match obj {
        Object::Blob { hash, .. } | Object::Attach { hash, .. } => *hash,
        Object::Filepath { .. } => unreachable!("chunked uploads make blobs and attachments only"),
    }
}

fn hasher_for(rec: &Record) -> Hasher {
    match &rec.name {
        Some(n) => Hasher::for_attachment(n),
        None => Hasher::default(),
    }
}

fn touch(path: &std::path::Path) -> io::Result<()> {
    let now = std::time::SystemTime::now();
    File::options().write(true).open(path)?.set_times(std::fs::FileTimes::new().set_accessed(now).set_modified(now))
}

/// Hashes exactly `len` bytes of `src`, stopping when the statement is killed.
pub fn feed(src: &mut dyn Read, len: u64, hasher: &mut Running, what: &str) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        if crate::ffi::server::killed() {
            return Err(Error::Denied { msg: "the statement was killed".into() });
        }
        let want = left.min(CHUNK as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => return Err(Error::io("read", what, io::Error::new(io::ErrorKind::UnexpectedEof, format!("{left} bytes short")))),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", what, e)),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

pub fn damaged(rec: &Record, why: &str) -> Error {
    Error::Denied { msg: format!("upload {} cannot go on: {why}", rec.id) }
}
