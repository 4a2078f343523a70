//! Which SQL call the current thread works for: set by the UDF dispatch for
//! the length of one row, handed to the helper threads that call starts, so
//! that what the store layer counts and registers is told apart by
//! function, store and connection without passing them through every layer.
//!
//! The thread-local holds a `Copy` value and is initialised by a constant:
//! it registers no destructor on the server's thread (one would keep the
//! library mapped after an upgrade; see `ffi::threads`).

use super::counters::Op;
use std::cell::Cell;

/// One SQL call, as the counters and the transfer list name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    /// The SQL function.
    pub function: &'static str,
    /// What the function's reads are for (see [`Op`]); `None`: plain reads.
    pub reads_as: Option<Op>,
    /// The counters of the store its arguments name, when they name one.
    pub store: Option<usize>,
    /// `CONNECTION_ID()` of the connection it serves, where the server says.
    pub connection: Option<u64>,
}

thread_local! {
    static CURRENT: Cell<Option<Call>> = const { Cell::new(None) };
}

/// The call this thread works for, if any.
pub fn current() -> Option<Call> {
    CURRENT.with(|c| c.get())
}

/// Restores the thread's previous call when dropped, the unwinding way included.
pub struct Entered(Option<Call>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Makes `call` this thread's call until the returned guard is dropped.
pub fn enter(call: Option<Call>) -> Entered {
    Entered(CURRENT.with(|c| c.replace(call)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_current_until_its_guard_goes() {
        assert_eq!(current(), None);
        let call = Call { function: "dj_verify", reads_as: Some(Op::Verify), store: Some(1), connection: Some(7) };
        {
            let _g = enter(Some(call));
            assert_eq!(current(), Some(call));
            {
                let _inner = enter(None);
                assert_eq!(current(), None);
            }
            assert_eq!(current(), Some(call));
        }
        assert_eq!(current(), None);
    }
}
