//! Reads (or writes) one manager request a million times, for profiling:
//! `cargo run --release -p mp-pickle --example pickle_loop -- [loads|dumps] [N]`.

fn main() {
    // ('7fded830de50', 'put', ({'id': 7, 'name': 'job', 'weights': [0.5, 1.5],
    // 'tags': ('a', 'b'), 'payload': b'x' * 64},), {}) as CPython 3.13 pickles it.
    let hex = "800495b300000000000000288c0c376664656438333064653530948c03707574947d94288c026964944b078c046e616d65948c036a6f62948c0777656967687473945d9428473fe0000000000000473ff8000000000000658c0474616773948c0161948c01629486948c077061796c6f616494434078787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878947585947d9474942e";
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "loads".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let value = mp_pickle::loads(&bytes).expect("the request reads");
    let mut buf = Vec::new();
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        if op == "dumps" {
            buf.clear();
            mp_pickle::dump_into(std::hint::black_box(&value), &mut buf);
        } else {
            std::hint::black_box(mp_pickle::loads(std::hint::black_box(&bytes)).expect("reads"));
        }
    }
    let per = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!("{op}: {per:.3} us per call");
}
