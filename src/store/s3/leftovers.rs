//! Multipart uploads that an interrupted put left unfinished. A server
//! killed mid-upload keeps no record of it, and S3 keeps its parts
//! (invisible and billed) until the upload is aborted, so each upload in
//! progress has a small marker object, `<location>/.dj-uploads/<id>`, that
//! names it, is rewritten while the upload goes on and is deleted when it
//! ends. A sweep aborts the uploads whose markers went stale.

use super::{location_prefix, S3Store};
use crate::datajoint::hash;
use crate::error::{Error, Result, S3Problem};
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The folder of markers below a store's location; not a schema name, so
/// never listed as objects.
const MARKERS: &str = ".dj-uploads";
/// How often a running upload rewrites its marker (checked between parts).
pub const REFRESH: Duration = Duration::from_secs(60);
/// The most of a marker that is read.
const MARKER_LIMIT: u64 = 64 << 10;

/// The markers of uploads this server runs now (endpoint, bucket and key):
/// a sweep never aborts them, whatever their age.
static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn active() -> std::sync::MutexGuard<'static, Vec<String>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The marker of one upload in progress; dropping it forgets the upload as
/// active (see [`S3Store::unmark_upload`] for the marker object itself).
pub(super) struct Marker {
    key: String,
    id: String,
    body: Vec<u8>,
    written: Instant,
}

impl Drop for Marker {
    fn drop(&mut self) {
        active().retain(|k| *k != self.id);
    }
}

impl S3Store {
    fn markers_prefix(&self) -> String {
        match location_prefix(&self.location) {
            loc if loc.is_empty() => format!("{MARKERS}/"),
            loc => format!("{loc}/{MARKERS}/"),
        }
    }

    fn active_id(&self, marker_key: &str) -> String {
        format!("{}/{}/{marker_key}", self.client.endpoint, self.bucket.name())
    }

    /// Writes the marker of a new upload of `key`.
    pub(super) fn mark_upload(&self, key: &str, upload_id: &str) -> Result<Marker> {
        let name = hash::to_hex(&hash::digest(key.as_bytes(), format!("\0{upload_id}").as_bytes()));
        let marker_key = format!("{}{name}", self.markers_prefix());
        let body = serde_json::json!({ "key": key, "upload_id": upload_id }).to_string().into_bytes();
        let id = self.active_id(&marker_key);
        active().push(id.clone());
        let marker = Marker { key: marker_key, id, body, written: Instant::now() };
        self.put_single(&marker.key, super::client::Payload::Bytes(&marker.body), &super::upload::content_md5(&marker.body), &[], false)?;
        Ok(marker)
    }

    /// Rewrites the marker when [`REFRESH`] has passed, so that a long upload
    /// never looks abandoned to a sweep on another server.
    pub(super) fn refresh_mark(&self, marker: &mut Marker) -> Result<()> {
        if marker.written.elapsed() >= REFRESH {
            self.put_single(&marker.key, super::client::Payload::Bytes(&marker.body), &super::upload::content_md5(&marker.body), &[], false)?;
            marker.written = Instant::now();
        }
        Ok(())
    }

    /// Deletes the marker once its upload is completed or aborted (best
    /// effort: a marker left behind only costs a sweep an abort of an
    /// upload that no longer exists).
    pub(super) fn unmark_upload(&self, marker: Marker) {
        let _ = self.delete_key(&marker.key);
    }

    /// Aborts every upload whose marker was last written at least `min_age`
    /// seconds ago and that this server is not running, then deletes the
    /// marker; returns how many.
    pub(super) fn abort_stale_uploads(&self, min_age: u64) -> Result<u64> {
        let prefix = self.markers_prefix();
        let (mut after, mut aborted) = (None::<String>, 0);
        loop {
            crate::interrupt::check(|| format!("the sweep of unfinished uploads in bucket '{}'", self.bucket.name()))?;
            let page = self.list_page(&prefix, after.as_deref(), 1000)?;
            let Some(last) = page.contents.last() else { return Ok(aborted) };
            after = Some(last.key.clone());
            let now = crate::store::now_secs();
            for m in &page.contents {
                let written = m.last_modified.as_deref().and_then(super::parse_time).unwrap_or(now);
                if now - written < min_age as i64 || active().contains(&self.active_id(&m.key)) {
                    continue;
                }
                let Some((key, upload_id)) = self.read_marker(&m.key)? else { continue };
                self.abort_upload(&key, &upload_id)?;
                self.delete_key(&m.key)?;
                aborted += 1;
            }
        }
    }

    /// The upload a marker names; `None` when it is gone meanwhile.
    fn read_marker(&self, marker_key: &str) -> Result<Option<(String, String)>> {
        let Some((body, _)) = self.get(marker_key, false)? else { return Ok(None) };
        let mut text = String::new();
        body.take(MARKER_LIMIT).read_to_string(&mut text).map_err(|e| Error::io("read upload marker", marker_key, e))?;
        let bad = || self.client.err(marker_key, S3Problem::Protocol { op: "GET", detail: "not an upload marker of this library".into() });
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad())?;
        match (v["key"].as_str(), v["upload_id"].as_str()) {
            (Some(k), Some(id)) if !k.is_empty() && !id.is_empty() => Ok(Some((k.to_string(), id.to_string()))),
            _ => Err(bad()),
        }
    }
}
