//! `chat`: the interactive client, the muduo cluster chat client's menu and commands over protocol v2.
//!
//! Two threads share the connection. The input thread reads the menu choices and commands, sends each
//! request tagged with a `seq`, and waits for the server's answer to it before reading on, so a scripted
//! run prints its results in a fixed order. The reader thread prints every frame the moment it arrives
//! (answers and incoming messages alike) and then hands the answer's outcome to the input thread; printing
//! from one thread keeps the server's order on screen. It also marks what it showed as read, and when the
//! connection of a logged-in session is lost it reconnects, logs in again with the device's resume token
//! and resends the messages the server had not acknowledged (see `chat/reader.rs`); when the connection
//! ends while not logged in, or the server stays out of reach, it says so and ends the process with a
//! failure status.
//!
//! Each chat message carries a `cid` and is kept until its ack, which names its place in the
//! conversation (`sent (u5 #12)`); the server answers a resent cid with the first ack and delivers the
//! message once, so resending after a reconnect loses nothing and duplicates nothing.
//!
//! Friends and groups are managed with commands of their own (friend requests, blocking, roles, kicks;
//! `help` lists them), and what others do comes as it happens: friend requests and their answers, group
//! events, presence and typing, each a line of its own (`chat/render.rs`). The login lists the friend
//! requests still open. On a terminal, starting to type the text of a `chat:` or `groupchat:` line tells
//! the other side that you are typing (once, then every few seconds while you go on); `password` asks for
//! the old and the new password the way the login asks for it. At `userid:`, a name logs in too (the
//! server takes the registered name instead of the id); a number is an id.
//!
//! When stdin is not a terminal, `chat` reads the same lines a person would type (menu choice, then
//! `userid`/`username` and password, then commands) without showing the menu or prompts, prints one line
//! per result or message, and after the end of its input waits for the acks of messages still
//! unacknowledged and a second for what is still on its way: `printf '1\n1\npw\nchat:2:hi\n' | chat
//! --server HOST:PORT` prints the login summary, then `sent (u2 #1)`. While the client reconnects, a
//! script's next command waits for the connection to be back.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use clusterchat::client::Client;
use clusterchat::protocol::frame::Separator;
use clusterchat::protocol::msgid;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use serde_json::{Value, json};

#[path = "chat/command.rs"]
mod command;
#[path = "chat/link.rs"]
mod link;
#[path = "chat/reader.rs"]
mod reader;
#[path = "chat/render.rs"]
mod render;
#[path = "chat/terminal.rs"]
mod terminal;

use command::{
    Cids, Command, Conv, TypingNotice, default_device, help_lines, history_request, parse_account,
    parse_device, password_request, typing_conv, typing_request,
};
use link::{Event, Link, Pending, Sent};
use reader::{Reader, Tracker, as_command};
use render::{PageInfo, Reply};
use terminal::{Input, Output, TerminalState};

/// How long a command waits for its ack before giving up on it (the ack is still printed if it comes).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Login and register hash a password on the server, which can take a while under load.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a script's run lingers after the end of its input, for messages and acks still on their way.
const LINGER: Duration = Duration::from_secs(1);

const MENU: [&str; 5] = [
    "========================",
    "1. login",
    "2. register",
    "3. quit",
    "========================",
];

/// The interactive chat client.
#[derive(Parser)]
#[command(name = "chat", version, about)]
struct Args {
    /// The server to connect to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6000")]
    server: String,

