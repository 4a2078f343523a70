//! Chunked uploads: objects of any size from any SQL client, one packet at
//! a time. `open` names the object (store, schema, attachment name or
//! blob) and the part size; `part` takes numbered parts in any order, each
//! stored durably and acknowledged with its MD5; `finish` checks that every
//! part is there (and, if given, each part's MD5 and the object's hash),
//! moves the object into place and returns its hash. The object's bytes are
//! never whole in server memory: a call holds one part, which the server
//! already holds as the argument.
//!
//! An upload id is a capability: 128 random bits, bound to the account that
//! opened it (the server's own `CURRENT_USER()` where MariaDB tells the
//! library, else the account the routines pass); another account's calls
//! are answered as if the upload did not exist. Uploads not called for
//! `upload_expiry` seconds expire; [`expire`] removes them.
//!
//! Parts are hashed in order as they arrive, the MD5 state kept in the
//! record; bytes that arrive ahead of a gap are hashed once it is filled
//! (file stores) or read back when the upload is finished (S3).

mod backend;
pub mod record;
pub mod running;

use crate::config::Config;
use crate::datajoint::hash::{self, Hash};
use crate::datajoint::layout::{self, Object};
use crate::error::{Error, Result};
use crate::store::now_secs;
use backend::{damaged, Backend, S3_MAX_PART, S3_MIN_PART};
use record::{valid_id, Folder, Part, Phase, Record};
use running::Running;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// S3's limit, applied to every store: a record stays small enough to rewrite after each part.
pub const MAX_PARTS: usize = 10_000;
/// How long a call waits for another call on the same upload to end.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// The configured upload folder, or the error that says chunked uploads are off.
fn folder(cfg: &Config) -> Result<Folder> {
    match &cfg.uploads.dir {
        Some(d) => Ok(Folder { root: d.clone() }),
        None => Err(Error::Denied { msg: format!("chunked uploads are off: {} has no upload_dir", cfg.file.display()) }),
    }
}

/// The account a call acts for. Where the server tells the library its
/// `CURRENT_USER()`, that is the account and the argument must name it
/// (so that a direct call cannot claim another account); elsewhere the
/// argument, which the dj_udf routines fill with `CURRENT_USER()`.
fn account(claimed: &str) -> Result<String> {
    match crate::ffi::server::account() {
        Some(real) if real == claimed => Ok(real),
        Some(real) => {
            Err(Error::Denied { msg: format!("account '{}' is not this connection's account '{real}': pass CURRENT_USER()", layout::shown(claimed)) })
        }
        None if claimed.is_empty() => Err(Error::arg("account", "must not be empty: pass CURRENT_USER()")),
        None => Ok(claimed.to_string()),
    }
}

/// Ids of uploads a call is working on: calls on one upload take turns.
static BUSY: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Held(String);

impl Drop for Held {
    fn drop(&mut self) {
        BUSY.lock().unwrap_or_else(|p| p.into_inner()).retain(|i| *i != self.0);
    }
}

