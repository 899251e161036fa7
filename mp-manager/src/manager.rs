//! `BaseManager`: starting a server process, connecting to a running one,
//! serving in the current process, shutting down (CPython's
//! `BaseManager`).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::os::fd::OwnedFd;

use mp_conn::{Address, Connection};
use mp_context::{Context, Process};
use mp_reduction::Fd;
use mp_value::{Dict, Value};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::codec::{Codec, Postcard, codec_by_name};
use crate::error::{Error, Result};
use crate::proxy::{Proxy, ProxyType};
use crate::registry::{NoTypes, Registrar, Registry};
use crate::server::Server;
use crate::wire::Token;

/// CPython's default `shutdown_timeout`: how long `shutdown` waits for the
/// server process after asking it to stop, and again after terminating it.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Initial,
    Started,
    Shutdown,
}

struct Inner {
    state: State,
    address: Option<Address>,
    process: Option<Process>,
    client: Option<Arc<Client>>,
    /// The write end of the started server's control pipe: a byte asks it
    /// to shut down.
    control: Option<OwnedFd>,
    /// Shuts the started server down when this process exits without
    /// dropping the manager (CPython's `Finalize(self,
    /// _finalize_manager, exitpriority=0)`).
    finalizer: Option<mp_context::Finalizer>,
}

/// A manager: the handle to a server process that holds shared objects
/// (CPython's `multiprocessing.managers.BaseManager`).
///
/// `R` says which type ids its server holds ([`Registrar`]); a manager
/// that only [`connect`](BaseManager::connect)s to a running server needs
/// none ([`NoTypes`]). [`SyncManager`](crate::SyncManager) is a manager
/// with CPython's `SyncManager` types.
///
/// - [`start`](BaseManager::start) runs the server in a new process with
///   the manager's context (any start method). The process ends when the
///   manager is shut down or dropped, and also when this process dies, even
///   by `SIGKILL` (CPython's orphaned manager runs forever).
/// - [`connect`](BaseManager::connect) joins a running server, local or
///   remote (TCP).
/// - [`get_server`](BaseManager::get_server) gives a [`Server`] to serve in
///   the current process.
///
/// The key defaults to [`current_process().authkey()`](mp_context::ProcessInfo::authkey),
/// as in CPython, and the codec to [`Postcard`].
///
/// # Examples
///
/// ```
/// use mp_manager::{BaseManager, Proxy, Registrar, Registry, SyncManager};
///
/// struct Types;
/// impl Registrar for Types {
///     fn register(r: &mut Registry) {
///         SyncManager::register_types(r);
///     }
/// }
///
/// # mp_context::init();
/// let ctx = mp_context::get_context(Some("fork"))?;
/// let mut manager = BaseManager::<Types>::new(&ctx);
/// manager.start()?;
/// let d: Proxy = manager.create("dict", &())?;
/// d.call::<()>("__setitem__", &("k", 1))?;
/// assert_eq!(d.call::<i64>("__len__", &())?, 1);
/// drop(d);
/// assert_eq!(manager.number_of_objects()?, 0);
/// manager.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BaseManager<R: Registrar = NoTypes> {
    ctx: Context,
    authkey: Vec<u8>,
    codec: Arc<dyn Codec>,
    shutdown_timeout: Duration,
    name: &'static str,
    inner: Mutex<Inner>,
    _types: PhantomData<fn() -> R>,
}

impl<R: Registrar> std::fmt::Debug for BaseManager<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct(self.name)
            .field("state", &inner.state)
            .field("address", &inner.address)
            .field("codec", &self.codec.name())
            .finish()
    }
}

impl<R: Registrar> BaseManager<R> {
    /// A manager that is not started yet, whose server (if started) runs
    /// under `ctx`'s start method; no address yet (a fresh AF_UNIX path is
    /// picked at start).
    pub fn new(ctx: &Context) -> BaseManager<R> {
        BaseManager {
            ctx: *ctx,
            authkey: mp_context::current_process().authkey().to_vec(),
            codec: Arc::new(Postcard),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            name: "BaseManager",
            inner: Mutex::new(Inner {
                state: State::Initial,
                address: None,
                process: None,
                client: None,
                control: None,
                finalizer: None,
            }),
            _types: PhantomData,
        }
    }

