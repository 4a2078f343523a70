//! The only place that touches the server's raw UDF structures.
//!
//! The server calls `xxx_init`, then `xxx` once per row, then `xxx_deinit`.
//! Each is a generic trampoline here: it turns raw pointers into safe views,
//! runs the safe implementation inside `catch_unwind` (a panic crossing
//! `extern "C"` would abort the whole server), and keeps the row results in
//! a buffer owned by the call's state, freed in `deinit`.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulong, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `UDF_ARGS` as MySQL 8 and MariaDB 10.11+ lay it out on 64-bit Linux
/// (64 bytes; see the `layout` assertions below).
#[repr(C)]
pub struct UdfArgs {
    pub arg_count: c_uint,
    /// `enum Item_result`, read as a C int: MySQL and MariaDB differ in range.
    pub arg_type: *mut c_int,
    pub args: *const *const c_char,
    pub lengths: *const c_ulong,
    pub maybe_null: *const c_char,
    pub attributes: *const *const c_char,
    pub attribute_lengths: *const c_ulong,
    pub extension: *mut c_void,
}

/// `UDF_INIT` (40 bytes).
#[repr(C)]
pub struct UdfInit {
    pub maybe_null: c_char,
    pub decimals: c_uint,
    pub max_length: c_ulong,
    pub ptr: *mut c_char,
    pub const_item: c_char,
    pub extension: *mut c_void,
}

/// The layout both servers publish, from `csrc/udf_layout.h` (see build.rs).
mod layout {
    include!(concat!(env!("OUT_DIR"), "/udf_layout.rs"));
}

const _: () = {
    use layout::*;
    use std::mem::{offset_of, size_of};
    assert!(size_of::<UdfArgs>() == UDF_ARGS_SIZE);
    assert!(offset_of!(UdfArgs, arg_count) == UDF_ARGS_ARG_COUNT);
    assert!(offset_of!(UdfArgs, arg_type) == UDF_ARGS_ARG_TYPE);
    assert!(offset_of!(UdfArgs, args) == UDF_ARGS_ARGS);
    assert!(offset_of!(UdfArgs, lengths) == UDF_ARGS_LENGTHS);
    assert!(offset_of!(UdfArgs, maybe_null) == UDF_ARGS_MAYBE_NULL);
    assert!(offset_of!(UdfArgs, attributes) == UDF_ARGS_ATTRIBUTES);
    assert!(offset_of!(UdfArgs, attribute_lengths) == UDF_ARGS_ATTRIBUTE_LENGTHS);
    assert!(offset_of!(UdfArgs, extension) == UDF_ARGS_EXTENSION);
    assert!(size_of::<UdfInit>() == UDF_INIT_SIZE);
    assert!(offset_of!(UdfInit, maybe_null) == UDF_INIT_MAYBE_NULL);
    assert!(offset_of!(UdfInit, decimals) == UDF_INIT_DECIMALS);
    assert!(offset_of!(UdfInit, max_length) == UDF_INIT_MAX_LENGTH);
    assert!(offset_of!(UdfInit, ptr) == UDF_INIT_PTR);
    assert!(offset_of!(UdfInit, const_item) == UDF_INIT_CONST_ITEM);
    assert!(offset_of!(UdfInit, extension) == UDF_INIT_EXTENSION);
};

/// `Item_result` codes shared by both servers.
pub const STRING_RESULT: c_int = 0;
pub const REAL_RESULT: c_int = 1;
pub const INT_RESULT: c_int = 2;
pub const DECIMAL_RESULT: c_int = 4;

/// A result buffer up to this size is reused from row to row; a larger one
/// is freed as soon as the next row replaces its result.
const KEEP_CAPACITY: usize = 64 << 10;

/// The server's message buffer in `_init` is MYSQL_ERRMSG_SIZE (512).
const MESSAGE_MAX: usize = 511;

/// One argument's value as seen by the safe core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL, or (in `init`) an argument that is not a constant.
    Null,
    Bytes(&'a [u8]),
    Int(i64),
    Real(f64),
}

