//! `SyncManager`: a manager with CPython's `SyncManager` types, and typed
//! methods to create them.

mod containers;
mod pool;
mod primitives;
mod proxies;

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_context::Context;
use mp_value::{Dict, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::manager::BaseManager;
use crate::registry::{NoTypes, Registrar, Registry};
use crate::shared::Shared;

pub use pool::{AsyncResultProxy, MapResultProxy, PoolIterProxy, PoolProxy};
pub use proxies::{
    AcquireGuard, AcquirerProxy, ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy,
    IteratorProxy, ListIter, ListProxy, LockLike, LockProxy, NamespaceProxy, QueueProxy,
    RLockProxy, SemaphoreProxy, SetProxy, ValueProxy,
};

/// The type ids of CPython's `SyncManager`, then those of `R`.
#[derive(Debug)]
pub struct SyncTypes<R = NoTypes>(PhantomData<fn() -> R>);

impl<R: Registrar> Registrar for SyncTypes<R> {
    fn register(registry: &mut Registry) {
        SyncManager::register_types(registry);
        R::register(registry);
    }
}

/// A manager with CPython's `SyncManager` types: `Queue`, `JoinableQueue`,
/// `Event`, `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`,
/// `Barrier`, `list`, `dict`, `set`, `Value`, `Array`, `Namespace` and
/// `Pool` (an `mp_pool::Pool` in the manager), each with a typed proxy.
/// `R` adds a user's own types.
///
/// It dereferences to its [`BaseManager`] for `start`, `connect`,
/// `shutdown`, `create` and the rest.
///
/// # Examples
///
/// ```
/// # mp_context::init();
/// let ctx = mp_context::get_context(Some("fork"))?;
/// let manager = mp_manager::SyncManager::started(&ctx)?;
/// let d = manager.dict::<String, i64>()?;
/// d.set_item(&"a".into(), &1)?;
/// let q = manager.queue::<String>(0)?;
/// q.put(&"hello".into())?;
/// assert_eq!(q.get()?, "hello");
/// assert_eq!(d.get(&"a".into())?, Some(1));
/// drop((d, q));
/// assert_eq!(manager.number_of_objects()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SyncManager<R: Registrar = NoTypes> {
    base: BaseManager<SyncTypes<R>>,
}

impl<R: Registrar> std::fmt::Debug for SyncManager<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.base, f)
    }
}

impl<R: Registrar> Deref for SyncManager<R> {
    type Target = BaseManager<SyncTypes<R>>;
    fn deref(&self) -> &BaseManager<SyncTypes<R>> {
        &self.base
    }
}

impl SyncManager {
    /// A manager that is not started yet, for `ctx`'s start method
    /// (CPython's `SyncManager(ctx=ctx)`); see [`BaseManager::new`]. With
    /// types of your own: [`SyncManager::for_context`].
    pub fn new(ctx: &Context) -> SyncManager {
        SyncManager::for_context(ctx)
    }

    /// A started manager (CPython's `multiprocessing.Manager()` /
    /// `ctx.Manager()`).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::start`].
    pub fn started(ctx: &Context) -> Result<SyncManager> {
        let m = SyncManager::new(ctx);
        m.start()?;
        Ok(m)
    }

