//! The client side of the protocol: one [`Client`] per manager address in a
//! process, its connections, and the process's references.
//!
//! - **Thread connections.** Each thread that calls methods uses its own
//!   connection (thread-local, as CPython's `BaseProxy._tls`), opened on
//!   first use; a connection is never used by another process: each entry
//!   remembers the pid that opened it, so a forked child opens its own
//!   (gh-101320).
//! - **The server's kind.** The first contact asks for a session
//!   (`#mp_rs.session`). A Rust server opens one: from then on `create`,
//!   `incref` and `decref` travel in-band on already open connections, and
//!   the process's references die with its connections. A CPython server
//!   answers `#TRACEBACK` (an unknown public function); the client then
//!   works exactly as CPython's does (a fresh connection per `create`,
//!   `incref`, `decref`), remembered per server address.
//! - **References.** The process holds at most one server reference per
//!   object, however many proxy handles it has (`refs` counts the
//!   handles): a second proxy to an object costs no round trip, and the
//!   last one to go gives the reference back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use mp_conn::{Address, Connection};
use mp_value::{Dict, Tuple, Value};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::server::{EXT_CLAIM, EXT_FORK, EXT_JOIN, EXT_SESSION, EXT_TRANSFER};
use crate::wire::{self, Reply};

/// What kind of server is at the address.
#[derive(Clone, Debug)]
enum Kind {
    /// Not asked yet.
    Unknown,
    /// A Rust server with our session extension.
    Rust {
        session: i64,
        /// The prefix of its object ids.
        prefix: Arc<str>,
        /// The address it puts in its tokens.
        canonical: Address,
    },
    /// CPython (or a server without the extension).
    CPython,
}

struct State {
    /// The process this state belongs to (a forked child starts over).
    pid: u32,
    kind: Kind,
    /// The session's own connection: keeps the session (and so this
    /// process's references) alive while the client lives.
    anchor: Option<Connection>,
    /// Proxy handles per object id in this process.
    refs: HashMap<Arc<str>, usize>,
    /// Set in the parent just before a fork: the transfer of everything
    /// the session holds, which the forked child claims (its copies of the
    /// proxies keep the objects alive even if the parent drops its own at
    /// once, as `Process` does with the arguments it moved to the child).
    fork_key: Option<i64>,
}

/// A process's view of one manager.
pub(crate) struct Client {
    id: u64,
    me: Weak<Client>,
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) codec: Arc<dyn Codec>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("codec", &self.codec.name())
            .finish()
    }
}

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

static CLIENTS_LOCK: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());

fn clients() -> MutexGuard<'static, Vec<Weak<Client>>> {
    CLIENTS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Server addresses known to run CPython (no session extension).
fn cpython_servers() -> MutexGuard<'static, Vec<Address>> {
    static KNOWN: Mutex<Vec<Address>> = Mutex::new(Vec::new());
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

struct ThreadConn {
    client: u64,
    pid: u32,
    conn: Connection,
    live: Weak<Client>,
}

thread_local! {
    static CONNS: RefCell<Vec<ThreadConn>> = const { RefCell::new(Vec::new()) };
    /// The client whose reply is being converted on this thread: proxies
    /// inside it belong to its server.
    static DECODING: RefCell<Vec<Arc<Client>>> = const { RefCell::new(Vec::new()) };
    /// The client whose request is being encoded on this thread.
    static ENCODING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn pid() -> u32 {
    std::process::id()
}

/// A name for the server's thread (CPython's `accept_connection(name)`).
fn thread_name() -> String {
    let me = mp_context::current_process();
    match std::thread::current().name() {
        Some("main") | None => me.name().to_owned(),
        Some(t) => format!("{}|{t}", me.name()),
    }
}

/// Restores a thread-local stack on drop.
struct PopOnDrop<T: 'static>(&'static std::thread::LocalKey<RefCell<Vec<T>>>);

