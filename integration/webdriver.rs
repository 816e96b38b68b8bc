//! A small blocking WebDriver client (W3C WebDriver: JSON over HTTP/1.1) for the browser tests: Debian's
//! `chromedriver` driving Debian's `chromium`, headless, each session with a fresh profile. Only what the
//! tests use: navigate, find, click, type, run a script, screenshot, resize the viewport, read the
//! console.
//!
//! `make test` installs `chromium` and `chromium-driver` (integration/services.sh). Without them the tests
//! fail, saying so; they are never skipped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::free_port;

/// How long `wait_for` waits for the page to show something.
pub const PAGE: Duration = Duration::from_secs(15);

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C key code of Enter, for `type_into`.
pub const ENTER: &str = "\u{E007}";

/// A WebDriver error: the `error` code and its message.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

/// One HTTP exchange with the driver: returns the status and the decoded JSON body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    // A command may take a while (a new session starts a browser), but never this long.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    // chromedriver keeps the connection open after its answer whatever the request said: read the head,
    // then exactly the body it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("the driver closed before answering"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut content = raw[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    match length {
        Some(length) => {
            while content.len() < length {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Err(std::io::Error::other("the driver's answer was cut short"));
                }
                content.extend_from_slice(&buf[..n]);
            }
            content.truncate(length);
        }
        None if head.contains("transfer-encoding: chunked") => {
            while !content.ends_with(b"0\r\n\r\n") {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                content.extend_from_slice(&buf[..n]);
            }
            content = dechunk(&content);
        }
        None => {
            stream.read_to_end(&mut content)?;
        }
    }
    let value = if content.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&content).map_err(std::io::Error::other)?
    };
    Ok((status, value))
}

/// Decodes a chunked HTTP body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A running `chromedriver`, stopped on drop. One per test; each `session` is a browser of its own.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub fn start() -> Driver {
        for binary in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (make test installs them; or apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, status)) = http(port, "GET", "/status", None)
                && status["value"]["ready"] == true
            {
                return driver;
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited at start: {exit}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new browser (headless chromium with a fresh profile), its viewport `width` × `height`.
    pub fn session(&self, width: u32, height: u32) -> Session {
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            // Timers of a page in a window that is not in front must not be slowed down: two users'
            // windows run side by side.
            "--disable-background-timer-throttling".to_owned(),
            "--disable-renderer-backgrounding".to_owned(),
            "--disable-backgrounding-occluded-windows".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            // The tests' nginx serves a certificate of their own throwaway CA.
            "acceptInsecureCerts": true,
        }}});
        let (status, reply) =
            http(self.port, "POST", "/session", Some(&caps)).expect("talk to chromedriver");
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session ({status}): {reply}"))
            .to_owned();
        let session = Session {
            port: self.port,
            id,
            _profile: profile,
        };
        session.set_viewport(width, height, false);
        session
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser, driven through its WebDriver session; closed on drop.
pub struct Session {
    port: u16,
    id: String,
    _profile: tempfile::TempDir,
}

/// A page element, as WebDriver names it.
pub struct Element(String);