/// A safe view of `UDF_ARGS` for one call.
pub struct Args<'a> {
    raw: &'a mut UdfArgs,
    /// In `init` only: the types the server filled the constant values
    /// with. A coercion asked for in `init` changes `arg_type` but not the
    /// value already there (a constant INT stays an 8-byte integer while
    /// `lengths` holds its text length), so values are read as filled.
    filled_as: Option<Vec<c_int>>,
}

impl<'a> Args<'a> {
    /// The view `init` gets: values are read as the server filled them, whatever is coerced.
    fn for_init(raw: &'a mut UdfArgs) -> Self {
        let n = raw.arg_count as usize;
        // SAFETY: the server passes arg_count types.
        let filled_as = (0..n).map(|i| unsafe { *raw.arg_type.add(i) }).collect();
        Args { raw, filled_as: Some(filled_as) }
    }

    /// The view a row gets: the server converted every value to the type `init` asked for.
    fn for_row(raw: &'a mut UdfArgs) -> Self {
        Args { raw, filled_as: None }
    }

    pub fn len(&self) -> usize {
        self.raw.arg_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The declared type of argument `i` (an `Item_result` code).
    pub fn kind(&self, i: usize) -> c_int {
        assert!(i < self.len());
        unsafe { *self.raw.arg_type.add(i) }
    }

    /// Asks the server to convert argument `i` before each row call
    /// (only meaningful in `init`).
    pub fn coerce(&mut self, i: usize, kind: c_int) {
        assert!(i < self.len());
        unsafe { *self.raw.arg_type.add(i) = kind };
    }

    /// Argument `i`, read only as far as the server says it holds: 8 bytes
    /// for an integer or a real, `lengths[i]` bytes for a string or a
    /// decimal (sent as text); a type this library does not know reads as NULL.
    pub fn get(&self, i: usize) -> Value<'_> {
        assert!(i < self.len());
        let filled = self.filled_as.as_ref().map_or_else(|| self.kind(i), |t| t[i]);
        unsafe {
            let p = *self.raw.args.add(i);
            if p.is_null() {
                return Value::Null;
            }
            match filled {
                INT_RESULT => Value::Int(std::ptr::read_unaligned(p as *const c_longlong)),
                REAL_RESULT => Value::Real(std::ptr::read_unaligned(p as *const f64)),
                STRING_RESULT | DECIMAL_RESULT => Value::Bytes(std::slice::from_raw_parts(p as *const u8, *self.raw.lengths.add(i) as usize)),
                _ => Value::Null,
            }
        }
    }
}

/// What every function states about itself in `init`.
pub struct Shape {
    pub max_length: u64,
    pub maybe_null: bool,
}

/// A function with a string (binary) result.
pub trait StringFn: Sized + 'static {
    /// Checks arity and constant arguments, coerces types, builds the state.
    fn init(args: &mut Args) -> Result<(Self, Shape), String>;
    /// Writes one row's result into `out`; `Ok(false)` means SQL NULL.
    fn row(&mut self, args: &Args, out: &mut Vec<u8>) -> Result<bool, String>;
}

/// A function with an integer result.
pub trait IntFn: Sized + 'static {
    fn init(args: &mut Args) -> Result<(Self, Shape), String>;
    fn row(&mut self, args: &Args) -> Result<Option<i64>, String>;
}

/// Per-call state behind `initid->ptr`.
struct State<T> {
    f: T,
    out: Vec<u8>,
}

pub use crate::udf::last_error::{last_error, set_last_error};

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("internal error in dj_udf: {}", what.unwrap_or_else(|| "panic".into()))
}

unsafe fn write_message(message: *mut c_char, text: &str) {
    let text = crate::text::cut(text, MESSAGE_MAX);
    let n = text.len();
    std::ptr::copy_nonoverlapping(text.as_ptr(), message as *mut u8, n);
    *message.add(n) = 0;
}

