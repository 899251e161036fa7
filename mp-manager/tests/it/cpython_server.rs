//! A Rust client of unmodified CPython manager servers (3.11 to 3.15,
//! `tests/python/cpython_server.py`, one interpreter per version): the
//! documentation's remote `QueueManager` (`get_queue`), the SyncManager
//! types, a `#PROXY` reply, proxies inside values, errors with their
//! Python class, the `queue_worker` example against the distributed-worker
//! pattern, and the client's traffic checked message by message against
//! what CPython's own client sends (`wire_manager.txt`), through a relay.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_conn::Address;
use mp_manager::{
    BaseManager, Codec, DictProxy, Error, EventProxy, IteratorProxy, ListProxy, LockProxy,
    NamespaceProxy, NoTypes, Pickle, Proxy, ProxyType, QueueProxy, SyncManager, ValueProxy,
};
use mp_value::{Dict, Tuple, Value};

use crate::python::{Peer, Python, hex};

/// The key of the CPython servers.
const KEY: &[u8] = b"abracadabra";
/// How many tasks the server's `get_task_queue` holds.
const TASKS: i64 = 20;

fn pickle() -> Arc<dyn Codec> {
    Arc::new(Pickle::new())
}

fn manager(address: &Address) -> SyncManager {
    let ctx = mp_context::get_context(Some("fork")).unwrap();
    SyncManager::new(&ctx)
        .with_address(address.clone())
        .with_authkey(KEY.to_vec())
        .with_codec(pickle())
}

fn public(address: &Address, func: &str, args: Value) -> Value {
    crate::support::public_pickled(address, KEY, func, args)
}

fn number_of_objects(address: &Address) -> i64 {
    let reply = public(address, "number_of_objects", Value::Tuple(Tuple::new()));
    reply.as_seq().unwrap()[1].as_i64().unwrap()
}

/// Waits until the CPython server holds no objects (decrefs arrive on
/// connections of their own).
fn settle(address: &Address) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while number_of_objects(address) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "objects left: {}",
            public(address, "debug_info", Value::Tuple(Tuple::new()))
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn containers(m: &SyncManager) {
    let d = m.dict::<String, i64>().unwrap();
    d.set_item(&"a".into(), &1).unwrap();
    assert_eq!(d.get_item(&"a".into()).unwrap(), 1);
    assert_eq!(d.len().unwrap(), 1);
    let e = d.get_item(&"missing".into()).unwrap_err();
    assert!(e.is("KeyError"), "{e:?}");
    assert_eq!(e.exception().unwrap().args(), &[Value::from("missing")]);
    assert_eq!(d.get(&"b".into()).unwrap(), None);
    d.update([(&"b".to_string(), &2)]).unwrap();
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    // `__iter__` is a `#PROXY` reply: an iterator on the server.
    let mut it: IteratorProxy<String> = d.iter().unwrap();
    let mut seen: Vec<String> = it.by_ref().map(Result::unwrap).collect();
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    assert!(it.next_item().unwrap().is_none());
    assert_eq!(d.pop(&"b".into()).unwrap(), 2);
    assert_eq!(
        d.copy::<std::collections::HashMap<String, i64>>()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(d.proxy().referent_repr().unwrap(), "{'a': 1}");
    drop((d, it));

    let l = m.list_from(&[3_i64, 1, 2]).unwrap();
    l.append(&4).unwrap();
    l.sort(false).unwrap();
    assert_eq!(l.slice(None, None).unwrap(), [1, 2, 3, 4]);
    assert_eq!(l.get(-1).unwrap(), 4);
    assert!(l.get(10).unwrap_err().is("IndexError"));
    assert!(l.index(&99).unwrap_err().is("ValueError"));
    assert_eq!(l.pop().unwrap(), 4);
    assert_eq!(l.iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3]);
    drop(l);

    let v: ValueProxy<i64> = m.value("i", &1).unwrap();
    assert_eq!(v.get().unwrap(), 1);
    v.set(&7).unwrap();
    assert_eq!(v.get().unwrap(), 7);
    let ns: NamespaceProxy = m.namespace().unwrap();
    ns.set("name", &"Bob").unwrap();
    assert_eq!(ns.get::<String>("name").unwrap(), "Bob");
    assert_eq!(ns.repr().unwrap(), "Namespace(name='Bob')");
    assert!(ns.get::<i64>("nope").unwrap_err().is("AttributeError"));
    drop((v, ns));
}