impl Session {
    /// Runs one command; the W3C `value`, or the error it reports.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let path = format!("/session/{}{path}", self.id);
        let body = match (method, body) {
            ("POST", None) => Some(json!({})),
            (_, b) => b,
        };
        let (status, reply) =
            http(self.port, method, &path, body.as_ref()).map_err(|e| WdError {
                error: "transport".into(),
                message: e.to_string(),
            })?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            return Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(value)
    }

    fn must(&self, what: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .unwrap_or_else(|e| panic!("{what}: {} ({})\n{}", e.error, e.message, self.debug()))
    }

    pub fn goto(&self, url: &str) {
        self.must("navigate", "POST", "/url", Some(json!({"url": url})));
    }

    pub fn refresh(&self) {
        self.must("refresh", "POST", "/refresh", None);
    }

    /// The first element matching `css`, or an error when there is none.
    pub fn try_find(&self, css: &str) -> Result<Element, WdError> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        let id = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        Ok(Element(id.to_owned()))
    }

    /// Clicks the first element matching `css`, waiting for it to exist and take the click (it may be
    /// rendered a moment later).
    pub fn click(&self, css: &str) {
        self.retry(&format!("click {css}"), |s| {
            let e = s.try_find(css)?;
            s.cmd("POST", &format!("/element/{}/click", e.0), None)
        });
    }

    /// Types `text` into the first element matching `css` (key by key, with the events a user makes).
    pub fn type_into(&self, css: &str, text: &str) {
        self.retry(&format!("type into {css}"), |s| {
            let e = s.try_find(css)?;
            s.cmd(
                "POST",
                &format!("/element/{}/value", e.0),
                Some(json!({"text": text})),
            )
        });
    }

    /// Empties the input matching `css`.
    pub fn clear(&self, css: &str) {
        self.retry(&format!("clear {css}"), |s| {
            let e = s.try_find(css)?;
            s.cmd("POST", &format!("/element/{}/clear", e.0), None)
        });
    }

    fn retry(&self, what: &str, mut f: impl FnMut(&Session) -> Result<Value, WdError>) {
        let deadline = Instant::now() + PAGE;
        loop {
            match f(self) {
                Ok(_) => return,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{what}: {} ({})\n{}", e.error, e.message, self.debug()),
            }
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its result.
    pub fn script(&self, script: &str, args: Value) -> Value {
        self.must(
            "execute script",
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of every element matching `css`, in page order.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let v = self.script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
            json!([css]),
        );
        serde_json::from_value(v).expect("a list of texts")
    }

    /// The value of attribute `name` on every element matching `css`.
    pub fn attrs(&self, css: &str, name: &str) -> Vec<String> {
        let v = self.script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]) ?? '')",
            json!([css, name]),
        );
        serde_json::from_value(v).expect("a list of attributes")
    }

    /// Whether an element matching `css` is shown (exists, not hidden, has a size).
    pub fn visible(&self, css: &str) -> bool {
        self.script(
            "const e = document.querySelector(arguments[0]); \
             return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0",
            json!([css]),
        ) == true
    }

    /// Polls `check` until it gives a value, for at most `PAGE`; fails naming `what`, with the page's
    /// text and the browser's console.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Session) -> Option<T>) -> T {
        let deadline = Instant::now() + PAGE;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} within {PAGE:?}\n{}",
                self.debug()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the texts of `css` satisfy `ok`; returns them.
    pub fn wait_texts(&self, what: &str, css: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.wait_for(what, |s| {
            let t = s.texts(css);
            ok(&t).then_some(t)
        })
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.must("screenshot", "GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("a base64 PNG")
    }

    /// Makes the page's viewport `width` × `height` CSS pixels (as a phone's when `mobile`), through
    /// the DevTools protocol: a headless window cannot be made narrower than 500 px.
    pub fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.must(
            "set the viewport",
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
                }}),
            ),
        );
    }

    /// The browser console's entries since the last call.
    pub fn console(&self) -> Vec<Value> {
        match self.cmd("POST", "/se/log", Some(json!({"type": "browser"}))) {
            Ok(Value::Array(entries)) => entries,
            _ => Vec::new(),
        }
    }

    /// Asserts that the page logged no error (a script exception, a failed load) since the last call.
    pub fn assert_no_errors(&self) {
        self.assert_no_errors_but(&[]);
    }

    /// Asserts that the page logged no error but those whose message contains one of `expected`.
    pub fn assert_no_errors_but(&self, expected: &[&str]) {
        let errors: Vec<Value> = self
            .console()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .filter(|e| {
                let text = e["message"].as_str().unwrap_or_default();
                !expected.iter().any(|x| text.contains(x))
            })
            .collect();
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    }

    /// What a failure shows: the URL, the page's text and the console.
    fn debug(&self) -> String {
        let url = self.cmd("GET", "/url", None).unwrap_or_default();
        let body = self
            .cmd(
                "POST",
                "/execute/sync",
                Some(json!({"script": "return document.body.innerText", "args": []})),
            )
            .unwrap_or_default();
        format!(
            "--- page {url} ---\n{}\n--- console ---\n{:#?}",
            body.as_str().unwrap_or(""),
            self.console()
        )
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.cmd("DELETE", "", None);
    }
}
