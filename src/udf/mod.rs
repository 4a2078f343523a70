//! SQL glue: each function's declared parameters, checked once in `init`,
//! and typed access to them per row. The work itself is in [`crate::ops`].

mod functions;

use crate::config::{self, Config};
use crate::datajoint::hash::{self, Hash};
use crate::datajoint::layout;
use crate::error::Error;
use crate::ffi::{Args, IntFn, Shape, StringFn, Value, DECIMAL_RESULT, INT_RESULT, REAL_RESULT, STRING_RESULT};
use std::marker::PhantomData;
use std::sync::Arc;

/// What an argument is, which decides its coercion and its `init` checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A configured store's name.
    Store,
    /// A schema (database) name.
    Schema,
    /// An attachment's base name.
    Name,
    /// Any UTF-8 text (paths, filepaths).
    Text,
    /// Raw bytes.
    Bytes,
    /// A 16-byte hash (or its hex / UUID text).
    Hash,
    /// A non-negative integer.
    Size,
}

pub struct Def {
    pub name: &'static str,
    pub params: &'static [(&'static str, Kind)],
    /// How many trailing parameters may be left out.
    pub optional: usize,
    pub needs_config: bool,
    pub max_length: u64,
}

impl Def {
    fn signature(&self) -> String {
        let names: Vec<String> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, (n, _))| if i >= self.params.len() - self.optional { format!("[{n}]") } else { n.to_string() })
            .collect();
        format!("{}({})", self.name, names.join(", "))
    }
}

/// One function's behaviour; `run` fills `out` and returns `false` for NULL.
pub trait Func: 'static {
    const DEF: Def;
    fn run(cfg: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool, Error>;
}

/// An integer-valued function.
pub trait IntFunc: 'static {
    const DEF: Def;
    fn run(cfg: Option<&Config>, a: &Row) -> Result<Option<i64>, Error>;
}

/// The state of one call site: the config as it was when the statement began.
pub struct Call<F> {
    cfg: Option<Arc<Config>>,
    _f: PhantomData<F>,
}

fn init_call(def: &Def, args: &mut Args) -> Result<Option<Arc<Config>>, String> {
    let n = args.len();
    let (max, min) = (def.params.len(), def.params.len() - def.optional);
    if n < min || n > max {
        let count = if min == max { format!("{max}") } else { format!("{min} to {max}") };
        return Err(format!("takes {count} argument{}, got {n}: {}", if max == 1 { "" } else { "s" }, def.signature()));
    }
    let cfg = if def.needs_config { Some(config::current().map_err(|e| e.to_string())?) } else { None };
    for (i, (pname, kind)) in def.params.iter().take(n).enumerate() {
        // The server shows only ~80 characters of an init message, after the
        // function's name: the cause comes first, without the name again.
        let wrong = |what: &str| format!("argument {} ({pname}) {what}", i + 1);
        match (kind, args.kind(i)) {
            (Kind::Size, INT_RESULT | STRING_RESULT) => {}
            (Kind::Hash, INT_RESULT | REAL_RESULT | DECIMAL_RESULT) => return Err(wrong("must be binary(16), hex or a UUID, not a number")),
            (Kind::Size, _) => return Err(wrong("must be an integer")),
            _ => args.coerce(i, STRING_RESULT),
        }
        // Constant arguments are visible now: a bad one stops the statement
        // before any row runs, with a message that says which.
        let Value::Bytes(b) = args.get(i) else { continue };
        let text = || std::str::from_utf8(b).map_err(|_| wrong("is not valid UTF-8"));
        let checked = match kind {
            Kind::Store => {
                let s = text()?;
                layout::check_store_name(s).and_then(|_| cfg.as_ref().expect("stores need the config").store(s).map(|_| ()))
            }
            Kind::Schema => layout::check_schema_name(text()?),
            Kind::Name => layout::check_attachment_name(text()?),
            Kind::Text => {
                text()?;
                Ok(())
            }
            Kind::Hash => hash::parse(b).map(|_| ()).ok_or_else(|| Error::arg("hash", "expected 16 bytes, 32 hex digits or a UUID")),
            Kind::Bytes | Kind::Size => Ok(()),
        };
        checked.map_err(|e| e.to_string())?;
    }
    Ok(cfg)
}