fn primitives(m: &SyncManager) {
    let lock: LockProxy = m.lock().unwrap();
    assert!(lock.acquire().unwrap());
    assert!(
        !lock
            .acquire_timeout(true, Some(Duration::from_millis(50)))
            .unwrap()
    );
    lock.release().unwrap();
    let e = lock.release().unwrap_err();
    assert!(e.is("RuntimeError"), "{e:?}");
    {
        let _held = lock.lock().unwrap();
        assert!(!lock.acquire_timeout(false, None).unwrap());
    }
    let ev: EventProxy = m.event().unwrap();
    assert!(!ev.is_set().unwrap());
    assert!(!ev.wait(Some(Duration::from_millis(20))).unwrap());
    ev.set().unwrap();
    assert!(ev.wait(None).unwrap());
    let q: QueueProxy<String> = m.queue(1).unwrap();
    q.put(&"x".into()).unwrap();
    assert!(q.put_nowait(&"y".into()).unwrap_err().is("queue.Full"));
    assert_eq!(q.get().unwrap(), "x");
    let e = q
        .get_timeout(true, Some(Duration::from_millis(50)))
        .unwrap_err();
    // CPython pickles `queue.Empty` as `_queue.Empty`, its C class.
    assert!(e.is("queue.Empty"), "{e:?}");
    assert_eq!(e.exception().unwrap().module(), "_queue");
    drop((lock, ev, q));
}

fn remote_queue_and_proxies(m: &SyncManager, address: &Address) {
    // The documentation's remote manager: `register('get_queue')` and
    // `connect()`.
    let qm = BaseManager::<NoTypes>::new(&mp_context::get_context(Some("fork")).unwrap())
        .with_address(address.clone())
        .with_authkey(KEY.to_vec())
        .with_codec(pickle());
    qm.connect().unwrap();
    let q: QueueProxy<i64> = qm.create("get_queue", &()).unwrap();
    q.put(&1).unwrap();
    let again: QueueProxy<i64> = qm.create("get_queue", &()).unwrap();
    assert_eq!(again.get().unwrap(), 1);
    assert_eq!(q.proxy().token().id, again.proxy().token().id);
    assert!(q.get_nowait().unwrap_err().is("queue.Empty"));

    // A `#PROXY` reply: the token's address becomes the one we reach the
    // server at, as CPython's `_callmethod` rewrites it.
    let maker: Proxy = qm.create("Maker", &()).unwrap();
    assert_eq!(
        maker.exposed().unwrap(),
        ["echo", "fail", "make_queue", "make_queue"]
    );
    let made: QueueProxy<String> = maker.call_proxy("make_queue", &()).unwrap();
    assert_eq!(made.proxy().token().typeid, "MadeQueue");
    assert_eq!(&made.proxy().token().address, address);
    made.put(&"made".into()).unwrap();
    assert_eq!(made.get().unwrap(), "made");
    // Errors keep their Python class, the server's own classes included.
    for (kind, class) in [
        ("KeyError", "KeyError"),
        ("ValueError", "ValueError"),
        ("empty", "queue.Empty"),
        ("custom", "__main__.CustomError"),
        ("other", "RuntimeError"),
    ] {
        let e = maker.call::<()>("fail", &(kind,)).unwrap_err();
        assert!(e.is(class), "{kind}: {e:?}");
    }
    let e = maker.call::<()>("fail", &("ValueError",)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the shared object raised ValueError: ('bad value', 3)"
    );
    let e = maker.call::<()>("no_such_method", &()).unwrap_err();
    assert!(
        matches!(&e, Error::Remote(t) if t.contains("is not in exposed")),
        "{e:?}"
    );
    // Values CPython has classes for come back as they went.
    let v = Value::from((1, "two", vec![Value::from(3.5), Value::None]));
    assert_eq!(maker.call::<Value>("echo", &(v.clone(),)).unwrap(), v);

    // Proxies inside values: a queue stored in a dict comes back as a
    // working proxy (rebuilt with this manager's key), and a list of lists.
    let d: DictProxy<String, QueueProxy<i64>> = m.dict().unwrap();
    d.set_item(&"q".into(), &q).unwrap();
    let back = d.get_item(&"q".into()).unwrap();
    back.put(&5).unwrap();
    assert_eq!(q.get().unwrap(), 5);
    let outer: ListProxy<ListProxy<i64>> = m.list().unwrap();
    let inner = m.list_from(&[1_i64]).unwrap();
    outer.append(&inner).unwrap();
    outer.get(0).unwrap().append(&2).unwrap();
    assert_eq!(inner.slice(None, None).unwrap(), [1, 2]);
    drop((q, again, maker, made, d, back, outer, inner));
}

