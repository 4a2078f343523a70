//! A server-wide budget for result bytes. Each call site keeps its last
//! result in memory until the statement moves on to the next row or ends,
//! so without a budget one statement with many call sites, or many
//! statements at once, could hold any amount of the server's memory.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// What all call sites of all connections hold now.
static HELD: AtomicU64 = AtomicU64::new(0);

/// The part of the budget one call site holds; it goes back when the claim
/// shrinks or is dropped (the server's `deinit`).
#[derive(Debug, Default)]
pub struct Claim {
    bytes: Cell<u64>,
}

impl Claim {
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Makes this claim `n` bytes. Growing it takes from the budget of
    /// `limit` bytes shared by the whole server, and is refused (the claim
    /// unchanged) when that would go over it.
    pub fn resize(&self, n: u64, limit: u64) -> Result<()> {
        let have = self.bytes.get();
        if n <= have {
            HELD.fetch_sub(have - n, Ordering::AcqRel);
            self.bytes.set(n);
            return Ok(());
        }
        let more = n - have;
        let mut held = HELD.load(Ordering::Acquire);
        loop {
            if held.saturating_add(more) > limit {
                return Err(Error::OverBudget { wanted: n, held, limit });
            }
            match HELD.compare_exchange_weak(held, held + more, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => held = now,
            }
        }
        self.bytes.set(n);
        Ok(())
    }

    /// Gives the whole claim back.
    pub fn release(&self) {
        let _ = self.resize(0, 0);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.release();
    }
}

/// What all call sites hold now (for tests and messages).
pub fn held() -> u64 {
    HELD.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_share_one_budget_and_give_it_back() {
        // Other tests run in parallel and claim nothing; measure relative to now.
        let base = held();
        let limit = base + 100;
        let (a, b) = (Claim::default(), Claim::default());
        a.resize(60, limit).unwrap();
        let e = b.resize(50, limit).unwrap_err();
        assert!(matches!(e, Error::OverBudget { wanted: 50, .. }), "{e}");
        assert_eq!(b.bytes(), 0, "a refused claim is unchanged");
        b.resize(40, limit).unwrap();
        a.resize(10, limit).unwrap();
        b.resize(90, limit).unwrap();
        drop(b);
        a.release();
        assert_eq!(held(), base);
    }
}
