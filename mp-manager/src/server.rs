//! The server: shared objects by id, one thread per client connection, and
//! the public functions of CPython's `Server` (`create`, `incref`,
//! `decref`, `accept_connection`, …), plus the few extensions our clients
//! use when they find a Rust server (see "Sessions" below).
//!
//! # Reference counting
//!
//! An object lives while anything refers to it:
//!
//! - **global** references, CPython's: `create` on a fresh connection takes
//!   one, `incref`/`decref` on fresh connections add and remove them. A
//!   CPython client holds these; a CPython client that is killed leaks
//!   them, as it does with a CPython server.
//! - **session** references: a Rust client process opens a *session*
//!   (one connection, `#mp_rs.session`) and its thread connections join it
//!   (`#mp_rs.join`). Its `create`/`incref`/`decref` travel in-band on those
//!   connections and belong to the session, at most one per object and
//!   process. When the session's last connection closes (the process
//!   exited, was killed, or dropped its last proxy), its references go.
//! - **transfer** references: a proxy serialized to travel to another
//!   process takes one (`#mp_rs.transfer`), owned by the sender's session
//!   until the receiver claims it (`#mp_rs.claim`). The object cannot die
//!   between the sender dropping its proxy and the receiver taking its own
//!   reference (CPython's gh-119937).
//! - **reply** references: a reply that carries proxies of this server's
//!   objects (a dict value that is a proxy) holds each for its connection
//!   until the next request on that connection has been handled, the time a
//!   client needs to take its own reference (CPython's `RebuildProxy`
//!   increfs while unpickling, before its next call).
//! - **nesting**: a proxy stored inside a live object keeps its referent
//!   alive. Objects that ever received a proxy are traced: when an object
//!   with no other references may have become unreachable, the server marks
//!   from every referenced object through the values they hold and frees
//!   what it did not reach (CPython keeps such objects forever, gh-103136).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mp_conn::{Address, Connection, Listener};
use mp_value::{Dict, Tuple, Value};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::registry::{Opaque, Registry, TypeSpec};
use crate::shared::{Args, Call, Output, Raise, Shared};
use crate::wire::{self, Reply, Request, Token, for_each_token, has_token};

/// The public functions a fresh connection may call (CPython's
/// `Server.public`).
pub const PUBLIC: &[&str] = &[
    "shutdown",
    "create",
    "accept_connection",
    "get_methods",
    "debug_info",
    "number_of_objects",
    "dummy",
    "incref",
    "decref",
];

/// Starts a session (our extension; a CPython server refuses the name).
pub(crate) const EXT_SESSION: &str = "#mp_rs.session";
/// Joins a thread connection to a session.
pub(crate) const EXT_JOIN: &str = "#mp_rs.join";
/// Takes a transfer reference for a proxy about to travel.
pub(crate) const EXT_TRANSFER: &str = "#mp_rs.transfer";
/// Claims a transfer reference (or a fork's set of them).
pub(crate) const EXT_CLAIM: &str = "#mp_rs.claim";
/// Takes transfer references for everything the session holds, for a
/// child about to be forked with copies of every proxy.
pub(crate) const EXT_FORK: &str = "#mp_rs.fork";
/// The version of the extensions, sent back by `#mp_rs.session`.
pub(crate) const EXT_VERSION: i64 = 1;

/// The largest message a server accepts by default: 256 MiB. A longer one
/// is refused unread (its connection is closed after a `#TRACEBACK`), so
/// an authenticated but broken peer cannot make the server allocate
/// without bound.
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// How long [`Server::serve_forever`] waits for connection threads to end
/// after a shutdown before it returns anyway.
const DRAIN: Duration = Duration::from_secs(2);

/// A server holding shared objects (CPython's `managers.Server`), bound
/// and ready: [`Server::serve_forever`] serves it in the calling thread.
///
/// Make one with [`BaseManager::get_server`](crate::BaseManager::get_server)
/// or [`Server::bind`].
pub struct Server {
    listener: Listener,
    core: Arc<Core>,
    /// A started manager's server also stops when this fd is readable (its
    /// parent's shutdown byte) or the parent process has gone.
    watch: Option<Watch>,
}

struct Watch {
    control: OwnedFd,
    parent: Option<Arc<mp_context::ParentProcess>>,
    every: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.core.address)
            .field("codec", &self.core.codec.name())
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

/// A handle to a running [`Server`], to stop it from another thread or ask
/// how many objects it holds.
#[derive(Clone)]
pub struct ServerHandle(Arc<Core>);

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("address", &self.0.address)
            .finish()
    }
}

impl ServerHandle {
    /// Asks the server to stop: `serve_forever` returns soon after.
    pub fn shutdown(&self) {
        self.0.stop();
    }

    /// The number of live shared objects.
    pub fn number_of_objects(&self) -> usize {
        self.0.table().slots.len()
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.0.address
    }
}

impl Server {
    /// Binds a server to `address` (`None`: a fresh AF_UNIX path) with
    /// `authkey`, serving the type ids of `registry` with `codec`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the address cannot be bound.
    pub fn bind(
        registry: Registry,
        address: Option<&Address>,
        authkey: &[u8],
        codec: Arc<dyn Codec>,
    ) -> Result<Server> {
        Server::on(registry, Server::listen(address, authkey)?, codec)
    }

    /// A server's listener, bound to `address` (`None`: a fresh AF_UNIX
    /// path) with `authkey`.
    pub(crate) fn listen(address: Option<&Address>, authkey: &[u8]) -> Result<Listener> {
        let mut builder = Listener::builder().backlog(128).authkey(authkey.to_vec());
        if let Some(a) = address {
            builder = builder.address(a.clone());
        }
        builder.bind().map_err(|e| {
            let shown =
                address.map_or_else(|| "a fresh AF_UNIX address".to_owned(), |a| a.to_string());
            Error::Connection {
                address: shown,
                source: e,
            }
        })
    }

    /// A server on a listening socket that another process bound
    /// ([`mp_conn::Listener::into_socket`]), with `authkey`.
    pub(crate) fn adopt(
        registry: Registry,
        socket: OwnedFd,
        address: Address,
        authkey: &[u8],
        codec: Arc<dyn Codec>,
    ) -> Result<Server> {
        let listener = Listener::builder()
            .authkey(authkey.to_vec())
            .adopt(socket, address.clone())
            .map_err(|e| Error::connection(&address, e))?;
        Server::on(registry, listener, codec)
    }

