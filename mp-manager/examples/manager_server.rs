//! A manager server in this process: the `SyncManager` types plus a
//! shared queue registered as `get_queue` (CPython's remote-manager
//! example), served until a client asks it to shut down.
//!
//! ```text
//! cargo run -p mp-manager --example manager_server -- --address 127.0.0.1:0 --authkey secret
//! ```
//!
//! A contract for other tools (tests, the interop suites): the first line
//! of stdout is the bound address (`HOST:PORT` or a path); the process
//! exits 0 once a client has called `shutdown`. `--serializer NAME` picks
//! a registered codec: `postcard` (the default, for Rust clients) or
//! `pickle`, CPython's, so that unmodified CPython 3.11-3.15 clients use
//! it:
//!
//! ```python
//! from multiprocessing.managers import BaseManager, SyncManager
//! class QueueManager(BaseManager): pass
//! QueueManager.register("get_queue")
//! m = QueueManager(address=("127.0.0.1", PORT), authkey=b"secret")
//! m.connect()
//! m.get_queue().put("hello")
//! s = SyncManager(address=("127.0.0.1", PORT), authkey=b"secret")
//! s.connect()
//! d = s.dict()
//! ```

use std::process::ExitCode;

use mp_manager::{Args, BaseManager, Registry, SyncManager, codec_by_name};

fn main() -> ExitCode {
    mp_context::init();
    let mut address = None;
    let mut authkey = None;
    let mut serializer = "postcard".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--address", Some(a)) => address = Some(a),
            ("--authkey", Some(k)) => authkey = Some(k),
            ("--serializer", Some(s)) => serializer = s,
            _ => {
                eprintln!(
                    "usage: manager_server --address ADDR --authkey KEY [--serializer postcard|pickle]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (Some(address), Some(authkey)) = (address, authkey) else {
        eprintln!("manager_server: --address and --authkey are required");
        return ExitCode::from(2);
    };
    let address = match address.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("manager_server: bad address {address:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(codec) = codec_by_name(&serializer) else {
        eprintln!("manager_server: unknown serializer {serializer:?}");
        return ExitCode::from(2);
    };
    let mut registry = Registry::new();
    SyncManager::register_types(&mut registry);
    let queue = match registry.instantiate("Queue", Args::default()) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("manager_server: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    registry.register_shared("get_queue", queue);
    let manager = BaseManager::<mp_manager::NoTypes>::new(&mp_context::get_context(None).unwrap())
        .with_address(address)
        .with_authkey(authkey.into_bytes())
        .with_codec(codec);
    let server = match manager.get_server_with(registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("manager_server: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.address());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("manager_server: {e:?}");
            ExitCode::FAILURE
        }
    }
}
