//! Threads for the work of one call, started as plain pthreads.
//!
//! `std::thread` (scoped or not) touches thread-locals that have destructors
//! on the thread that *starts* a thread (its handle of the current thread,
//! the spawn hooks). For each such destructor glibc keeps the library that
//! registered it loaded until that thread exits, and a server thread lives
//! on in the thread cache for as long as its connection, or longer. A new
//! library file would then never be loaded by `install.sql`: the server's
//! `dlopen` finds the old one still mapped and hands it back. So a call that
//! wants helpers starts them here: the calling thread touches no
//! thread-local, each helper's own thread-locals are destroyed when it
//! exits, and every helper has exited (joined) before [`scope`] returns, so
//! no thread outlives the call.

#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::io;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

/// Stack of each helper: they hash, copy and send, with no deep recursion.
const STACK: usize = 2 << 20;

/// Helpers started inside one [`scope`]; all are joined when it ends.
pub struct Scope<'scope, 'env: 'scope> {
    started: Mutex<Vec<libc::pthread_t>>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// A helper's result, once it has one.
pub struct Handle<'scope, T> {
    slot: Arc<Slot<T>>,
    _scope: PhantomData<&'scope ()>,
}

struct Slot<T> {
    /// `Some(None)`: the helper panicked.
    value: Mutex<Option<Option<T>>>,
    done: Condvar,
}

/// Runs `f`, which may start helpers borrowing from the caller's frame;
/// returns once every helper has exited, even when `f` panics.
pub fn scope<'env, R>(f: impl for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R) -> R {
    let scope = Scope { started: Mutex::new(Vec::new()), _scope: PhantomData, _env: PhantomData };
    /// Joins on the way out, the unwinding way included.
    struct JoinAll<'a>(&'a Mutex<Vec<libc::pthread_t>>);
    impl Drop for JoinAll<'_> {
        fn drop(&mut self) {
            for t in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                // SAFETY: each id came from a successful pthread_create and
                // is joined exactly once (drained here, never detached).
                unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
            }
        }
    }
    let _join_all = JoinAll(&scope.started);
    f(&scope)
}

impl<'scope> Scope<'scope, '_> {
    /// Starts `f` on a new thread named `name` (cut to the 15 bytes Linux
    /// keeps). An error when no thread can be had (a process limit): the
    /// caller does the work itself.
    pub fn spawn<T, F>(&'scope self, name: &str, f: F) -> io::Result<Handle<'scope, T>>
    where
        T: Send + 'scope,
        F: FnOnce() -> T + Send + 'scope,
    {
        let slot = Arc::new(Slot { value: Mutex::new(None), done: Condvar::new() });
        let theirs = Arc::clone(&slot);
        // A helper works for the caller's SQL call, and is counted as such.
        let call = crate::stats::context::current();
        let run: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || {
            let _call = crate::stats::context::enter(call);
            let r = catch_unwind(AssertUnwindSafe(f)).ok();
            *theirs.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            theirs.done.notify_all();
        });
        // SAFETY: only the lifetime changes. The thread is joined before
        // `scope` returns (JoinAll), so nothing it borrows ends before it.
        let run: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(run) };
        let arg = Box::into_raw(Box::new(run));
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut t: libc::pthread_t = 0;
        // SAFETY: attr is initialised before use and destroyed after;
        // `arg` goes to exactly one owner: the new thread, or back here.
        let rc = unsafe {
            let mut rc = libc::pthread_attr_init(attr.as_mut_ptr());
            if rc == 0 {
                rc = libc::pthread_attr_setstacksize(attr.as_mut_ptr(), STACK);
                if rc == 0 {
                    rc = libc::pthread_create(&mut t, attr.as_ptr(), start, arg.cast());
                }
                libc::pthread_attr_destroy(attr.as_mut_ptr());
            }
            rc
        };
        if rc != 0 {
            // SAFETY: the thread was not created, so `arg` is still ours.
            drop(unsafe { Box::from_raw(arg) });
            return Err(io::Error::from_raw_os_error(rc));
        }
        self.started.lock().unwrap_or_else(|p| p.into_inner()).push(t);
        let short: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
        if let Ok(name) = CString::new(short) {
            // SAFETY: t is a live thread (joined only at the end of the
            // scope); a failure to name it changes nothing.
            unsafe { libc::pthread_setname_np(t, name.as_ptr()) };
        }
        Ok(Handle { slot, _scope: PhantomData })
    }
}

impl<T> Handle<'_, T> {
    /// Waits for the helper's result; `None` if it panicked.
    pub fn join(self) -> Option<T> {
        let mut v = self.slot.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = v.take() {
                return r;
            }
            v = self.slot.done.wait(v).unwrap_or_else(|p| p.into_inner());
        }
    }
}

extern "C" fn start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the box `spawn` leaked for this thread alone.
    let run = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send + 'static>>()) };
    // `run` catches the work's panics; this catches any from storing them.
    let _ = catch_unwind(AssertUnwindSafe(run));
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_borrow_the_callers_data_and_are_joined() {
        let data: Vec<u64> = (1..=1000).collect();
        let (a, b) = scope(|s| {
            let h = s.spawn("sum", || data[..500].iter().sum::<u64>()).unwrap();
            let mine: u64 = data[500..].iter().sum();
            (h.join(), mine)
        });
        assert_eq!(a.unwrap() + b, 500_500);
    }

    #[test]
    fn a_panicking_helper_gives_none_and_the_others_finish() {
        let done = std::sync::atomic::AtomicUsize::new(0);
        let r = scope(|s| {
            let bad = s.spawn("bad", || -> u8 { panic!("helper broke") }).unwrap();
            for _ in 0..4 {
                s.spawn("good", || done.fetch_add(1, std::sync::atomic::Ordering::SeqCst)).unwrap();
            }
            bad.join()
        });
        assert!(r.is_none());
        // Every helper was joined when the scope ended, joined handles or not.
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn a_panic_in_the_caller_still_waits_for_the_helpers() {
        let done = std::sync::atomic::AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            scope(|s| {
                s.spawn("slow", || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    done.store(true, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap();
                panic!("caller broke");
            })
        }));
        assert!(r.is_err());
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}

#[cfg(test)]
mod only_here {
    /// Every helper thread of the library starts in this module: one started
    /// through `std::thread` elsewhere would pin the library (see above).
    #[test]
    fn no_other_module_starts_threads_through_std() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(root)];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("ffi/threads.rs") && !p.ends_with("tests.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    // Unit tests may start threads as they like: they are not the server.
                    let code = text.split("#[cfg(test)]").next().unwrap_or("");
                    for bad in ["thread::scope", "thread::spawn", "thread::Builder", "spawn_scoped"] {
                        if code.contains(bad) {
                            found.push(format!("{}: {bad}", p.display()));
                        }
                    }
                }
            }
        }
        assert!(found.is_empty(), "threads started outside ffi::threads: {found:?}");
    }
}