    pub(crate) fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The address to serve at (`start`, `get_server`) or to connect to
    /// (`connect`): `HOST:PORT` (port 0 picks a free one) or a path.
    pub fn with_address(self, address: Address) -> Self {
        self.lock().address = Some(address);
        self
    }

    /// The authentication key (default: the current process's).
    pub fn with_authkey(mut self, authkey: impl Into<Vec<u8>>) -> Self {
        self.authkey = authkey.into();
        self
    }

    /// The codec (CPython's `serializer`; default [`Postcard`]).
    pub fn with_codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// How long `shutdown` waits at each step (default 1 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_initial(&self, inner: &Inner) -> Result<()> {
        match inner.state {
            State::Initial => Ok(()),
            State::Started => Err(Error::State("Already started server")),
            State::Shutdown => Err(Error::State("Manager has shut down")),
        }
    }

    /// The registry of `R`.
    pub fn registry() -> Registry {
        let mut r = Registry::new();
        R::register(&mut r);
        r
    }

    /// A server for this manager's types, bound to its address, to serve in
    /// the current process ([`Server::serve_forever`]).
    ///
    /// # Errors
    ///
    /// "Already started server" / "Manager has shut down" in the wrong
    /// state; [`Error::Connection`] if the address cannot be bound.
    pub fn get_server(&self) -> Result<Server> {
        self.get_server_with(Self::registry())
    }

    /// [`BaseManager::get_server`] with a registry given at run time (for
    /// example with [`Registry::register_shared`] objects).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::get_server`].
    pub fn get_server_with(&self, registry: Registry) -> Result<Server> {
        let inner = self.lock();
        self.check_initial(&inner)?;
        Server::bind(
            registry,
            inner.address.as_ref(),
            &self.authkey,
            Arc::clone(&self.codec),
        )
    }

    /// Joins the running server at the manager's address (CPython's
    /// `connect`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when no server answers there (or the key is
    /// wrong); a state error if already started or shut down.
    pub fn connect(&self) -> Result<()> {
        let mut inner = self.lock();
        self.check_initial(&inner)?;
        let address = inner
            .address
            .clone()
            .ok_or(Error::State("connect() needs an address"))?;
        let client = Client::get(&address, &self.authkey, &self.codec);
        client.check()?;
        inner.client = Some(client);
        inner.state = State::Started;
        Ok(())
    }

    /// Starts the server in a new process (CPython's `start`), under the
    /// manager's context.
    ///
    /// # Errors
    ///
    /// A state error if already started or shut down; [`Error::Connection`]
    /// if the address cannot be bound (this process binds it and hands the
    /// listening socket to the server); [`Error::Process`] if the process
    /// cannot be started.
    pub fn start(&self) -> Result<()> {
        self.start_inner::<NoInit>(None)
    }

    /// [`BaseManager::start`], with `I::initialize(args)` run in the
    /// server process before it serves (CPython's `start(initializer,
    /// initargs)`).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::start`].
    pub fn start_with<I: Initializer>(&self, args: I::Args) -> Result<()> {
        let bytes = postcard::to_allocvec(&args).map_err(|e| {
            Error::Start(format!("could not encode the initializer's arguments: {e}"))
        })?;
        self.start_inner::<I>(Some(bytes))
    }

    fn start_inner<I: Initializer>(&self, init: Option<Vec<u8>>) -> Result<()> {
        let mut inner = self.lock();
        self.check_initial(&inner)?;
        let (control_r, control_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::Start(format!("no pipe: {e}")))?;
        // Without an initializer, nothing can fail in the server before it
        // serves but binding its address: bind it here and hand the server
        // the listening socket, so that `start` need not wait for the new
        // process (a client that connects first waits in the backlog).
        // With one, the server binds once the initializer has run, and
        // reports its address or the initializer's failure.
        let (listener, report) = match init {
            None => {
                let listener = Server::listen(inner.address.as_ref(), &self.authkey)?;
                let shown = listener.address().clone();
                let (socket, address) = listener
                    .into_socket()
                    .map_err(|e| Error::connection(&shown, e))?;
                (Some((Fd::from(socket), address)), None)
            }
            Some(_) => {
                let pipe =
                    mp_conn::pipe(false).map_err(|e| Error::Start(format!("no pipe: {e}")))?;
                (None, Some(pipe))
            }
        };
        let (reader, writer) = report.map_or((None, None), |(r, w)| (Some(r), Some(w)));
        let bound = listener.as_ref().map(|(_, a)| a.clone());
        inner.control = Some(control_w);
        let args = ServerArgs {
            control: Fd::from(control_r),
            address: bound
                .as_ref()
                .or(inner.address.as_ref())
                .map(ToString::to_string),
            listener: listener.map(|(fd, _)| fd),
            authkey: self.authkey.clone(),
            codec: self.codec.name().to_owned(),
            writer,
            init,
        };
        let process = self.ctx.process(server_main::<R, I>, args);
        self.finish_start(&mut inner, reader, bound, process)
    }

    /// Starts the server process; its address is `bound`, or the one it
    /// reports on `reader`.
    fn finish_start(
        &self,
        inner: &mut Inner,
        reader: Option<Connection>,
        bound: Option<Address>,
        process: Process,
    ) -> Result<()> {
        let identity = process
            .identity()
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(":");
        // Not daemonic, as CPython's: the server may start processes of its
        // own (a `Pool`'s workers). The finalizer below stops it at exit.
        let process = process.with_name(format!("{}-{identity}", self.name));
        process.start()?;
        let address = match (bound, reader) {
            (Some(address), _) => address,
            (None, Some(mut reader)) => self.reported_address(&mut reader, &process)?,
            (None, None) => return Err(Error::Start("no address and no report".into())),
        };
        inner.client = Some(Client::get(&address, &self.authkey, &self.codec));
        inner.address = Some(address);
        let control = inner.control.as_ref().and_then(|c| c.try_clone().ok());
        let timeout = self.shutdown_timeout;
        let at_exit = process.clone();
        inner.finalizer = Some(mp_context::register_finalizer(0, move || {
            let _ = stop_server(&at_exit, control, None, timeout);
        }));
        inner.process = Some(process);
        inner.state = State::Started;
        Ok(())
    }

    /// The address the server process reports, or why it has none.
    fn reported_address(&self, reader: &mut Connection, process: &Process) -> Result<Address> {
        // EOF means it died first.
        let report: std::result::Result<String, String> = match reader.recv() {
            Ok(r) => r,
            Err(e) => {
                let _ = process.join(Some(self.shutdown_timeout));
                return Err(Error::Start(format!(
                    "the server process ended before reporting its address ({e}); exit code {:?}",
                    process.exitcode().ok().flatten()
                )));
            }
        };
        match report {
            Ok(text) => text
                .parse()
                .map_err(|e| Error::Start(format!("bad address {text:?}: {e}"))),
            Err(why) => {
                let _ = process.join(Some(self.shutdown_timeout));
                Err(Error::Start(why))
            }
        }
    }

    /// The server's address (once started or connected, the address it
    /// really has).
    pub fn address(&self) -> Option<Address> {
        self.lock().address.clone()
    }

    /// The key.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The server process, if this manager started one.
    pub fn process(&self) -> Option<Process> {
        self.lock().process.clone()
    }

    pub(crate) fn client(&self) -> Result<Arc<Client>> {
        let inner = self.lock();
        match (&inner.state, &inner.client) {
            (State::Started, Some(c)) => Ok(Arc::clone(c)),
            (State::Shutdown, _) => Err(Error::State("Manager has shut down")),
            _ => Err(Error::State(
                "Manager is not started (call start() or connect())",
            )),
        }
    }

    /// Creates a shared object of `typeid` with `args` (a tuple) and
    /// returns a proxy to it (the creation methods CPython's `register`
    /// adds, such as `manager.Queue()`).
    ///
    /// # Errors
    ///
    /// A state error before start; [`Error::Remote`] when the server
    /// refuses (an unknown type id, bad arguments).
    pub fn create<P: ProxyType>(&self, typeid: &str, args: &impl Serialize) -> Result<P> {
        self.create_kw(typeid, args, Dict::new())
    }

    /// [`BaseManager::create`] with keyword arguments.
    ///
    /// # Errors
    ///
    /// As [`BaseManager::create`].
    pub fn create_kw<P: ProxyType>(
        &self,
        typeid: &str,
        args: &impl Serialize,
        kwds: Dict,
    ) -> Result<P> {
        let client = self.client()?;
        let args = crate::client::encoding(&client, || mp_value::to_value(args))?;
        let args = match args {
            Value::Tuple(t) => t.to_vec(),
            Value::None => Vec::new(),
            one => vec![one],
        };
        let (ident, exposed) = client.create(typeid, args, kwds)?;
        let token = Token {
            typeid: typeid.to_owned(),
            address: client.address.clone(),
            id: ident.to_string(),
        };
        // The reference `create` took is the process's.
        let proxy = Proxy::held(client, token, Some(exposed), P::CLASS);
        Ok(P::from_proxy(proxy))
    }

    /// The number of live shared objects in the server (CPython's
    /// `_number_of_objects`).
    ///
    /// # Errors
    ///
    /// A state error before start; connection errors.
    pub fn number_of_objects(&self) -> Result<usize> {
        let v = self.client()?.function("number_of_objects", Vec::new())?;
        v.as_i64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::Protocol(format!("bad number_of_objects reply {v}")))
    }

    /// The server's table of objects and their references, as text
    /// (CPython's `_debug_info`).
    ///
    /// # Errors
    ///
    /// As [`BaseManager::number_of_objects`].
    pub fn debug_info(&self) -> Result<String> {
        let v = self.client()?.function("debug_info", Vec::new())?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits for the server process to end, at most `timeout` (CPython's
    /// `join`).
    ///
    /// # Errors
    ///
    /// A failed wait.
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        if let Some(p) = self.process() {
            p.join(timeout)?;
        }
        Ok(())
    }

    /// Shuts the manager down (CPython's `shutdown`): if it started a
    /// server process, asks it to stop, waits `shutdown_timeout`, then
    /// terminates it, waits again, then kills it. Calling it again is
    /// harmless; afterwards the manager is in the "shut down" state.
    ///
    /// # Errors
    ///
    /// A failed wait for the process.
    pub fn shutdown(&self) -> Result<()> {
        let (process, client, control) = {
            let mut inner = self.lock();
            if inner.state != State::Started {
                if inner.state == State::Initial {
                    inner.state = State::Shutdown;
                }
                return Ok(());
            }
            inner.state = State::Shutdown;
            if let Some(f) = inner.finalizer.take() {
                f.cancel();
            }
            (
                inner.process.take(),
                inner.client.take(),
                inner.control.take(),
            )
        };
        match process {
            Some(process) => stop_server(&process, control, client, self.shutdown_timeout),
            None => Ok(()),
        }
    }
}

