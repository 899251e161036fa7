//! A server in a thread of the test process.

use std::sync::Arc;
use std::thread::JoinHandle;

use mp_conn::Address;
use mp_manager::{Codec, Registry, ServerHandle, SyncManager};

/// The key of the test servers.
pub(crate) const KEY: &[u8] = b"test key";

/// A SyncManager-types server serving in a thread, and a connected
/// manager for it.
pub(crate) struct Served {
    pub(crate) handle: ServerHandle,
    pub(crate) manager: SyncManager,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    pub(crate) fn new() -> Served {
        Served::with_registry(SyncManager::register_types)
    }

    pub(crate) fn with_registry(f: impl FnOnce(&mut Registry)) -> Served {
        Served::build(Arc::new(mp_manager::Postcard), None, f)
    }

    /// A server speaking `codec` at `address` (`None`: a fresh AF_UNIX
    /// path) with the key `test key`, and a manager connected to it with
    /// the same codec.
    pub(crate) fn build(
        codec: Arc<dyn Codec>,
        address: Option<Address>,
        f: impl FnOnce(&mut Registry),
    ) -> Served {
        let mut registry = Registry::new();
        f(&mut registry);
        let ctx = mp_context::get_context(Some("fork")).unwrap();
        let mut server = SyncManager::new(&ctx)
            .with_authkey(KEY.to_vec())
            .with_codec(Arc::clone(&codec));
        if let Some(a) = address {
            server = server.with_address(a);
        }
        let server = server.get_server_with(registry).unwrap();
        let address: Address = server.address().clone();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.serve_forever().unwrap());
        let manager = SyncManager::new(&ctx)
            .with_address(address)
            .with_authkey(KEY.to_vec())
            .with_codec(codec);
        manager.connect().unwrap();
        Served {
            handle,
            manager,
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    /// As CPython's `ManagerMixin.tearDownClass` (MGR-36): after a test,
    /// with its proxies gone, the manager holds no objects (a dead
    /// client's session may take a moment to end).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while self.handle.number_of_objects() != 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "objects left after the test:\n{}",
                    self.manager.debug_info().unwrap_or_default()
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw authenticated connection to `served`'s server, speaking
/// postcard-encoded values: what a buggy or hostile client can send.
pub(crate) struct Raw {
    pub(crate) conn: mp_conn::Connection,
}

impl Raw {
    pub(crate) fn connect(served: &Served) -> Raw {
        let address = served.handle.address().clone();
        let conn = mp_conn::client(&address, Some(KEY)).unwrap();
        Raw { conn }
    }

    pub(crate) fn send(&self, v: &mp_value::Value) {
        let mut buf = Vec::new();
        mp_manager::Postcard.encode(v, &mut buf).unwrap();
        self.conn.send_bytes(&buf).unwrap();
    }

    pub(crate) fn recv(&mut self) -> mp_value::Value {
        let bytes = self.conn.recv_bytes().unwrap();
        mp_manager::Postcard.decode(&bytes).unwrap()
    }

    /// Sends `(ident, method, args, {})` and returns `(kind, payload)`.
    pub(crate) fn request(
        &mut self,
        ident: mp_value::Value,
        method: &str,
        args: mp_value::Value,
    ) -> (String, mp_value::Value) {
        self.send(&mp_value::Value::from((
            ident,
            method,
            args,
            mp_value::Value::Dict(mp_value::Dict::new()),
        )));
        let reply = self.recv();
        let items = reply.as_seq().unwrap().to_vec();
        (items[0].as_str().unwrap().to_owned(), items[1].clone())
    }
}

/// `()` as a value: an empty argument tuple.
pub(crate) fn no_args() -> mp_value::Value {
    mp_value::Value::Tuple(mp_value::Tuple::new())
}

/// `(None, func, args, {})` pickled on a fresh connection to `address`: a
/// public function of a server, as CPython's `dispatch` calls it. Returns
/// the `(kind, payload)` reply.
pub(crate) fn public_pickled(
    address: &Address,
    key: &[u8],
    func: &str,
    args: mp_value::Value,
) -> mp_value::Value {
    let codec = mp_manager::Pickle::new();
    let mut conn = mp_conn::client(address, Some(key)).unwrap();
    let mut buf = Vec::new();
    let request = mp_value::Value::from((
        mp_value::Value::None,
        func,
        args,
        mp_value::Value::Dict(mp_value::Dict::new()),
    ));
    codec.encode(&request, &mut buf).unwrap();
    conn.send_bytes(&buf).unwrap();
    codec.decode(&conn.recv_bytes().unwrap()).unwrap()
}

/// A child process killed (and reaped) when the test ends, however it
/// ends.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
