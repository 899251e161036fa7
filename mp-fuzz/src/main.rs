//! The stable fuzz driver: for each target, mutate its seed corpus at random
//! for a bounded time and fail loudly (with the input in hex and the seed to
//! replay it) if the target panics.
//!
//! ```text
//! mp-fuzz [--seconds N] [--seed S] [TARGET...]
//! ```

#![forbid(unsafe_code)]

use std::panic;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mp_fuzz::{TARGETS, Target};

/// xorshift64*: small, fast, and reproducible from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that tend to sit on boundaries of length fields and counters.
const INTERESTING: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x01, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00],
    b"{",
    b"}",
    b"#",
];

/// Up to 8 random edits of `input`, bounded to 64 KiB.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(8) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(len - i);
                input.drain(i..i + n);
            }
            4 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(len + 1);
                let end = (i + v.len()).min(len);
                input.splice(i..end, v.iter().copied());
            }
            5 => input.truncate(rng.below(len + 1)),
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let i = rng.below(other.len() + 1);
                input.extend_from_slice(&other[i..]);
            }
        }
    }
    input.truncate(64 * 1024);
}

fn fuzz(target: &Target, budget: Duration, seed: u64) -> Result<u64, String> {
    let corpus = (target.seeds)();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut runs = 0u64;
    for input in &corpus {
        check(target, input, seed)?;
        runs += 1;
    }
    while started.elapsed() < budget {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        check(target, &input, seed)?;
        runs += 1;
    }
    Ok(runs)
}

/// Inputs finished so far, across targets: what the watchdog watches.
static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// The target running now, for the watchdog's message.
static RUNNING: Mutex<&str> = Mutex::new("");

/// How long one input may run before the run counts as hung: every target
/// answers an input in well under a millisecond, and a hang (a loop as long
/// as a peer asks for) is as much a failure as a panic.
const HANG: Duration = Duration::from_secs(30);

/// Ends the process with a failure naming the target and the seed when no
/// input has finished for [`HANG`]: the run replays with `--seed`.
fn start_watchdog(seed: u64) {
    std::thread::spawn(move || {
        let mut last = (PROGRESS.load(Ordering::Relaxed), Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = PROGRESS.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= HANG {
                let target = *RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!(
                    "fuzz: target {target} hung: no input finished in {} s (seed {seed}; \
                     replay with mp-fuzz --seed {seed} {target})",
                    HANG.as_secs()
                );
                std::process::exit(1);
            }
        }
    });
}

fn check(target: &Target, input: &[u8], seed: u64) -> Result<(), String> {
    let result = panic::catch_unwind(|| (target.run)(input));
    PROGRESS.fetch_add(1, Ordering::Relaxed);
    result.map_err(|_| {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "target {} panicked (seed {seed}) on input {hex}",
            target.name
        )
    })
}

fn main() -> ExitCode {
    let mut seconds = 10u64;
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok());
        match arg.as_str() {
            "--seconds" => match value(args.next()) {
                Some(v) => seconds = v,
                None => return usage("--seconds needs a number"),
            },
            "--seed" => match value(args.next()) {
                Some(v) => seed = v,
                None => return usage("--seed needs a number"),
            },
            _ if arg.starts_with('-') => return usage(&format!("unknown option {arg}")),
            _ => names.push(arg),
        }
    }
    let selected: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .collect();
    if selected.is_empty() {
        return usage("no such target");
    }
    // Panics are expected to be reported by us, not printed twice.
    panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    start_watchdog(seed);
    for target in selected {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = target.name;
        match fuzz(target, Duration::from_secs(seconds), seed) {
            Ok(runs) => println!(
                "fuzz {}: {runs} inputs, no failure (seed {seed})",
                target.name
            ),
            Err(e) => {
                eprintln!("fuzz: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("mp-fuzz: {problem}\nusage: mp-fuzz [--seconds N] [--seed S] [TARGET...]");
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    eprintln!("targets: {}", names.join(", "));
    ExitCode::from(2)
}