    /// Registers CPython's `SyncManager` type ids (with their exposed
    /// methods and proxy classes) in `registry`.
    pub fn register_types(registry: &mut Registry) {
        use containers::*;
        use primitives::*;
        fn arc<T: Shared>(t: T) -> Arc<dyn Shared> {
            Arc::new(t)
        }
        registry.register("Queue", |a, _| Ok(arc(Queue::new(a)?)));
        registry.register("JoinableQueue", |a, _| Ok(arc(Queue::new(a)?)));
        registry
            .register("Event", |a, _| {
                a.bind("Event", &[])?;
                Ok(arc(Event::new()))
            })
            .exposed(&["is_set", "set", "clear", "wait"])
            .proxytype("EventProxy");
        let acquirer = ["acquire", "release", "locked"];
        registry
            .register("Lock", |a, _| {
                a.bind("Lock", &[])?;
                Ok(arc(Lock::new(false)))
            })
            .exposed(&acquirer)
            .proxytype("AcquirerProxy");
        registry
            .register("RLock", |a, _| {
                a.bind("RLock", &[])?;
                Ok(arc(Lock::new(true)))
            })
            .exposed(&acquirer)
            .proxytype("AcquirerProxy");
        registry
            .register("Semaphore", |a, _| Ok(arc(Semaphore::new(a, false)?)))
            .exposed(&acquirer)
            .proxytype("AcquirerProxy");
        registry
            .register("BoundedSemaphore", |a, _| Ok(arc(Semaphore::new(a, true)?)))
            .exposed(&acquirer)
            .proxytype("AcquirerProxy");
        registry
            .register("Condition", |a, cx| Ok(arc(Condition::new(a, cx)?)))
            .exposed(&[
                "acquire",
                "release",
                "locked",
                "wait",
                "notify",
                "notify_all",
            ])
            .proxytype("ConditionProxy");
        registry
            .register("Barrier", |a, _| Ok(arc(Barrier::new(a)?)))
            .exposed(&["__getattribute__", "wait", "abort", "reset"])
            .proxytype("BarrierProxy");
        registry
            .register("list", |a, _| Ok(arc(SharedList::new(a)?)))
            .exposed(LIST_EXPOSED)
            .proxytype("ListProxy");
        registry
            .register("dict", |a, _| Ok(arc(SharedDict::new(a)?)))
            .exposed(DICT_EXPOSED)
            .method_to_typeid("__iter__", "Iterator")
            .proxytype("DictProxy");
        registry
            .register("set", |a, _| Ok(arc(SharedSet::new(a)?)))
            .exposed(SET_EXPOSED)
            .proxytype("SetProxy");
        registry
            .register("Value", |a, _| Ok(arc(SharedValue::new(a)?)))
            .exposed(&["get", "set"])
            .proxytype("ValueProxy");
        registry
            .register("Array", |a, _| Ok(arc(SharedArray::new(a)?)))
            .exposed(&["__len__", "__getitem__", "__setitem__"])
            .proxytype("ArrayProxy");
        registry
            .register("Namespace", |a, _| Ok(arc(Namespace::new(a)?)))
            .exposed(&["__getattribute__", "__setattr__", "__delattr__"])
            .proxytype("NamespaceProxy");
        let pool = registry
            .register("Pool", |a, _| Ok(arc(pool::SharedPool::new(a)?)))
            .exposed(pool::POOL_EXPOSED)
            .proxytype("PoolProxy");
        for (method, typeid) in pool::POOL_METHOD_TO_TYPEID {
            pool.method_to_typeid(method, typeid);
        }
        registry.register_result_type("AsyncResult");
        registry
            .register_result_type("Iterator")
            .exposed(&["__next__", "send", "throw", "close"])
            .proxytype("IteratorProxy");
    }
}

impl<R: Registrar> SyncManager<R> {
    /// A manager with the `SyncManager` types and those of `R`, not
    /// started yet (`SyncManager::<MyTypes>::for_context(&ctx)`).
    pub fn for_context(ctx: &Context) -> SyncManager<R> {
        SyncManager {
            base: BaseManager::new(ctx).named("SyncManager"),
        }
    }

    /// See [`BaseManager::with_address`].
    pub fn with_address(self, address: mp_conn::Address) -> Self {
        SyncManager {
            base: self.base.with_address(address),
        }
    }

    /// See [`BaseManager::with_authkey`].
    pub fn with_authkey(self, authkey: impl Into<Vec<u8>>) -> Self {
        SyncManager {
            base: self.base.with_authkey(authkey),
        }
    }

    /// See [`BaseManager::with_codec`].
    pub fn with_codec(self, codec: Arc<dyn crate::Codec>) -> Self {
        SyncManager {
            base: self.base.with_codec(codec),
        }
    }

    /// See [`BaseManager::with_shutdown_timeout`].
    pub fn with_shutdown_timeout(self, timeout: Duration) -> Self {
        SyncManager {
            base: self.base.with_shutdown_timeout(timeout),
        }
    }

