//! An unfinished upload on disk: one folder `<upload_dir>/<id>/` holding its
//! record (`upload.json`, replaced atomically after every change) and, for a
//! file store, the bytes (`data`). The record is the only state between
//! calls, so an upload survives a server restart as it stood after its last
//! completed call.

use crate::datajoint::hash::{self, Hash};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bumped whenever the record's meaning changes: an older record is refused, not misread.
const VERSION: u64 = 1;
const RECORD: &str = "upload.json";
/// The file-store bytes of an upload, written at each part's offset.
pub const DATA: &str = "data";

/// One received part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub size: u64,
    /// MD5 of the part's bytes, as received.
    pub md5: Hash,
    /// The S3 part's ETag (S3 stores only).
    pub etag: Option<String>,
}

/// Where an upload stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Taking parts.
    Open,
    /// Verified as `hash` (`size` bytes) and being moved into place; a
    /// finish after a crash picks up here.
    Finishing { hash: Hash, size: u64 },
    /// In place: a repeated finish answers the same (until it expires).
    Finished { hash: Hash, size: u64 },
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    /// The account that opened it, as `CURRENT_USER()` shows it.
    pub account: String,
    pub store: String,
    pub schema: String,
    /// The attachment name; `None` for a blob.
    pub name: Option<String>,
    pub part_size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    pub touched: i64,
    /// The S3 multipart upload behind it (S3 stores only).
    pub s3_upload: Option<String>,
    pub parts: BTreeMap<usize, Part>,
    /// Parts 1..=hashed are in `hash_state`, in order.
    pub hashed: usize,
    pub hash_state: String,
    pub phase: Phase,
}

impl Record {
    /// Bytes received in parts.
    pub fn received(&self) -> u64 {
        self.parts.values().map(|p| p.size).sum()
    }

    pub fn to_json(&self) -> String {
        let parts: Vec<Value> =
            self.parts.iter().map(|(n, p)| json!({"part": n, "size": p.size, "md5": hash::to_hex(&p.md5), "etag": p.etag})).collect();
        let (phase, result) = match &self.phase {
            Phase::Open => ("open", Value::Null),
            Phase::Finishing { hash, size } => ("finishing", json!({"hash": hash::to_hex(hash), "size": size})),
            Phase::Finished { hash, size } => ("finished", json!({"hash": hash::to_hex(hash), "size": size})),
        };
        json!({
            "version": VERSION, "id": self.id, "account": self.account, "store": self.store, "schema": self.schema,
            "attachment_name": self.name, "part_size": self.part_size, "created": self.created, "touched": self.touched,
            "s3_upload": self.s3_upload, "parts": parts, "hashed": self.hashed, "hash_state": self.hash_state,
            "phase": phase, "result": result,
        })
        .to_string()
    }

    pub fn from_json(text: &str) -> std::result::Result<Record, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let o = v.as_object().ok_or("not a JSON object")?;
        if o.get("version").and_then(Value::as_u64) != Some(VERSION) {
            return Err(format!("written by another version of dj_udf (record version {})", o.get("version").unwrap_or(&Value::Null)));
        }
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string).ok_or(format!("'{k}' missing"));
        let opt = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let u = |k: &str| o.get(k).and_then(Value::as_u64).ok_or(format!("'{k}' missing"));
        let i = |k: &str| o.get(k).and_then(Value::as_i64).ok_or(format!("'{k}' missing"));
        let hex = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|t| hash::parse(t.as_bytes()));
        let mut parts = BTreeMap::new();
        for p in o.get("parts").and_then(Value::as_array).ok_or("'parts' missing")? {
            let n = p.get("part").and_then(Value::as_u64).ok_or("a part without a number")? as usize;
            let size = p.get("size").and_then(Value::as_u64).ok_or("a part without a size")?;
            let md5 = hex(p.get("md5")).ok_or("a part without its MD5")?;
            parts.insert(n, Part { size, md5, etag: p.get("etag").and_then(Value::as_str).map(str::to_string) });
        }
        let result = || -> std::result::Result<(Hash, u64), String> {
            let r = o.get("result").and_then(Value::as_object).ok_or("'result' missing")?;
            Ok((hex(r.get("hash")).ok_or("'result.hash' missing")?, r.get("size").and_then(Value::as_u64).ok_or("'result.size' missing")?))
        };
        let phase = match s("phase")?.as_str() {
            "open" => Phase::Open,
            "finishing" => result().map(|(hash, size)| Phase::Finishing { hash, size })?,
            "finished" => result().map(|(hash, size)| Phase::Finished { hash, size })?,
            other => return Err(format!("unknown phase '{other}'")),
        };
        Ok(Record {
            id: s("id")?,
            account: s("account")?,
            store: s("store")?,
            schema: s("schema")?,
            name: opt("attachment_name"),
            part_size: u("part_size")?,
            created: i("created")?,
            touched: i("touched")?,
            s3_upload: opt("s3_upload"),
            parts,
            hashed: u("hashed")? as usize,
            hash_state: s("hash_state")?,
            phase,
        })
    }
}

