//! The process-wide cache of temporary credentials, one entry per store and
//! source, refreshed lazily by the threads that use them.
//!
//! No thread may outlive a call, so nothing refreshes in the background:
//! the first use within the refresh margin (the last five minutes, or the
//! last half of a short lifetime) fetches new credentials, while other
//! threads go on signing with the old ones, which are still valid. A
//! request is therefore never signed with credentials about to lapse, and
//! no thread waits for a refresh unless no valid credentials are left.
//!
//! When a refresh fails and the old credentials are still valid they stay in
//! use (a failing metadata service must not stop a working store), and the
//! refresh is tried again after [`RETRY_AFTER`]. Once they have expired,
//! every use tries again, and fails with the source's error; threads that
//! queued behind a failed fetch take its error instead of each waiting out
//! the timeouts once more. Credentials S3 itself calls expired or invalid
//! (its clock runs ahead, the session was revoked) are [`forget`]-ten, and
//! the request is signed again with new ones.

use super::Fetched;
use crate::store::now_secs;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Refresh this long before expiry at most.
const MARGIN_SECS: i64 = 300;
/// Entries kept at once (one per S3 store with a temporary source; old
/// config versions age out).
const MOST_ENTRIES: usize = 32;
/// How soon a failed refresh is tried again while the old credentials last.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

struct Failure {
    at: Instant,
    msg: String,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Fetched>>,
    failure: Option<Failure>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    /// Held by the one thread fetching for this entry.
    fetching: Mutex<()>,
}

struct Entry {
    key: String,
    used: Instant,
    slot: Arc<Slot>,
}

static ENTRIES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn slot(key: &str, create: bool) -> Option<Arc<Slot>> {
    slot_in(&ENTRIES, key, create)
}

fn slot_in(entries: &Mutex<Vec<Entry>>, key: &str, create: bool) -> Option<Arc<Slot>> {
    let mut entries = lock(entries);
    if let Some(e) = entries.iter_mut().find(|e| e.key == key) {
        e.used = Instant::now();
        return Some(e.slot.clone());
    }
    if !create {
        return None;
    }
    if entries.len() >= MOST_ENTRIES {
        if let Some(i) = entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i) {
            entries.remove(i);
        }
    }
    let slot = Arc::new(Slot::default());
    entries.push(Entry { key: key.to_string(), used: Instant::now(), slot: slot.clone() });
    Some(slot)
}

impl Fetched {
    /// When to fetch anew: [`MARGIN_SECS`] before expiry, or half-way
    /// through a shorter lifetime.
    fn refresh_at(&self) -> Option<i64> {
        self.expires.map(|e| e - MARGIN_SECS.min((e - self.fetched).max(0) / 2))
    }

    fn due(&self, now: i64) -> bool {
        self.refresh_at().is_some_and(|r| now >= r)
    }

    fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// Valid credentials for `key`, fetched with `fetch` when there are none
/// or they are due for a refresh (see the module's text).
pub fn get(key: &str, fetch: &dyn Fn() -> Result<Fetched, String>) -> Result<Arc<Fetched>, String> {
    let slot = slot(key, true).expect("created");
    let now = now_secs();
    let old = {
        let state = lock(&slot.state);
        match &state.current {
            Some(c) if !c.due(now) => return Ok(c.clone()),
            Some(c) if !c.expired(now) => {
                if state.failure.as_ref().is_some_and(|f| f.at.elapsed() < RETRY_AFTER) {
                    return Ok(c.clone());
                }
                Some(c.clone())
            }
            _ => None,
        }
    };
    if let Some(old) = old {
        // Due but valid: one thread refreshes, the others sign with the old ones.
        let _fetching = match slot.fetching.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(old),
        };
        return Ok(refresh(&slot, fetch).unwrap_or(old));
    }
    let queued = Instant::now();
    let _fetching = lock(&slot.fetching);
    {
        let state = lock(&slot.state);
        if let Some(c) = state.current.as_ref().filter(|c| !c.expired(now_secs())) {
            return Ok(c.clone());
        }
        if let Some(f) = state.failure.as_ref().filter(|f| f.at > queued) {
            return Err(f.msg.clone());
        }
    }
    refresh(&slot, fetch)
}

