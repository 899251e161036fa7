//! `set_executable` (CPython's `multiprocessing.set_executable`): spawn and
//! forkserver children that run another binary of the program, a separate
//! worker binary, and how they find their target there.
//!
//! A child of this same file finds its target by its offset from an anchor
//! (see `sys.rs`). In another binary offsets mean nothing, so the parent
//! also sends the target's symbol names, read from its own symbol table
//! (`elf.rs`), and the worker looks them up among the targets its `main`
//! registered with [`register_target`] before `init()`. A registration
//! pairs the worker's own `fn(A)` with the worker's own entry for `A`, so
//! whatever is found is called with exactly the type it was compiled for:
//! a worker built from other code finds no match and says so, and never
//! calls through a pointer of another type.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{StartMethod, get_start_method};
use crate::{Error, Result, elf, entry, sys};

/// Which file a process runs: device and inode of `/proc/self/exe`, the
/// same for every process started from one file, even after the path has
/// been replaced by a rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExeId {
    dev: u64,
    ino: u64,
}

fn id_of(path: &Path) -> Option<ExeId> {
    let meta = std::fs::metadata(path).ok()?;
    Some(ExeId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The file this process runs.
pub(crate) fn self_id() -> Option<ExeId> {
    static ID: OnceLock<Option<ExeId>> = OnceLock::new();
    *ID.get_or_init(|| id_of(Path::new("/proc/self/exe")))
}

/// This process's executable's path, for messages (read once).
pub(crate) fn self_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/proc/self/exe".into())
    })
}

/// The executable set with [`set_executable`], and which file it is.
static CONFIGURED: Mutex<Option<(PathBuf, Option<ExeId>)>> = Mutex::new(None);

fn configured() -> MutexGuard<'static, Option<(PathBuf, Option<ExeId>)>> {
    CONFIGURED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the program that spawn and forkserver children run, instead of
/// this one (CPython's `set_executable`): a separate worker binary of the
/// program, built from the same code, whose `main` registers the targets
/// it serves with [`register_target`] and then calls
/// [`init`](crate::init). [`Context::set_executable`](crate::Context::set_executable)
/// is the same for a given context; this is the default context's.
///
/// Like CPython's setting it is process-wide, and it affects a fork server
/// started afterwards (one already running keeps its binary until
/// `mp_forkserver::ForkServer::global().stop()`). The path of this process's
/// own executable goes back to running it.
///
/// # Errors
///
/// [`Error::ExecutableForFork`] if the default context's method is fixed
/// to fork (a fork child runs no executable); [`Error::Executable`] if
/// `path` is not an executable file.
///
/// # Examples
///
/// ```no_run
/// fn work(n: u32) {
///     println!("{n}");
/// }
///
/// // In the worker binary's main (built from the same code):
/// //     mp_context::register_target(work);
/// //     mp_context::init();
/// fn main() -> Result<(), mp_context::Error> {
///     mp_context::init();
///     mp_context::set_executable("/usr/lib/myapp/myapp-worker")?;
///     let p = mp_context::Process::new(work, 7);
///     p.start()?;
///     p.join(None)?;
///     Ok(())
/// }
/// ```
pub fn set_executable(path: impl AsRef<Path>) -> Result<()> {
    if get_start_method(true) == Some(StartMethod::Fork) {
        return Err(Error::ExecutableForFork);
    }
    set(path.as_ref())
}

