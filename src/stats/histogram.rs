//! A latency histogram of fixed size: log-scale buckets of atomics, so that
//! recording is one `fetch_add` and percentiles need no stored samples.
//!
//! Buckets are HDR-style: four per power of two of microseconds (at most
//! 19% between a bucket's bounds), from 1 µs to about 12 days; a longer
//! time lands in the last bucket. A percentile is given as the upper bound
//! of the bucket it falls in, so it is never below the true value.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: usize = 4;
/// Enough for 2^40 µs (12.7 days).
pub const BUCKETS: usize = SUB * 40;

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of a time in microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let top = 63 - us.leading_zeros() as usize; // ≥ 2
    let sub = ((us >> (top - 2)) & 3) as usize;
    (SUB * (top - 1) + sub).min(BUCKETS - 1)
}

/// The smallest time (µs) above every time of bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64 + 1;
    }
    let (top, sub) = (i / SUB + 1, (i % SUB) as u64);
    ((SUB as u64 + sub) << (top - 2)) + (1 << (top - 2))
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKETS] }
    }

    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)].fetch_add(1, Relaxed);
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
    }

    /// The bucket counts as they are now (each read on its own: a record
    /// that runs meanwhile may be seen or not).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.buckets.iter().map(|b| b.load(Relaxed)).collect())
    }
}

/// A histogram's counts, read once, to take several percentiles from.
pub struct Snapshot(Vec<u64>);

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The time (in milliseconds) that a fraction `p` of the samples took
    /// at most; `None` without samples.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper(i) as f64 / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_their_times() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket(us);
            assert!(b == last || b == last + 1, "{us}");
            assert!(us < upper(b), "{us} in bucket {b} with bound {}", upper(b));
            assert!(b == 0 || us >= upper(b - 1), "{us}");
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // four buckets a power of two: the bounds of one are < 25% apart
        assert!(upper(100) as f64 / upper(99) as f64 <= 1.25);
    }

    #[test]
    fn percentiles_come_from_the_counts() {
        let h = Histogram::new();
        assert_eq!(h.snapshot().percentile_ms(0.5), None);
        for _ in 0..90 {
            h.record(Duration::from_micros(1000));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(100));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        let p50 = s.percentile_ms(0.5).unwrap();
        assert!((1.0..1.25).contains(&p50), "{p50}");
        assert!((1.0..1.25).contains(&s.percentile_ms(0.9).unwrap()));
        let p95 = s.percentile_ms(0.95).unwrap();
        assert!((100.0..125.0).contains(&p95), "{p95}");
        h.reset();
        assert_eq!(h.snapshot().count(), 0);
    }
}