    /// `manager.dict()`: an empty shared dict.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<DictProxy<K, V>> {
        self.create("dict", &())
    }

    /// `manager.dict(pairs)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`] (`TypeError` for an unhashable key).
    pub fn dict_from<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<DictProxy<K, V>> {
        self.create("dict", &(pairs,))
    }

    /// `manager.list()`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        self.create("list", &())
    }

    /// `manager.list(items)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn list_from<T: Serialize + DeserializeOwned>(&self, items: &[T]) -> Result<ListProxy<T>> {
        self.create("list", &(items,))
    }

    /// `manager.set(items)` (Python 3.14).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn set<T: Serialize + DeserializeOwned>(&self, items: &[T]) -> Result<SetProxy<T>> {
        self.create("set", &(items,))
    }

    /// `manager.Queue(maxsize)` (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.create("Queue", &(maxsize,))
    }

    /// `manager.JoinableQueue(maxsize)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        self.create("JoinableQueue", &(maxsize,))
    }

    /// `manager.Event()`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn event(&self) -> Result<EventProxy> {
        self.create("Event", &())
    }

    /// `manager.Lock()`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn lock(&self) -> Result<LockProxy> {
        self.create("Lock", &())
    }

    /// `manager.RLock()`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.create("RLock", &())
    }

    /// `manager.Semaphore(value)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.create("Semaphore", &(value,))
    }

    /// `manager.BoundedSemaphore(value)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.create("BoundedSemaphore", &(value,))
    }

    /// `manager.Condition(lock)`: with a `Lock`/`RLock` proxy of this
    /// manager, or its own `RLock` for `None`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn condition(&self, lock: Option<&AcquirerProxy>) -> Result<ConditionProxy> {
        match lock {
            None => self.create("Condition", &()),
            Some(l) => self.create("Condition", &(l,)),
        }
    }

    /// `manager.Barrier(parties, timeout=timeout)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`] (`ValueError` for 0 parties).
    pub fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<BarrierProxy> {
        let mut kw = Dict::new();
        if let Some(t) = timeout {
            kw.insert("timeout", t.as_secs_f64())?;
        }
        self.create_kw("Barrier", &(parties,), kw)
    }

    /// `manager.Barrier(parties, action=action, timeout=timeout)`: `action`
    /// runs in the manager, called by the waiter that trips the barrier,
    /// before the others are released; if it panics, the barrier breaks
    /// (that waiter gets a `RuntimeError`, the others
    /// `threading.BrokenBarrierError`). It is a plain function of this
    /// program taking `()`, sent as an `mp_context::FnRef` (the manager must
    /// run this build of the program, as a started one does).
    ///
    /// # Errors
    ///
    /// As [`SyncManager::barrier`]; a `TypeError` from a manager that runs
    /// another build.
    pub fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(()),
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy> {
        let mut kw = Dict::new();
        kw.insert("action", pool::fn_value(action))?;
        if let Some(t) = timeout {
            kw.insert("timeout", t.as_secs_f64())?;
        }
        self.create_kw("Barrier", &(parties,), kw)
    }

    /// `manager.Value(typecode, value)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        typecode: &str,
        value: &T,
    ) -> Result<ValueProxy<T>> {
        self.create("Value", &(typecode, value))
    }

    /// `manager.Array(typecode, items)` (an `array.array`).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`] (`ValueError` for a bad typecode,
    /// `OverflowError` for items out of its range).
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        typecode: &str,
        items: &[T],
    ) -> Result<ArrayProxy<T>> {
        self.create("Array", &(typecode, items))
    }

    /// `manager.Pool(processes)`: a process pool held by the manager
    /// (`None`: one worker per usable CPU), under the manager process's
    /// default start method; see [`PoolProxy`].
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`]; a `ValueError` for 0 processes, and
    /// [`Error::Raised`](crate::Error::Raised) with `mp_pool.Error` if the
    /// workers cannot be started.
    pub fn pool(&self, processes: Option<usize>) -> Result<PoolProxy> {
        self.create("Pool", &(processes,))
    }

    /// `manager.Pool(processes, maxtasksperchild=n)`.
    ///
    /// # Errors
    ///
    /// As [`SyncManager::pool`].
    pub fn pool_with(&self, processes: Option<usize>, maxtasksperchild: u64) -> Result<PoolProxy> {
        let mut kw = Dict::new();
        kw.insert("maxtasksperchild", maxtasksperchild)?;
        self.create_kw("Pool", &(processes,), kw)
    }

    /// `manager.Namespace()`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.create("Namespace", &())
    }

    /// `manager.Namespace(**attributes)`.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn namespace_with(&self, attributes: &[(&str, Value)]) -> Result<NamespaceProxy> {
        let mut kw = Dict::new();
        for (k, v) in attributes {
            kw.insert(*k, v.clone())?;
        }
        self.create_kw("Namespace", &(), kw)
    }
}
