//! `chat`: the interactive client, the muduo cluster chat client's menu and commands over protocol v2.
//!
//! Two threads share the connection. The input thread reads the menu choices and commands, sends each
//! request tagged with a `seq`, and waits for the server's answer to it before reading on, so a scripted
//! run prints its results in a fixed order. The reader thread prints every frame the moment it arrives
//! (answers and incoming messages alike) and then hands the answer's outcome to the input thread; printing
//! from one thread keeps the server's order on screen. When the server goes away the reader thread says
//! so and ends the process with a failure status.
//!
//! When stdin is not a terminal, `chat` reads the same lines a person would type (menu choice, then
//! `userid`/`username` and password, then commands) without showing the menu or prompts, prints one line
//! per result or message, and after the end of its input waits a second for what is still on its way:
//! `printf '1\n1\npw\nchat:2:hi\n' | chat --server HOST:PORT` prints the login summary, then `sent`.

use std::io;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use clusterchat::client::{Client, FrameReader, FrameWriter};
use clusterchat::protocol::frame::Separator;
use clusterchat::protocol::msgid;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{Value, json};

#[path = "chat/command.rs"]
mod command;
#[path = "chat/render.rs"]
mod render;
#[path = "chat/terminal.rs"]
mod terminal;

use command::{Command, help_lines, parse_id};
use render::{Reply, render};
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
    let (replies_tx, replies) = crossbeam_channel::unbounded();
    let reader_out = input.output();
    let Client { writer, reader } = client;
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || read_frames(reader, reader_out, replies_tx, terminal))
        .context("cannot start the reader thread")?;
    let mut session = Session {
        writer,
        replies,
        out: Output::Stdout,
        next_seq: 1,
    };
    let end = session.run(&mut input)?;
    if end == Step::EndOfInput && !input.is_interactive() {
        thread::sleep(LINGER);
    }
    Ok(ExitCode::SUCCESS)
}

/// The reader thread: prints each frame as it arrives and passes the outcome of answers on. It never
/// returns: when the connection ends nothing more can happen, so it ends the process with a failure
/// status, after giving the terminal back its settings if `readline` had it in raw mode.
fn read_frames(
    mut reader: FrameReader,
    mut out: Output,
    replies: Sender<Reply>,
    terminal: TerminalState,
) -> ! {
    let why = loop {
        match reader.recv(None) {
            Ok(Some(frame)) => {
                out.lines(&render(&frame));
                if let Some(reply) = Reply::of(&frame) {
                    // The input thread is gone only when the process is ending.
                    let _ = replies.send(reply);
                }
            }
            Ok(None) => break "the server closed the connection".to_string(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The decoder has already moved past the bad frame; the next one can be read.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                out.line(&format!("unreadable message from the server: {e}"));
            }
            Err(e) => break format!("lost the connection to the server: {e}"),
        }
    };
    terminal.restore();
    // On a terminal the cursor may sit after a half-typed line.
    let lead = if terminal.is_terminal() { "\n" } else { "" };
    Output::Stdout.line(&format!("{lead}{why}"));
    std::process::exit(1)
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
    writer: FrameWriter,
    replies: Receiver<Reply>,
    out: Output,
    next_seq: u64,
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

    /// Both lines are read before the id is checked, so a script's following lines stay in step.
    fn login(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        let Some(id) = input.read("userid:", false)? else {
            return Ok(Step::EndOfInput);
        };
        let Some(password) = input.read("userpassword:", true)? else {
            return Ok(Step::EndOfInput);
        };
        let id = match parse_id(&id) {
            Ok(id) => id,
            Err(e) => {
                self.out.line(&format!("login failed: {e}"));
                return Ok(Step::Menu);
            }
        };
        let login = json!({"msgid": msgid::LOGIN, "id": id, "password": password, "v": 2});
        match self.request(login, ACCOUNT_TIMEOUT)? {
            Some(reply) if reply.logged_in() => {
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
        self.request(register, ACCOUNT_TIMEOUT)?;
        Ok(Step::Menu)
    }

    /// The logged-in command loop; `loginout` goes back to the menu on the same connection.
    fn commands(&mut self, input: &mut Input) -> anyhow::Result<Step> {
        loop {
            let Some(line) = input.read("> ", false)? else {
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
            match command.request() {
                None => self.out.lines(&help_lines()),
                Some(request) => {
                    self.request(request, ACK_TIMEOUT)?;
                }
            }
            // Back to the menu whatever the answer: like the original client, and a connection that
            // is somehow still logged in says so at the next login.
            if command == Command::Logout {
                return Ok(Step::Menu);
            }
        }
    }

    /// Sends a request tagged with a fresh `seq` and waits for the answer to it, which the reader thread
    /// prints. `None` when no answer came in time. An error only when the request could not be sent.
    fn request(&mut self, mut frame: Value, timeout: Duration) -> anyhow::Result<Option<Reply>> {
        let seq = self.next_seq;
        self.next_seq += 1;
        frame["seq"] = json!(seq);
        self.writer
            .send(&frame)
            .context("cannot send to the server")?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.replies.recv_deadline(deadline) {
                Ok(reply) if reply.seq == seq => return Ok(Some(reply)),
                // A late answer to a request that already timed out; it has been printed.
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    let secs = timeout.as_secs();
                    self.out
                        .line(&format!("no answer from the server within {secs} s"));
                    return Ok(None);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the connection reader stopped unexpectedly")
                }
            }
        }
    }
}
