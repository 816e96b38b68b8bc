//! Receiver threads: each owns a slice of the connections and waits on them with one `mio::Poll`
//! (epoll), so a few threads read thousands of sockets without spinning over idle ones — the tool shares
//! the machine with the server under test, and CPU it burns polling would be taken from the server. Each
//! chat frame's stamp says which message it is and when it was due; the receiver counts the delivery and
//! records its latency.

use std::borrow::Cow;
use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use clusterchat::protocol::frame::Decoded;
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;

use crate::conn::ERROR_MSG;
use crate::msgtext;
use crate::stats::{Shared, Step};
use crate::ws::Inbound;

/// The reading half of one connection.
pub struct Reader {
    pub stream: TcpStream,
    pub decoder: Inbound,
}

/// The running receiver threads; [`Receivers::stop`] ends them.
pub struct Receivers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Receivers {
    /// Spreads `readers` over `threads` threads (round-robin) and starts them. The sockets become
    /// nonblocking, which their writing halves share.
    pub fn spawn(
        readers: Vec<Reader>,
        threads: usize,
        shared: Arc<Shared>,
    ) -> io::Result<Receivers> {
        let threads = threads.clamp(1, readers.len().max(1));
        let mut slices: Vec<Vec<Reader>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, reader) in readers.into_iter().enumerate() {
            reader.stream.set_nonblocking(true)?;
            slices[i % threads].push(reader);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (index, slice) in slices.into_iter().enumerate() {
            let (shared, stop) = (shared.clone(), stop.clone());
            let poll = Poll::new()?;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("bench-recv-{index}"))
                    .spawn(move || receive(index, slice, poll, &shared, &stop))?,
            );
        }
        Ok(Receivers { stop, handles })
    }

    /// Stops the threads and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// One connection as its receiver holds it.
struct Slot {
    stream: mio::net::TcpStream,
    decoder: Inbound,
    open: bool,
}

/// What a receiver thread keeps between frames.
struct Context<'a> {
    index: usize,
    shared: &'a Shared,
    /// The step deliveries are counted against, refreshed when a stamp names another one.
    step: Option<Arc<Step>>,
    /// Latencies (µs) read since the last flush into the step's histograms.
    pending: Vec<u64>,
    /// The same for acks (due time to first ack).
    pending_acks: Vec<u64>,
}

fn receive(index: usize, readers: Vec<Reader>, mut poll: Poll, shared: &Shared, stop: &AtomicBool) {
    let mut ctx = Context {
        index,
        shared,
        step: None,
        pending: Vec::new(),
        pending_acks: Vec::new(),
    };
    let mut slots = Vec::with_capacity(readers.len());
    for (i, reader) in readers.into_iter().enumerate() {
        let mut slot = Slot {
            stream: mio::net::TcpStream::from_std(reader.stream),
            decoder: reader.decoder,
            open: true,
        };
        if let Err(e) = poll
            .registry()
            .register(&mut slot.stream, Token(i), Interest::READABLE)
        {
            eprintln!("receiver {index}: cannot watch a connection: {e}");
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
            slot.open = false;
        }
        // Frames that came with the last setup reply are still in the decoder.
        drain_decoder(&mut slot.decoder, shared.clock.now_ns(), &mut ctx);
        slots.push(slot);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("receiver {index}: poll failed: {e}");
            return;
        }
        for event in events.iter() {
            if let Some(slot) = slots.get_mut(event.token().0) {
                read_ready(slot, &mut buf, &mut ctx);
            }
        }
        flush(&mut ctx);
    }
}

