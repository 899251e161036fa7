//! Arenas: backings, mapping by fd, and HEAP-16's cross-process sharing
//! (an arena's fd sent with SCM_RIGHTS to a re-executed test binary).

use std::{
    io::{IoSlice, IoSliceMut},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use mp_heap::{Arena, ArenaBacking, HeapError, SharedBuffer};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

const ROLE: &str = "MP_HEAP_TEST_ROLE";
const SOCKET: &str = "MP_HEAP_TEST_SOCKET";

#[test]
fn memfd_arena_is_sealed_zeroed_and_cloexec() {
    let a = Arena::new(3 * 4096).unwrap();
    assert_eq!(*a.backing(), ArenaBacking::Memfd);
    assert!(a.is_sealed());
    assert!(!Arena::new_file_backed(4096).unwrap().is_sealed());
    assert_eq!(a.size(), 3 * 4096);
    let seals = rustix::fs::fcntl_get_seals(&a).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW));
    let flags = rustix::io::fcntl_getfd(&a).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    assert!(Arena::new(0).is_err());
}

#[test]
fn file_backed_arena_lives_in_dev_shm_unlinked() {
    let a = Arena::new_file_backed(8192).unwrap();
    match a.backing() {
        ArenaBacking::File(dir) => {
            if std::path::Path::new("/dev/shm").is_dir() {
                assert_eq!(dir, std::path::Path::new("/dev/shm"));
            }
        }
        other => panic!("backing {other:?}"),
    }
    let st = rustix::fs::fstat(&a).unwrap();
    assert_eq!(st.st_nlink, 0, "the file must be unlinked");
    assert_eq!(st.st_size, 8192);
}

#[test]
fn an_arena_mapped_twice_by_fd_shows_the_same_bytes() {
    for arena in [
        Arena::new(4096).unwrap(),
        Arena::new_file_backed(4096).unwrap(),
    ] {
        let arena = Arc::new(arena);
        let again =
            Arc::new(Arena::from_fd(arena.as_fd().try_clone_to_owned().unwrap(), 4096).unwrap());
        assert_eq!(*again.backing(), ArenaBacking::Received);
        assert_eq!(arena.identity().unwrap(), again.identity().unwrap());
        // SAFETY: each range is rebuilt once; the two buffers are different
        // mappings of the same file, not the same Rust memory.
        let mut w = unsafe { SharedBuffer::from_parts(Arc::clone(&arena), 8, 16) }.unwrap();
        // SAFETY: as above.
        let r = unsafe { SharedBuffer::from_parts(again, 8, 16) }.unwrap();
        w.copy_from_slice(b"same bytes here!");
        assert_eq!(&*r, b"same bytes here!");
        assert_eq!(r.block(), None);
        r.free().unwrap(); // frees nothing, just unmaps
    }
}

#[test]
fn bad_parts_are_errors() {
    let arena = Arc::new(Arena::new(4096).unwrap());
    for (offset, len) in [(4096, 1), (0, 4097), (usize::MAX, 2)] {
        // SAFETY: the call fails, so no buffer is made.
        let r = unsafe { SharedBuffer::from_parts(Arc::clone(&arena), offset, len) };
        assert!(
            matches!(r, Err(HeapError::OutOfBounds { .. })),
            "{offset}+{len}"
        );
    }
    // A size larger than the file would SIGBUS on access: refused.
    let fd = arena.as_fd().try_clone_to_owned().unwrap();
    assert!(Arena::from_fd(fd, 8192).is_err());
}

fn send_fd(sock: &UnixStream, fd: &OwnedFd, payload: &[u8]) {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    assert!(anc.push(SendAncillaryMessage::ScmRights(&fds)));
    let n = sendmsg(sock, &[IoSlice::new(payload)], &mut anc, SendFlags::empty()).unwrap();
    assert_eq!(n, payload.len());
}

fn recv_fd(sock: &UnixStream, payload: &mut [u8]) -> OwnedFd {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        sock,
        &mut [IoSliceMut::new(payload)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    assert_eq!(msg.bytes, payload.len());
    let mut got = None;
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for fd in fds {
                got = Some(fd);
            }
        }
    }
    got.expect("no fd received")
}

/// The child's side of `an_arena_sent_by_fd_maps_the_same_bytes`: only runs
/// when re-executed with the role variable set.
#[test]
fn child_role_receive_arena() {
    if std::env::var(ROLE).as_deref() != Ok("receive-arena") {
        return;
    }
    let sock = UnixStream::connect(std::env::var(SOCKET).unwrap()).unwrap();
    let mut buf = recv_buffer(&sock);
    assert_eq!(&buf[..11], b"from parent");
    buf[..10].copy_from_slice(b"from child");
    drop(buf);
    // Tell the parent we are done.
    std::io::Write::write_all(&mut &sock, b"k").unwrap();
}