unsafe fn init_common<T: 'static>(
    initid: *mut UdfInit,
    args: *mut UdfArgs,
    message: *mut c_char,
    make: fn(&mut Args) -> Result<(T, Shape), String>,
) -> c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut view = Args::for_init(&mut *args);
        make(&mut view)
    }));
    match result {
        Ok(Ok((f, shape))) => {
            let init = &mut *initid;
            init.max_length = shape.max_length as c_ulong;
            init.maybe_null = shape.maybe_null as c_char;
            init.const_item = 0;
            init.ptr = Box::into_raw(Box::new(State { f, out: Vec::new() })) as *mut c_char;
            0
        }
        Ok(Err(msg)) => {
            write_message(message, &msg);
            1
        }
        Err(p) => {
            write_message(message, &panic_text(&*p));
            1
        }
    }
}

/// # Safety
/// Called by the server with valid `UDF_INIT`/`UDF_ARGS` and a 512-byte message buffer.
pub unsafe fn string_init<T: StringFn>(initid: *mut UdfInit, args: *mut UdfArgs, message: *mut c_char) -> c_char {
    init_common(initid, args, message, T::init)
}

/// # Safety
/// As for [`string_init`].
pub unsafe fn int_init<T: IntFn>(initid: *mut UdfInit, args: *mut UdfArgs, message: *mut c_char) -> c_char {
    init_common(initid, args, message, T::init)
}

/// Frees the state; safe to call when `init` failed or was never completed.
///
/// # Safety
/// `initid` is the pointer the server passed to the matching `init`.
pub unsafe fn deinit<T: 'static>(initid: *mut UdfInit) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if initid.is_null() {
            return;
        }
        let p = (*initid).ptr as *mut State<T>;
        if !p.is_null() {
            drop(Box::from_raw(p));
            (*initid).ptr = std::ptr::null_mut();
        }
    }));
}

/// Runs one row's work with panics caught; a failure or panic is recorded
/// for dj_last_error() and becomes SQL NULL. Row failures never set
/// `*error`: that would make this and every later row of the statement NULL
/// with no message.
fn guarded<R>(work: impl FnOnce() -> Result<Option<R>, String>) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => {
            set_last_error(msg);
            None
        }
        Err(p) => {
            set_last_error(panic_text(&*p));
            None
        }
    }
}