/// Stops a started server: asks (one byte on the control pipe, the
/// `shutdown` request failing that), waits `timeout`, terminates, waits
/// again, kills.
fn stop_server(
    process: &Process,
    control: Option<OwnedFd>,
    client: Option<Arc<Client>>,
    timeout: Duration,
) -> Result<()> {
    if process.is_alive()? {
        // The server's watcher stops it, as CPython's `shutdown` request
        // would, without a connection and two handshakes.
        let asked = control.is_some_and(|w| rustix::io::write(&w, &[1]).is_ok());
        if !asked && let Some(c) = &client {
            let _ = c.public_call("shutdown", Vec::new(), Dict::new());
        }
        drop(client);
        process.join(Some(timeout))?;
        if process.is_alive()? {
            process.terminate()?;
            process.join(Some(timeout))?;
            if process.is_alive()? {
                process.kill()?;
                process.join(None)?;
            }
        }
    }
    Ok(())
}

impl<R: Registrar> Drop for BaseManager<R> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Code run in a started manager's server process before it serves
/// (CPython's `start(initializer, initargs)`); a type, because only types
/// and plain functions of this binary reach a spawned process.
pub trait Initializer: 'static {
    /// The arguments, sent to the server process with serde.
    type Args: Serialize + for<'de> Deserialize<'de>;

    /// Runs in the server process.
    fn initialize(args: Self::Args);

    #[doc(hidden)]
    fn run(bytes: &[u8]) -> std::result::Result<(), String> {
        let args = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Self::initialize(args);
        Ok(())
    }
}

