//! Cross-checks the sans-IO core against CPython's own functions
//! (`multiprocessing.connection._create_response` and `_verify_challenge`)
//! in every interpreter `mp-testsupport` finds: 3.11 (legacy MD5 only)
//! and 3.12 to 3.15 (`{digest}` prefixes). The protocol drivers are exercised against real
//! CPython peers over sockets in mp-conn's interop suite.
//!
//! A missing interpreter skips with a loud message, unless `CI=true` (or
//! `MP_REQUIRE_PYTHON=1`) makes it a failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use mp_auth::{Challenge, Digest, Policy, create_response, verify_response};

/// Reads `create KEY MSG` / `verify KEY MSG RESP` lines (hex) and answers
/// each with CPython's result: the response in hex, `OK`, or `ERR <type>`.
const PEER: &str = r#"
import sys
from multiprocessing import connection as c
for line in sys.stdin:
    op, *args = line.split()
    key, msg, *rest = [bytes.fromhex(a[1:]) for a in args]
    try:
        if op == "create":
            if hasattr(c, "_create_response"):
                print(c._create_response(key, msg).hex())
            else:  # 3.11's answer_challenge: a bare HMAC-MD5 of the message
                import hmac
                print(hmac.new(key, msg, "md5").digest().hex())
        else:
            if hasattr(c, "_verify_challenge"):
                c._verify_challenge(key, msg, rest[0])
            else:  # 3.11: a bare HMAC-MD5 comparison
                import hmac
                if not hmac.compare_digest(hmac.new(key, msg, "md5").digest(), rest[0]):
                    raise c.AuthenticationError("digest received was wrong")
            print("OK")
    except Exception as e:
        print("ERR", type(e).__name__)
    sys.stdout.flush()
"#;

fn interpreters() -> Vec<(String, PathBuf)> {
    mp_testsupport::VERSIONS
        .into_iter()
        .filter_map(mp_testsupport::find)
        .map(|py| (format!("3.{}", py.minor), py.path))
        .collect()
}

/// Hex with a leading `h`, so that empty byte strings survive `split()`.
fn hex(b: &[u8]) -> String {
    std::iter::once("h".to_string())
        .chain(b.iter().map(|x| format!("{x:02x}")))
        .collect()
}

/// Runs every query through one interpreter and returns its answers.
fn ask(python: &PathBuf, queries: &[String]) -> Vec<String> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(PEER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdin = child.stdin.take().unwrap();
    let input = queries.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn responses_and_verdicts_match_cpython() {
    let key_cases: [&[u8]; 3] = [b"secret key", b"", &[0xaa; 100]];
    for (label, python) in interpreters() {
        let modern = label != "3.11";
        let mut queries = Vec::new();
        let mut expected = Vec::new();
        for key in key_cases {
            // Legacy 20-byte challenges: every version answers with bare MD5.
            let legacy = [0x5a_u8; 20];
            queries.push(format!("create {} {}", hex(key), hex(&legacy)));
            expected.push(
                hex(&create_response(key, &legacy, Policy::CPYTHON).unwrap())[1..].to_string(),
            );
            for digest in Digest::ALL {
                let ch = Challenge::from_random(digest, &[digest as u8; 40]);
                if modern {
                    queries.push(format!("create {} {}", hex(key), hex(ch.message())));
                    expected.push(
                        hex(&create_response(key, ch.message(), Policy::CPYTHON).unwrap())[1..]
                            .to_string(),
                    );
                }
                // CPython verifies our reply (3.11 only understands bare MD5,
                // which is what a modern server accepts from it, AUTH-12).
                let reply = if modern {
                    create_response(key, ch.message(), Policy::CPYTHON).unwrap()
                } else {
                    Digest::Md5.mac(key, ch.message())
                };
                queries.push(format!(
                    "verify {} {} {}",
                    hex(key),
                    hex(ch.message()),
                    hex(&reply)
                ));
                expected.push("OK".into());
                // A reply under another key is refused by both.
                let wrong = Digest::Md5.mac(b"not the key", ch.message());
                queries.push(format!(
                    "verify {} {} {}",
                    hex(key),
                    hex(ch.message()),
                    hex(&wrong)
                ));
                expected.push("ERR AuthenticationError".into());
                assert!(verify_response(key, ch.message(), &wrong, Policy::CPYTHON).is_err());
            }
        }
        if modern {
            // Unknown digests are refused by both sides.
            let bad = b"{sha1}0123456789012345678901234567890123456789";
            queries.push(format!("create h6b {}", hex(bad)));
            expected.push("ERR AuthenticationError".into());
            assert!(create_response(b"k", bad, Policy::CPYTHON).is_err());
        }
        let answers = ask(&python, &queries);
        assert_eq!(answers.len(), expected.len(), "CPython {label}");
        for ((q, a), e) in queries.iter().zip(&answers).zip(&expected) {
            assert_eq!(a, e, "CPython {label} disagrees on: {q}");
        }
        eprintln!("CPython {label}: {} cases agree", answers.len());
    }
}
