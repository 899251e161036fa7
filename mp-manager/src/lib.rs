//! # mp-manager
//!
//! Managers and proxies, after CPython's `multiprocessing.managers`: a
//! server holds shared objects by id; proxies in any process call their
//! methods over authenticated connections, with CPython's protocol.
//!
//! - [`BaseManager`]: start a server process (any start method of
//!   `mp-context`), connect to a running one (also over TCP), or serve in
//!   the current process ([`Server::serve_forever`]); shut down on drop,
//!   ask-wait-terminate-kill. A started manager also ends when its parent
//!   process dies.
//! - [`SyncManager`]: CPython's `SyncManager` types (`dict`, `list`,
//!   `set`, `Queue`, `JoinableQueue`, `Lock`, `RLock`, `Semaphore`,
//!   `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`,
//!   `Array`, `Namespace`) with typed proxies ([`DictProxy<K, V>`],
//!   [`QueueProxy<T>`], …).
//! - Your own types: [`shared`] on an `impl` block generates the dispatch
//!   and a typed proxy with the type's own method signatures; register it
//!   with [`Registry::register_type`] in a [`Registrar`].
//! - The wire protocol is CPython's: requests `(id, method, args, kwds)`,
//!   replies `#RETURN`, `#ERROR`, `#TRACEBACK`, `#PROXY`,
//!   `#UNSERIALIZABLE`; CPython's public functions and `Token`s. Messages
//!   are [`mp_value::Value`]s and the bytes come from a [`Codec`] chosen per
//!   manager: [`Postcard`] between Rust peers, [`Pickle`] with CPython
//!   clients and servers (3.11 to 3.15), in both directions.
//! - References: an object lives exactly as long as a proxy to it exists
//!   somewhere, including proxies stored in other shared objects and
//!   proxies on their way to another process; a killed client's references
//!   go with its connections (see the `server` module docs).
//!
//! # Examples
//!
//! ```
//! use mp_manager::SyncManager;
//!
//! fn worker((counter, lock, done): (mp_manager::ValueProxy<i64>, mp_manager::LockProxy, mp_manager::QueueProxy<u32>)) {
//!     for _ in 0..10 {
//!         let _held = lock.lock().unwrap();
//!         let n = counter.get().unwrap();
//!         counter.set(&(n + 1)).unwrap();
//!     }
//!     done.put(&std::process::id()).unwrap();
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     mp_context::init();
//!     let ctx = mp_context::get_context(Some("fork"))?;
//!     let manager = SyncManager::started(&ctx)?;
//!     let counter = manager.value("i", &0_i64)?;
//!     let lock = manager.lock()?;
//!     let done = manager.queue::<u32>(0)?;
//!     let procs: Vec<_> = (0..3)
//!         .map(|_| ctx.process(worker, (counter.clone(), lock.clone(), done.clone())))
//!         .collect();
//!     for p in &procs {
//!         p.start()?;
//!     }
//!     for _ in &procs {
//!         done.get()?;
//!     }
//!     for p in &procs {
//!         p.join(None)?;
//!     }
//!     assert_eq!(counter.get()?, 30);
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

mod client;
mod codec;
mod error;
mod manager;
mod proxy;
mod registry;
pub mod server;
mod shared;
mod sync;
mod typed;
mod wire;

pub use codec::{Codec, Pickle, Postcard, codec_by_name, register_codec};
pub use error::{CodecError, Error, Exception, Result};
pub use manager::{BaseManager, DEFAULT_SHUTDOWN_TIMEOUT, Initializer};
/// Makes a Rust type shareable through a manager: on the type's `impl`
/// block, generates the server-side dispatch ([`SharedType`]) and a typed
/// proxy, `<Type>Proxy`, whose methods have the same names and arguments
/// and return [`Result`]`<R>`.
///
/// - Only `pub` (or `pub(crate)`) methods can be called; names starting with `_` are
///   callable but not exposed unless the registration says so
///   ([`TypeSpec::exposed`]), as CPython's `public_methods`.
/// - `pub fn new(...)` (no `self`) is the constructor, called with the
///   arguments of `create`; without one, the type's `Default`.
/// - Arguments and results travel with serde: owned types and `&str`.
/// - A method returning `Result<T, E>` with `E: Into<Exception>` raises
///   the exception in the caller, with its class ([`Error::Raised`]).
/// - `#[shared(proxy = "TypeId")]` on a method returning another shared
///   type makes it return a new shared object and its proxy (CPython's
///   `method_to_typeid`).
///
/// The object lives behind a mutex in the manager: its methods run one at
/// a time. A type whose methods must block while others run implements
/// [`Shared`] by hand.
///
/// # Examples
///
/// ```
/// use mp_manager::{BaseManager, Exception, Registrar, Registry};
///
/// #[derive(Default)]
/// pub struct Counter {
///     n: i64,
/// }
///
/// #[mp_manager::shared]
/// impl Counter {
///     pub fn new(start: i64) -> Counter {
///         Counter { n: start }
///     }
///     pub fn incr(&mut self, by: i64) -> i64 {
///         self.n += by;
///         self.n
///     }
///     pub fn check(&self, limit: i64) -> Result<(), Exception> {
///         if self.n > limit {
///             return Err(Exception::value_error(format!("{} > {limit}", self.n)));
///         }
///         Ok(())
///     }
///     #[shared(proxy = "Counter")]
///     pub fn fork(&self) -> Counter {
///         Counter { n: self.n }
///     }
/// }
///
/// struct Types;
/// impl Registrar for Types {
///     fn register(r: &mut Registry) {
///         r.register_type::<Counter>("Counter");
///     }
/// }
///
/// # mp_context::init();
/// let manager = BaseManager::<Types>::new(&mp_context::get_context(Some("fork"))?);
/// manager.start()?;
/// let c: CounterProxy = manager.create("Counter", &(10,))?;
/// assert_eq!(c.incr(5)?, 15);
/// assert!(c.check(12).unwrap_err().is("ValueError"));
/// let other = c.fork()?;
/// assert_eq!(other.incr(1)?, 16);
/// assert_eq!(c.incr(0)?, 15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use mp_manager_derive::shared;
pub use proxy::{Proxy, ProxyType};
pub use registry::{Constructor, NoTypes, Registrar, Registry, TypeSpec};
pub use server::{Server, ServerHandle};
pub use shared::{Args, AsAny, Bound, Call, Output, Raise, Shared, Wait, deadline_after};
pub use sync::{
    AcquireGuard, AcquirerProxy, ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy,
    IteratorProxy, ListIter, ListProxy, LockLike, LockProxy, NamespaceProxy, QueueProxy,
    RLockProxy, SemaphoreProxy, SetProxy, SyncManager, SyncTypes, ValueProxy,
};
pub use typed::{Locked, SharedType};
pub use wire::Token;

/// The README's example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Support for the `shared` attribute and the proxy macros (not public
/// API).
#[doc(hidden)]
pub mod __private {
    pub use crate::proxy::private::*;
    pub use crate::typed::{no_such_method, output, output_object};
    pub use mp_value;
}
