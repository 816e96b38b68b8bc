// The SQLite log's append path in one process, without sockets: docs/BENCHMARKS.md, "Where the SQLite
// log's cost is, and what did not lower it". A live node's CPU on this machine moves with its neighbours
// by more than the differences measured there; this isolates the store. Not built by default: copy it
// into an examples/ directory of the tree to measure (and of every tree to compare), then alternate:
//     mkdir -p examples && cp bench/patches/append-bench.rs examples/appendbench.rs
//     cargo build --release --example appendbench && ./target/release/examples/appendbench 1000000
// It opens a new SQLite store in a temp dir, registers 1,000 users and appends N one-to-one messages
// (64-byte texts, random pairs, no cids) 32 to an append, as the log writer gathers them; it prints wall
// and process CPU time per message (the WAL checkpointer's thread included).
use clusterchat::model::Conv;
use clusterchat::store::{self, NewMessage, Require};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/b.db", dir.path().display());
    let st = store::open(&url, 2).unwrap();
    let users: Vec<i32> = (0..1000)
        .map(|i| st.create_user(&format!("u{i}"), "h").unwrap())
        .collect();
    let mut rng: u64 = 42;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t = Instant::now();
    let cpu0 = cpu();
    let mut done = 0;
    while done < n {
        let batch: Vec<NewMessage> = (0..32)
            .map(|_| {
                let a = users[(next() % 1000) as usize];
                let mut b = users[(next() % 1000) as usize];
                if b == a {
                    b = users[0];
                }
                NewMessage {
                    conv: Conv::direct(a, b),
                    sender: a,
                    cid: None,
                    time: "t".into(),
                    text: "x".repeat(64),
                    offline: vec![],
                    require: Require::NotBlocked,
                }
            })
            .collect();
        st.append(&batch.iter().collect::<Vec<_>>()).unwrap();
        done += 32;
    }
    let cpu1 = cpu();
    println!(
        "{} msgs: {:.2} us wall/msg, {:.2} us cpu/msg",
        n,
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu1 - cpu0) * 1e6 / n as f64
    );
}

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
