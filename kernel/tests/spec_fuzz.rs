//! No input makes the `lain.yaml` parser panic or hang: thousands of seeded mutations of the real
//! corpus (byte deletions, insertions of YAML's significant characters, line duplications,
//! truncations) and random byte strings, each parsed under a time bound.
//!
//! Seeded, so a failure reproduces; `LAIN_FUZZ_CASES` raises the count for a longer local run.

mod common;

use lain::spec::{self, PluginProcTypes};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SIGNIFICANT: &[u8] = b":-[]{},#&*!|>'\"%@` \t\n.~?0123456789";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                let len = 1 + rng.below(16);
                bytes.drain(at..(at + len).min(bytes.len()));
            }
            1 => {
                let at = rng.below(bytes.len() + 1);
                let c = SIGNIFICANT[rng.below(SIGNIFICANT.len())];
                bytes.insert(at, c);
            }
            2 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    bytes = out.join("\n").into_bytes();
                }
            }
            3 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ => {
                let at = rng.below(bytes.len() + 1);
                let junk: Vec<u8> = (0..rng.below(8))
                    .map(|_| (rng.next() & 0xff) as u8)
                    .collect();
                bytes.splice(at..at, junk);
            }
        }
    }
    bytes
}

#[test]
fn no_input_makes_the_parser_panic_or_hang() {
    let engine = common::engine();
    let plugins = ["web", "worker", "oneshot", "portal"].map(|n| common::builtin(&engine, n, None));
    let types = Arc::new(PluginProcTypes::new(plugins, &BTreeMap::new()).expect("proc types"));
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/spec/real-lainyaml");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    seeds.sort();
    let cases: usize = std::env::var("LAIN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut rng = Rng(0x5eed_1a1d_2026_0001);
    let started = Instant::now();
    for case in 0..cases {
        let input = if case % 10 == 0 {
            (0..rng.below(512))
                .map(|_| (rng.next() & 0xff) as u8)
                .collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let text = String::from_utf8_lossy(&input).into_owned();
        let types = types.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let parsed = spec::parse("fuzz.yaml", &text, types.as_ref(), &["lain.local".into()]);
            let _ = tx.send(parsed.spec.is_some() || !parsed.diagnostics.is_empty());
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(answered) => assert!(answered, "case {case}: neither a spec nor a diagnostic"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "case {case}: the parser did not finish within 20 s on {:?}",
                    String::from_utf8_lossy(&input)
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {} // the worker panicked: reported below
        }
        if worker.join().is_err() {
            panic!(
                "case {case}: the parser panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
    eprintln!("{cases} inputs parsed in {:?}", started.elapsed());
}