/// Reads a readable connection until it would block (the poll is edge-triggered).
fn read_ready(slot: &mut Slot, buf: &mut [u8], ctx: &mut Context<'_>) {
    while slot.open {
        match slot.stream.read(buf) {
            Ok(0) => close(slot, ctx),
            Ok(n) => {
                slot.decoder.feed(&buf[..n]);
                drain_decoder(&mut slot.decoder, ctx.shared.clock.now_ns(), ctx);
                if slot.decoder.closed() {
                    close(slot, ctx);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => close(slot, ctx),
        }
    }
}

fn close(slot: &mut Slot, ctx: &mut Context<'_>) {
    slot.open = false;
    ctx.shared.disconnects.fetch_add(1, Ordering::Relaxed);
}

fn drain_decoder(decoder: &mut Inbound, now_ns: u64, ctx: &mut Context<'_>) {
    while let Some(unit) = decoder.next_frame() {
        match unit {
            Decoded::Frame(bytes) => handle_frame(&bytes, now_ns, ctx),
            Decoded::Malformed | Decoded::TooLarge => {
                ctx.shared.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The fields of a server frame the bench looks at; the rest (v2's conv, pos, ts, and the names) are
/// skipped without being decoded.
#[derive(Deserialize)]
struct Incoming<'a> {
    msgid: Option<i64>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
    errno: Option<i64>,
    /// In a CHAT_MSG_ACK (16): the cid of the message acknowledged, which is its stamp.
    #[serde(borrow)]
    cid: Option<Cow<'a, str>>,
}

fn handle_frame(bytes: &[u8], now_ns: u64, ctx: &mut Context<'_>) {
    let shared = ctx.shared;
    let Ok(frame) = serde_json::from_slice::<Incoming<'_>>(bytes) else {
        shared.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match (frame.msgid, frame.msg) {
        (Some(6 | 10), Some(text)) => match msgtext::decode(&text) {
            Some(stamp) => delivery(stamp, now_ns, ctx),
            None => {
                shared.foreign.fetch_add(1, Ordering::Relaxed);
            }
        },
        (Some(CHAT_MSG_ACK), _) if frame.errno.unwrap_or(0) == 0 => {
            match frame.cid.as_deref().and_then(msgtext::decode) {
                Some(stamp) => ack(stamp, now_ns, ctx),
                None => {
                    shared.other_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        (Some(ERROR_MSG), _) => shared.error(frame.errno.unwrap_or(-1)),
        _ => {
            shared.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// CHAT_MSG_ACK, the server's answer to an acknowledged chat.
const CHAT_MSG_ACK: i64 = 16;

/// Makes `ctx.step` the running step when a stamp names another one than the step held.
fn refresh_step(step_id: u32, ctx: &mut Context<'_>) {
    if ctx.step.as_ref().map(|s| s.id) != Some(step_id) {
        flush(ctx);
        ctx.step = ctx.shared.step();
    }
}

fn ack(stamp: msgtext::Stamp, now_ns: u64, ctx: &mut Context<'_>) {
    refresh_step(stamp.step, ctx);
    let first = match &ctx.step {
        Some(step) if step.id == stamp.step => step.ack(stamp.seq),
        _ => None,
    };
    match first {
        Some(true) => ctx
            .pending_acks
            .push(now_ns.saturating_sub(stamp.due_ns) / 1_000),
        Some(false) => {}
        None => {
            ctx.shared.late_acks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn delivery(stamp: msgtext::Stamp, now_ns: u64, ctx: &mut Context<'_>) {
    refresh_step(stamp.step, ctx);
    match &ctx.step {
        Some(step) if step.id == stamp.step && step.delivered(stamp.seq) => {
            ctx.pending
                .push(now_ns.saturating_sub(stamp.due_ns) / 1_000);
        }
        _ => {
            ctx.shared.stale.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Moves the pending latencies into the step's histograms (one lock each per batch of events).
fn flush(ctx: &mut Context<'_>) {
    if let Some(step) = &ctx.step {
        if !ctx.pending.is_empty() {
            let mut total = step.latency[ctx.index].lock();
            let mut interval = step.interval[ctx.index].lock();
            for &us in &ctx.pending {
                total.saturating_record(us.max(1));
                interval.saturating_record(us.max(1));
            }
        }
        if let Some(acks) = step
            .ack_latency
            .get(ctx.index)
            .filter(|_| !ctx.pending_acks.is_empty())
        {
            let mut acks = acks.lock();
            for &us in &ctx.pending_acks {
                acks.saturating_record(us.max(1));
            }
        }
    }
    ctx.pending.clear();
    ctx.pending_acks.clear();
}