impl<T> Drop for PopOnDrop<T> {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// Runs `f` with `client` as the thread's decoding context.
pub(crate) fn decoding<R>(client: &Arc<Client>, f: impl FnOnce() -> R) -> R {
    DECODING.with(|d| d.borrow_mut().push(Arc::clone(client)));
    let _pop = PopOnDrop(&DECODING);
    f()
}

/// The client whose reply is being decoded on this thread, if any.
pub(crate) fn decoding_client() -> Option<Arc<Client>> {
    DECODING.with(|d| d.borrow().last().cloned())
}

/// Runs `f` with `client` as the thread's encoding context.
pub(crate) fn encoding<R>(client: &Client, f: impl FnOnce() -> R) -> R {
    ENCODING.with(|e| e.borrow_mut().push(client.id));
    let _pop = PopOnDrop(&ENCODING);
    f()
}

/// Whether a request to `client` is being encoded on this thread.
pub(crate) fn encoding_for(client: &Client) -> bool {
    ENCODING.with(|e| e.borrow().last() == Some(&client.id))
}

impl Client {
    /// The process's client for `address` (with this key and codec),
    /// made on first use.
    pub(crate) fn get(address: &Address, authkey: &[u8], codec: &Arc<dyn Codec>) -> Arc<Client> {
        let mut all = clients();
        all.retain(|w| w.strong_count() > 0);
        for w in all.iter() {
            if let Some(c) = w.upgrade()
                && &c.address == address
                && c.authkey == authkey
                && c.codec.name() == codec.name()
            {
                return c;
            }
        }
        let kind = if cpython_servers().contains(address) {
            Kind::CPython
        } else {
            Kind::Unknown
        };
        let client = Arc::new_cyclic(|me| Client {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            address: address.clone(),
            authkey: authkey.to_vec(),
            codec: Arc::clone(codec),
            state: Mutex::new(State {
                pid: pid(),
                kind,
                anchor: None,
                refs: HashMap::new(),
                fork_key: None,
            }),
        });
        all.push(Arc::downgrade(&client));
        drop(all);
        register_fork_hooks();
        client
    }

    /// The client (of this process) whose server holds `token`: one whose
    /// address or id prefix matches.
    pub(crate) fn find(token: &wire::Token) -> Option<Arc<Client>> {
        let all = clients();
        all.iter().filter_map(Weak::upgrade).find(|c| c.owns(token))
    }

