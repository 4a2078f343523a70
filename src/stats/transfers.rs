//! The transfers running now: a fixed table of slots that every call moving
//! an object's bytes holds while it runs, through a guard that gives the
//! slot back however the call ends (success, error, kill or panic).
//!
//! Taking a slot never waits and never fails the transfer: when all are
//! taken, the transfer runs unlisted and [`unlisted`] counts it. Each slot
//! has its own lock, taken only by its holder and by readers of the list.

use super::context;
use super::counters::Op;
use crate::ffi::server::Progress;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Transfers listed at once.
pub const CAPACITY: usize = 256;
/// The longest object key kept (a key is at most ~1100 bytes).
const KEY_MAX: usize = 1200;
/// `total` when the size is not known in advance.
const UNKNOWN: u64 = u64::MAX;

struct Slot {
    taken: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    /// `None` while the slot is being filled or emptied.
    info: Mutex<Option<Info>>,
}

struct Info {
    function: &'static str,
    op: Op,
    store: String,
    key: String,
    connection: Option<u64>,
    since: f64,
    started: Instant,
}

static SLOTS: [Slot; CAPACITY] =
    [const { Slot { taken: AtomicBool::new(false), done: AtomicU64::new(0), total: AtomicU64::new(UNKNOWN), info: Mutex::new(None) } }; CAPACITY];
/// Where the next search for a free slot starts, so that searches spread out.
static NEXT: AtomicUsize = AtomicUsize::new(0);
static UNLISTED: AtomicU64 = AtomicU64::new(0);

/// Transfers that found every slot taken, since the library was loaded.
pub fn unlisted() -> u64 {
    UNLISTED.load(Relaxed)
}

fn lock(s: &Slot) -> std::sync::MutexGuard<'_, Option<Info>> {
    s.info.lock().unwrap_or_else(|p| p.into_inner())
}

/// A transfer in the list, for as long as it lives.
pub struct Transfer {
    slot: Option<&'static Slot>,
    /// The statement's progress in `SHOW PROCESSLIST`, for a transfer that
    /// runs on the connection's own thread and knows its size.
    progress: Option<Progress>,
}

impl Transfer {
    /// Lists a transfer of `op` on object `key` of `store`, of `total` bytes when known.
    pub fn start(op: Op, store: &str, key: &str, total: Option<u64>) -> Transfer {
        let call = context::current();
        let progress = Progress::start();
        let first = NEXT.fetch_add(1, Relaxed);
        for i in 0..CAPACITY {
            let slot = &SLOTS[(first + i) % CAPACITY];
            if slot.taken.compare_exchange(false, true, Relaxed, Relaxed).is_err() {
                continue;
            }
            slot.done.store(0, Relaxed);
            slot.total.store(total.unwrap_or(UNKNOWN), Relaxed);
            let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            *lock(slot) = Some(Info {
                function: call.map_or("", |c| c.function),
                op,
                store: store.to_string(),
                key: crate::text::cut(key, KEY_MAX).to_string(),
                connection: call.and_then(|c| c.connection),
                since,
                started: Instant::now(),
            });
            return Transfer { slot: Some(slot), progress };
        }
        UNLISTED.fetch_add(1, Relaxed);
        Transfer { slot: None, progress }
    }

    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        if let Some(s) = self.slot {
            let done = s.done.fetch_add(n, Relaxed) + n;
            self.report(done, s.total.load(Relaxed));
        }
    }

    /// The object's size, learnt once the transfer began (a read's answer).
    pub fn total(&self, total: u64) {
        if let Some(s) = self.slot {
            s.total.store(total, Relaxed);
        }
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            if total != UNKNOWN {
                p.report(done.min(total), total);
            }
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            *lock(s) = None;
            s.taken.store(false, Relaxed);
        }
    }
}

/// The listed transfers, as JSON objects.
pub fn list() -> Vec<Value> {
    let mut out = Vec::new();
    for s in &SLOTS {
        if !s.taken.load(Relaxed) {
            continue;
        }
        let info = lock(s);
        let Some(i) = info.as_ref() else { continue };
        // A source read twice (a server file sent to S3 is hashed first)
        // is done once its first pass is.
        let total = s.total.load(Relaxed);
        let done = s.done.load(Relaxed).min(total);
        let seconds = i.started.elapsed().as_secs_f64();
        out.push(json!({
            "connection_id": i.connection,
            "function": i.function,
            "op": i.op.name(),
            "store": i.store,
            "object_key": i.key,
            "bytes_done": done,
            "bytes_total": (total != UNKNOWN).then_some(total),
            "started": i.since,
            "seconds": seconds,
            "bytes_per_second": if seconds > 0.0 { (done as f64 / seconds).round() } else { 0.0 },
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is shared: these tests must not fill it under each other.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn mine(key: &str) -> Vec<Value> {
        list().into_iter().filter(|t| t["object_key"] == key).collect()
    }

    #[test]
    fn a_transfer_is_listed_while_it_lives() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let t = Transfer::start(Op::Put, "s", "listed/key", Some(100));
        t.add(40);
        t.add(2);
        let got = mine("listed/key");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["bytes_done"], 42);
        assert_eq!(got[0]["bytes_total"], 100);
        assert_eq!(got[0]["op"], "put");
        t.add(100);
        assert_eq!(mine("listed/key")[0]["bytes_done"], 100, "never more than the total");
        drop(t);
        assert!(mine("listed/key").is_empty());
        let r = std::panic::catch_unwind(|| {
            let _t = Transfer::start(Op::Read, "s", "panicked/key", None);
            panic!("transfer broke");
        });
        assert!(r.is_err());
        assert!(mine("panicked/key").is_empty(), "a panic gives the slot back");
    }

    #[test]
    fn a_full_table_counts_instead_of_waiting() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let before = unlisted();
        let held: Vec<Transfer> = (0..CAPACITY + 3).map(|_| Transfer::start(Op::Read, "s", "full/key", None)).collect();
        // other tests may hold slots meanwhile: at least the 3 extra are unlisted
        assert!(unlisted() >= before + 3);
        assert!(mine("full/key").len() <= CAPACITY);
        drop(held);
        assert!(mine("full/key").is_empty());
    }
}