/// Waits (up to [`BUSY_WAIT`], or until the statement is killed) for the
/// upload to be free, then holds it; `wait: false` gives up at once.
fn hold(id: &str, wait: bool) -> Result<Option<Held>> {
    let start = Instant::now();
    loop {
        {
            let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.iter().any(|i| i == id) {
                busy.push(id.to_string());
                return Ok(Some(Held(id.to_string())));
            }
        }
        if !wait {
            return Ok(None);
        }
        if crate::ffi::server::killed() || start.elapsed() > BUSY_WAIT {
            return Err(Error::Denied { msg: format!("upload {id} is busy with another call for over {} s; try again", BUSY_WAIT.as_secs()) });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn not_found(id: &str, account: &str) -> Error {
    // The same answer whether the id never existed or is another account's:
    // ids cannot be probed.
    Error::Missing { what: format!("upload '{}' of account '{}'", layout::shown(id), layout::shown(account)) }
}

fn expired(cfg: &Config, rec: &Record, now: i64) -> bool {
    now - rec.touched > cfg.uploads.expiry_secs as i64
}

/// The caller's own, unexpired upload `id`.
fn load_own(cfg: &Config, folder: &Folder, id: &str, account: &str) -> Result<Record> {
    if !valid_id(id) {
        return Err(not_found(id, account));
    }
    let rec = folder.load(id)?.filter(|r| r.account == account).ok_or_else(|| not_found(id, account))?;
    if expired(cfg, &rec, now_secs()) {
        return Err(Error::Denied {
            msg: format!(
                "upload {id} expired: no call for more than {} s (config key upload_expiry); dj_udf.expire_uploads removes it; upload again",
                cfg.uploads.expiry_secs
            ),
        });
    }
    Ok(rec)
}

fn object(rec: &Record, hash: Hash) -> Object {
    match &rec.name {
        Some(name) => Object::Attach { schema: rec.schema.clone(), hash, name: name.clone() },
        None => Object::Blob { schema: rec.schema.clone(), hash },
    }
}

/// Held while an account's uploads are counted and one is added.
static OPENING: Mutex<()> = Mutex::new(());

/// Opens an upload of an attachment (`name`) or a blob (`None`) whose parts
/// all have `part_size` bytes but the last; returns its id.
pub fn open(cfg: &Config, store: &str, schema: &str, name: Option<&str>, part_size: u64, claimed: &str) -> Result<String> {
    let folder = folder(cfg)?;
    let account = account(claimed)?;
    layout::check_schema_name(schema)?;
    let spec = cfg.store(store)?;
    let backend = Backend::for_store(spec)?;
    if let Some(n) = name {
        match backend {
            Backend::File { .. } => layout::check_file_store_name(n)?,
            Backend::S3(_) => layout::check_attachment_name(n)?,
        }
    }
    let (least, most) = match backend {
        Backend::File { .. } => (1, cfg.uploads.max_bytes.max(1)),
        Backend::S3(_) => (S3_MIN_PART, S3_MAX_PART),
    };
    if part_size < least || part_size > most {
        return Err(Error::arg("part size", format!("{part_size} bytes: store '{}' takes parts of {least} to {most} bytes", spec.name)));
    }
    let _opening = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    let now = now_secs();
    let mut open_now = 0u64;
    for id in folder.ids()? {
        if let Ok(Some(r)) = folder.load(&id) {
            open_now += u64::from(r.account == account && !matches!(r.phase, Phase::Finished { .. }) && !expired(cfg, &r, now));
        }
    }
    if open_now >= cfg.uploads.max_open {
        return Err(Error::Denied {
            msg: format!(
                "account '{account}' has {open_now} unfinished uploads, the most allowed (config key max_open_uploads); finish or abort one (dj_udf.upload_abort)"
            ),
        });
    }
    let id = record::new_id()?;
    folder.create(&id)?;
    let made = (|| {
        let s3_upload = backend.begin(&id)?;
        folder.save(&Record {
            id: id.clone(),
            account: account.clone(),
            store: spec.name.clone(),
            schema: schema.to_string(),
            name: name.map(str::to_string),
            part_size,
            created: now,
            touched: now,
            s3_upload,
            parts: Default::default(),
            hashed: 0,
            hash_state: Running::new(name).to_hex(),
            phase: Phase::Open,
        })
    })();
    if let Err(e) = made {
        let _ = folder.remove(&id);
        return Err(e);
    }
    Ok(id)
}

/// Stores part `n` of an upload; returns the MD5 of its bytes (hex), the
/// receipt a client compares with its own. Sending a part again with the
/// same bytes changes nothing; with other bytes, they replace the part.
pub fn part(cfg: &Config, id: &str, claimed: &str, n: u64, data: &[u8]) -> Result<String> {
    let folder = folder(cfg)?;
    let account = account(claimed)?;
    if n == 0 || n > MAX_PARTS as u64 {
        return Err(Error::arg("part number", format!("{n}: parts are numbered from 1 to {MAX_PARTS}")));
    }
    let n = n as usize;
    let _held = hold(id, true)?;
    let mut rec = load_own(cfg, &folder, id, &account)?;
    if rec.phase != Phase::Open {
        return Err(Error::Denied { msg: format!("upload {id} is finished: it takes no more parts") });
    }
    let len = data.len() as u64;
    if len > rec.part_size {
        return Err(Error::arg("part", format!("part {n} has {len} bytes, more than the upload's part size of {} bytes", rec.part_size)));
    }
    let end = (n as u64 - 1) * rec.part_size + len;
    if end > cfg.uploads.max_bytes {
        return Err(Error::Denied {
            msg: format!(
                "part {n} ends at byte {end}, beyond the largest object allowed, {} bytes (config key max_upload_bytes)",
                cfg.uploads.max_bytes
            ),
        });
    }
    if n == 1 && rec.name.is_none() {
        crate::ops::blob::check_serialized(data)?;
    }
    let (md5, ahead) = hash_twice(&rec, n, data)?;
    let same = rec.parts.get(&n).is_some_and(|p| p.md5 == md5 && p.size == len);
    if !same {
        let spec = cfg.store(&rec.store)?;
        let backend = Backend::for_store(spec)?;
        let etag = backend.put_part(&folder, &rec, n, data, &md5)?;
        if n <= rec.hashed {
            // Other bytes for a part already hashed: start the hash again.
            rec.hashed = 0;
            rec.hash_state = Running::new(rec.name.as_deref()).to_hex();
        }
        rec.parts.insert(n, Part { size: len, md5, etag });
        advance(&backend, &folder, &mut rec, n, data, ahead)?;
    }
    rec.touched = now_secs();
    folder.save(&rec)?;
    Ok(hash::to_hex(&md5))
}

/// The part's own MD5 and, when it is the next part in order, the object's
/// hash advanced by it: two passes over the same bytes, on two cores (a
/// scoped worker, joined before this returns).
fn hash_twice(rec: &Record, n: usize, data: &[u8]) -> Result<(Hash, Option<Running>)> {
    let state = if n == rec.hashed + 1 { Running::from_hex(&rec.hash_state) } else { None };
    crate::ffi::threads::scope(|s| {
        let worker = s.spawn("dj_udf md5", || hash::digest(b"", data));
        let ahead = state.map(|mut r| {
            r.update(data);
            r
        });
        let md5 = match worker {
            Ok(w) => w.join().ok_or_else(|| Error::Denied { msg: "internal error: hashing a part failed".into() })?,
            // No thread to be had: hash here, after the running hash.
            Err(_) => hash::digest(b"", data),
        };
        Ok((md5, ahead))
    })
}

/// Hashes the parts that now follow the hashed ones without a gap: the
/// part just received from memory (or `ahead`, its hash already advanced),
/// others read back where the store can.
fn advance(backend: &Backend, folder: &Folder, rec: &mut Record, n: usize, data: &[u8], mut ahead: Option<Running>) -> Result<()> {
    let mut h = Running::from_hex(&rec.hash_state).ok_or_else(|| damaged(rec, "its hash state is unreadable"))?;
    loop {
        let next = rec.hashed + 1;
        let Some(size) = rec.parts.get(&next).map(|p| p.size) else { break };
        if next == n {
            match ahead.take() {
                Some(done) => h = done,
                None => h.update(data),
            }
        } else if backend.rereadable() {
            backend.hash_part(folder, rec, next, size, &mut h)?;
        } else {
            break;
        }
        rec.hashed = next;
    }
    rec.hash_state = h.to_hex();
    Ok(())
}

/// Reads a list of part MD5s: 32 hex digits each, any separators between.
fn parse_md5s(list: &str) -> Result<Vec<Hash>> {
    list.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|s| !s.is_empty())
        .map(|s| hash::parse(s.as_bytes()).filter(|_| s.len() == 32))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::arg("part MD5 list", "expected 32 hex digits per part, separated by commas or spaces"))
}

/// Parts as a short list for messages ("3, 7, 9 and 12 more").
fn listed(parts: &[usize]) -> String {
    let shown: Vec<String> = parts.iter().take(10).map(|p| p.to_string()).collect();
    match parts.len() {
        0..=10 => shown.join(", "),
        more => format!("{} and {} more", shown.join(", "), more - 10),
    }
}

/// Whether the received parts make an object of `count` parts: every part
/// there, every one but the last of the part size, nothing beyond, and
/// each with the MD5 the client lists. The error names the parts.
fn check_parts(rec: &Record, count: usize, md5s: Option<&[Hash]>) -> Result<u64> {
    let bad = |msg: String| Error::Denied { msg: format!("upload {}: {msg}", rec.id) };
    if count == 0 || count > MAX_PARTS {
        return Err(Error::arg("part count", format!("{count}: an upload has 1 to {MAX_PARTS} parts")));
    }
    let beyond: Vec<usize> = rec.parts.keys().copied().filter(|n| *n > count).collect();
    if !beyond.is_empty() {
        return Err(bad(format!("part {} was received, but the finish says the upload has {count} parts", listed(&beyond))));
    }
    let missing: Vec<usize> = (1..=count).filter(|n| !rec.parts.contains_key(n)).collect();
    if !missing.is_empty() {
        return Err(bad(format!("part {} of {count} was never received; send it, then finish again", listed(&missing))));
    }
    let short: Vec<usize> = (1..count).filter(|n| rec.parts[n].size != rec.part_size).collect();
    if !short.is_empty() {
        return Err(bad(format!(
            "part {} is not {} bytes long, the part size every part but the last must have; send it again",
            listed(&short),
            rec.part_size
        )));
    }
    if count > 1 && rec.parts[&count].size == 0 {
        return Err(bad(format!("the last part, {count}, is empty")));
    }
    if let Some(list) = md5s {
        if list.len() != count {
            return Err(Error::arg("part MD5 list", format!("it has {} MD5s for {count} parts", list.len())));
        }
        let differ: Vec<usize> = (1..=count).filter(|n| rec.parts[n].md5 != list[n - 1]).collect();
        if let Some(first) = differ.first() {
            return Err(bad(format!(
                "part {} differs from your list (part {first}: received {}, listed {}); send it again",
                listed(&differ),
                hash::to_hex(&rec.parts[first].md5),
                hash::to_hex(&list[first - 1])
            )));
        }
    }
    Ok(rec.parts.values().map(|p| p.size).sum())
}

/// The answer of a finish, for the routine that writes the tracking row.
fn finished_json(rec: &Record, hash: &Hash, size: u64) -> String {
    serde_json::json!({
        "hash": hash::to_hex(hash), "size": size, "store": rec.store, "schema": rec.schema, "attachment_name": rec.name,
    })
    .to_string()
}

/// Finishes an upload of `count` parts: checks them (and their MD5s and
/// the object's hash when given), puts the object under its DataJoint key
/// and returns JSON with its hash and size. A finish repeated later (a
/// lost answer, a crash midway) picks up where the first one stopped.
pub fn finish(cfg: &Config, id: &str, claimed: &str, count: u64, md5s: Option<&str>, expect: Option<Hash>) -> Result<String> {
    let folder = folder(cfg)?;
    let account = account(claimed)?;
    let md5s = md5s.map(parse_md5s).transpose()?;
    let _held = hold(id, true)?;
    let mut rec = load_own(cfg, &folder, id, &account)?;
    let spec = cfg.store(&rec.store)?;
    let backend = Backend::for_store(spec)?;
    let (hash, size) = match rec.phase.clone() {
        Phase::Finished { hash, size } => return Ok(finished_json(&rec, &hash, size)),
        Phase::Finishing { hash, size } => (hash, size),
        Phase::Open => {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let total = check_parts(&rec, count, md5s.as_deref())?;
            let h = Running::from_hex(&rec.hash_state).ok_or_else(|| damaged(&rec, "its hash state is unreadable"))?;
            if rec.hashed >= count {
                // Known without sealing: a wrong hash leaves the upload open.
                check_expected(&rec, expect, &h.clone().finish())?;
            }
            let hash = backend.seal(&folder, &rec, count, total, h)?;
            if let Err(e) = check_expected(&rec, expect, &hash) {
                if !backend.rereadable() {
                    // The S3 upload is sealed now: its parts cannot be replaced.
                    let _ = backend.discard(&rec);
                    let _ = folder.remove(id);
                    return Err(Error::Denied { msg: format!("{e}; the upload was removed: upload the object again") });
                }
                return Err(e);
            }
            rec.phase = Phase::Finishing { hash, size: total };
            folder.save(&rec)?;
            (hash, total)
        }
    };
    backend.place(spec, &folder, &rec, &object(&rec, hash), size)?;
    rec.phase = Phase::Finished { hash, size };
    rec.touched = now_secs();
    folder.save(&rec)?;
    // The bytes are in place (or were already): the copy here is spare.
    let _ = std::fs::remove_file(folder.path(id).join(record::DATA));
    Ok(finished_json(&rec, &hash, size))
}

fn check_expected(rec: &Record, expect: Option<Hash>, got: &Hash) -> Result<()> {
    match expect {
        Some(want) if want != *got => Err(Error::ChecksumMismatch {
            what: format!("upload {} ({})", rec.id, if rec.name.is_some() { "attachment hash MD5(name, 0, bytes)" } else { "blob MD5" }),
            expected: hash::to_hex(&want),
            actual: hash::to_hex(got),
        }),
        _ => Ok(()),
    }
}

/// What the server holds of an upload, as JSON: the object it makes, the
/// part size, each received part's size and MD5, and seconds until expiry.
pub fn status(cfg: &Config, id: &str, claimed: &str) -> Result<String> {
    let folder = folder(cfg)?;
    let account = account(claimed)?;
    let _held = hold(id, true)?;
    let rec = load_own(cfg, &folder, id, &account)?;
    Ok(record::status_json(&rec, rec.touched + cfg.uploads.expiry_secs as i64 - now_secs()))
}

/// Ends an unfinished upload and frees what it holds.
pub fn abort(cfg: &Config, id: &str, claimed: &str) -> Result<()> {
    let folder = folder(cfg)?;
    let account = account(claimed)?;
    let _held = hold(id, true)?;
    if !valid_id(id) {
        return Err(not_found(id, &account));
    }
    let rec = folder.load(id)?.filter(|r| r.account == account).ok_or_else(|| not_found(id, &account))?;
    if !matches!(rec.phase, Phase::Finished { .. }) {
        Backend::for_store(cfg.store(&rec.store)?)?.discard(&rec)?;
    }
    folder.remove(id)
}

/// Removes every upload (any account's) not called for `upload_expiry`
/// seconds, with what it holds in its store; returns how many. Uploads in
/// use by a call are skipped. A failure (an unreachable S3 server) leaves
/// that upload for the next run and is reported once all others are done.
pub fn expire(cfg: &Config) -> Result<u64> {
    let folder = folder(cfg)?;
    let now = now_secs();
    let (mut removed, mut failed, mut first_error) = (0u64, 0u64, None);
    for id in folder.ids()? {
        let Some(_held) = hold(&id, false)? else { continue };
        let outcome = match folder.load(&id) {
            Ok(Some(rec)) if !expired(cfg, &rec, now) => continue,
            Ok(Some(rec)) => (|| {
                if matches!(rec.phase, Phase::Finished { .. }) {
                    return folder.remove(&id);
                }
                Backend::for_store(cfg.store(&rec.store)?)?.discard(&rec)?;
                folder.remove(&id)
            })(),
            // An unreadable record or none (a crash while opening): by the folder's age.
            Ok(None) | Err(_) if folder.age(&id, now).is_some_and(|a| a > cfg.uploads.expiry_secs) => folder.remove(&id),
            _ => continue,
        };
        match outcome {
            Ok(()) => removed += 1,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    match first_error {
        None => Ok(removed),
        Some(e) => {
            Err(Error::Denied { msg: format!("removed {removed} expired uploads; {failed} could not be removed (kept for the next run): {e}") })
        }
    }
}

#[cfg(test)]
mod tests;