#[test]
fn an_arena_sent_by_fd_maps_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut buf = SharedBuffer::zeroed(100).unwrap();
    buf[..11].copy_from_slice(b"from parent");
    let mut child = spawn_role("arena::child_role_receive_arena", "receive-arena", &path);
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    send_buffer(&sock, &buf);
    let mut ack = [0u8; 1];
    let got = std::io::Read::read(&mut &sock, &mut ack);
    let err = wait_success(&mut child, Instant::now() + Duration::from_secs(60));
    assert_eq!(got.unwrap(), 1, "child sent no ack\n{err}");
    assert_eq!(
        &buf[..11],
        b"from childt",
        "the child's write is visible here"
    );
}

/// Re-executes this test binary to run only `test`, with the role variable
/// set to `role` and the socket variable to `socket`.
fn spawn_role(test: &str, role: &str, socket: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(ROLE, role)
        .env(SOCKET, socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` until `deadline` (killing it then), asserts it
/// succeeded and returns its stderr.
fn wait_success(child: &mut Child, deadline: Instant) -> String {
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "child failed: {status}\n{err}");
    err
}

/// Sends `buf` as its arena's fd with the arena size, offset and length.
fn send_buffer(sock: &UnixStream, buf: &SharedBuffer) {
    let mut header = Vec::new();
    for v in [buf.arena().size(), buf.offset(), buf.len()] {
        header.extend_from_slice(&(v as u64).to_le_bytes());
    }
    let fd = buf.arena().as_fd().try_clone_to_owned().unwrap();
    send_fd(sock, &fd, &header);
}

/// Rebuilds a buffer sent by [`send_buffer`].
fn recv_buffer(sock: &UnixStream) -> SharedBuffer {
    let mut header = [0u8; 24];
    let fd = recv_fd(sock, &mut header);
    let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
    let arena = Arc::new(Arena::from_fd(fd, word(0)).unwrap());
    // SAFETY: this process rebuilds each block once.
    unsafe { SharedBuffer::from_parts(arena, word(1), word(2)) }.unwrap()
}

/// Rebuilds a lock (or any shared state) sent by [`send_buffer`].
fn recv_shared(sock: &UnixStream) -> mp_heap::SharedLock {
    mp_heap::SharedLock::from_buffer(recv_buffer(sock)).unwrap()
}

const ROUNDS: u64 = 5000;

/// The child's side of `locked_increments_across_separate_mappings`.
#[test]
fn child_role_increment() {
    if std::env::var(ROLE).as_deref() != Ok("increment") {
        return;
    }
    let sock = UnixStream::connect(std::env::var(SOCKET).unwrap()).unwrap();
    let (lock, buf) = (recv_shared(&sock), recv_buffer(&sock));
    let v = mp_heap::Value::<u64>::from_parts(lock, buf).unwrap();
    let (lock, buf) = (recv_shared(&sock), recv_buffer(&sock));
    let a = mp_heap::Array::<u64>::from_parts(lock, buf).unwrap();
    for _ in 0..ROUNDS {
        v.lock().unwrap().update(|n| n + 1);
        a.lock().unwrap().update(1, |n| n + 1);
    }
    std::io::Write::write_all(&mut &sock, b"k").unwrap();
}

#[test]
fn locked_increments_across_separate_mappings() {
    // Unlike fork, a re-executed child maps the arena at its own address:
    // the futex must be a shared one, keyed by the memory, not the address.
    const CHILDREN: usize = 2;
    let v = mp_heap::Value::new(0_u64).unwrap();
    let a = mp_heap::Array::<u64>::zeroed(2).unwrap();
    let (v_parts, a_parts) = (v.into_parts(), a.into_parts());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|_| spawn_role("arena::child_role_increment", "increment", &path))
        .collect();
    let socks: Vec<_> = (0..CHILDREN)
        .map(|_| {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(120)))
                .unwrap();
            for (lock, buf) in [&v_parts, &a_parts] {
                send_buffer(&sock, lock.buffer());
                send_buffer(&sock, buf);
            }
            sock
        })
        .collect();
    let v = mp_heap::Value::<u64>::from_parts(v_parts.0, v_parts.1).unwrap();
    let a = mp_heap::Array::<u64>::from_parts(a_parts.0, a_parts.1).unwrap();
    for _ in 0..ROUNDS {
        v.lock().unwrap().update(|n| n + 1);
        a.lock().unwrap().update(0, |n| n + 1);
    }
    for sock in &socks {
        let mut ack = [0u8; 1];
        let _ = std::io::Read::read(&mut &*sock, &mut ack);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for child in &mut children {
        wait_success(child, deadline);
    }
    assert_eq!(v.get().unwrap(), (CHILDREN as u64 + 1) * ROUNDS);
    assert_eq!(a.to_vec().unwrap(), [ROUNDS, CHILDREN as u64 * ROUNDS]);
}