    /// The device to log in as: 1 to 64 characters, not "v1"; the default is chat-<hostname>.
    ///
    /// A user may be logged in on several devices at once (at most 8 by default), each device once.
    /// The default stays the same from run to run, so the server sees one device per machine: its
    /// logs name it, and it counts once against the user's limit. A second client of the same user on
    /// this machine needs a name of its own (--device phone), or its login is refused as "already
    /// logged in". After a lost connection the client logs back in as the same device, with the
    /// resume token of its login.
    #[arg(long, value_name = "NAME", default_value_t = default_device(hostname().as_deref()),
          value_parser = parse_device)]
    device: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // Saved before rustyline first switches the terminal to raw mode.
    let terminal = TerminalState::capture();
    let client = Client::connect(&args.server, Separator::Newline)
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let mut input = Input::open()?;
    let (events_tx, events) = crossbeam_channel::unbounded();
    let Client { writer, reader } = client;
    let link = Arc::new(Link::new(writer));
    input.watch_keys(typing_watch(link.clone()));
    let reading = Reader {
        link: link.clone(),
        out: input.output(),
        events: events_tx,
        terminal,
        server: args.server.clone(),
        tracker: Tracker::default(),
    };
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || reading.run(reader))
        .context("cannot start the reader thread")?;
    let mut session = Session {
        link,
        events,
        out: Output::Stdout,
        next_seq: 1,
        device: args.device.clone(),
        cids: Cids::new(&args.device, run_id()),
        interactive: input.is_interactive(),
        pages: HashMap::new(),
    };
    let end = session.run(&mut input)?;
    if end == Step::EndOfInput {
        session.drain();
        if !input.is_interactive() {
            thread::sleep(LINGER);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends TYPING when the person starts typing the text of a `chat:` or `groupchat:` line, and again every
/// few seconds while they go on in the same conversation. Nothing answers it; a lost connection is the
/// reader thread's to notice.
fn typing_watch(link: Arc<Link>) -> impl Fn(&str, usize) + Send + Sync + 'static {
    let notice = Mutex::new(TypingNotice::default());
    move |line: &str, cursor: usize| {
        if let Some(conv) = typing_conv(line, cursor)
            && notice.lock().due(conv, Instant::now())
        {
            let _ = link.send(&typing_request(conv));
        }
    }
}

/// This machine's name, for the default device.
fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for writes of its length; gethostname writes at most that much.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Some(String::from_utf8_lossy(&buf[..end]).into_owned())
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}

/// A number for this run of the client, different in every run: from the standard library's randomly
/// keyed hasher, fed the time and the process id besides.
fn run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Where the conversation goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Menu,
    Commands,
    Quit,
    EndOfInput,
}

/// The input side of the connection.
struct Session {
    link: Arc<Link>,
    events: Receiver<Event>,
    out: Output,
    next_seq: u64,
    /// The device this client logs in as.
    device: String,
    cids: Cids,
    interactive: bool,
    /// How far back `history:` has paged in each conversation.
    pages: HashMap<Conv, Paging>,
}

/// Where the next `history:` of a conversation starts.
#[derive(Debug, Clone, Copy)]
enum Paging {
    /// Before this position, the oldest shown; older messages exist.
    Before(i64),
    /// Nothing is older than this position: say so, then start again from the latest.
    Start(i64),
}

/// What became of a request.
enum Waited {
    Answer(Reply, Option<PageInfo>),
    Timeout,
    /// The connection it was sent on was lost before the answer came.
    Lost,
}

impl Session {
    /// Runs the menu and the command loop until the user quits or the input ends.
    fn run(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        let mut step = Step::Menu;
        loop {
            step = match step {
                Step::Menu => self.menu(input)?,
                Step::Commands => self.commands(input)?,
                Step::Quit | Step::EndOfInput => return Ok(step),
            };
        }
    }

    fn menu(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        if input.is_interactive() {
            self.out.lines(&MENU.map(String::from));
        }
        let Some(choice) = input.read("choice:", false)? else {
            return Ok(Step::EndOfInput);
        };
        match choice.trim() {
            "1" => self.login(input),
            "2" => self.register(input),
            "3" => Ok(Step::Quit),
            // A stray empty line (an extra Enter) just shows the menu again.
            "" => Ok(Step::Menu),
            _ => {
                self.out.line("invalid input!");
                Ok(Step::Menu)
            }
        }
    }

    /// A person is told at once that an id is invalid; a script's two lines are both read first, so that
    /// its following lines stay in step.
    fn login(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        let Some(id) = input.read("userid:", false)? else {
            return Ok(Step::EndOfInput);
        };
        let id = parse_account(&id);
        if let (Err(e), true) = (&id, input.is_interactive()) {
            self.out.line(&format!("login failed: {e}"));
            return Ok(Step::Menu);
        }
        let Some(password) = input.read("userpassword:", true)? else {
            return Ok(Step::EndOfInput);
        };
        let (key, account) = match id {
            Ok(account) => account,
            Err(e) => {
                self.out.line(&format!("login failed: {e}"));
                return Ok(Step::Menu);
            }
        };
        let mut login = json!({"msgid": msgid::LOGIN, "password": password, "v": 2,
                               "device": self.device});
        login[key] = account;
        match self.request(login, ACCOUNT_TIMEOUT, false)? {
            Some(reply) if reply.logged_in() => {
                self.pages.clear();
                if input.is_interactive() {
                    self.out.line("type help for the list of commands");
                }
                Ok(Step::Commands)
            }
            _ => Ok(Step::Menu),
        }
    }

