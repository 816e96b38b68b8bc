//! `chat-bench`: a load generator for servers speaking the cluster chat protocol. It answers "how many
//! people can one node hold, how many messages per second, how fast does a message arrive?" against any
//! server speaking this protocol, because it speaks it as the original C++ client does (v1,
//! NUL-terminated frames, one frame per `write()`, TCP_NODELAY); `--ack` and `sync` speak v2 as a client of
//! the durable log does (cids, acks, resends, CONVERSATIONS and HISTORY). See docs/BENCHMARKS.md.
//!
//! # Layout
//! - `cli`: flags and their bounds (loopback targets only); `msgtext`: the stamp inside each message.
//! - `conn`: one connection (blocking for setup, nonblocking writes during load); `pool`: bounded
//!   concurrency for setup; `setup`: register, log in, create and join groups.
//! - `load`: the open-loop schedule and the sender threads; `receive`: the receiver threads.
//! - `flood`: the one abusive connection of `--flood-rate`.
//! - `stats`: counters, delivery tally, percentiles; `procfs`: the server's CPU, memory and context
//!   switches; `report`: the table and the JSON line; `plot`: the latency-vs-rate SVG.
//! - `scenario`: each scenario from setup to report; `sync`: a fresh device reading its history.
//! - `presence`: a login storm among friends and the PRESENCE frames it causes; `presence_io`: its
//!   storms of v2 logins and logouts over connections read all the time; `presence_tally`: the ring of
//!   friendships and the check of every frame against the contract (no sockets, unit-tested).
//! - `dbsize`: bytes per stored message from the node's SQLite file (read-only).
//! - `ws`: `--transport ws`, the same frames as WebSocket text messages on a node's `/ws`.

mod cli;
mod conn;
mod dbsize;
mod flood;
mod load;
mod msgtext;
mod plot;
mod pool;
mod presence;
mod presence_io;
mod presence_tally;
mod procfs;
mod receive;
mod report;
mod scenario;
mod setup;
mod stats;
mod sync;
mod ws;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::One(load) => scenario::chat(&load, None),
        Command::Group(group) => scenario::chat(&group.load, Some(group.group_size)),
        Command::Idle(common) => scenario::idle(&common),
        Command::LoginStorm(storm) => scenario::login_storm(&storm),
        Command::Sync(args) => sync::sync(&args),
        Command::Presence(args) => presence::presence(&args),
        Command::Plot(args) => plot::plot(&args),
    }
}
