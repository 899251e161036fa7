//! `DummyProcess` and the seed's rules, one test each.

use std::sync::mpsc;
use std::time::Duration;

use mp_dummy::{DummyProcess, Error, Event, active_children, current_process, freeze_support};

use crate::LONG;

#[test]
fn a_closure_target_runs_with_its_arguments() {
    let (tx, rx) = mpsc::channel();
    let p = DummyProcess::new(
        move |(a, b): (u32, String)| tx.send(format!("{b}{a}")).unwrap(),
        (7, "x".into()),
    );
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(rx.recv().unwrap(), "x7");
}

#[test]
fn start_from_another_thread_is_an_error_naming_both() {
    let p = DummyProcess::new(|()| {}, ());
    let parent = format!("{:?}", current_process());
    let p2 = p.clone();
    let e = std::thread::Builder::new()
        .name("the-other-thread".into())
        .spawn(move || p2.start().unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    match &e {
        Error::WrongThread {
            parent: named,
            current,
        } => {
            assert_eq!(named, &parent);
            assert!(current.contains("the-other-thread"), "{current}");
        }
        other => panic!("{other:?}"),
    }
    let message = e.to_string();
    assert!(message.starts_with("Parent is "), "{message}");
    // Not started: still startable from its own thread.
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    p.join(LONG).unwrap();
}

#[test]
fn exitcode_is_none_until_started_and_finished_then_zero() {
    let go = Event::new();
    let g = go.clone();
    let p = DummyProcess::new(move |()| assert!(g.wait(LONG)), ());
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    p.start().unwrap();
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    go.set();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
}

#[test]
fn a_panicking_target_is_joined_and_its_exitcode_is_still_zero() {
    // CPython 3.13: an exception in a dummy Process's target is printed by
    // threading.excepthook; join returns; exitcode is 0.
    let p =
        DummyProcess::new(|()| panic!("a panic expected by the test"), ()).with_name("Panicker");
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!((p.exitcode(), p.is_alive()), (Some(0), false));
}

#[test]
fn join_with_a_timeout_returns_while_it_runs() {
    let go = Event::new();
    let g = go.clone();
    let p = DummyProcess::new(move |()| assert!(g.wait(LONG)), ());
    p.start().unwrap();
    crate::took_at_least(crate::SHORT, || p.join(Some(crate::SHORT)).unwrap());
    assert!(p.is_alive());
    go.set();
    p.join(LONG).unwrap();
    assert!(!p.is_alive());
}

#[test]
fn join_before_start_and_from_its_own_thread_are_errors() {
    let p = DummyProcess::new(|()| {}, ());
    assert!(matches!(p.join(None), Err(Error::NotStarted { .. })));
    let (tx, rx) = mpsc::channel();
    let p = DummyProcess::new(move |()| tx.send(current_process().join(None)).unwrap(), ());
    p.start().unwrap();
    assert!(matches!(rx.recv().unwrap(), Err(Error::JoinSelf { .. })));
}

#[test]
fn start_twice_is_an_error() {
    let p = DummyProcess::new(|()| {}, ());
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
    p.join(LONG).unwrap();
}

#[test]
fn name_and_daemon() {
    let p = DummyProcess::new(|()| {}, ());
    assert!(p.name().starts_with("Thread-"), "{}", p.name());
    assert!(
        !p.daemon(),
        "the main thread is not a daemon, so neither are its children"
    );
    let p = p.with_name("worker").with_daemon(true);
    assert_eq!((p.name().as_str(), p.daemon()), ("worker", true));
    p.start().unwrap();
    assert!(matches!(
        p.set_daemon(false),
        Err(Error::DaemonOfStarted { .. })
    ));
    p.join(LONG).unwrap();
}

#[test]
fn current_process_is_the_running_process_inside_its_thread() {
    let (tx, rx) = mpsc::channel();
    let p = DummyProcess::new(move |()| tx.send(current_process().name()).unwrap(), ())
        .with_name("inner");
    p.start().unwrap();
    assert_eq!(rx.recv().unwrap(), "inner");
    p.join(LONG).unwrap();
    // The same record each time on one thread.
    assert_eq!(current_process().ident(), current_process().ident());
    assert_eq!(current_process().ident(), Some(std::thread::current().id()));
}

#[test]
fn active_children_drops_finished_ones() {
    // In a thread of its own, so that other tests' children do not count.
    std::thread::spawn(|| {
        let go = Event::new();
        let g = go.clone();
        let running = DummyProcess::new(move |()| assert!(g.wait(LONG)), ());
        let quick = DummyProcess::new(|()| {}, ());
        let never_started = DummyProcess::new(|()| {}, ());
        running.start().unwrap();
        quick.start().unwrap();
        quick.join(LONG).unwrap();
        let names: Vec<String> = active_children().iter().map(DummyProcess::name).collect();
        assert_eq!(names, [running.name()]);
        go.set();
        running.join(LONG).unwrap();
        assert!(active_children().is_empty());
        drop(never_started);
    })
    .join()
    .unwrap();
}

#[test]
fn freeze_support_does_nothing() {
    freeze_support();
    let _ = Duration::ZERO;
}