    fn register(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        let Some(name) = input.read("username:", false)? else {
            return Ok(Step::EndOfInput);
        };
        let Some(password) = input.read("userpassword:", true)? else {
            return Ok(Step::EndOfInput);
        };
        let register = json!({"msgid": msgid::REG, "name": name, "password": password});
        self.request(register, ACCOUNT_TIMEOUT, false)?;
        Ok(Step::Menu)
    }

    /// The logged-in command loop; `loginout` goes back to the menu on the same connection.
    fn commands(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        loop {
            let Some(line) = input.read_command("> ")? else {
                return Ok(Step::EndOfInput);
            };
            if line.trim().is_empty() {
                continue;
            }
            input.remember(&line);
            let command = match Command::parse(&line) {
                Ok(command) => command,
                Err(e) => {
                    self.out.line(&e);
                    continue;
                }
            };
            if command == Command::Password {
                if self.password(input)? == Step::EndOfInput {
                    return Ok(Step::EndOfInput);
                }
                continue;
            }
            let Some(request) = command.request() else {
                self.out.lines(&help_lines());
                continue;
            };
            match command {
                Command::Chat { .. } | Command::GroupChat { .. } => self.chat(request)?,
                Command::History(conv) => self.history(conv)?,
                Command::Logout => {
                    // Messages still unacknowledged belong to this login: never resent under another.
                    for pending in self.link.logging_out() {
                        self.out
                            .line(&format!("not confirmed: {}", as_command(&pending.frame)));
                    }
                    self.request(request, ACK_TIMEOUT, false)?;
                    // Back to the menu whatever the answer: like the original client, and a connection
                    // that is somehow still logged in says so at the next login.
                    return Ok(Step::Menu);
                }
                // Queries are asked again after a reconnect if the answer was lost with the connection.
                _ => {
                    self.request(request, ACK_TIMEOUT, command.is_query())?;
                }
            }
        }
    }

