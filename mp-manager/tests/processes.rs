//! Cross-process tests of mp-manager (a `harness = false` target: its
//! `main` calls `mp_context::init()` first, so spawn and forkserver
//! children work).

fn main() {
    mp_context::init();
}
