// Appends beside a login that takes a long offline list, on the SQLite store in one process:
// docs/BENCHMARKS.md, "An offline list read beside appends". Not built by default: copy it into an
// examples/ directory of the tree to measure (and of every tree to compare), then alternate:
//     mkdir -p examples && cp bench/patches/offline-bench.rs examples/offlinebench.rs
//     cargo build --release --example offlinebench && ./target/release/examples/offlinebench
// It gives one user 20,000 offline messages of 1 KB, each in its own chunk (one append each, from 500
// senders), then takes that list in batches of 500 (as logins and nudged connections do) on one thread
// while another appends one message at a time for as long as the taking lasts; it prints how long the
// taking took and the appends' latency (p50, p99, max).
use clusterchat::model::Conv;
use clusterchat::store::{self, NewMessage, Require};
use std::time::Instant;

fn message(sender: i32, to: i32, offline: Vec<i32>, text: String) -> NewMessage {
    NewMessage {
        conv: Conv::direct(sender, to),
        sender,
        cid: None,
        time: "t".into(),
        text,
        offline,
        require: Require::Nothing,
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/b.db", dir.path().display());
    let st = store::open(&url, 2).unwrap();
    for n in 0..20_000 {
        let m = message(1 + n % 500, 1000, vec![1000], "x".repeat(1000));
        st.append(&[&m]).unwrap();
    }
    let taker = {
        let st = st.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut n = 0;
            loop {
                let got = st.take_offline(1000, 500).unwrap();
                if got.is_empty() {
                    return (n, t.elapsed());
                }
                n += got.len();
            }
        })
    };
    let mut latencies = Vec::new();
    while !taker.is_finished() {
        let t = Instant::now();
        st.append(&[&message(2000, 2001, vec![], "y".repeat(64))])
            .unwrap();
        latencies.push(t.elapsed().as_micros() as u64);
    }
    let (taken, took) = taker.join().unwrap();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "took {taken} offline messages in {:.0} ms; {} appends meanwhile: p50 {} us, p99 {} us, max {} us",
        took.as_secs_f64() * 1e3,
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
}