/// The server prints at most this many bytes of an `init` message.
const INIT_SHOWN: usize = 80;

/// Runs the `init` checks. A failure's full text is kept for dj_last_error()
/// and the message itself is shortened to what the server will show.
fn init_checked(def: &Def, args: &mut Args) -> Result<Option<Arc<Config>>, String> {
    init_call(def, args).map_err(|full| {
        crate::ffi::set_last_error(format!("{}: {full}", def.name));
        const MORE: &str = "... (see dj_last_error())";
        if full.len() <= INIT_SHOWN {
            full
        } else {
            format!("{}{MORE}", crate::text::cut(&full, INIT_SHOWN - MORE.len()))
        }
    })
}

impl<F: Func> StringFn for Call<F> {
    fn init(args: &mut Args) -> Result<(Self, Shape), String> {
        let cfg = init_checked(&F::DEF, args)?;
        Ok((Call { cfg, _f: PhantomData }, Shape { max_length: F::DEF.max_length, maybe_null: true }))
    }

    fn row(&mut self, args: &Args, out: &mut Vec<u8>) -> Result<bool, String> {
        F::run(self.cfg.as_deref(), &Row { args, def: &F::DEF }, out).map_err(|e| format!("{}: {e}", F::DEF.name))
    }
}

impl<F: IntFunc> IntFn for Call<F> {
    fn init(args: &mut Args) -> Result<(Self, Shape), String> {
        let cfg = init_checked(&F::DEF, args)?;
        Ok((Call { cfg, _f: PhantomData }, Shape { max_length: 21, maybe_null: true }))
    }

    fn row(&mut self, args: &Args) -> Result<Option<i64>, String> {
        F::run(self.cfg.as_deref(), &Row { args, def: &F::DEF }).map_err(|e| format!("{}: {e}", F::DEF.name))
    }
}

/// Typed, named access to one row's arguments.
pub struct Row<'a, 'b> {
    args: &'a Args<'b>,
    def: &'static Def,
}

impl Row<'_, '_> {
    fn pname(&self, i: usize) -> &'static str {
        self.def.params[i].0
    }

    pub fn has(&self, i: usize) -> bool {
        i < self.args.len()
    }

    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        if !self.has(i) {
            return None;
        }
        match self.args.get(i) {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn text(&self, i: usize) -> Result<Option<&str>, Error> {
        match self.bytes(i) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| Error::arg(self.pname(i), "is not valid UTF-8")),
        }
    }

    /// A text argument that must not be NULL.
    pub fn req(&self, i: usize) -> Result<&str, Error> {
        self.text(i)?.ok_or_else(|| Error::arg(self.pname(i), "must not be NULL"))
    }

    pub fn hash(&self, i: usize) -> Result<Option<Hash>, Error> {
        match self.bytes(i) {
            None => Ok(None),
            Some(b) => hash::parse(b)
                .map(Some)
                .ok_or_else(|| Error::arg(self.pname(i), format!("expected 16 bytes, 32 hex digits or a UUID, got {} bytes", b.len()))),
        }
    }

    pub fn size(&self, i: usize) -> Result<Option<u64>, Error> {
        if !self.has(i) {
            return Ok(None);
        }
        let bad = || Error::arg(self.pname(i), "must be a non-negative integer");
        match self.args.get(i) {
            Value::Null => Ok(None),
            Value::Int(v) => u64::try_from(v).map(Some).map_err(|_| bad()),
            Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.trim().parse::<u64>().ok()).map(Some).ok_or_else(bad),
            Value::Real(_) => Err(bad()),
        }
    }
}