    /// `password`: the old and the new password, read like the login's (masked on a terminal, the next
    /// two lines of a script). The server hashes both, as for a login.
    fn password(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        let Some(old) = input.read("old password:", true)? else {
            return Ok(Step::EndOfInput);
        };
        let Some(new) = input.read("new password:", true)? else {
            return Ok(Step::EndOfInput);
        };
        self.request(password_request(&old, &new), ACCOUNT_TIMEOUT, false)?;
        Ok(Step::Commands)
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Sends a request tagged with a fresh `seq` and waits for the answer to it, which the reader thread
    /// prints. While there is no connection a script waits for the reconnect (a person is told to try
    /// again). `None` when no answer came in time, or none will come because the connection was lost;
    /// a script's request that may be `resent` (a query) is then sent again on the next connection. An
    /// error only when the reader thread is gone.
    fn request(
        &mut self,
        mut frame: Value,
        timeout: Duration,
        resent: bool,
    ) -> anyhow::Result<Option<Reply>> {
        Ok(self
            .ask(&mut frame, timeout, resent)?
            .map(|(reply, _)| reply))
    }

    fn ask(
        &mut self,
        frame: &mut Value,
        timeout: Duration,
        resent: bool,
    ) -> anyhow::Result<Option<(Reply, Option<PageInfo>)>> {
        let seq = self.seq();
        frame["seq"] = json!(seq);
        loop {
            let epoch = match self.link.send(frame) {
                Sent::On(epoch) => epoch,
                // A person is not kept from typing while the client reconnects.
                Sent::Down(_) if self.interactive => {
                    self.out
                        .line("not connected: try again once the connection is back");
                    return Ok(None);
                }
                Sent::Down(epoch) => {
                    self.wait_for_connection(epoch)?;
                    continue;
                }
            };
            match self.wait(seq, epoch, timeout)? {
                Waited::Answer(reply, page) => return Ok(Some((reply, page))),
                Waited::Timeout => {
                    let secs = timeout.as_secs();
                    self.out
                        .line(&format!("no answer from the server within {secs} s"));
                    return Ok(None);
                }
                Waited::Lost if resent && !self.interactive => self.wait_for_connection(epoch)?,
                Waited::Lost => {
                    self.out.line(
                        "the connection was lost before the answer: it may or may not have been done",
                    );
                    return Ok(None);
                }
            }
        }
    }

    /// Waits for the answer to `seq`, sent on the connection of `epoch`.
    fn wait(&mut self, seq: u64, epoch: u64, timeout: Duration) -> anyhow::Result<Waited> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.events.recv_deadline(deadline) {
                Ok(Event::Answer(reply, page)) if reply.seq == seq => {
                    return Ok(Waited::Answer(reply, page));
                }
                Ok(Event::Lost(lost)) if lost >= epoch => return Ok(Waited::Lost),
                // A late answer to a request that already timed out (it has been printed), or news of
                // an earlier connection.
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => return Ok(Waited::Timeout),
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the connection reader stopped unexpectedly")
                }
            }
        }
    }

    /// Waits until a connection after the one of `epoch` is logged in. It comes, or the reader thread
    /// ends the process.
    fn wait_for_connection(&mut self, epoch: u64) -> anyhow::Result<()> {
        while !self.link.is_up_after(epoch) {
            if self.events.recv().is_err() {
                anyhow::bail!("the connection reader stopped unexpectedly");
            }
        }
        Ok(())
    }

    /// Sends a chat message with a fresh `cid` and keeps it until its ack. A script waits for the ack,
    /// across reconnects, so its lines stay in order; a person waits only while connected, and the ack
    /// is shown whenever it comes.
    fn chat(&mut self, mut frame: Value) -> anyhow::Result<()> {
        let seq = self.seq();
        let cid = self.cids.next();
        frame["seq"] = json!(seq);
        frame["cid"] = json!(cid);
        let sent = self.link.send_chat(Pending { cid, seq, frame });
        // The connection it waits on, with the deadline of its ack; none while reconnecting.
        let mut on = None;
        let mut down_after = 0;
        match sent {
            Sent::On(epoch) => on = Some((epoch, Instant::now() + ACK_TIMEOUT)),
            Sent::Down(_) if self.interactive => {
                self.out
                    .line("not connected: the message goes out once the connection is back");
                return Ok(());
            }
            Sent::Down(epoch) => down_after = epoch,
        }
        loop {
            let event = match on {
                Some((_, deadline)) => self.events.recv_deadline(deadline),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Answer(reply, _)) if reply.seq == seq => return Ok(()),
                Ok(Event::Lost(lost)) if on.is_some_and(|(epoch, _)| lost >= epoch) => {
                    if self.interactive {
                        return Ok(());
                    }
                    on = None;
                    down_after = lost;
                }
                Ok(Event::Back(epoch)) if on.is_none() && epoch > down_after => {
                    on = Some((epoch, Instant::now() + ACK_TIMEOUT));
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    let secs = ACK_TIMEOUT.as_secs();
                    self.out.line(&format!(
                        "no answer from the server within {secs} s; the message is resent after a reconnect"
                    ));
                    return Ok(());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the connection reader stopped unexpectedly")
                }
            }
        }
    }

    /// `history:CONV`: the latest page, then each time the page before the oldest message shown.
    fn history(&mut self, conv: Conv) -> anyhow::Result<()> {
        let before = match self.pages.get(&conv).copied() {
            None => None,
            Some(Paging::Before(pos)) => Some(pos),
            Some(Paging::Start(pos)) => {
                self.pages.remove(&conv);
                self.out.line(&format!(
                    "history {conv}: nothing older than #{pos}; history:{conv} again shows the latest"
                ));
                return Ok(());
            }
        };
        let mut request = history_request(conv, before);
        let Some((reply, Some(page))) = self.ask(&mut request, ACK_TIMEOUT, true)? else {
            return Ok(());
        };
        if reply.errno == 0 {
            match page.oldest {
                Some(oldest) if page.more => self.pages.insert(conv, Paging::Before(oldest)),
                Some(oldest) => self.pages.insert(conv, Paging::Start(oldest)),
                None => self.pages.remove(&conv),
            };
        }
        Ok(())
    }

    /// At the end of the input: waits for the acks of messages still unacknowledged (all the while the
    /// client reconnects, else at most [`ACK_TIMEOUT`]) and names those that never came.
    fn drain(&mut self) {
        let waiting = self.link.unacknowledged().len();
        if waiting == 0 {
            return;
        }
        if self.interactive {
            self.out.line(&format!(
                "waiting for the server to confirm {waiting} message(s)…"
            ));
        }
        let mut deadline = Instant::now() + ACK_TIMEOUT;
        while !self.link.unacknowledged().is_empty() {
            if !self.link.is_up() {
                deadline = Instant::now() + ACK_TIMEOUT;
            } else if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        for pending in self.link.unacknowledged() {
            self.out
                .line(&format!("not confirmed: {}", as_command(&pending.frame)));
        }
    }
}