/// No initializer.
#[derive(Debug)]
enum NoInit {}

impl Initializer for NoInit {
    type Args = ();
    fn initialize(_: ()) {}
}

/// What a started manager's server process gets.
#[derive(Serialize, Deserialize)]
struct ServerArgs {
    address: Option<String>,
    authkey: Vec<u8>,
    codec: String,
    /// The listening socket the parent bound to `address`, if it did.
    listener: Option<Fd>,
    /// Where the server reports its address (or the reason there is none),
    /// when the parent did not bind it.
    writer: Option<Connection>,
    /// Readable when the parent asks for a shutdown (a byte) or has gone
    /// (end of file, when no other process holds the write end).
    control: Fd,
    init: Option<Vec<u8>>,
}

/// The server process (CPython's `_run_server`).
fn server_main<R: Registrar, I: Initializer>(args: ServerArgs) {
    let ServerArgs {
        address,
        listener,
        authkey,
        codec,
        writer,
        control,
        init,
    } = args;
    let report = |r: std::result::Result<String, String>| {
        if let Some(w) = &writer {
            let _ = w.send(&r);
        }
    };
    // Ctrl-C in the parent's terminal reaches this process too; the parent
    // shuts it down (CPython's bpo-36368).
    if let Err(e) = mp_context::ignore_sigint() {
        report(Err(format!("could not ignore SIGINT: {e}")));
        mp_context::exit(1);
    }
    if let Some(bytes) = init
        && let Err(e) = I::run(&bytes)
    {
        report(Err(format!("the initializer failed: {e}")));
        mp_context::exit(1);
    }
    let address = match address.map(|a| a.parse::<Address>()).transpose() {
        Ok(a) => a,
        Err(e) => {
            report(Err(format!("bad address: {e}")));
            mp_context::exit(1);
        }
    };
    let codec = codec_by_name(&codec).unwrap_or_else(|| Arc::new(Postcard));
    let mut registry = Registry::new();
    R::register(&mut registry);
    let server = match (listener, address) {
        (Some(socket), Some(address)) => {
            Server::adopt(registry, socket.into_inner(), address, &authkey, codec)
        }
        (_, address) => Server::bind(registry, address.as_ref(), &authkey, codec),
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            report(Err(format!("{e:?}")));
            mp_context::exit(1);
        }
    };
    report(Ok(server.address().to_string()));
    drop(writer);

    // The manager ends when its parent asks, or when the parent dies,
    // however it dies (a SIGKILL runs no exit handler): the accept loop
    // watches both.
    let mut server = server;
    server.stop_when(
        control.into_inner(),
        mp_context::parent_process(),
        PARENT_CHECK,
    );
    if server.serve_forever().is_err() {
        mp_context::exit(1);
    }
}

/// How often a started server checks that its parent is alive.
const PARENT_CHECK: Duration = Duration::from_millis(50);
