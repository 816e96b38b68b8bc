//! One connection's delivery state, with one owner: [`Connection`] holds the write side (the socket, the
//! writer's state, the writer thread), the mailbox in front of it and the signal that stops the writer,
//! from [`Connection::open`] to [`Connection::close`], which winds them down in the one order that loses
//! nothing. Writer threads count against the node's bound through a [`WriterSlot`] held for the thread's
//! whole life, so that no path out of a thread, a panic included, can leak one.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::transport::Framing;
use super::{End, SessionConfig, linger, writer};
use crate::mailbox::{Mailbox, Outgoing, Sink};
use crate::service::{Caller, Context, account};

/// How long the last frame of a connection (a WebSocket close) may take to write.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Joins the writer thread. One still in a write after [`GOODBYE_TIMEOUT`] is blocked on a client that
/// reads nothing (a timeout set now does not reach a write already waiting): shutting the socket's sending
/// side ends that write with an error, the writer keeps what it could not write for storage, and the
/// close goes on. Without this a flooder cut off while it read nothing held its close, its presence and
/// an ever-growing spill for as long as it kept the connection open.
fn join_writer(stream: &TcpStream, thread: JoinHandle<()>) {
    let deadline = Instant::now() + GOODBYE_TIMEOUT;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !thread.is_finished() {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let _ = thread.join();
}

/// The writer threads alive on a node, and how many may be.
#[derive(Debug)]
pub struct WriterCount {
    alive: AtomicUsize,
    max: usize,
}

impl WriterCount {
    /// At most `max` writer threads at once.
    pub fn new(max: usize) -> WriterCount {
        WriterCount {
            alive: AtomicUsize::new(0),
            max,
        }
    }

    /// Writer threads alive now.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// A slot for one more writer thread, unless all are taken.
    fn take(self: &Arc<Self>) -> Option<WriterSlot> {
        if self.alive.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(WriterSlot(self.clone()))
    }
}

/// One writer thread's place in the node's count, given back when dropped.
struct WriterSlot(Arc<WriterCount>);

impl Drop for WriterSlot {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The write side of one connection, shared by its mailbox (as its [`Sink`]) and its writer threads.
pub(crate) struct Conn {
    pub(super) ctx: Arc<Context>,
    pub(super) stream: Arc<TcpStream>,
    /// How frames become bytes on this connection's transport.
    pub(super) framing: Framing,
    /// Set before the end: write replies only, record chat frames offline.
    pub(super) client_gone: AtomicBool,
    pub(super) writer: Mutex<writer::Writer>,
    /// Disconnected when the connection closes, which stops a running writer thread.
    pub(super) close: Receiver<()>,
    /// The mailbox and its queue, for writer threads (weak: the mailbox owns this connection's sink).
    mailbox: OnceLock<(Weak<Mailbox>, Receiver<Outgoing>)>,
    /// The writer thread last started, joined at the end.
    thread: Mutex<Option<JoinHandle<()>>>,
    writer_stack: usize,
    writers: Arc<WriterCount>,
}

/// A connection as its mailbox's sink.
struct ConnSink(Arc<Conn>);

impl Sink for ConnSink {
    fn try_direct(&self, item: Outgoing) -> Vec<Outgoing> {
        self.0.writer.lock().try_direct(&self.0, item)
    }

    fn start_writer(&self) -> bool {
        let conn = self.0.clone();
        let Some((mailbox, mail)) = conn.mailbox.get().cloned() else {
            return false;
        };
        let Some(slot) = conn.writers.take() else {
            return false;
        };
        let spawned = std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(conn.writer_stack)
            .spawn({
                let conn = conn.clone();
                move || {
                    let _slot = slot;
                    if let Some(mailbox) = mailbox.upgrade() {
                        writer::run(&conn, &mailbox, &mail);
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                *conn.thread.lock() = Some(handle);
                true
            }
            Err(_) => false,
        }
    }

    fn overflow(&self) {
        let _ = self.0.stream.shutdown(Shutdown::Both);
    }
}

/// One connection's delivery state, from accept to close.
pub(crate) struct Connection {
    conn: Arc<Conn>,
    mailbox: Arc<Mailbox>,
    mail: Receiver<Outgoing>,
    /// Dropped at close: wakes and stops a running writer thread.
    stop_writer: Sender<()>,
}

impl Connection {
    /// The write side and mailbox of a new connection on `stream`.
    pub(crate) fn open(
        ctx: &Arc<Context>,
        stream: &Arc<TcpStream>,
        framing: Framing,
        cfg: &SessionConfig,
    ) -> Self {
        let (stop_writer, close) = crossbeam_channel::bounded(0);
        let conn = Arc::new(Conn {
            ctx: ctx.clone(),
            stream: stream.clone(),
            framing,
            client_gone: AtomicBool::new(false),
            writer: Mutex::new(writer::Writer::default()),
            close,
            mailbox: OnceLock::new(),
            thread: Mutex::new(None),
            writer_stack: cfg.writer_stack_bytes,
            writers: cfg.writers.clone(),
        });
        let (mailbox, mail) = Mailbox::with_sink(cfg.mailbox_capacity, ConnSink(conn.clone()));
        let _ = conn.mailbox.set((Arc::downgrade(&mailbox), mail.clone()));
        Connection {
            conn,
            mailbox,
            mail,
            stop_writer,
        }
    }

    /// Where everything for this connection goes.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// The write side, for the reader (its transport frames the reader's answers).
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Winds the connection down after its reader stopped for `end`, in this order, each step for a
    /// reason:
    /// 1. the chats of the last read land (committed, delivered, answered): its answers come before
    ///    everything below;
    /// 2. a client that went away (or a panic) gets no more chat frames written: they are recorded
    ///    offline instead of written into a dying socket (replies are still tried);
    /// 3. the mailbox starts closing: from now on items are set aside, in order, not queued or written;
    /// 4. the writer thread, if one runs, is stopped and joined: nobody else touches the socket after;
    /// 5. what is still queued is written or recorded, then what was set aside, and the mailbox closes:
    ///    senders who find it closed record their frames themselves, after everything older;
    /// 6. the user leaves (out of the online map, off the bus, presence released) only now, so nothing
    ///    addressed to them was routed here and then lost;
    /// 7. a WebSocket gets its close frame, which says why, last of all;
    /// 8. a client closed for a too large frame, for abuse or on a WebSocket is drained a moment first, so
    ///    that closing does not reset the connection before it read our last frame (106, 107, the close
    ///    frame); then the socket closes.
    pub(crate) fn close(self, end: End, caller: &mut Caller) {
        let Connection {
            conn,
            mailbox,
            mail,
            stop_writer,
        } = self;
        caller.settle();
        if matches!(end, End::ClientGone | End::Panicked) {
            conn.client_gone.store(true, Ordering::SeqCst);
        }
        mailbox.begin_close();
        drop(stop_writer);
        // From now on no write waits longer than this for a client that does not read.
        let _ = conn.stream.set_write_timeout(Some(GOODBYE_TIMEOUT));
        let running = conn.thread.lock().take();
        if let Some(thread) = running {
            join_writer(&conn.stream, thread);
        }
        writer::finish(&conn, &mailbox, &mail);
        if let Some(me) = caller.user.take() {
            account::leave(&conn.ctx, &me, caller);
        }
        let goodbye = conn.framing.goodbye(end);
        if let Some(bytes) = &goodbye {
            let _ = conn.stream.set_write_timeout(Some(GOODBYE_TIMEOUT));
            let _ = (&*conn.stream).write_all(bytes);
        }
        if goodbye.is_some() || matches!(end, End::TooLarge | End::Abuse) {
            linger(&conn.stream);
        }
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
}
