//! The person's side: reading lines and printing them. On a terminal, lines are read with rustyline
//! (editing, history, a masked password) and the reader thread prints through rustyline's external
//! printer, which redraws the line being typed below an incoming message instead of breaking it; the
//! keys typed into a command line can be watched as they come (for TYPING). From a pipe or file, lines
//! are read plainly and everything goes to stdout, flushed line by line for scripts.

use std::borrow::Cow;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ColorMode, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler,
    ExternalPrinter, Helper, KeyCode, KeyEvent, Modifiers, RepeatCount,
};
use unicode_width::UnicodeWidthStr as _;

/// Where lines come from.
pub enum Input {
    /// A person at a terminal.
    Terminal(Box<Terminal>),
    /// A script: stdin is a pipe or a file.
    Script(io::StdinLock<'static>),
}

pub struct Terminal {
    editor: Editor<Masker, DefaultHistory>,
    /// Whether the key watcher is told of keys: only while a command line is read, never a password.
    watching: Arc<AtomicBool>,
}

impl Input {
    /// Reads from the terminal when stdin is one, else plainly from stdin.
    pub fn open() -> anyhow::Result<Input> {
        if !io::stdin().is_terminal() {
            return Ok(Input::Script(io::stdin().lock()));
        }
        // Colours forced so that the masking highlighter runs even when stdout is redirected.
        let config = Config::builder()
            .color_mode(ColorMode::Forced)
            .auto_add_history(false)
            .build();
        let mut editor = Editor::with_config(config).context("cannot set up the terminal")?;
        editor.set_helper(Some(Masker::default()));
        Ok(Input::Terminal(Box::new(Terminal {
            editor,
            watching: Arc::new(AtomicBool::new(false)),
        })))
    }

    /// Whether a person is typing (prompts and the menu are shown only then).
    pub fn is_interactive(&self) -> bool {
        matches!(self, Input::Terminal(_))
    }

    /// The next line without its line ending; `None` at end of input (or Ctrl-D / Ctrl-C on a terminal).
    /// A `secret` line is masked while typed and kept out of the history.
    pub fn read(&mut self, prompt: &str, secret: bool) -> anyhow::Result<Option<String>> {
        match self {
            Input::Script(stdin) => read_plain(stdin),
            Input::Terminal(terminal) => read_edited(&mut terminal.editor, prompt, secret),
        }
    }

    /// Reads a command line: as [`Input::read`], with the key watcher told of the keys typed.
    pub fn read_command(&mut self, prompt: &str) -> anyhow::Result<Option<String>> {
        match self {
            Input::Script(stdin) => read_plain(stdin),
            Input::Terminal(terminal) => {
                terminal.watching.store(true, Ordering::Relaxed);
                let line = read_edited(&mut terminal.editor, prompt, false);
                terminal.watching.store(false, Ordering::Relaxed);
                line
            }
        }
    }

    /// On a terminal, calls `watch` with the line being edited and the cursor's byte position each time
    /// a key is about to insert a character into a command line ([`Input::read_command`]); the key then
    /// does what it always does. A script's lines come whole: nothing is watched.
    pub fn watch_keys(&mut self, watch: impl Fn(&str, usize) + Send + Sync + 'static) {
        if let Input::Terminal(terminal) = self {
            let watcher = KeyWatcher {
                watching: terminal.watching.clone(),
                watch: Box::new(watch),
            };
            terminal
                .editor
                .bind_sequence(Event::Any, EventHandler::Conditional(Box::new(watcher)));
        }
    }

    /// Adds a command line to the history (passwords never go there).
    pub fn remember(&mut self, line: &str) {
        if let Input::Terminal(terminal) = self {
            // A history that cannot grow is no reason to stop chatting.
            let _ = terminal.editor.add_history_entry(line);
        }
    }