/// # Safety
/// Called by the server after a successful `string_init::<T>`.
pub unsafe fn string_row<T: StringFn>(
    initid: *mut UdfInit,
    args: *mut UdfArgs,
    _result: *mut c_char,
    length: *mut c_ulong,
    is_null: *mut c_char,
    _error: *mut c_char,
) -> *mut c_char {
    let outcome = guarded(|| {
        let state = &mut *((*initid).ptr as *mut State<T>);
        let view = Args::for_row(&mut *args);
        // The previous row's result is replaced: a large buffer is freed
        // rather than kept for the rest of the statement.
        state.out.clear();
        if state.out.capacity() > KEEP_CAPACITY {
            state.out = Vec::new();
        }
        let not_null = state.f.row(&view, &mut state.out)?;
        // The result stays in the state's buffer until the next row or deinit.
        Ok(not_null.then_some((state.out.as_mut_ptr() as *mut c_char, state.out.len())))
    });
    *is_null = outcome.is_none() as c_char;
    match outcome {
        Some((ptr, len)) => {
            *length = len as c_ulong;
            ptr
        }
        None => {
            *length = 0;
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// Called by the server after a successful `int_init::<T>`.
pub unsafe fn int_row<T: IntFn>(initid: *mut UdfInit, args: *mut UdfArgs, is_null: *mut c_char, _error: *mut c_char) -> c_longlong {
    let outcome = guarded(|| {
        let state = &mut *((*initid).ptr as *mut State<T>);
        state.f.row(&Args::for_row(&mut *args))
    });
    *is_null = outcome.is_none() as c_char;
    outcome.unwrap_or(0)
}

/// Exports the C symbols of one SQL function, all named from its one SQL
/// name: `name_init`, `name` (with the row signature of its kind, `string`
/// or `int`) and `name_deinit`. Used by the registry in `crate::udf`.
#[macro_export]
macro_rules! export_udf {
    (@init_deinit $ty:ty, $name:ident, $initfn:ident) => {
        /// # Safety
        /// Called only by the server, with the structures the UDF interface defines.
        #[allow(unsafe_code)]
        #[export_name = concat!(stringify!($name), "_init")]
        pub unsafe extern "C" fn init(i: *mut $crate::ffi::UdfInit, a: *mut $crate::ffi::UdfArgs, m: *mut std::ffi::c_char) -> std::ffi::c_char {
            $crate::ffi::$initfn::<$ty>(i, a, m)
        }
        /// # Safety
        /// Called only by the server, with the structures the UDF interface defines.
        #[allow(unsafe_code)]
        #[export_name = concat!(stringify!($name), "_deinit")]
        pub unsafe extern "C" fn deinit(i: *mut $crate::ffi::UdfInit) {
            $crate::ffi::deinit::<$ty>(i)
        }
    };
    (string, $name:ident, $ty:ty) => {
        $crate::export_udf!(@init_deinit $ty, $name, string_init);
        /// # Safety
        /// Called only by the server, with the structures the UDF interface defines.
        #[allow(unsafe_code)]
        #[export_name = stringify!($name)]
        pub unsafe extern "C" fn row(
            i: *mut $crate::ffi::UdfInit,
            a: *mut $crate::ffi::UdfArgs,
            r: *mut std::ffi::c_char,
            l: *mut std::ffi::c_ulong,
            n: *mut std::ffi::c_char,
            e: *mut std::ffi::c_char,
        ) -> *mut std::ffi::c_char {
            $crate::ffi::string_row::<$ty>(i, a, r, l, n, e)
        }
    };
    (int, $name:ident, $ty:ty) => {
        $crate::export_udf!(@init_deinit $ty, $name, int_init);
        /// # Safety
        /// Called only by the server, with the structures the UDF interface defines.
        #[allow(unsafe_code)]
        #[export_name = stringify!($name)]
        pub unsafe extern "C" fn row(
            i: *mut $crate::ffi::UdfInit,
            a: *mut $crate::ffi::UdfArgs,
            n: *mut std::ffi::c_char,
            e: *mut std::ffi::c_char,
        ) -> std::ffi::c_longlong {
            $crate::ffi::int_row::<$ty>(i, a, n, e)
        }
    };
}

/// What the server offers loadable code beyond the UDF interface, found by
/// name at run time. MariaDB exports these functions for its plugins
/// (`mysql/plugin.h`, `service_kill_statement.h`); where one is missing
/// (another server, or the library loaded by a test program) the answers
/// are `None` and `false`, and callers fall back to what needs none.
pub mod server {
    use std::ffi::{c_char, c_int, c_uint, c_ulong, c_ulonglong, c_void, CStr};
    use std::sync::OnceLock;

    type CurrentThd = unsafe extern "C" fn() -> *mut c_void;
    type KillLevel = unsafe extern "C" fn(*const c_void) -> c_int;
    type ThreadId = unsafe extern "C" fn(*const c_void) -> c_ulong;
    /// `thd_priv_user` / `thd_priv_host`: a pointer and a length.
    type PrivName = unsafe extern "C" fn(*const c_void, *mut usize) -> *const c_char;
    /// `thd_progress_init` / `_report` / `_end` (`service_progress_report.h`).
    type ProgressInit = unsafe extern "C" fn(*mut c_void, c_uint);
    type ProgressReport = unsafe extern "C" fn(*mut c_void, c_ulonglong, c_ulonglong);
    type ProgressEnd = unsafe extern "C" fn(*mut c_void);

    struct Api {
        current_thd: CurrentThd,
        kill_level: Option<KillLevel>,
        thread_id: Option<ThreadId>,
        priv_user: Option<PrivName>,
        priv_host: Option<PrivName>,
        progress: Option<(ProgressInit, ProgressReport, ProgressEnd)>,
    }

    fn symbol(name: &CStr) -> *mut c_void {
        // SAFETY: dlsym with RTLD_DEFAULT only looks a name up.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
    }

    fn api() -> Option<&'static Api> {
        static API: OnceLock<Option<Api>> = OnceLock::new();
        API.get_or_init(|| {
            let current = symbol(c"_current_thd");
            if current.is_null() {
                return None;
            }
            let kill = symbol(c"thd_kill_level");
            let id = symbol(c"thd_get_thread_id");
            let (user, host) = (symbol(c"thd_priv_user"), symbol(c"thd_priv_host"));
            let progress = [symbol(c"thd_progress_init"), symbol(c"thd_progress_report"), symbol(c"thd_progress_end")];
            // SAFETY: the symbols are the server's functions of these C signatures.
            unsafe {
                Some(Api {
                    current_thd: std::mem::transmute::<*mut c_void, CurrentThd>(current),
                    kill_level: (!kill.is_null()).then(|| std::mem::transmute::<*mut c_void, KillLevel>(kill)),
                    thread_id: (!id.is_null()).then(|| std::mem::transmute::<*mut c_void, ThreadId>(id)),
                    priv_user: (!user.is_null()).then(|| std::mem::transmute::<*mut c_void, PrivName>(user)),
                    priv_host: (!host.is_null()).then(|| std::mem::transmute::<*mut c_void, PrivName>(host)),
                    progress: progress.iter().all(|p| !p.is_null()).then(|| {
                        (
                            std::mem::transmute::<*mut c_void, ProgressInit>(progress[0]),
                            std::mem::transmute::<*mut c_void, ProgressReport>(progress[1]),
                            std::mem::transmute::<*mut c_void, ProgressEnd>(progress[2]),
                        )
                    }),
                })
            }
        })
        .as_ref()
    }

    /// The server's session object for the calling thread, if any.
    fn thd(api: &Api) -> Option<*const c_void> {
        // SAFETY: returns the THD of the connection this thread serves, or null.
        let thd = unsafe { (api.current_thd)() };
        (!thd.is_null()).then_some(thd as *const c_void)
    }

    /// The id of the connection this call runs for (`CONNECTION_ID()`).
    pub fn connection_id() -> Option<u64> {
        let api = api()?;
        let f = api.thread_id?;
        let thd = thd(api)?;
        // SAFETY: a valid THD of the current thread. (c_ulong is not u64 everywhere.)
        #[allow(clippy::unnecessary_cast)]
        Some(unsafe { f(thd) } as u64)
    }

    /// The account the privileges of this call are checked against, as
    /// `CURRENT_USER()` shows it (`user@host`; inside a `SQL SECURITY
    /// DEFINER` routine, the definer). MariaDB exports it to plugins; where
    /// the server does not, `None`.
    pub fn account() -> Option<String> {
        let api = api()?;
        let (user, host) = (api.priv_user?, api.priv_host?);
        let thd = thd(api)?;
        let read = |f: PrivName| {
            let mut len = 0usize;
            // SAFETY: a valid THD of the current thread; the server returns a
            // pointer to `len` bytes of its security context (or null), valid
            // while this call runs, and they are copied at once.
            unsafe {
                let p = f(thd, &mut len);
                (!p.is_null()).then(|| String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned())
            }
        };
        Some(format!("{}@{}", read(user)?, read(host)?))
    }

    /// A transfer's share of its statement's progress, the `Progress` column
    /// of MariaDB's `SHOW PROCESSLIST` (and `information_schema.PROCESSLIST`),
    /// as `ALTER TABLE` and `LOAD DATA` report theirs. Only the thread serving
    /// the connection reports (helper threads have no session), and only for
    /// the session it started on. For a `SELECT` or `CALL` the server sends
    /// nothing to the client (only statements that report progress by
    /// themselves do); where the statement already reports progress (a
    /// function in `LOAD DATA`), the server ignores the start, and the end
    /// stops that statement's figure.
    pub struct Progress {
        thd: usize,
    }

    impl Progress {
        pub fn start() -> Option<Progress> {
            let api = api()?;
            let (init, _, _) = api.progress?;
            let thd = thd(api)?;
            // SAFETY: a valid THD of the current thread; one stage.
            unsafe { init(thd as *mut c_void, 1) };
            Some(Progress { thd: thd as usize })
        }

        /// The session to report to, if this thread serves it.
        fn here(&self) -> Option<(&'static Api, *mut c_void)> {
            let api = api()?;
            thd(api).filter(|t| *t as usize == self.thd).map(|t| (api, t as *mut c_void))
        }

        pub fn report(&self, done: u64, total: u64) {
            if let Some((api, thd)) = self.here() {
                if let Some((_, report, _)) = api.progress {
                    // SAFETY: the THD of this thread, which started the report.
                    unsafe { report(thd, done, total) };
                }
            }
        }
    }

    impl Drop for Progress {
        fn drop(&mut self) {
            if let Some((api, thd)) = self.here() {
                if let Some((_, _, end)) = api.progress {
                    // SAFETY: as in `report`.
                    unsafe { end(thd) };
                }
            }
        }
    }

    /// Whether the statement this call runs for was killed (`KILL QUERY` or
    /// `KILL`): long transfers check between chunks and stop.
    pub fn killed() -> bool {
        let Some(api) = api() else { return false };
        let (Some(f), Some(thd)) = (api.kill_level, thd(api)) else { return false };
        // SAFETY: a valid THD of the current thread.
        unsafe { f(thd) != 0 }
    }
}

pub mod threads;

/// System calls that `rustix` does not wrap, behind safe functions.
pub mod os {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};

    /// Starts writeback of `len` bytes of a file from `offset`, and, for
    /// `wait`, first waits for the writeback already under way there. Not a
    /// durability point (neither metadata nor the disk's cache): it only
    /// leaves less for the final `fsync`. An error is the file's write error
    /// (the kernel reports it here instead of at that `fsync`).
    pub fn sync_file_range(fd: BorrowedFd, offset: u64, len: u64, wait: bool) -> io::Result<()> {
        let flags = libc::SYNC_FILE_RANGE_WRITE | if wait { libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WAIT_AFTER } else { 0 };
        let (offset, len) = (i64::try_from(offset).map_err(io::Error::other)?, i64::try_from(len).map_err(io::Error::other)?);
        // SAFETY: a plain system call on a descriptor the borrow keeps open.
        match unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, flags) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds raw UDF_ARGS over owned data, as the server would.
    struct Fake {
        types: Vec<c_int>,
        ptrs: Vec<*const c_char>,
        lens: Vec<c_ulong>,
        raw: UdfArgs,
    }

    impl Fake {
        fn new(vals: &[Option<&[u8]>]) -> Box<Fake> {
            let mut f = Box::new(Fake {
                types: vals.iter().map(|_| STRING_RESULT).collect(),
                ptrs: vals.iter().map(|v| v.map_or(std::ptr::null(), |b| b.as_ptr() as *const c_char)).collect(),
                lens: vals.iter().map(|v| v.map_or(0, |b| b.len() as c_ulong)).collect(),
                raw: UdfArgs {
                    arg_count: vals.len() as c_uint,
                    arg_type: std::ptr::null_mut(),
                    args: std::ptr::null(),
                    lengths: std::ptr::null(),
                    maybe_null: std::ptr::null(),
                    attributes: std::ptr::null(),
                    attribute_lengths: std::ptr::null(),
                    extension: std::ptr::null_mut(),
                },
            });
            f.raw.arg_type = f.types.as_mut_ptr();
            f.raw.args = f.ptrs.as_ptr();
            f.raw.lengths = f.lens.as_ptr();
            f
        }
    }

    struct Echo;
    impl StringFn for Echo {
        fn init(args: &mut Args) -> Result<(Self, Shape), String> {
            if args.len() != 1 {
                return Err("x".repeat(2000));
            }
            Ok((Echo, Shape { max_length: 100, maybe_null: true }))
        }
        fn row(&mut self, args: &Args, out: &mut Vec<u8>) -> Result<bool, String> {
            match args.get(0) {
                Value::Bytes(b) if b == b"panic" => panic!("boom"),
                Value::Bytes(b) if b == b"fail" => Err("failed".into()),
                Value::Bytes(b) => {
                    out.extend_from_slice(b);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    fn call(init: &mut UdfInit, f: &mut Fake) -> (Option<Vec<u8>>, c_char) {
        let (mut len, mut null, mut err) = (0 as c_ulong, 0 as c_char, 0 as c_char);
        let mut buf = [0 as c_char; 766];
        let p = unsafe { string_row::<Echo>(init, &mut f.raw, buf.as_mut_ptr(), &mut len, &mut null, &mut err) };
        let v = (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p as *const u8, len as usize).to_vec() });
        (v, err)
    }

    /// A constant INT argument as MariaDB passes it to `init`: an 8-byte
    /// integer whose `lengths` entry is its text length.
    #[test]
    fn a_coerced_constant_is_read_as_filled() {
        let value: c_longlong = 4702111234474983745;
        let mut types = [INT_RESULT, STRING_RESULT];
        let ptrs = [&value as *const c_longlong as *const c_char, b"x".as_ptr() as *const c_char];
        let lens: [c_ulong; 2] = [19, 1];
        let mut raw = UdfArgs {
            arg_count: 2,
            arg_type: types.as_mut_ptr(),
            args: ptrs.as_ptr(),
            lengths: lens.as_ptr(),
            maybe_null: std::ptr::null(),
            attributes: std::ptr::null(),
            attribute_lengths: std::ptr::null(),
            extension: std::ptr::null_mut(),
        };
        let mut view = Args::for_init(&mut raw);
        view.coerce(0, STRING_RESULT);
        assert_eq!(view.kind(0), STRING_RESULT, "the server converts it from the first row on");
        assert_eq!(view.get(0), Value::Int(value), "never 19 bytes out of an 8-byte slot");
        assert_eq!(view.get(1), Value::Bytes(b"x"));
        unsafe { *raw.arg_type.add(1) = 3 }; // ROW_RESULT: nothing this library reads
        assert_eq!(Args::for_row(&mut raw).get(1), Value::Null);
    }

    #[test]
    fn trampolines_catch_panics_and_report_errors() {
        let mut init =
            UdfInit { maybe_null: 0, decimals: 0, max_length: 0, ptr: std::ptr::null_mut(), const_item: 0, extension: std::ptr::null_mut() };
        let mut msg = [0 as c_char; 512];
        let mut two = Fake::new(&[None, None]);
        assert_eq!(unsafe { string_init::<Echo>(&mut init, &mut two.raw, msg.as_mut_ptr()) }, 1);
        let text = unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) }.to_bytes().len();
        assert_eq!(text, MESSAGE_MAX, "init message is cut to fit the server's buffer");
        unsafe { deinit::<Echo>(&mut init) }; // null ptr: must be harmless

        let mut one = Fake::new(&[Some(b"hi")]);
        assert_eq!(unsafe { string_init::<Echo>(&mut init, &mut one.raw, msg.as_mut_ptr()) }, 0);
        assert_eq!(init.max_length, 100);
        assert_eq!(call(&mut init, &mut one), (Some(b"hi".to_vec()), 0));
        let mut p = Fake::new(&[Some(b"panic")]);
        assert_eq!(call(&mut init, &mut p), (None, 0));
        assert!(last_error().unwrap().contains("boom"));
        let mut f = Fake::new(&[Some(b"fail")]);
        assert_eq!(call(&mut init, &mut f), (None, 0));
        assert_eq!(last_error().unwrap(), "failed");
        assert_eq!(call(&mut init, &mut one).0, Some(b"hi".to_vec()), "later rows still work");
        unsafe { deinit::<Echo>(&mut init) };
        assert!(init.ptr.is_null());
    }
}