    /// A server on `listener`.
    fn on(registry: Registry, listener: Listener, codec: Arc<dyn Codec>) -> Result<Server> {
        let stop_fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map_err(|e| Error::connection(listener.address(), e.into()))?;
        let mut prefix = [0u8; 4];
        let _ = getrandom::fill(&mut prefix);
        let core = Core {
            registry,
            address: listener.address().clone(),
            codec,
            prefix: format!("{:08x}", u32::from_le_bytes(prefix) | 0x1000_0000),
            next_id: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            stopping: AtomicBool::new(false),
            stop_fd,
            conns: Mutex::new(HashMap::new()),
            conns_done: Condvar::new(),
            next_conn: AtomicU64::new(1),
            max_message: DEFAULT_MAX_MESSAGE,
            gc: Mutex::new(()),
            removals: AtomicU64::new(0),
        };
        Ok(Server {
            listener,
            core: Arc::new(core),
            watch: None,
        })
    }

    /// The address clients connect to (for TCP with port 0, the port the
    /// kernel picked).
    pub fn address(&self) -> &Address {
        &self.core.address
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(Arc::clone(&self.core))
    }

    /// Also stops serving when `control` is readable or `parent` has gone
    /// (checked every `every`): what a manager's own server process does.
    pub(crate) fn stop_when(
        &mut self,
        control: OwnedFd,
        parent: Option<Arc<mp_context::ParentProcess>>,
        every: Duration,
    ) {
        self.watch = Some(Watch {
            control,
            parent,
            every,
        });
    }

    /// Sets the largest message accepted (default [`DEFAULT_MAX_MESSAGE`]).
    pub fn set_max_message(&mut self, max: usize) {
        if let Some(core) = Arc::get_mut(&mut self.core) {
            core.max_message = max;
        }
    }

    /// Serves clients until a client calls `shutdown` or
    /// [`ServerHandle::shutdown`] is called; then closes the listener and
    /// every client connection, and returns.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] if polling the listening socket fails.
    pub fn serve_forever(mut self) -> Result<()> {
        let result = self.accept_loop();
        self.listener.close();
        self.core.stop();
        self.core.close_connections();
        let deadline = Instant::now() + DRAIN;
        let mut conns = self.core.lock_conns();
        while !conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            conns = self
                .core
                .conns_done
                .wait_timeout(conns, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        result
    }

    fn accept_loop(&mut self) -> Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        loop {
            if self.core.stopping() {
                return Ok(());
            }
            if let Some(w) = &self.watch
                && w.parent.as_ref().is_some_and(|p| !p.is_alive())
            {
                return Ok(());
            }
            let deadline = self.listener.next_handshake_deadline();
            let check = self
                .watch
                .as_ref()
                .and_then(|w| w.parent.as_ref().map(|_| Instant::now() + w.every));
            let deadline = match (deadline, check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let ready = {
                let mut fds: Vec<PollFd<'_>> = self
                    .listener
                    .poll_fds()
                    .into_iter()
                    .map(|(fd, interest)| {
                        let flags = match interest {
                            mp_conn::Interest::Readable => PollFlags::IN,
                            mp_conn::Interest::Writable => PollFlags::OUT,
                        };
                        PollFd::from_borrowed_fd(fd, flags)
                    })
                    .collect();
                fds.push(PollFd::from_borrowed_fd(
                    self.core.stop_fd.as_fd(),
                    PollFlags::IN,
                ));
                if let Some(w) = &self.watch {
                    fds.push(PollFd::from_borrowed_fd(w.control.as_fd(), PollFlags::IN));
                }
                let timeout = deadline.map(|d| {
                    let left = d.saturating_duration_since(Instant::now());
                    Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    }
                });
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(Error::connection(&self.core.address, e.into())),
                }
                let stops = if self.watch.is_some() { 2 } else { 1 };
                let stop = fds
                    .iter()
                    .rev()
                    .take(stops)
                    .any(|f| !f.revents().is_empty());
                if stop {
                    return Ok(());
                }
                fds.iter().any(|f| !f.revents().is_empty())
            };
            if !ready && deadline.is_none_or(|d| Instant::now() < d) {
                continue;
            }
            match self.listener.accept_timeout(Some(Duration::ZERO)) {
                Ok(Some(conn)) => self.spawn_client(conn),
                Ok(None) => {}
                Err(mp_conn::Error::Closed) => return Ok(()),
                // One client's failed handshake, or a transient accept
                // error (EMFILE): the others are still served.
                Err(_) => {}
            }
        }
    }

    fn spawn_client(&self, conn: Connection) {
        let core = Arc::clone(&self.core);
        let Some(id) = core.register_conn(&conn) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name(format!("mp-manager-conn-{id}"))
            .spawn({
                let core = Arc::clone(&core);
                move || {
                    let mut client = ClientConn::new(Arc::clone(&core), conn, id);
                    let _ = catch_unwind(AssertUnwindSafe(|| client.run()));
                    drop(client);
                }
            });
        if spawned.is_err() {
            core.unregister_conn(id, None);
        }
    }
}

/// A registered object.
pub(crate) struct Entry {
    pub(crate) obj: Arc<dyn Shared>,
    /// In the order `create` returns them.
    pub(crate) exposed: Vec<String>,
    exposed_set: HashSet<String>,
    pub(crate) method_to_typeid: Option<Arc<HashMap<String, String>>>,
    /// Mirrors its slot's `holds`, so that a call on an object that never
    /// received a proxy skips the collector without the table's lock.
    holds: AtomicBool,
}

/// An object and what refers to it.
struct Slot {
    entry: Arc<Entry>,
    global: usize,
    sessions: usize,
    transfers: usize,
    replies: usize,
    /// A proxy to it was seen inside a request's arguments: it may be held
    /// by another object.
    nested: bool,
    /// It received a proxy in a request: it may hold other objects.
    holds: bool,
}

impl Slot {
    fn external(&self) -> usize {
        self.global + self.sessions + self.transfers + self.replies
    }
}

#[derive(Default)]
struct Session {
    conns: usize,
    idents: HashSet<Arc<str>>,
    transfers: Vec<u64>,
}

/// References in transit: one proxy's, or every proxy a forked child got
/// copies of.
struct Transfer {
    idents: Vec<Arc<str>>,
    owner: u64,
}

#[derive(Default)]
pub(crate) struct Table {
    slots: HashMap<Arc<str>, Slot>,
    /// Object identity (the `Arc`'s address) to id, so that an object
    /// handed out twice (`register_shared`) keeps one id, as CPython's
    /// `id(obj)` does.
    by_ptr: HashMap<usize, Arc<str>>,
    sessions: HashMap<u64, Session>,
    transfers: HashMap<u64, Transfer>,
    next_session: u64,
    next_transfer: u64,
}