    /// Whether `token` is an object of this client's server.
    pub(crate) fn owns(&self, token: &wire::Token) -> bool {
        if token.address == self.address {
            return true;
        }
        match &self.lock().kind {
            Kind::Rust {
                prefix, canonical, ..
            } => token.address == *canonical || token.id.starts_with(&**prefix),
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, started afresh in a forked child: the parent's
    /// connections are not ours to use, and the references it held must
    /// be taken again for this process.
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        if st.pid != pid() {
            self.start_over(&mut st)?;
        }
        Ok(st)
    }

    /// In a forked child: a session of our own, and references for the
    /// proxies the child got copies of (claimed from the parent's fork
    /// transfer, or taken afresh).
    fn start_over(&self, st: &mut State) -> Result<()> {
        st.pid = pid();
        // Our copy of the parent's socket: closed, never written.
        st.anchor = None;
        let fork_key = st.fork_key.take();
        if matches!(st.kind, Kind::Rust { .. }) {
            st.kind = Kind::Unknown;
        }
        self.ensure_kind(st)?;
        let mut missing: Vec<Arc<str>> = st.refs.keys().cloned().collect();
        if let (Kind::Rust { .. }, Some(key)) = (&st.kind, fork_key) {
            let claimed = self.in_band(st, EXT_CLAIM, vec![Value::from(key)], Dict::new())?;
            let claimed: Vec<&str> = claimed
                .as_seq()
                .map(|c| c.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            missing.retain(|id| !claimed.contains(&&**id));
            // References for proxies the child has no copy of go back.
            for id in claimed {
                if !st.refs.contains_key(id) {
                    let _ = self.in_band(st, "decref", vec![Value::from(id)], Dict::new());
                }
            }
        }
        for ident in missing {
            if self.server_incref(st, &ident).is_err() {
                st.refs.remove(&ident);
            }
        }
        Ok(())
    }

    /// Connects and authenticates a fresh connection.
    fn connect(&self) -> Result<Connection> {
        mp_conn::ClientBuilder::new()
            .authkey(self.authkey.clone())
            .connect(&self.address)
            .map_err(|e| Error::connection(&self.address, e))
    }

    /// Sends one request on `conn` and reads the reply.
    fn exchange(&self, conn: &mut Connection, msg: &Value) -> Result<Reply> {
        let mut buf = Vec::with_capacity(64);
        self.codec.encode(msg, &mut buf)?;
        conn.send_bytes(&buf)
            .map_err(|e| Error::connection(&self.address, e))?;
        let bytes = conn
            .recv_bytes()
            .map_err(|e| Error::connection(&self.address, e))?;
        self.read_reply(&bytes)
    }

    fn read_reply(&self, bytes: &[u8]) -> Result<Reply> {
        let value = self.codec.decode(bytes)?;
        Reply::from_value(value).map_err(Error::Protocol)
    }

    /// CPython's `dispatch(c, None, func, args)` on a fresh connection.
    pub(crate) fn public_call(&self, func: &str, args: Vec<Value>, kwds: Dict) -> Result<Value> {
        let mut conn = self.connect()?;
        let msg = wire::request(
            None,
            Value::from(func),
            Value::Tuple(Tuple::from(args)),
            Value::Dict(kwds),
        );
        let reply = self.exchange(&mut conn, &msg)?;
        reply_value(reply)
    }

    /// Learns the server's kind if not known yet, opening the session (and
    /// its anchor connection) on a Rust server.
    fn ensure_kind(&self, st: &mut State) -> Result<()> {
        if !matches!(st.kind, Kind::Unknown) {
            return Ok(());
        }
        let mut conn = self.connect()?;
        let msg = wire::request(
            None,
            Value::from(EXT_SESSION),
            Value::Tuple(Tuple::from(vec![Value::from(i64::from(pid()))])),
            Value::Dict(Dict::new()),
        );
        match self.exchange(&mut conn, &msg)? {
            Reply::Return(v) => {
                let parts = v.as_seq().filter(|p| p.len() >= 3);
                let parsed = parts.and_then(|p| {
                    Some((
                        p[0].as_i64()?,
                        Arc::<str>::from(p[1].as_str()?),
                        wire::address_from_value(&p[2])?,
                    ))
                });
                let Some((session, prefix, canonical)) = parsed else {
                    return Err(Error::Protocol(format!("bad session reply {v}")));
                };
                st.kind = Kind::Rust {
                    session,
                    prefix,
                    canonical,
                };
                st.anchor = Some(conn);
            }
            Reply::Traceback(_) => {
                st.kind = Kind::CPython;
                let mut known = cpython_servers();
                if !known.contains(&self.address) {
                    known.push(self.address.clone());
                }
            }
            other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
        Ok(())
    }

    /// Makes sure the server is reachable and its kind known (what
    /// `connect()` checks).
    pub(crate) fn check(&self) -> Result<()> {
        let mut st = self.state()?;
        self.ensure_kind(&mut st)?;
        if matches!(st.kind, Kind::CPython) {
            drop(st);
            self.public_call("dummy", Vec::new(), Dict::new())?;
        }
        Ok(())
    }

    /// Opens this thread's connection to the server.
    fn open_thread_conn(&self) -> Result<Connection> {
        let session = {
            let mut st = self.state()?;
            self.ensure_kind(&mut st)?;
            match st.kind {
                Kind::Rust { session, .. } => Some(session),
                _ => None,
            }
        };
        let mut conn = self.connect()?;
        let msg = match session {
            Some(s) => wire::request(
                None,
                Value::from(EXT_JOIN),
                Value::from((s, thread_name())),
                Value::Dict(Dict::new()),
            ),
            None => wire::request(
                None,
                Value::from("accept_connection"),
                Value::from((thread_name(),)),
                Value::Dict(Dict::new()),
            ),
        };
        reply_value(self.exchange(&mut conn, &msg)?)?;
        Ok(conn)
    }

    /// Runs `f` on this thread's connection (opened if needed). A failed
    /// connection is dropped, so that the next call opens a new one.
    fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> mp_conn::Result<R>) -> Result<R> {
        let me = pid();
        let taken = CONNS
            .try_with(|c| {
                let mut conns = c.borrow_mut();
                // Entries of dead clients or of the parent process are
                // dropped (the parent's fds are only closed, never used).
                conns.retain(|t| t.live.strong_count() > 0 && t.pid == me);
                let at = conns.iter().position(|t| t.client == self.id)?;
                Some(conns.swap_remove(at))
            })
            .ok()
            .flatten();
        let mut entry = match taken {
            Some(t) => t,
            None => ThreadConn {
                client: self.id,
                pid: me,
                conn: self.open_thread_conn()?,
                live: self.me.clone(),
            },
        };
        let result = f(&mut entry.conn);
        match result {
            Ok(r) => {
                // During thread exit the table may be gone: then the
                // connection simply closes.
                let _ = CONNS.try_with(|c| c.borrow_mut().push(entry));
                Ok(r)
            }
            Err(e) => Err(Error::connection(&self.address, e)),
        }
    }

    /// Whether this thread has a connection to the server.
    fn has_thread_conn(&self) -> bool {
        let me = pid();
        CONNS
            .try_with(|c| {
                c.borrow()
                    .iter()
                    .any(|t| t.client == self.id && t.pid == me)
            })
            .unwrap_or(false)
    }

    /// Calls `method` of object `ident` on this thread's connection.
    pub(crate) fn call(
        &self,
        ident: &Value,
        method: &str,
        args: Value,
        kwds: Dict,
    ) -> Result<Reply> {
        let msg = wire::request(Some(ident), Value::from(method), args, Value::Dict(kwds));
        self.exchange_on_thread(&msg)
    }

    /// Sends `msg` on this thread's connection (opened if needed) and
    /// reads the reply.
    fn exchange_on_thread(&self, msg: &Value) -> Result<Reply> {
        let mut buf = Vec::with_capacity(64);
        self.codec.encode(msg, &mut buf)?;
        let bytes = self.with_conn(|conn| {
            conn.send_bytes(&buf)?;
            conn.recv_bytes()
        })?;
        self.read_reply(&bytes)
    }

    /// A public function in-band on a session connection: this thread's if
    /// it has one, else the anchor.
    fn in_band(&self, st: &mut State, func: &str, args: Vec<Value>, kwds: Dict) -> Result<Value> {
        let msg = wire::request(
            None,
            Value::from(func),
            Value::Tuple(Tuple::from(args)),
            Value::Dict(kwds),
        );
        if self.has_thread_conn() {
            return reply_value(self.exchange_on_thread(&msg)?);
        }
        let Some(anchor) = st.anchor.as_mut() else {
            return Err(Error::Protocol("the session connection is gone".into()));
        };
        let reply = match self.exchange_anchor(anchor, &msg) {
            Ok(r) => r,
            Err(e) => {
                st.anchor = None;
                return Err(e);
            }
        };
        reply_value(reply)
    }

    fn exchange_anchor(&self, anchor: &mut Connection, msg: &Value) -> Result<Reply> {
        self.exchange(anchor, msg)
    }

    // ----- objects and references -----

    /// `create(typeid, *args, **kwds)`: a new object, with this process's
    /// reference taken. Returns its id and exposed methods.
    pub(crate) fn create(
        &self,
        typeid: &str,
        args: Vec<Value>,
        kwds: Dict,
    ) -> Result<(Arc<str>, Vec<String>)> {
        let mut full = Vec::with_capacity(args.len() + 1);
        full.push(Value::from(typeid));
        full.extend(args);
        let mut st = self.state()?;
        self.ensure_kind(&mut st)?;
        let rust = matches!(st.kind, Kind::Rust { .. });
        let result = if rust {
            self.in_band(&mut st, "create", full, kwds)?
        } else {
            drop(st);
            let v = self.public_call("create", full, kwds)?;
            st = self.state()?;
            v
        };
        let (ident, exposed) = parse_created(&result)?;
        self.adopt_locked(&mut st, &ident, rust);
        Ok((ident, exposed))
    }

    /// A new handle for `ident` whose server reference this process was
    /// just given (by `create`, a `#PROXY` reply, or a claimed transfer).
    pub(crate) fn adopt(&self, ident: &Arc<str>) -> Result<()> {
        let mut st = self.state()?;
        let rust = matches!(st.kind, Kind::Rust { .. });
        self.adopt_locked(&mut st, ident, rust);
        Ok(())
    }

    fn adopt_locked(&self, st: &mut State, ident: &Arc<str>, rust: bool) {
        let count = st.refs.entry(Arc::clone(ident)).or_insert(0);
        *count += 1;
        if *count > 1 && !rust {
            // A CPython server counted one more reference for us; the
            // process keeps one.
            let _ = self.public_call("decref", vec![Value::from(&**ident)], Dict::new());
        }
    }

    /// A new handle for `ident` (a proxy rebuilt from a value, or a clone):
    /// takes the process's server reference if it has none.
    pub(crate) fn acquire(&self, ident: &Arc<str>) -> Result<()> {
        let mut st = self.state()?;
        if let Some(n) = st.refs.get_mut(ident) {
            *n += 1;
            return Ok(());
        }
        self.server_incref(&mut st, ident)?;
        st.refs.insert(Arc::clone(ident), 1);
        Ok(())
    }

    fn server_incref(&self, st: &mut State, ident: &str) -> Result<()> {
        self.ensure_kind(st)?;
        if matches!(st.kind, Kind::Rust { .. }) {
            self.in_band(st, "incref", vec![Value::from(ident)], Dict::new())?;
        } else {
            self.public_call("incref", vec![Value::from(ident)], Dict::new())?;
        }
        Ok(())
    }

    /// A handle for `ident` was dropped; the last one gives the process's
    /// reference back. Errors are ignored (the manager may be gone), as
    /// CPython's `_decref` ignores them.
    pub(crate) fn release(&self, ident: &Arc<str>) {
        let Ok(mut st) = self.state() else { return };
        let Some(n) = st.refs.get_mut(ident) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        st.refs.remove(ident);
        match st.kind {
            Kind::Rust { .. } => {
                let _ = self.in_band(&mut st, "decref", vec![Value::from(&**ident)], Dict::new());
            }
            Kind::CPython => {
                drop(st);
                let _ = self.public_call("decref", vec![Value::from(&**ident)], Dict::new());
            }
            Kind::Unknown => {}
        }
    }

    /// Takes a transfer reference for a proxy about to travel: `Some(key)`
    /// on a Rust server, `None` on a CPython one (the receiver increfs, as
    /// CPython's does).
    pub(crate) fn transfer(&self, ident: &str) -> Result<Option<i64>> {
        let mut st = self.state()?;
        self.ensure_kind(&mut st)?;
        if !matches!(st.kind, Kind::Rust { .. }) {
            return Ok(None);
        }
        let key = self.in_band(&mut st, EXT_TRANSFER, vec![Value::from(ident)], Dict::new())?;
        key.as_i64()
            .map(Some)
            .ok_or_else(|| Error::Protocol(format!("bad transfer key {key}")))
    }

    /// A new handle for `ident` that arrived with transfer `key`: claims
    /// it (or, if it is gone, takes a reference as usual).
    pub(crate) fn claim(&self, ident: &Arc<str>, key: i64) -> Result<()> {
        let mut st = self.state()?;
        self.ensure_kind(&mut st)?;
        if !matches!(st.kind, Kind::Rust { .. }) {
            drop(st);
            return self.acquire(ident);
        }
        let claimed = self.in_band(&mut st, EXT_CLAIM, vec![Value::from(key)], Dict::new())?;
        if claimed.as_seq().is_some_and(|c| !c.is_empty()) {
            // The server moved the reference into our session (or dropped
            // it if we held one already): count the handle.
            *st.refs.entry(Arc::clone(ident)).or_insert(0) += 1;
            return Ok(());
        }
        drop(st);
        self.acquire(ident)
    }

    /// A public function: in-band on a Rust server, on a fresh connection
    /// on a CPython one.
    pub(crate) fn function(&self, func: &str, args: Vec<Value>) -> Result<Value> {
        let mut st = self.state()?;
        self.ensure_kind(&mut st)?;
        if matches!(st.kind, Kind::Rust { .. }) {
            return self.in_band(&mut st, func, args, Dict::new());
        }
        drop(st);
        self.public_call(func, args, Dict::new())
    }
}

/// The value of a `#RETURN`, or the error the other kinds stand for.
pub(crate) fn reply_value(reply: Reply) -> Result<Value> {
    match reply {
        Reply::Return(v) => Ok(v),
        Reply::Error(e) => Err(Error::Raised(e)),
        Reply::Traceback(t) => Err(Error::Remote(t)),
        Reply::Unserializable(t) => Err(Error::Remote(format!("Unserializable message: {t}\n"))),
        Reply::Proxy { token, .. } => Err(Error::Protocol(format!(
            "a proxy ({}) where a value was expected",
            token.typeid
        ))),
    }
}

fn parse_created(v: &Value) -> Result<(Arc<str>, Vec<String>)> {
    let parsed = v.as_seq().filter(|p| p.len() == 2).and_then(|p| {
        let id = Arc::<str>::from(p[0].as_str()?);
        let exposed = p[1]
            .as_seq()?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        Some((id, exposed))
    });
    parsed.ok_or_else(|| Error::Protocol(format!("bad create reply {v}")))
}

fn register_fork_hooks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        mp_context::register_at_fork(mp_context::ForkHooks {
            before: before_fork,
            after_in_parent: after_fork_in_parent,
            after_in_child: after_fork_in_child,
        })
    });
}