/// The configured upload folder: one subfolder per upload, named by its id.
pub struct Folder {
    pub root: PathBuf,
}

/// Whether `id` has the form of an upload id (32 lowercase hex digits), so
/// that it can name a folder and never a path elsewhere.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh, unguessable upload id: 128 bits from the kernel's random source.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read random bytes for an upload id from", "/dev/urandom", e))?;
    Ok(hash::to_hex(&bytes))
}

impl Folder {
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn shown(&self, id: &str, name: &str) -> String {
        self.path(id).join(name).display().to_string()
    }

    /// Creates the folder of a new upload (readable by the server only).
    pub fn create(&self, id: &str) -> Result<()> {
        fs::DirBuilder::new().mode(0o700).create(self.path(id)).map_err(|e| Error::io("create upload folder", self.path(id).display().to_string(), e))
    }

    /// The record of upload `id`; `None` when there is no such upload.
    pub fn load(&self, id: &str) -> Result<Option<Record>> {
        let path = self.path(id).join(RECORD);
        let text = match read_nofollow(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read upload record", path.display().to_string(), e)),
        };
        Record::from_json(&text).map(Some).map_err(|msg| Error::Denied { msg: format!("upload record {}: {msg}", path.display()) })
    }

    /// Replaces the record durably: a crash leaves the old one or the new one.
    pub fn save(&self, rec: &Record) -> Result<()> {
        let dir = self.path(&rec.id);
        let tmp = dir.join(format!(".{RECORD}.saving"));
        let shown = || tmp.display().to_string();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::io("write upload record", shown(), e))?;
        f.write_all(rec.to_json().as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io("write upload record", shown(), e))?;
        fs::rename(&tmp, dir.join(RECORD)).map_err(|e| Error::io("rename upload record", self.shown(&rec.id, RECORD), e))?;
        sync_dir(&dir).map_err(|e| Error::io("fsync upload folder", dir.display().to_string(), e))
    }

    /// The file-store bytes of an upload, opened for writing parts into.
    pub fn data_for_write(&self, id: &str) -> Result<File> {
        let path = self.path(id).join(DATA);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o664)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open upload data", path.display().to_string(), e))
    }

    /// The file-store bytes of an upload, for reading; `None` when gone.
    pub fn data_for_read(&self, id: &str) -> Result<Option<File>> {
        let path = self.path(id).join(DATA);
        match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open upload data", path.display().to_string(), e)),
        }
    }

    /// Removes an upload's folder and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        match fs::remove_dir_all(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove upload folder", self.path(id).display().to_string(), e)),
        }
    }

    /// The ids of the uploads in the folder (folders named like an id).
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io("list upload folder", self.root.display().to_string(), e))?;
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_id(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Seconds since an upload's folder last changed (for records that cannot be read).
    pub fn age(&self, id: &str, now: i64) -> Option<u64> {
        let m = fs::symlink_metadata(self.path(id)).ok()?;
        let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
        Some((now - t).max(0) as u64)
    }
}

fn read_nofollow(path: &Path) -> std::io::Result<String> {
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record's fields as a JSON object, for `dj_upload_status()` (the
/// account's own view: no hash state, no S3 upload id).
pub fn status_json(rec: &Record, expires_in: i64) -> String {
    let mut v: Map<String, Value> = serde_json::from_str::<Value>(&rec.to_json()).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
    for k in ["hash_state", "s3_upload", "version", "hashed"] {
        v.remove(k);
    }
    if let Some(Value::Array(parts)) = v.get_mut("parts") {
        for p in parts.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("etag");
        }
    }
    v.insert("received_bytes".into(), rec.received().into());
    v.insert("expires_in".into(), expires_in.max(0).into());
    Value::Object(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_ids_are_checked() {
        let mut parts = BTreeMap::new();
        parts.insert(2, Part { size: 5, md5: [7; 16], etag: Some("\"e\"".into()) });
        let rec = Record {
            id: "0".repeat(32),
            account: "u@%".into(),
            store: "s".into(),
            schema: "lab".into(),
            name: Some("a b.bin".into()),
            part_size: 5,
            created: 1,
            touched: 2,
            s3_upload: None,
            parts,
            hashed: 0,
            hash_state: "ab".into(),
            phase: Phase::Finishing { hash: [1; 16], size: 10 },
        };
        let back = Record::from_json(&rec.to_json()).unwrap();
        assert_eq!((back.parts, back.phase, back.name, back.account), (rec.parts.clone(), rec.phase.clone(), rec.name.clone(), rec.account.clone()));
        let old = rec.to_json().replace("\"version\":1", "\"version\":0");
        assert!(Record::from_json(&old).unwrap_err().contains("another version"));
        let status = status_json(&rec, 5);
        assert!(!status.contains("hash_state") && !status.contains("etag") && status.contains("\"received_bytes\":5"), "{status}");
        assert!(valid_id(&new_id().unwrap()));
        assert_ne!(new_id().unwrap(), new_id().unwrap());
        for bad in ["", "../etc", &"A".repeat(32), &"0".repeat(31), &format!("{}/", "0".repeat(31))] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