    /// What the reader thread prints with: the external printer on a terminal, else stdout.
    pub fn output(&mut self) -> Output {
        match self {
            Input::Terminal(terminal) => match terminal.editor.create_external_printer() {
                Ok(printer) => Output::Printer(Box::new(printer)),
                Err(_) => Output::Stdout,
            },
            Input::Script(_) => Output::Stdout,
        }
    }
}

fn read_plain(stdin: &mut io::StdinLock<'static>) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if stdin
        .read_line(&mut line)
        .context("cannot read standard input")?
        == 0
    {
        return Ok(None);
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(Some(line))
}

fn read_edited(
    editor: &mut Editor<Masker, DefaultHistory>,
    prompt: &str,
    secret: bool,
) -> anyhow::Result<Option<String>> {
    set_masking(editor, secret);
    let line = editor.readline(prompt);
    set_masking(editor, false);
    match line {
        Ok(line) => Ok(Some(line)),
        Err(ReadlineError::Interrupted) => {
            // Said, so that Ctrl-C does not look like a crash.
            eprintln!("Ctrl-C: bye. Messages sent to you meanwhile wait for your next login.");
            Ok(None)
        }
        Err(ReadlineError::Eof) => Ok(None),
        Err(e) => Err(e).context("cannot read from the terminal"),
    }
}

fn set_masking(editor: &mut Editor<Masker, DefaultHistory>, on: bool) {
    if let Some(masker) = editor.helper_mut() {
        masker.masking = on;
    }
}

/// What is told of a key about to be typed: the line being edited and the cursor's byte position.
type KeyWatch = Box<dyn Fn(&str, usize) + Send + Sync>;

/// Bound to every key: tells `watch` of the keys that insert a character while `watching`, and leaves
/// every key to rustyline's own handling.
struct KeyWatcher {
    watching: Arc<AtomicBool>,
    watch: KeyWatch,
}

impl ConditionalEventHandler for KeyWatcher {
    fn handle(&self, event: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let inserts = match (event.get(0), event.get(1)) {
            (Some(KeyEvent(KeyCode::Char(c), modifiers)), None) => {
                !c.is_control() && (*modifiers == Modifiers::NONE || *modifiers == Modifiers::SHIFT)
            }
            _ => false,
        };
        if inserts && self.watching.load(Ordering::Relaxed) {
            (self.watch)(ctx.line(), ctx.pos());
        }
        None
    }
}

/// Prints whole lines, flushed at once. Each thread has its own: the reader thread's goes through the
/// external printer, while the input thread prints only when it is not inside `readline`, so plain
/// stdout is right for it and the two never wait on each other.
pub enum Output {
    Stdout,
    Printer(Box<dyn ExternalPrinter + Send>),
}

impl Output {
    /// Prints one line.
    pub fn line(&mut self, line: &str) {
        self.lines(&[line.to_string()]);
    }

    /// Prints several lines as one block, so that nothing from another thread lands between them.
    pub fn lines(&mut self, lines: &[String]) {
        let mut block = lines.join("\n");
        block.push('\n');
        if let Output::Printer(printer) = self
            && printer.print(block.clone()).is_ok()
        {
            return;
        }
        let mut stdout = io::stdout().lock();
        // Nowhere left to report a broken stdout; the next read or send ends the session anyway.
        let _ = stdout.write_all(block.as_bytes());
        let _ = stdout.flush();
    }
}

/// The rustyline helper: hides the password being typed, and nothing else.
#[derive(Default)]
pub struct Masker {
    masking: bool,
}

impl Highlighter for Masker {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.masking {
            // As wide as what was typed, so the cursor stays where rustyline thinks it is.
            Cow::Owned("*".repeat(line.width()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.masking && kind != CmdKind::MoveCursor
    }
}

impl Completer for Masker {
    type Candidate = String;
}

impl Hinter for Masker {
    type Hint = String;
}

impl Validator for Masker {}

impl Helper for Masker {}

/// The terminal's settings from before rustyline touched them, to put back when the reader thread ends
/// the process while `readline` has the terminal in raw mode (the server went away mid-typing).
pub struct TerminalState {
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

impl TerminalState {
    /// Saves the settings of stdin when it is a terminal.
    pub fn capture() -> TerminalState {
        TerminalState {
            #[cfg(unix)]
            saved: io::stdin()
                .is_terminal()
                .then(|| nix::sys::termios::tcgetattr(io::stdin()).ok())
                .flatten(),
        }
    }

    /// Puts the saved settings back and turns off bracketed paste, which rustyline switches on.
    pub fn restore(&self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            use nix::sys::termios::{SetArg, tcsetattr};
            // Best effort on the way out: there is nothing better to do if it fails.
            let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, saved);
            let mut stdout = io::stdout().lock();
            let _ = stdout.write_all(b"\x1b[?2004l");
            let _ = stdout.flush();
        }
    }

    /// Whether there is a terminal to restore.
    pub fn is_terminal(&self) -> bool {
        #[cfg(unix)]
        return self.saved.is_some();
        #[cfg(not(unix))]
        return false;
    }
}