/// The `queue_worker` example against the distributed-worker pattern:
/// it squares every task until `None`, and exits 0.
fn queue_worker(m: &SyncManager, address: &Address) {
    let exe = crate::examples::examples_dir().join("queue_worker");
    let out = std::process::Command::new(exe)
        .args([
            "--address",
            &address.to_string(),
            "--authkey",
            std::str::from_utf8(KEY).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "queue_worker: {out:?}");
    let results: QueueProxy<i64> = m.create("get_result_queue", &()).unwrap();
    let mut squares: Vec<i64> = (0..TASKS).map(|_| results.get().unwrap()).collect();
    squares.sort();
    assert_eq!(squares, (0..TASKS).map(|i| i * i).collect::<Vec<_>>());
    assert!(results.empty().unwrap());
}

fn rust_client_uses_a_cpython_server(python: &Python) {
    let dir = tempdir();
    // TCP for odd minor versions, an AF_UNIX path for even ones.
    let want = if python.minor % 2 == 1 {
        "127.0.0.1:0".to_string()
    } else {
        dir.join("manager.sock").to_string_lossy().into_owned()
    };
    let mut server = Peer::start(
        python,
        "cpython_server.py",
        &[&want, &hex(KEY), &TASKS.to_string()],
    );
    let line = server
        .line(crate::python::PEER_TIMEOUT)
        .expect("the server's address");
    let address: Address = line.parse().unwrap();
    {
        let m = manager(&address);
        m.connect().unwrap();
        containers(&m);
        primitives(&m);
        remote_queue_and_proxies(&m, &address);
        queue_worker(&m, &address);
        settle(&address);
        relayed_like_cpython(&address);
        settle(&address);
    }
    let reply = public(&address, "shutdown", Value::Tuple(Tuple::new()));
    assert_eq!(reply, Value::from(("#RETURN", Value::None)));
    server.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mp-manager-py-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

mp_testsupport::each_cpython!(rust_client_uses_a_cpython_server);

// ----- the client's traffic, message by message -----

/// One frame that crossed the relay.
#[derive(Clone, Debug)]
struct Frame {
    conn: usize,
    to_server: bool,
    bytes: Vec<u8>,
}

/// A TCP relay in front of `server` that records every frame after the
/// six of each connection's handshake.
struct Relay {
    address: Address,
    frames: Arc<Mutex<Vec<Frame>>>,
}

/// The relay's connection to the server: TCP or AF_UNIX, as the server
/// listens.
enum Upstream {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Upstream {
    fn connect(to: &Address) -> std::io::Result<Upstream> {
        match to {
            Address::Inet(a) => TcpStream::connect(a).map(Upstream::Tcp),
            Address::Unix(p) => std::os::unix::net::UnixStream::connect(p).map(Upstream::Unix),
            Address::Abstract(_) => Err(std::io::ErrorKind::Unsupported.into()),
        }
    }

    fn try_clone(&self) -> std::io::Result<Upstream> {
        match self {
            Upstream::Tcp(s) => s.try_clone().map(Upstream::Tcp),
            Upstream::Unix(s) => s.try_clone().map(Upstream::Unix),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Upstream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Upstream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl std::io::Read for Upstream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Upstream::Tcp(s) => s.read(buf),
            Upstream::Unix(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Upstream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Upstream::Tcp(s) => s.write(buf),
            Upstream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Relay {
    /// A relay on TCP in front of `server` (TCP or a path).
    fn start(server: &Address) -> Relay {
        let target = server.clone();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = Address::Inet(listener.local_addr().unwrap());
        let frames = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&frames);
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { break };
                let Ok(upstream) = Upstream::connect(&target) else {
                    break;
                };
                let client = Upstream::Tcp(client);
                for (from, to, to_server) in [
                    (
                        client.try_clone().unwrap(),
                        upstream.try_clone().unwrap(),
                        true,
                    ),
                    (upstream, client, false),
                ] {
                    let recorded = Arc::clone(&recorded);
                    std::thread::spawn(move || pump(from, to, n, to_server, &recorded));
                }
            }
        });
        Relay { address, frames }
    }

    /// The frames after the handshakes, in the order they were seen.
    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }
}

/// Copies framed messages from `from` to `to`, recording those after the
/// handshake (3 frames each way).
fn pump(
    mut from: Upstream,
    mut to: Upstream,
    conn: usize,
    to_server: bool,
    frames: &Mutex<Vec<Frame>>,
) {
    use std::io::{Read, Write};
    let mut seen = 0;
    loop {
        let mut header = [0u8; 4];
        if from.read_exact(&mut header).is_err() {
            break;
        }
        let len = i32::from_be_bytes(header);
        let len = usize::try_from(len).expect("small frames only");
        let mut body = vec![0; len];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        seen += 1;
        if seen > 3 {
            frames.lock().unwrap().push(Frame {
                conn,
                to_server,
                bytes: body.clone(),
            });
        }
        if to.write_all(&header).is_err() || to.write_all(&body).is_err() {
            break;
        }
    }
    to.shutdown();
}

/// CPython's own client's bytes for these requests, from
/// `wire_manager.txt` (CPython 3.11.7, protocol 4).
const CAPTURED_DUMMY: &str = "8004951000000000000000284e8c0564756d6d7994297d9474942e";
const CAPTURED_CREATE_GET_QUEUE: &str =
    "8004951e00000000000000284e8c06637265617465948c096765745f71756575659485947d9474942e";
const CAPTURED_ACCEPT_MAIN: &str = "8004952b00000000000000284e8c116163636570745f636f6e6e656374696f6e948c0b4d61696e50726f636573739485947d9474942e";

/// The documentation's client (`connect(); q = get_queue(); q.put(1);
/// q.get()`), then a `#PROXY` reply, through a relay: each message is
/// checked against what CPython's client sends for the same calls.
fn relayed_like_cpython(server: &Address) {
    let relay = Relay::start(server);
    let address = relay.address.clone();
    // On a thread named "main" the thread connection's name is the
    // process's ("MainProcess", as in the capture).
    std::thread::Builder::new()
        .name("main".into())
        .spawn(move || {
            let ctx = mp_context::get_context(Some("fork")).unwrap();
            let m = BaseManager::<NoTypes>::new(&ctx)
                .with_address(address)
                .with_authkey(KEY.to_vec())
                .with_codec(pickle());
            m.connect().unwrap();
            let q: QueueProxy<i64> = m.create("get_queue", &()).unwrap();
            q.put(&1).unwrap();
            assert_eq!(q.get().unwrap(), 1);
            let maker: Proxy = m.create("Maker", &()).unwrap();
            let made: QueueProxy<String> = maker.call_proxy("make_queue", &()).unwrap();
            made.put(&"x".into()).unwrap();
            assert_eq!(made.get().unwrap(), "x");
            drop((q, maker, made));
        })
        .unwrap()
        .join()
        .unwrap();
    // The last decrefs travel on connections of their own.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let frames = loop {
        let frames = relay.frames();
        let decrefs = frames
            .iter()
            .filter(|f| f.to_server && request_of(f).1 == "decref")
            .count();
        if decrefs == 3 {
            break frames;
        }
        assert!(std::time::Instant::now() < deadline, "{frames:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    check_like_cpython(&frames, &relay.address);
}

/// `(ident, method)` of a request frame.
fn request_of(frame: &Frame) -> (Value, String) {
    let v = mp_pickle::loads(&frame.bytes).unwrap();
    let items = v.as_seq().unwrap();
    (items[0].clone(), items[1].as_str().unwrap().to_owned())
}

fn check_like_cpython(frames: &[Frame], relay: &Address) {
    let hexed = |f: &Frame| hex(&f.bytes);
    // Per connection: its requests and replies, in order.
    let mut conns: Vec<Vec<&Frame>> = Vec::new();
    for f in frames {
        if conns.len() <= f.conn {
            conns.resize(f.conn + 1, Vec::new());
        }
        conns[f.conn].push(f);
    }
    let conns: Vec<Vec<&Frame>> = conns.into_iter().filter(|c| !c.is_empty()).collect();
    let methods: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            c.iter()
                .filter(|f| f.to_server)
                .map(|f| request_of(f).1)
                .collect()
        })
        .collect();
    // Our session probe, refused by CPython; then CPython's own sequence:
    // `dummy` (connect), `create` on a fresh connection, the thread's
    // connection (`accept_connection`, then calls), a `create` of `Maker`,
    // and a `decref` on a fresh connection per object. The incref and
    // decref pair CPython sends after each `create` and `#PROXY` cancel out:
    // the process keeps the one reference the server counted.
    assert_eq!(
        methods,
        [
            vec!["#mp_rs.session"],
            vec!["dummy"],
            vec!["create"],
            vec![
                "accept_connection",
                "put",
                "get",
                "make_queue",
                "put",
                "get"
            ],
            vec!["create"],
            vec!["decref"],
            vec!["decref"],
            vec!["decref"],
        ],
        "{frames:?}"
    );
    let reply = |f: &Frame| mp_pickle::loads(&f.bytes).unwrap();
    assert_eq!(
        reply(conns[0][1]).as_seq().unwrap()[0].as_str(),
        Some("#TRACEBACK")
    );
    // Byte for byte what CPython's client sent, where no object id is in
    // the message.
    assert_eq!(hexed(conns[1][0]), CAPTURED_DUMMY);
    assert_eq!(hexed(conns[2][0]), CAPTURED_CREATE_GET_QUEUE);
    assert_eq!(hexed(conns[3][0]), CAPTURED_ACCEPT_MAIN);
    // The calls name the created id; `put(1)` is CPython's frame with it.
    let created = reply(conns[2][1]);
    let queue_id = created.as_seq().unwrap()[1].as_seq().unwrap()[0].clone();
    let put = Value::from((queue_id.clone(), "put", (1,), Value::Dict(Dict::new())));
    assert_eq!(conns[3][2].bytes, mp_pickle::dumps(&put));
    assert_eq!(
        reply(conns[3][5]),
        Value::from(("#RETURN", 1)),
        "q.get() returns 1"
    );
    // The `#PROXY` reply carries the server's own address; the proxy we
    // made talks to the relay (our address for the server) with its id.
    let proxy_reply = reply(conns[3][7]);
    let parts = proxy_reply.as_seq().unwrap();
    assert_eq!(parts[0].as_str(), Some("#PROXY"));
    let token = mp_manager::Token::from_value(&parts[1].as_seq().unwrap()[1]).unwrap();
    assert_ne!(&token.address, relay);
    assert_eq!(request_of(conns[3][8]).0, Value::from(token.id.as_str()));
    // The decrefs name the queue, Maker's object and the made queue.
    let mut decrefs: Vec<Value> = conns[5..]
        .iter()
        .map(|c| {
            let v = mp_pickle::loads(&c[0].bytes).unwrap();
            v.as_seq().unwrap()[2].as_seq().unwrap()[0].clone()
        })
        .collect();
    decrefs.sort_by_key(|v| v.to_string());
    let maker_id = reply(conns[4][1]).as_seq().unwrap()[1].as_seq().unwrap()[0].clone();
    let mut want = vec![queue_id, maker_id, Value::from(token.id.as_str())];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(decrefs, want);
}
