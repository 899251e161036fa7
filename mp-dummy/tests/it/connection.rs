//! `pipe`, `Listener` and `client` (`dummy/connection.py`).

use std::time::Duration;

use mp_dummy::{Error, Listener, client, pipe};

use crate::{LONG, SHORT, took_at_least};

#[test]
fn values_move_both_ways_over_a_duplex_pipe() {
    let (a, b) = pipe::<Vec<String>>(true);
    a.send(vec!["to b".into()]).unwrap();
    b.send(vec!["to a".into()]).unwrap();
    assert_eq!(b.recv().unwrap(), ["to b"]);
    assert_eq!(a.recv().unwrap(), ["to a"]);
    a.send_bytes(vec![]).unwrap();
    assert!(b.recv_bytes().unwrap().is_empty());
}

#[test]
fn a_one_way_pipe_has_a_receiving_and_a_sending_end() {
    let (r, w) = pipe::<u8>(false);
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    assert!(matches!(r.send(1), Err(Error::WrongDirection("receive"))));
    assert!(matches!(w.recv(), Err(Error::WrongDirection("send"))));
    w.send(1).unwrap();
    assert_eq!(r.recv().unwrap(), 1);
}

#[test]
fn poll_answers_at_once_when_something_is_queued() {
    let (a, b) = pipe::<u32>(true);
    a.send(1).unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(LONG).unwrap());
    assert!(b.poll(None).unwrap());
    // Polling consumes nothing.
    assert_eq!(b.recv().unwrap(), 1);
}

#[test]
fn poll_with_a_zero_timeout_is_false_at_once_on_an_empty_pipe() {
    let (_a, b) = pipe::<u32>(true);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn poll_waits_up_to_its_timeout() {
    let (_a, b) = pipe::<u32>(true);
    assert!(!took_at_least(SHORT, || b.poll(Some(SHORT)).unwrap()));
}

#[test]
fn poll_is_woken_by_a_send_from_another_thread() {
    let (a, b) = pipe::<u32>(true);
    let t = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        a.send(5).unwrap();
        a
    });
    assert!(b.poll(LONG).unwrap());
    assert_eq!(b.recv().unwrap(), 5);
    drop(t.join().unwrap());
}

#[test]
fn a_closed_peer_is_eof_after_what_it_sent() {
    let (mut a, b) = pipe::<u32>(true);
    a.send(1).unwrap();
    a.send(2).unwrap();
    a.close();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv().unwrap(), 1);
    assert_eq!(b.recv().unwrap(), 2);
    assert!(matches!(b.recv(), Err(Error::Eof)));
    assert!(
        b.poll(Some(Duration::ZERO)).unwrap(),
        "EOF is ready at once"
    );
    assert!(matches!(b.send(3), Err(Error::PeerClosed)));
}

#[test]
fn a_blocked_recv_wakes_with_eof_when_the_peer_is_dropped() {
    let (a, b) = pipe::<u32>(true);
    let t = std::thread::spawn(move || b.recv());
    std::thread::sleep(SHORT);
    drop(a);
    assert!(matches!(t.join().unwrap(), Err(Error::Eof)));
}

#[test]
fn a_closed_end_refuses_its_own_calls_and_close_is_idempotent() {
    let (mut a, _b) = pipe::<u32>(true);
    a.close();
    a.close();
    assert!(a.closed());
    assert!(matches!(a.send(1), Err(Error::Closed)));
    assert!(matches!(a.recv(), Err(Error::Closed)));
    assert!(matches!(a.poll(None), Err(Error::Closed)));
}

#[test]
fn recv_timeout_gives_none_after_the_timeout() {
    let (_a, b) = pipe::<u32>(true);
    assert_eq!(
        took_at_least(SHORT, || b.recv_timeout(Some(SHORT)).unwrap()),
        None
    );
}

#[test]
fn a_listener_accepts_clients_in_order() {
    let listener = Listener::<String>::new(2).unwrap();
    let address = listener.address();
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let c = client(&address).unwrap();
            c.send(format!("client {i}")).unwrap();
            c
        })
        .collect();
    for i in 0..2 {
        let conn = listener.accept().unwrap();
        assert_eq!(conn.recv().unwrap(), format!("client {i}"));
        conn.send("welcome".into()).unwrap();
    }
    for c in &clients {
        assert_eq!(c.recv().unwrap(), "welcome");
    }
}

#[test]
fn a_client_waits_for_room_in_the_backlog() {
    let listener = Listener::<u32>::new(1).unwrap();
    let address = listener.address();
    let _first = client(&address).unwrap();
    let t = std::thread::spawn(move || client(&address).map(|c| c.send(2)));
    std::thread::sleep(SHORT);
    assert!(!t.is_finished(), "the backlog holds one");
    drop(listener.accept().unwrap());
    let second = listener.accept_timeout(LONG).unwrap().unwrap();
    t.join().unwrap().unwrap().unwrap();
    assert_eq!(second.recv().unwrap(), 2);
}

#[test]
fn a_closed_listener_refuses_clients_and_accepts() {
    let listener = Listener::<u32>::new(1).unwrap();
    let address = listener.address();
    let pending = client(&address).unwrap();
    listener.close();
    assert!(matches!(client(&address), Err(Error::ListenerClosed)));
    assert!(matches!(listener.accept(), Err(Error::ListenerClosed)));
    // The client that was never accepted sees its connection closed.
    assert!(matches!(pending.recv(), Err(Error::Eof)));
    assert!(matches!(
        Listener::<u32>::new(0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn accept_timeout_gives_none_without_a_client() {
    let listener = Listener::<u32>::new(1).unwrap();
    assert!(took_at_least(SHORT, || listener.accept_timeout(Some(SHORT)).unwrap()).is_none());
}
