//! A server in a thread of the test process.

use std::thread::JoinHandle;

use mp_conn::Address;
use mp_manager::{Registry, ServerHandle, SyncManager};

/// A SyncManager-types server serving in a thread, and a connected
/// manager for it.
pub(crate) struct Served {
    pub(crate) handle: ServerHandle,
    pub(crate) manager: SyncManager,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    pub(crate) fn new() -> Served {
        Served::with_registry(|r| SyncManager::register_types(r))
    }

    pub(crate) fn with_registry(f: impl FnOnce(&mut Registry)) -> Served {
        let mut registry = Registry::new();
        f(&mut registry);
        let ctx = mp_context::get_context(Some("fork")).unwrap();
        let server = SyncManager::new(&ctx)
            .with_authkey(b"test key".to_vec())
            .get_server_with(registry)
            .unwrap();
        let address: Address = server.address().clone();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.serve_forever().unwrap());
        let manager = SyncManager::new(&ctx)
            .with_address(address)
            .with_authkey(b"test key".to_vec());
        manager.connect().unwrap();
        Served {
            handle,
            manager,
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
