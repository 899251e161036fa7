//! What a process argument must be, as one trait with a compile error that
//! says what to do.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the arguments of [`Process::new`](crate::Process::new) must be:
/// serde data (`Serialize + DeserializeOwned`) that is `Send + 'static`.
/// Every such type implements it; nobody needs to implement it by hand.
///
/// Under spawn and forkserver the arguments cross a process boundary as
/// bytes, so a type that only holds an fd (a `std::fs::File`, a socket)
/// is not serde data: wrap its fd in `mp_reduction::Fd`, which travels
/// as SCM_RIGHTS beside the bytes (mp-conn's `Connection` and mp-heap's
/// shared memory already do this).
///
/// A `File` itself is refused at compile time, with a note that points
/// to `mp_reduction::Fd`:
///
/// ```compile_fail,E0277
/// fn use_file(_: std::fs::File) {}
/// let file = std::fs::File::open("/dev/null").unwrap();
/// let _ = mp_context::Process::new(use_file, file);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed to a child process",
    label = "process arguments must be serde data (Serialize + DeserializeOwned) and Send + 'static",
    note = "a file, socket or other fd travels as `mp_reduction::Fd`: pass `Fd::from(OwnedFd::from(file))` and turn it back with `File::from(OwnedFd::from(fd))` in the child (see the docs of `Process::new`)"
)]
pub trait ProcessArgs: Serialize + DeserializeOwned + Send + 'static {}

impl<A: Serialize + DeserializeOwned + Send + 'static> ProcessArgs for A {}