/// Fetches (the caller holds `fetching`) and records the outcome.
fn refresh(slot: &Slot, fetch: &dyn Fn() -> Result<Fetched, String>) -> Result<Arc<Fetched>, String> {
    let got = fetch();
    let mut state = lock(&slot.state);
    match got {
        Ok(f) => {
            let f = Arc::new(f);
            state.current = Some(f.clone());
            state.failure = None;
            Ok(f)
        }
        Err(msg) => {
            state.failure = Some(Failure { at: Instant::now(), msg: msg.clone() });
            Err(msg)
        }
    }
}

/// Drops the entry's credentials if they are still `used` (a newer fetch stays).
pub fn forget(key: &str, used: &Arc<rusty_s3::Credentials>) {
    let Some(slot) = slot(key, false) else { return };
    let mut state = lock(&slot.state);
    if state.current.as_ref().is_some_and(|c| Arc::ptr_eq(&c.creds, used)) {
        state.current = None;
    }
}

/// What `dj_stores()` shows of an entry without fetching: the credentials
/// last fetched and the last refresh failure, if any.
pub fn peek(key: &str) -> (Option<Arc<Fetched>>, Option<String>) {
    let Some(slot) = slot(key, false) else { return (None, None) };
    let state = lock(&slot.state);
    (state.current.clone(), state.failure.as_ref().map(|f| f.msg.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusty_s3::Credentials;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fetched(n: usize, lifetime: i64) -> Fetched {
        let now = now_secs();
        Fetched { creds: Arc::new(Credentials::new_with_token(format!("AK{n}"), "s", format!("t{n}"))), expires: Some(now + lifetime), fetched: now }
    }

    #[test]
    fn fresh_credentials_are_reused_and_due_ones_refreshed() {
        let calls = AtomicUsize::new(0);
        let key = "cache-test-reuse";
        let fetch = || Ok(fetched(calls.fetch_add(1, Ordering::SeqCst), 3600));
        for _ in 0..5 {
            assert_eq!(get(key, &fetch).unwrap().creds.key(), "AK0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A lifetime of 2 s is due after 1 s: refreshed, never used expired.
        let key = "cache-test-short";
        let fetch = || Ok(fetched(calls.fetch_add(1, Ordering::SeqCst), 2));
        let first = get(key, &fetch).unwrap().creds.key().to_string();
        std::thread::sleep(Duration::from_millis(1100));
        let second = get(key, &fetch).unwrap().creds.key().to_string();
        assert_ne!(first, second);
    }

    #[test]
    fn a_failed_refresh_keeps_valid_credentials_and_expired_ones_fail() {
        // Clock seconds: a lifetime of 4 s is due from 2 s on and lapses at 4 s.
        let key = "cache-test-failing";
        assert_eq!(get(key, &|| Ok(fetched(7, 4))).unwrap().creds.key(), "AK7");
        std::thread::sleep(Duration::from_millis(2100));
        // due, the source fails: the old ones, still valid, stay in use
        assert_eq!(get(key, &|| Err("refused".into())).unwrap().creds.key(), "AK7");
        assert_eq!(peek(key).1.as_deref(), Some("refused"));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(get(key, &|| Err("refused again".into())).err().unwrap(), "refused again");
        assert_eq!(get(key, &|| Ok(fetched(8, 60))).unwrap().creds.key(), "AK8");
        assert_eq!(peek(key).1, None);
    }

    #[test]
    fn many_threads_share_one_fetch() {
        let calls = AtomicUsize::new(0);
        let key = "cache-test-threads";
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    get(key, &|| {
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(fetched(calls.fetch_add(1, Ordering::SeqCst), 3600))
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        static MINE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
        for i in 0..MOST_ENTRIES + 5 {
            slot_in(&MINE, &format!("k{i}"), true);
        }
        assert_eq!(lock(&MINE).len(), MOST_ENTRIES);
        assert!(slot_in(&MINE, "k0", false).is_none() && slot_in(&MINE, &format!("k{}", MOST_ENTRIES + 4), false).is_some());
    }
}
