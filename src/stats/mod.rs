//! What the stores are doing, kept in the server process since the library
//! was loaded: counters per store ([`counters`], with latency
//! [`histogram`]s), the transfers running now ([`transfers`]), and the SQL
//! call each thread works for ([`context`]), which tells them apart.
//!
//! Everything is fixed in size and made of atomics, so that it can stay on:
//! recording takes no lock shared between calls. Stores get their counters
//! by name from a table of [`STORES`] slots, filled in the order stores are
//! first used; stores beyond it share the last slot, shown as `(other)`.
//!
//! Counting happens in three shared layers only: the UDF dispatch
//! (`crate::udf`) enters each call's context and counts its failure; the
//! store layer ([`crate::store::counted`]) counts objects, bytes and
//! latency and lists transfers; the S3 client counts requests and retries.

pub mod context;
pub mod counters;
pub mod histogram;
pub mod transfers;

use crate::error::Error;
use counters::{Failure, StoreCounters};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Stores with counters of their own; the last slot is shared by the rest.
pub const STORES: usize = 64;
const OTHER: &str = "(other)";

struct Slot {
    name: OnceLock<String>,
    counters: StoreCounters,
}

static TABLE: [Slot; STORES] = [const { Slot { name: OnceLock::new(), counters: StoreCounters::new() } }; STORES];
/// When the counters were last reset (seconds since the epoch), 0 for never.
static RESET_AT: AtomicU64 = AtomicU64::new(0);
/// When the library was loaded, i.e. first counted.
static LOADED_AT: OnceLock<u64> = OnceLock::new();

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The slot of a store's counters, taken on first use. Slots fill in order
/// and a name is never moved, so a scan that reaches a free slot knows the
/// name is nowhere; two calls racing for one slot both end on the winner's
/// name or go on to the next.
pub fn slot_of(store: &str) -> usize {
    LOADED_AT.get_or_init(now);
    for (i, s) in TABLE[..STORES - 1].iter().enumerate() {
        match s.name.get() {
            Some(n) if n == store => return i,
            Some(_) => continue,
            None => {
                let _ = s.name.set(store.to_string());
                if s.name.get().is_some_and(|n| n == store) {
                    return i;
                }
            }
        }
    }
    let _ = TABLE[STORES - 1].name.set(OTHER.to_string());
    STORES - 1
}

/// The counters of a store slot.
pub fn counters(slot: usize) -> &'static StoreCounters {
    &TABLE[slot.min(STORES - 1)].counters
}

/// Counts a call's failure for the store of the call this thread works for.
pub fn failed(e: &Error) {
    noted(Failure::of(e));
}

/// Counts a failure found without an error (an audit's `missing`) for the
/// store of the call this thread works for.
pub fn noted(why: Failure) {
    if let Some(store) = context::current().and_then(|c| c.store) {
        counters(store).failed(why);
    }
}

/// Zeroes every counter. Counts made while it runs may survive in part:
/// each counter is reset on its own.
pub fn reset() {
    for s in &TABLE {
        s.counters.reset();
    }
    RESET_AT.store(now(), Relaxed);
}

/// `{"since", "reset_at", "transfers_unlisted", "stores": [{"store", counters…}]}`:
/// every store of `configured`, then any other store counted since (one
/// removed from the config, or the shared `(other)` slot).
pub fn to_json(configured: &[&str]) -> Value {
    let mut names: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
    for s in &TABLE {
        match s.name.get() {
            Some(n) if !names.contains(n) => names.push(n.clone()),
            Some(_) => {}
            None => break,
        }
    }
    let stores: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut m = Map::new();
            m.insert("store".into(), n.as_str().into());
            let counted = TABLE.iter().find(|s| s.name.get() == Some(n));
            counted.map_or(&StoreCounters::new(), |s| &s.counters).to_json(&mut m);
            Value::Object(m)
        })
        .collect();
    let reset = RESET_AT.load(Relaxed);
    json!({
        "since": LOADED_AT.get_or_init(now),
        "reset_at": (reset != 0).then_some(reset),
        "transfers_unlisted": transfers::unlisted(),
        "stores": stores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_keeps_its_slot_and_is_shown_even_before_use() {
        let a = slot_of("stats-test-a");
        assert_eq!(slot_of("stats-test-a"), a);
        assert_ne!(slot_of("stats-test-b"), a);
        counters(a).done(counters::Op::Put, 10, std::time::Duration::from_millis(1));
        let j = to_json(&["stats-test-never-used"]);
        let stores = j["stores"].as_array().unwrap();
        assert_eq!(stores[0]["store"], "stats-test-never-used");
        assert_eq!(stores[0]["objects_put"], 0);
        let a_json = stores.iter().find(|s| s["store"] == "stats-test-a").unwrap();
        assert!(a_json["bytes_put"].as_u64().unwrap() >= 10);
    }
}