/// [`set_executable`] without the default context's check.
pub(crate) fn set(path: &Path) -> Result<()> {
    let refuse = |reason: String| Error::Executable {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("it is not a file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(refuse("it is not executable".into()));
    }
    let id = id_of(path);
    if id.is_some() && id == self_id() {
        // This process's own file (even `/proc/self/exe` of a binary
        // replaced since): children run it again, exactly as without a
        // setting.
        *configured() = None;
        mp_forkserver::set_executable(None);
        return Ok(());
    }
    // Absolute, so that a later change of directory (or a bare name, which
    // exec would look up on PATH) cannot make children run something else.
    let path = std::fs::canonicalize(path).map_err(|e| refuse(e.to_string()))?;
    *configured() = Some((path.clone(), id));
    mp_forkserver::set_executable(Some(path));
    Ok(())
}

/// The program spawn and forkserver children run: the one given to
/// [`set_executable`] (made absolute), or this process's own
/// (`/proc/self/exe`).
pub fn get_executable() -> PathBuf {
    mp_forkserver::executable()
}

/// Whether spawn and forkserver children may run another file than this
/// process: then the target travels by name too.
pub(crate) fn children_run_another_binary() -> bool {
    configured()
        .as_ref()
        .is_some_and(|(_, id)| *id != self_id())
}

/// A target registered in a worker binary.
struct Registered {
    trampoline: sys::Trampoline,
    target: usize,
    type_name: &'static str,
}

static REGISTERED: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registered() -> MutexGuard<'static, Vec<Registered>> {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `target` as one this binary serves when it runs as a
/// separate worker binary ([`set_executable`]): children started by a
/// parent running another binary of the same code find their target among
/// these, by its symbol name and argument type.
///
/// Call it in the worker's `main` for every target the parent may start
/// there, before [`init`](crate::init) (which serves the child and never
/// returns in one). It only records the function: no thread, no I/O. The
/// parent needs no registration; a program that is its own worker (the
/// default) needs none at all.
///
/// Both binaries must be built from the same code, the targets in a library
/// crate both link, and neither stripped of its symbol table: names are
/// the compiler's symbol names, which carry the crate's build identity.
pub fn register_target<A>(target: fn(A))
where
    A: Serialize + DeserializeOwned + Send + 'static,
{
    registered().push(Registered {
        trampoline: entry::trampoline::<A>,
        target: target as usize,
        type_name: std::any::type_name::<A>(),
    });
}

/// The parent side: the symbol names of the target at `addr`.
pub(crate) fn target_names(addr: usize) -> Result<Vec<String>> {
    let no_names = |reason: String| Error::TargetNames {
        exe: self_path().into(),
        reason,
    };
    let names = elf::function_names().map_err(no_names)?.names_of(addr);
    if names.is_empty() {
        return Err(no_names(
            "the target has no symbol (is it in a dynamically loaded library?)".into(),
        ));
    }
    Ok(names)
}

/// The worker side: the registered entry for a target the parent named
/// `names` taking a `type_name`, as (entry, the target's offset).
pub(crate) fn find_registered(
    names: &[String],
    type_name: &str,
) -> std::result::Result<(sys::Trampoline, u64), String> {
    let table =
        elf::function_names().map_err(|e| format!("cannot read this binary's symbols: {e}"))?;
    let list = registered();
    let found = list.iter().find(|r| {
        r.type_name == type_name
            && table
                .names_of(r.target)
                .iter()
                .any(|n| names.binary_search(n).is_ok())
    });
    match found {
        Some(r) => Ok((r.trampoline, sys::offset_of(r.target))),
        None => Err(format!(
            "this worker binary has no registered target {} taking {type_name} ({} registered): \
             call mp_context::register_target with it before mp_context::init() in the \
             worker's main, and build the worker from the same code as its parent",
            names
                .first()
                .map(|n| readable(n))
                .unwrap_or_else(|| "(unnamed)".into()),
            list.len()
        )),
    }
}

/// A legacy-mangled Rust symbol (`_ZN` + length-prefixed parts + `E`, the
/// last part the `h` + 16 hex digits hash) as a path, `a::b::c`; any
/// other name as it is.
fn readable(symbol: &str) -> String {
    let Some(mut rest) = symbol.strip_prefix("_ZN").and_then(|s| s.strip_suffix('E')) else {
        return symbol.to_owned();
    };
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return symbol.to_owned();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return symbol.to_owned();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts
        .last()
        .is_some_and(|h| h.len() == 17 && h.starts_with('h'))
    {
        parts.pop();
    }
    parts.join("::")
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn legacy_symbols_read_as_paths() {
        assert_eq!(
            readable("_ZN14mp_testsupport7targets14not_registered17h4fba12e6e99e1e50E"),
            "mp_testsupport::targets::not_registered"
        );
        assert_eq!(readable("_RNvCs1234_5crate4main"), "_RNvCs1234_5crate4main");
        assert_eq!(readable("_ZN99tooshortE"), "_ZN99tooshortE");
    }
}