fn live_clients() -> Vec<Arc<Client>> {
    clients().iter().filter_map(Weak::upgrade).collect()
}

/// Before a fork: each session with references takes a fork transfer for
/// the child.
fn before_fork() {
    for c in live_clients() {
        let mut st = c.lock();
        if st.pid != pid() || st.refs.is_empty() || !matches!(st.kind, Kind::Rust { .. }) {
            continue;
        }
        st.fork_key = c
            .in_band(&mut st, EXT_FORK, Vec::new(), Dict::new())
            .ok()
            .and_then(|k| k.as_i64());
    }
}

/// The transfers are the child's to claim.
fn after_fork_in_parent() {
    for c in live_clients() {
        c.lock().fork_key = None;
    }
}

/// In the child: claim at once, so that a child that never uses the
/// manager does not leave the transfer pending. Locks another thread held
/// at the fork are skipped (that client starts over on first use, if
/// ever).
fn after_fork_in_child() {
    let Ok(all) = CLIENTS_LOCK.try_lock() else {
        return;
    };
    drop(all);
    for c in live_clients() {
        let Ok(mut st) = c.state.try_lock() else {
            continue;
        };
        if st.fork_key.is_some() && st.pid != pid() {
            let _ = c.start_over(&mut st);
        }
    }
}