/// Who a reference belongs to.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Global,
    Session(u64),
}

/// What a connection did with its first request.
enum Mode {
    /// CPython's `accept_connection`: serve method calls.
    Plain,
    /// A session connection: method calls plus in-band public functions.
    Session(u64),
}

/// The server state shared by every connection thread.
pub(crate) struct Core {
    registry: Registry,
    pub(crate) address: Address,
    pub(crate) codec: Arc<dyn Codec>,
    prefix: String,
    next_id: AtomicU64,
    table: Mutex<Table>,
    stopping: AtomicBool,
    stop_fd: OwnedFd,
    /// Live client connections: a duplicate of each socket (to shut it
    /// down when the server stops or its session ends) and its session.
    conns: Mutex<HashMap<u64, (OwnedFd, Option<u64>)>>,
    conns_done: Condvar,
    next_conn: AtomicU64,
    max_message: usize,
    /// One collection at a time.
    gc: Mutex<()>,
    /// How many objects were ever removed from the table: a connection's
    /// cached entry is still the table's while this has not moved.
    removals: AtomicU64,
}

impl Core {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_conns(&self) -> MutexGuard<'_, HashMap<u64, (OwnedFd, Option<u64>)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = rustix::io::write(&self.stop_fd, &1u64.to_ne_bytes());
    }

    fn register_conn(&self, conn: &Connection) -> Option<u64> {
        let dup = rustix::io::fcntl_dupfd_cloexec(conn.as_fd(), 0).ok()?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.lock_conns().insert(id, (dup, None));
        if self.stopping() {
            // Raced with a shutdown: it may have missed this one.
            self.close_connections();
        }
        Some(id)
    }

    fn unregister_conn(&self, id: u64, session: Option<u64>) {
        let mut conns = self.lock_conns();
        conns.remove(&id);
        if conns.is_empty() {
            self.conns_done.notify_all();
        }
        drop(conns);
        if let Some(s) = session {
            self.leave_session(s);
        }
    }

    fn close_connections(&self) {
        for (fd, _) in self.lock_conns().values() {
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
        }
    }

    /// Shuts down the connections of `session` (its process is gone or
    /// dropped its last proxy; its thread connections serve nobody).
    fn close_session_connections(&self, session: u64) {
        for (fd, s) in self.lock_conns().values() {
            if *s == Some(session) {
                let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
            }
        }
    }

    fn set_conn_session(&self, id: u64, session: u64) {
        if let Some(c) = self.lock_conns().get_mut(&id) {
            c.1 = Some(session);
        }
    }

    fn new_ident(&self) -> Arc<str> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:04x}", self.prefix).into()
    }

    fn is_ours(&self, id: &str) -> bool {
        id.len() > self.prefix.len() && id.starts_with(&self.prefix)
    }

    /// The object behind a proxy value, if this server holds it.
    pub(crate) fn resolve(&self, value: &Value) -> Option<Arc<dyn Shared>> {
        let mut id = None;
        for_each_token(value, &mut |t| {
            id.get_or_insert_with(|| t.id.clone());
        });
        let id = id?;
        let table = self.table();
        table
            .slots
            .get(id.as_str())
            .map(|s| Arc::clone(&s.entry.obj))
    }

    fn lookup(&self, ident: &str) -> Option<Arc<Entry>> {
        self.table().slots.get(ident).map(|s| Arc::clone(&s.entry))
    }

    /// Takes `ident` out of the table.
    fn remove_slot(&self, table: &mut Table, ident: &str) -> Option<Arc<Entry>> {
        let slot = table.slots.remove(ident)?;
        self.removals.fetch_add(1, Ordering::Release);
        let ptr = Arc::as_ptr(&slot.entry.obj) as *const () as usize;
        if table.by_ptr.get(&ptr).is_some_and(|id| &**id == ident) {
            table.by_ptr.remove(&ptr);
        }
        Some(slot.entry)
    }

    // ----- creating objects -----

    /// `create(typeid, *args, **kwds)`: a new object with one reference for
    /// `owner`; returns its id and exposed methods.
    fn create(
        &self,
        typeid: &str,
        args: Args,
        owner: Owner,
        cx: &Call<'_>,
    ) -> std::result::Result<(Arc<str>, Vec<String>), Raise> {
        let spec = self
            .registry
            .get(typeid)
            .ok_or_else(|| Raise::Traceback(format!("KeyError: '{typeid}'\n")))?;
        // The constructor may keep the proxies it was given: the new object
        // holds them, and they may be held (a decref to zero then leaves
        // them to the collector, as `note_nested` does for method calls).
        let mut held: Vec<String> = Vec::new();
        for v in args.args.iter().chain(args.kwds.values()) {
            for_each_token(v, &mut |t| held.push(t.id.clone()));
        }
        let holds = !held.is_empty();
        let obj: Arc<dyn Shared> = match &spec.constructor {
            // CPython's create runs the callable on the public connection:
            // its exception is a traceback there.
            Some(ctor) => ctor(args, cx).map_err(|r| match r {
                Raise::Exception(e) => Raise::Traceback(traceback(&e.to_string())),
                t => t,
            })?,
            None => {
                if !args.kwds.is_empty() || args.args.len() != 1 {
                    return Err(Raise::Traceback(traceback(
                        "ValueError: Without callable, must have one non-keyword argument",
                    )));
                }
                let value = args.args.into_iter().next().unwrap_or_default();
                Arc::new(Opaque(value))
            }
        };
        if holds {
            let mut table = self.table();
            for id in &held {
                if let Some(s) = table.slots.get_mut(id.as_str()) {
                    s.nested = true;
                }
            }
        }
        Ok(self.insert(spec, obj, owner, holds))
    }

    /// Registers `obj` (or finds its existing id) with one reference for
    /// `owner`.
    fn insert(
        &self,
        spec: &TypeSpec,
        obj: Arc<dyn Shared>,
        owner: Owner,
        holds: bool,
    ) -> (Arc<str>, Vec<String>) {
        let exposed = spec.exposed_for(&*obj);
        let ptr = Arc::as_ptr(&obj) as *const () as usize;
        let mut table = self.table();
        let ident = match table.by_ptr.get(&ptr) {
            Some(id) if table.slots.contains_key(id) => Arc::clone(id),
            _ => {
                let ident = self.new_ident();
                let entry = Entry {
                    obj,
                    exposed_set: exposed.iter().cloned().collect(),
                    exposed: exposed.clone(),
                    method_to_typeid: spec.method_to_typeid.clone(),
                    holds: AtomicBool::new(holds),
                };
                table.by_ptr.insert(ptr, Arc::clone(&ident));
                table.slots.insert(
                    Arc::clone(&ident),
                    Slot {
                        entry: Arc::new(entry),
                        global: 0,
                        sessions: 0,
                        transfers: 0,
                        replies: 0,
                        nested: false,
                        holds,
                    },
                );
                ident
            }
        };
        // A fresh id cannot be in the session yet; an old one (the same
        // object handed out again) may.
        add_ref(&mut table, &ident, owner);
        let exposed = table.slots[&ident].entry.exposed.clone();
        (ident, exposed)
    }

    // ----- references -----

    fn incref(&self, ident: &str, owner: Owner) -> std::result::Result<(), Raise> {
        let mut table = self.table();
        if !table.slots.contains_key(ident) {
            return Err(Raise::Traceback(traceback(&format!("KeyError: '{ident}'"))));
        }
        add_ref(&mut table, ident, owner);
        Ok(())
    }

    fn decref(&self, ident: &str, owner: Owner) -> std::result::Result<(), Raise> {
        let mut table = self.table();
        let Some(slot) = table.slots.get_mut(ident) else {
            return match owner {
                // A session may drop what is already gone (the server
                // freed it, or another reference path did).
                Owner::Session(_) => Ok(()),
                Owner::Global => Err(Raise::Traceback(traceback(&format!("KeyError: '{ident}'")))),
            };
        };
        match owner {
            Owner::Global => {
                if slot.global == 0 {
                    return Err(Raise::Traceback(traceback(&format!(
                        "AssertionError: Id {ident} has refcount 0, not 1+"
                    ))));
                }
                slot.global -= 1;
            }
            Owner::Session(s) => {
                let held = table
                    .sessions
                    .get_mut(&s)
                    .is_some_and(|sess| sess.idents.remove(ident));
                if !held {
                    return Ok(());
                }
                if let Some(slot) = table.slots.get_mut(ident) {
                    slot.sessions -= 1;
                }
            }
        }
        let collect = self.maybe_free(&mut table, ident);
        drop(table);
        if collect {
            self.collect();
        }
        Ok(())
    }

    /// Frees `ident` if nothing refers to it and it cannot be held by
    /// another object. Returns whether a collection is needed instead.
    fn maybe_free(&self, table: &mut Table, ident: &str) -> bool {
        let Some(slot) = table.slots.get(ident) else {
            return false;
        };
        if slot.external() > 0 {
            return false;
        }
        if slot.nested || slot.holds {
            return true;
        }
        self.remove_slot(table, ident);
        false
    }

    fn hold_reply_refs(&self, ids: &[Arc<str>]) {
        if ids.is_empty() {
            return;
        }
        let mut table = self.table();
        for id in ids {
            if let Some(s) = table.slots.get_mut(id) {
                s.replies += 1;
            }
        }
    }

    fn release_reply_refs(&self, ids: Vec<Arc<str>>) {
        if ids.is_empty() {
            return;
        }
        let mut table = self.table();
        let mut collect = false;
        for id in &ids {
            if let Some(s) = table.slots.get_mut(id) {
                s.replies -= 1;
                collect |= self.maybe_free(&mut table, id);
            }
        }
        drop(table);
        if collect {
            self.collect();
        }
    }

    // ----- sessions and transfers -----

    fn new_session(&self) -> u64 {
        let mut table = self.table();
        table.next_session += 1;
        let id = table.next_session;
        table.sessions.insert(
            id,
            Session {
                conns: 1,
                ..Session::default()
            },
        );
        id
    }

    fn join_session(&self, id: u64) -> bool {
        match self.table().sessions.get_mut(&id) {
            Some(s) => {
                s.conns += 1;
                true
            }
            None => false,
        }
    }

    fn leave_session(&self, id: u64) {
        let mut table = self.table();
        let Some(session) = table.sessions.get_mut(&id) else {
            return;
        };
        session.conns -= 1;
        if session.conns > 0 {
            return;
        }
        let session = table.sessions.remove(&id).expect("looked up above");
        let mut collect = false;
        for ident in &session.idents {
            if let Some(slot) = table.slots.get_mut(ident) {
                slot.sessions -= 1;
                collect |= self.maybe_free(&mut table, ident);
            }
        }
        for key in &session.transfers {
            if let Some(t) = table.transfers.remove(key) {
                for ident in &t.idents {
                    if let Some(slot) = table.slots.get_mut(ident) {
                        slot.transfers -= 1;
                        collect |= self.maybe_free(&mut table, ident);
                    }
                }
            }
        }
        drop(table);
        self.close_session_connections(id);
        if collect {
            self.collect();
        }
    }

    fn transfer(&self, ident: &str, session: u64) -> std::result::Result<u64, Raise> {
        let table = self.table();
        let Some((ident, _)) = table.slots.get_key_value(ident) else {
            return Err(Raise::Traceback(traceback(&format!("KeyError: '{ident}'"))));
        };
        let ident = Arc::clone(ident);
        Ok(self.new_transfer(table, vec![ident], session))
    }

    /// A transfer of everything `session` holds (see [`EXT_FORK`]).
    fn fork_transfer(&self, session: u64) -> u64 {
        let table = self.table();
        let idents: Vec<Arc<str>> = table
            .sessions
            .get(&session)
            .map(|s| s.idents.iter().cloned().collect())
            .unwrap_or_default();
        self.new_transfer(table, idents, session)
    }

    fn new_transfer(
        &self,
        mut table: MutexGuard<'_, Table>,
        idents: Vec<Arc<str>>,
        owner: u64,
    ) -> u64 {
        for ident in &idents {
            if let Some(slot) = table.slots.get_mut(ident) {
                slot.transfers += 1;
            }
        }
        table.next_transfer += 1;
        let key = table.next_transfer;
        table.transfers.insert(key, Transfer { idents, owner });
        if let Some(s) = table.sessions.get_mut(&owner) {
            s.transfers.push(key);
        }
        key
    }

    /// Moves the references of transfer `key` into `session`; returns the
    /// ids it held (none if it is gone: claimed already, or its sender's
    /// session ended).
    fn claim(&self, key: u64, session: u64) -> Vec<Arc<str>> {
        let mut table = self.table();
        let Some(t) = table.transfers.remove(&key) else {
            return Vec::new();
        };
        if let Some(owner) = table.sessions.get_mut(&t.owner) {
            owner.transfers.retain(|k| *k != key);
        }
        let mut moved = Vec::new();
        let mut collect = false;
        for ident in t.idents {
            let Some(slot) = table.slots.get_mut(&ident) else {
                continue;
            };
            slot.transfers -= 1;
            add_ref(&mut table, &ident, Owner::Session(session));
            collect |= self.maybe_free(&mut table, &ident);
            moved.push(ident);
        }
        drop(table);
        if collect {
            self.collect();
        }
        moved
    }

    // ----- nesting -----

    /// Records that the arguments of a call on `holder` carry proxies of
    /// this server: the holder may keep them, they may be kept.
    fn note_nested(&self, holder: &str, args: &[Value], kwds: &Dict) {
        let mut ids: Vec<String> = Vec::new();
        for v in args {
            for_each_token(v, &mut |t| ids.push(t.id.clone()));
        }
        for (_, v) in kwds.iter() {
            for_each_token(v, &mut |t| ids.push(t.id.clone()));
        }
        if ids.is_empty() {
            return;
        }
        let mut table = self.table();
        if let Some(s) = table.slots.get_mut(holder) {
            s.holds = true;
            s.entry.holds.store(true, Ordering::Relaxed);
        }
        for id in ids {
            if let Some(s) = table.slots.get_mut(id.as_str()) {
                s.nested = true;
            }
        }
    }

    /// Frees the objects that nothing refers to, directly or through the
    /// values of referenced objects (mark from the referenced ones, sweep
    /// the rest). The marking visits objects without the table lock; it
    /// relies on proxies moving between objects only through clients,
    /// which hold references meanwhile.
    fn collect(&self) {
        let _one = self.gc.lock().unwrap_or_else(|e| e.into_inner());
        let (roots, unreferenced) = {
            let table = self.table();
            let mut roots = Vec::new();
            let mut unreferenced: HashMap<Arc<str>, Arc<Entry>> = HashMap::new();
            for (id, s) in &table.slots {
                if s.external() > 0 {
                    if s.holds {
                        roots.push(Arc::clone(&s.entry));
                    }
                } else {
                    unreferenced.insert(Arc::clone(id), Arc::clone(&s.entry));
                }
            }
            (roots, unreferenced)
        };
        if unreferenced.is_empty() {
            return;
        }
        // Everything reachable from a referenced object survives; what is
        // only reachable from unreachable objects is unreachable too, so
        // one pass frees whole garbage graphs.
        let mut reached: HashSet<Arc<str>> = HashSet::new();
        let mut work = roots;
        while let Some(entry) = work.pop() {
            entry.obj.visit_values(&mut |v| {
                for_each_token(v, &mut |t| {
                    if let Some((id, e)) = unreferenced.get_key_value(t.id.as_str())
                        && reached.insert(Arc::clone(id))
                    {
                        work.push(Arc::clone(e));
                    }
                });
            });
        }
        let mut freed = Vec::new();
        {
            let mut table = self.table();
            for id in unreferenced.keys() {
                if reached.contains(id) {
                    continue;
                }
                if table.slots.get(id).is_some_and(|s| s.external() == 0)
                    && let Some(entry) = self.remove_slot(&mut table, id)
                {
                    freed.push(entry);
                }
            }
        }
        // The objects (and their values) are dropped here, outside every
        // lock.
        drop(unreferenced);
        drop(freed);
    }

    /// After a call on an object that holds proxies: objects it dropped
    /// may be unreachable now.
    fn collect_after_call(&self, holder: &str, entry: Option<&Entry>) {
        if entry.is_some_and(|e| !e.holds.load(Ordering::Relaxed)) {
            return;
        }
        let table = self.table();
        let holds = table.slots.get(holder).is_some_and(|s| s.holds);
        let any_unreferenced = holds && table.slots.values().any(|s| s.external() == 0);
        drop(table);
        if any_unreferenced {
            self.collect();
        }
    }

    // ----- the public functions -----

    fn debug_info(&self) -> String {
        let table = self.table();
        let mut ids: Vec<&Arc<str>> = table.slots.keys().collect();
        ids.sort();
        ids.iter()
            .map(|id| {
                let s = &table.slots[*id];
                let text: String = s.entry.obj.str().chars().take(75).collect();
                format!("  {id}:       refcount={}\n    {text}", s.external())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs public function `func` for a connection in `mode` (`None`: a
    /// fresh connection, one request).
    fn public(
        &self,
        func: &str,
        args: Vec<Value>,
        kwds: Dict,
        owner: Owner,
        cx: &Call<'_>,
    ) -> std::result::Result<Value, Raise> {
        let one_str = |args: &[Value]| -> std::result::Result<String, Raise> {
            match args {
                [Value::Str(s)] => Ok(s.to_string()),
                _ => Err(Raise::Traceback(traceback(&format!(
                    "TypeError: {func}() takes one id argument"
                )))),
            }
        };
        match func {
            "dummy" => Ok(Value::None),
            "number_of_objects" => Ok(Value::from(self.table().slots.len())),
            "debug_info" => Ok(Value::from(self.debug_info())),
            "create" => {
                let mut args = args;
                if args.is_empty() {
                    return Err(Raise::Traceback(traceback(
                        "TypeError: create() missing 1 required positional argument: 'typeid'",
                    )));
                }
                let typeid = match args.remove(0) {
                    Value::Str(s) => s,
                    other => {
                        return Err(Raise::Traceback(traceback(&format!("KeyError: {other}"))));
                    }
                };
                let (ident, exposed) = self.create(&typeid, Args::new(args, kwds), owner, cx)?;
                let exposed: Vec<Value> = exposed.into_iter().map(Value::from).collect();
                Ok(Value::from((
                    Value::from(&*ident),
                    Value::Tuple(Tuple::from(exposed)),
                )))
            }
            "incref" => self.incref(&one_str(&args)?, owner).map(|()| Value::None),
            "decref" => self.decref(&one_str(&args)?, owner).map(|()| Value::None),
            "get_methods" => {
                let id = match args.as_slice() {
                    [v] => Token::from_value(v)
                        .map(|t| t.id)
                        .or_else(|| v.as_str().map(str::to_owned)),
                    _ => None,
                };
                let entry = id.and_then(|id| self.lookup(&id)).ok_or_else(|| {
                    Raise::Traceback(traceback("KeyError: get_methods() of an unknown object"))
                })?;
                let names: Vec<Value> = entry
                    .exposed
                    .iter()
                    .map(|m| Value::from(m.as_str()))
                    .collect();
                Ok(Value::Tuple(Tuple::from(names)))
            }
            _ => Err(Raise::Traceback(traceback(&format!(
                "AssertionError: '{func}' unrecognized"
            )))),
        }
    }
}

fn add_ref(table: &mut Table, ident: &str, owner: Owner) {
    match owner {
        Owner::Global => {
            if let Some(s) = table.slots.get_mut(ident) {
                s.global += 1;
            }
        }
        Owner::Session(sess) => {
            let Some((key, _)) = table.slots.get_key_value(ident) else {
                return;
            };
            let key = Arc::clone(key);
            let new = table
                .sessions
                .get_mut(&sess)
                .is_some_and(|s| s.idents.insert(key));
            if new && let Some(s) = table.slots.get_mut(ident) {
                s.sessions += 1;
            }
        }
    }
}

/// A traceback-style text for `#TRACEBACK` replies: what CPython's
/// `format_exc()` ends with.
pub(crate) fn traceback(exception_line: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"<mp-manager server>\", in serve_client\n{exception_line}\n"
    )
}

/// The largest request buffer a connection keeps for the next request.
const KEEP_INPUT: usize = 1 << 20;

/// Why a connection stopped being served.
enum Stop {
    /// The peer closed it or it failed: nothing more to send.
    Closed,
}

/// One client connection, served on its own thread.
struct ClientConn {
    core: Arc<Core>,
    conn: Connection,
    id: u64,
    mode: Option<Mode>,
    /// References held for the last reply (see the module docs).
    reply_refs: Vec<Arc<str>>,
    /// The request being read and the reply being written: one buffer
    /// each, reused from call to call.
    input: Vec<u8>,
    out: Vec<u8>,
    /// The object of the last call, and `Core::removals` when it was
    /// looked up: a client calls one proxy many times in a row. Weak, so
    /// that an object the table lets go is dropped at once.
    last: Option<(Arc<str>, Weak<Entry>, u64)>,
    /// The last method called on that object, known to be exposed.
    last_method: Option<Arc<str>>,
}

/// The object a method call was made on, and its id.
type Called = (Arc<str>, Arc<Entry>);

impl ClientConn {
    fn new(core: Arc<Core>, conn: Connection, id: u64) -> ClientConn {
        ClientConn {
            core,
            conn,
            id,
            mode: None,
            reply_refs: Vec::new(),
            input: Vec::new(),
            out: Vec::new(),
            last: None,
            last_method: None,
        }
    }

    /// The table's entry for `ident`: the last call's while no object has
    /// been removed since (ids are never reused), else looked up.
    fn entry(&mut self, ident: &Arc<str>) -> Option<Arc<Entry>> {
        let removals = self.core.removals.load(Ordering::Acquire);
        if let Some((id, entry, seen)) = &self.last
            && *seen == removals
            && id == ident
            && let Some(entry) = entry.upgrade()
        {
            return Some(entry);
        }
        let entry = self.core.lookup(ident)?;
        self.last = Some((Arc::clone(ident), Arc::downgrade(&entry), removals));
        self.last_method = None;
        Some(entry)
    }

    fn session(&self) -> Option<u64> {
        match self.mode {
            Some(Mode::Session(s)) => Some(s),
            _ => None,
        }
    }

    fn run(&mut self) {
        // The first request: a public function (CPython's
        // `_handle_request`); only `accept_connection` (and our session
        // functions) go on to serve method calls.
        let request = match self.read_request() {
            Ok(Some(r)) => r,
            Ok(None) | Err(Stop::Closed) => return,
        };
        let request = match request {
            Ok(r) => r,
            Err(text) => {
                let _ = self.send(&wire::reply(wire::TRACEBACK, Value::from(traceback(&text))));
                return;
            }
        };
        let func = request.method.clone();
        match &*func {
            "accept_connection" => {
                self.mode = Some(Mode::Plain);
                if self.send(&wire::reply(wire::RETURN, Value::None)).is_ok() {
                    self.serve();
                }
            }
            EXT_SESSION => {
                let session = self.core.new_session();
                self.core.set_conn_session(self.id, session);
                self.mode = Some(Mode::Session(session));
                let reply = Value::from((
                    Value::from(session as i64),
                    Value::from(self.core.prefix.as_str()),
                    wire::address_to_value(&self.core.address),
                    Value::from(EXT_VERSION),
                ));
                if self.send(&wire::reply(wire::RETURN, reply)).is_ok() {
                    self.serve();
                }
            }
            EXT_JOIN => {
                let session = request.args.first().and_then(Value::as_i64).unwrap_or(-1);
                let session = u64::try_from(session)
                    .ok()
                    .filter(|s| self.core.join_session(*s));
                let Some(session) = session else {
                    let _ = self.send(&wire::reply(
                        wire::TRACEBACK,
                        Value::from(traceback("KeyError: no such session")),
                    ));
                    return;
                };
                self.core.set_conn_session(self.id, session);
                self.mode = Some(Mode::Session(session));
                if self.send(&wire::reply(wire::RETURN, Value::None)).is_ok() {
                    self.serve();
                }
            }
            "shutdown" => {
                let _ = self.send(&wire::reply(wire::RETURN, Value::None));
                self.core.stop();
            }
            _ => {
                let cx = Call {
                    owner: self.id,
                    peer: None,
                    server: Some(&self.core),
                };
                let reply =
                    match self
                        .core
                        .public(&func, request.args, request.kwds, Owner::Global, &cx)
                    {
                        Ok(v) => wire::reply(wire::RETURN, v),
                        Err(r) => raise_reply(r),
                    };
                let _ = self.send(&reply);
            }
        }
    }

    /// Reads and decodes one request. `Ok(None)`: the peer closed
    /// cleanly; `Ok(Some(Err(text)))`: a bad request, answered with a
    /// traceback while the connection stays usable.
    fn read_request(
        &mut self,
    ) -> std::result::Result<Option<std::result::Result<Request, String>>, Stop> {
        let mut bytes = std::mem::take(&mut self.input);
        let received = self
            .conn
            .recv_bytes_into_vec_max(&mut bytes, self.core.max_message);
        let bytes = match received {
            Ok(_) => bytes,
            Err(mp_conn::Error::Eof) => return Ok(None),
            Err(mp_conn::Error::MessageTooLong { len, max }) => {
                let _ = self.send(&wire::reply(
                    wire::TRACEBACK,
                    Value::from(traceback(&format!(
                        "OSError: bad message length: {len} bytes, limit {max}; closing the connection"
                    ))),
                ));
                return Err(Stop::Closed);
            }
            Err(_) => return Err(Stop::Closed),
        };
        let request = match self.core.codec.decode(&bytes) {
            Ok(v) => Request::from_value(v),
            Err(e) => Err(format!("ValueError: could not decode the request: {e}")),
        };
        // The buffer serves the next request, unless one huge request made
        // it huge.
        if bytes.capacity() <= KEEP_INPUT {
            self.input = bytes;
        }
        Ok(Some(request))
    }

    fn send(&mut self, msg: &Value) -> std::result::Result<(), Stop> {
        self.out.clear();
        if let Err(e) = self.core.codec.encode(msg, &mut self.out) {
            // CPython's `#UNSERIALIZABLE`: the result could not be
            // encoded; the text always can.
            self.out.clear();
            let text = Value::from(traceback(&format!(
                "TypeError: cannot encode the result: {e}"
            )));
            self.core
                .codec
                .encode(&wire::reply(wire::UNSERIALIZABLE, text), &mut self.out)
                .map_err(|_| Stop::Closed)?;
        }
        self.conn.send_bytes(&self.out).map_err(|_| Stop::Closed)
    }

    /// CPython's `serve_client`: method calls until the peer goes away.
    fn serve(&mut self) {
        while !self.core.stopping() {
            let request = match self.read_request() {
                Ok(Some(r)) => r,
                Ok(None) | Err(Stop::Closed) => return,
            };
            let (reply, called) = match request {
                Ok(req) => self.handle(req),
                Err(text) => (
                    wire::reply(wire::TRACEBACK, Value::from(traceback(&text))),
                    None,
                ),
            };
            // References held for the previous reply go once this request
            // (the client's chance to take its own) has been handled.
            let mut held = Vec::new();
            if let Some(payload) = reply.as_seq().and_then(|r| r.get(1)) {
                for_each_token(payload, &mut |t| {
                    if self.core.is_ours(&t.id) {
                        held.push(Arc::<str>::from(t.id.as_str()));
                    }
                });
            }
            self.core.hold_reply_refs(&held);
            let old = std::mem::replace(&mut self.reply_refs, held);
            self.core.release_reply_refs(old);
            // Objects the call dropped from its holder may be unreachable
            // now (those in the reply are held for it, above).
            if let Some((ident, entry)) = called {
                self.core.collect_after_call(&ident, Some(&entry));
            }
            if self.send(&reply).is_err() {
                return;
            }
        }
    }

    /// Answers one request; for a method call, also returns the object
    /// called and its id (for `collect_after_call`: the entry looked up
    /// here, rather than its id cloned and its weak reference upgraded
    /// again on every call). An id the table does not have returns none:
    /// there is nothing to collect after it.
    fn handle(&mut self, mut req: Request) -> (Value, Option<Called>) {
        let Some(ident) = req.ident.take() else {
            return (self.in_band(req.method, req.args, req.kwds), None);
        };
        let Some(entry) = self.entry(&ident) else {
            let reply = wire::reply(
                wire::TRACEBACK,
                Value::from(traceback(&format!("KeyError: '{ident}'"))),
            );
            return (reply, None);
        };
        let reply = self.call(&ident, &entry, req);
        (reply, Some((ident, entry)))
    }

    /// A method call on `entry`, the object `ident`.
    fn call(&mut self, ident: &str, entry: &Entry, req: Request) -> Value {
        let method = &*req.method;
        if req.args.iter().any(has_token) || req.kwds.values().any(has_token) {
            self.core.note_nested(ident, &req.args, &req.kwds);
        }
        // A client calls one method many times in a row: checked once.
        let exposed = self.last_method.as_deref() == Some(method) || {
            let known = entry.exposed_set.contains(method);
            if known {
                self.last_method = Some(Arc::clone(&req.method));
            }
            known
        };
        if !exposed {
            let fallback = match method {
                "#GETVALUE" => Some(entry.obj.get_value()),
                "__str__" => Some(Ok(Value::from(entry.obj.str()))),
                "__repr__" => Some(Ok(Value::from(entry.obj.repr()))),
                _ => None,
            };
            return match fallback {
                Some(Ok(v)) => wire::reply(wire::RETURN, v),
                Some(Err(Raise::Exception(e))) => {
                    wire::reply(wire::TRACEBACK, Value::from(traceback(&e.to_string())))
                }
                Some(Err(Raise::Traceback(t))) => wire::reply(wire::TRACEBACK, Value::from(t)),
                None => {
                    let mut shown: Vec<String> =
                        entry.exposed_set.iter().map(|m| format!("'{m}'")).collect();
                    shown.sort();
                    wire::reply(
                        wire::TRACEBACK,
                        Value::from(traceback(&format!(
                            "AttributeError: method '{method}' of <class '{}'> object is not in exposed={{{}}}",
                            entry.obj.type_name(),
                            shown.join(", ")
                        ))),
                    )
                }
            };
        }
        let cx = Call {
            owner: self.id,
            peer: Some(self.conn.as_fd()),
            server: Some(&self.core),
        };
        let args = Args::new(req.args, req.kwds);
        let result = catch_unwind(AssertUnwindSafe(|| entry.obj.call(method, args, &cx)));
        match result {
            Ok(Ok(out)) => match entry.method_to_typeid.as_ref().and_then(|m| m.get(method)) {
                Some(typeid) => self.proxy_reply(typeid, out, &cx),
                None => match out {
                    Output::Value(v) => wire::reply(wire::RETURN, v),
                    Output::Object(o) => wire::reply(
                        wire::TRACEBACK,
                        Value::from(traceback(&format!(
                            "TypeError: {method}() returned a shared {} object but is not in method_to_typeid",
                            o.type_name()
                        ))),
                    ),
                },
            },
            Ok(Err(r)) => raise_reply(r),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                wire::reply(
                    wire::TRACEBACK,
                    Value::from(traceback(&format!(
                        "SystemError: {method}() panicked: {what}"
                    ))),
                )
            }
        }
    }

    /// `#PROXY`: registers the result as a new object of `typeid`.
    fn proxy_reply(&self, typeid: &str, out: Output, cx: &Call<'_>) -> Value {
        let Some(spec) = self.core.registry.get(typeid) else {
            return wire::reply(
                wire::TRACEBACK,
                Value::from(traceback(&format!("KeyError: '{typeid}'"))),
            );
        };
        let obj = match out {
            Output::Object(o) => o,
            Output::Value(v) => match &spec.constructor {
                // CPython's `create(c, typeid, res)`: the callable applied
                // to the result.
                Some(ctor) => match ctor(Args::new(vec![v], Dict::new()), cx) {
                    Ok(o) => o,
                    Err(r) => return raise_reply(r),
                },
                None => Arc::new(Opaque(v)),
            },
        };
        let owner = match self.session() {
            Some(s) => Owner::Session(s),
            // CPython's serve_client: `create` increfs once; the client's
            // proxy increfs and then decrefs once.
            None => Owner::Global,
        };
        let (ident, exposed) = self.core.insert(spec, obj, owner, false);
        let token = Token {
            typeid: typeid.to_owned(),
            address: self.core.address.clone(),
            id: ident.to_string(),
        };
        let exposed: Vec<Value> = exposed.into_iter().map(Value::from).collect();
        wire::reply(
            wire::PROXY,
            Value::from((Value::Tuple(Tuple::from(exposed)), token.to_value())),
        )
    }

    /// A public function sent on a session connection (our extension; a
    /// CPython server answers `KeyError: None`).
    fn in_band(&mut self, func: Arc<str>, args: Vec<Value>, kwds: Dict) -> Value {
        let Some(session) = self.session() else {
            return wire::reply(wire::TRACEBACK, Value::from(traceback("KeyError: None")));
        };
        let result = match &*func {
            EXT_TRANSFER => match args.as_slice() {
                [Value::Str(id)] => self
                    .core
                    .transfer(id, session)
                    .map(|k| Value::from(k as i64)),
                _ => Err(Raise::Traceback(traceback("TypeError: transfer(id)"))),
            },
            EXT_CLAIM => match args.as_slice() {
                [Value::Int(k)] => {
                    let moved = self.core.claim(*k as u64, session);
                    Ok(Value::List(
                        moved.iter().map(|i| Value::from(&**i)).collect(),
                    ))
                }
                _ => Err(Raise::Traceback(traceback("TypeError: claim(key)"))),
            },
            EXT_FORK => Ok(Value::from(self.core.fork_transfer(session) as i64)),
            "shutdown" => {
                self.core.stop();
                Ok(Value::None)
            }
            "accept_connection" => Err(Raise::Traceback(traceback(
                "AssertionError: accept_connection on a served connection",
            ))),
            _ => {
                let cx = Call {
                    owner: self.id,
                    peer: Some(self.conn.as_fd()),
                    server: Some(&self.core),
                };
                self.core
                    .public(&func, args, kwds, Owner::Session(session), &cx)
            }
        };
        match result {
            Ok(v) => wire::reply(wire::RETURN, v),
            Err(r) => raise_reply(r),
        }
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        let old = std::mem::take(&mut self.reply_refs);
        self.core.release_reply_refs(old);
        self.core.unregister_conn(self.id, self.session());
    }
}

fn raise_reply(r: Raise) -> Value {
    match r {
        Raise::Exception(e) => wire::reply(wire::ERROR, e.to_value()),
        Raise::Traceback(t) => wire::reply(wire::TRACEBACK, Value::from(t)),
    }
}

/// The fuzz target's entry point: decodes and dispatches one request as a
/// served session connection would, with no socket, and returns the
/// encoded reply. The first byte chooses: its high bit the codec (set:
/// pickle, as from a CPython client; clear: postcard); the rest of it 0,
/// the remaining bytes are a whole request; otherwise they are `(method,
/// args, kwds)` for a call on a fresh object of the SyncManager type it
/// names, freed afterwards. Blocking calls give up at once (the "client"
/// is gone).
#[doc(hidden)]
pub fn fuzz_request(bytes: &[u8]) -> Vec<u8> {
    use std::sync::OnceLock;
    const TYPES: &[&str] = &[
        "dict",
        "list",
        "set",
        "Queue",
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Event",
        "Barrier",
        "Value",
        "Array",
        "Namespace",
    ];
    static POSTCARD: OnceLock<Option<Arc<Core>>> = OnceLock::new();
    static PICKLE: OnceLock<Option<Arc<Core>>> = OnceLock::new();
    let Some((&first, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    let pickled = first & 0x80 != 0;
    let which = first & 0x7f;
    let core = (if pickled { &PICKLE } else { &POSTCARD }).get_or_init(|| {
        let mut registry = Registry::new();
        crate::SyncManager::register_types(&mut registry);
        let codec: Arc<dyn Codec> = if pickled {
            Arc::new(crate::Pickle::new())
        } else {
            Arc::new(crate::Postcard)
        };
        let name = format!("mp-manager-fuzz-{}-{}", codec.name(), std::process::id());
        let server = Server::bind(
            registry,
            Some(&Address::Abstract(name.into_bytes())),
            b"fuzz",
            codec,
        )
        .ok()?;
        Some(Arc::clone(&server.core))
    });
    let Some(core) = core else {
        return Vec::new();
    };
    let Ok((a, b)) = mp_conn::pipe(true) else {
        return Vec::new();
    };
    drop(b);
    let mut client = ClientConn::new(Arc::clone(core), a, u64::MAX);
    client.mode = Some(Mode::Session(0));
    let decoded = core.codec.decode(rest).map_err(|e| e.to_string());
    let mut made = None;
    let reply = match (which, decoded) {
        (_, Err(t)) => wire::reply(wire::TRACEBACK, Value::from(t)),
        (0, Ok(v)) => match Request::from_value(v) {
            Ok(req) => client.handle(req).0,
            Err(t) => wire::reply(wire::TRACEBACK, Value::from(t)),
        },
        (n, Ok(v)) => {
            let typeid = TYPES[usize::from(n - 1) % TYPES.len()];
            let cx = Call::detached(u64::MAX);
            let (method, args, kwds) = match v.as_seq() {
                Some([m, a, k]) => (m.clone(), a.clone(), k.clone()),
                _ => (
                    v.clone(),
                    Value::Tuple(Tuple::new()),
                    Value::Dict(Dict::new()),
                ),
            };
            match core.create(typeid, Args::default(), Owner::Global, &cx) {
                Ok((ident, _)) => {
                    made = Some(Arc::clone(&ident));
                    let request = wire::request(Some(&Value::Str(ident)), method, args, kwds);
                    match Request::from_value(request) {
                        Ok(req) => client.handle(req).0,
                        Err(t) => wire::reply(wire::TRACEBACK, Value::from(t)),
                    }
                }
                Err(r) => raise_reply(r),
            }
        }
    };
    drop(client);
    if let Some(ident) = made {
        let _ = core.decref(&ident, Owner::Global);
    }
    let mut out = Vec::new();
    let _ = core.codec.encode(&reply, &mut out);
    out
}

/// The reply kinds a client understands, for tests of the wire shapes.
#[doc(hidden)]
pub fn decode_reply_kind(value: Value) -> std::result::Result<&'static str, String> {
    Ok(match Reply::from_value(value)? {
        Reply::Return(_) => wire::RETURN,
        Reply::Error(_) => wire::ERROR,
        Reply::Traceback(_) => wire::TRACEBACK,
        Reply::Proxy { .. } => wire::PROXY,
        Reply::Unserializable(_) => wire::UNSERIALIZABLE,
    })
}
