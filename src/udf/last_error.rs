//! `dj_last_error()`: each connection's last failure, and only its own.
//!
//! A row failure can only be reported by returning NULL (setting the UDF
//! error flag would turn every later row NULL too, with no message), so the
//! message waits here until `dj_last_error()` asks. It is kept per
//! connection id, not per server thread: threads serve one connection after
//! another (and, with a thread pool, several in turn), and a connection must
//! never read another's error. Every call of another dj_* function clears
//! its connection's entry, so an old message never outlives a later call.

use crate::ffi::server;
use std::cell::RefCell;
use std::sync::Mutex;

/// Connections whose last error is kept; the oldest entry goes first. Ids
/// only grow, so a dropped entry belongs to a connection long gone or idle.
const KEPT: usize = 1024;
/// The longest message kept (they are cut further where they are shown).
const LONGEST: usize = 4096;

static BY_CONNECTION: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

thread_local! {
    /// Where the server does not say which connection a call serves (the
    /// library loaded by a test program, or a server without MariaDB's
    /// plugin functions), the thread stands for the connection.
    static BY_THREAD: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn with_entries<R>(f: impl FnOnce(&mut Vec<(u64, String)>) -> R) -> R {
    f(&mut BY_CONNECTION.lock().unwrap_or_else(|p| p.into_inner()))
}

pub fn set_last_error(msg: String) {
    let msg = crate::text::cut(&msg, LONGEST).to_string();
    match server::connection_id() {
        Some(id) => with_entries(|e| {
            e.retain(|(c, _)| *c != id);
            if e.len() >= KEPT {
                e.remove(0);
            }
            e.push((id, msg));
        }),
        None => BY_THREAD.with(|e| *e.borrow_mut() = Some(msg)),
    }
}

pub fn last_error() -> Option<String> {
    match server::connection_id() {
        Some(id) => with_entries(|e| e.iter().find(|(c, _)| *c == id).map(|(_, m)| m.clone())),
        None => BY_THREAD.with(|e| e.borrow().clone()),
    }
}

pub fn clear_last_error() {
    match server::connection_id() {
        Some(id) => with_entries(|e| e.retain(|(c, _)| *c != id)),
        None => BY_THREAD.with(|e| *e.borrow_mut() = None),
    }
}
