//! The node's HTTP listener (`--http ADDR`): the web client and its WebSocket, health checks for nginx,
//! systemd and Kubernetes probes, and metrics for Prometheus.
//!
//! - `GET /ws`: the chat protocol over WebSocket. After the opening handshake the connection leaves
//!   this listener for the node's connection pool ([`Admission`]), where it is served like a TCP one.
//! - `GET /` and the client's files ([`crate::web`]).
//! - `GET /healthz`: 200 while the process serves (this thread answering is the proof).
//! - `GET /readyz`: 200 when the node can do its work: the store answers and, in a cluster, the Redis
//!   subscription stands; 503 with the reason otherwise.
//! - `GET /metrics`: [`crate::metrics`] in the OpenMetrics text format.
//!
//! Anything else is 404 (an unknown path), 405 (another method) or 400 (not HTTP); `/ws` without a
//! WebSocket handshake is 426. A few threads answer one request at a time each, bounded in time and
//! size, and close each connection after its answer: requests are small and rare (a page load, a
//! probe), and a slow one cannot hold the chat listener up.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::metrics::Now;
use crate::protocol::{proxy, websocket};
use crate::server::Admission;
use crate::service::Context;
use crate::session::{Accepted, Transport, WriterCount};
use crate::web;

/// The content type of the metrics page (the text format `prometheus-client` writes).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";
/// What the web client's files may do: load from this origin only, and talk to it (its WebSocket).
const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'self'; img-src 'self' data:; \
                            connect-src 'self'; frame-ancestors 'none'\r\n\
                            X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read; browsers send a kilobyte or two.
const MAX_HEAD: usize = 16 * 1024;
/// Threads answering requests: a page load asks for a few files at once.
const THREADS: usize = 4;

/// A response: status line, headers and body.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    /// Further header lines, each ending with CRLF.
    headers: &'static str,
    body: Cow<'static, [u8]>,
}

impl Response {
    fn new(status: u16, reason: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            reason,
            content_type: PLAIN,
            headers: "",
            body: Cow::Owned(body.into().into_bytes()),
        }
    }

    /// The bytes on the wire; a HEAD request gets the head only.
    fn bytes(&self, head_only: bool) -> Vec<u8> {
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-cache\r\n{}\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.headers,
        )
        .into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// What the answers need from the node.
struct Node {
    ctx: Arc<Context>,
    writers: Arc<WriterCount>,
}

impl Node {
    /// Whether the node can do its work: the store answers, and in a cluster the subscription stands.
    fn readiness(&self) -> Result<(), String> {
        // A read that touches the database (no user has id 0).
        self.ctx
            .store
            .find_user(0)
            .map_err(|e| format!("the store does not answer ({e})"))?;
        if !self.ctx.bus.is_ready() {
            return Err("not subscribed to Redis".into());
        }
        Ok(())
    }

    fn metrics(&self) -> String {
        let (users, devices) = self.ctx.online.counts();
        self.ctx.metrics.render(Now {
            users,
            devices,
            writers: self.writers.alive(),
            bus_waiting: self.ctx.bus.waiting(),
            indexed: self.ctx.store.indexed(),
        })
    }
}

/// Binds `addr` and answers requests on threads of their own for as long as the node's context lives;
/// WebSocket connections go to `admission`.
pub fn start(
    addr: SocketAddr,
    ctx: Weak<Context>,
    writers: Arc<WriterCount>,
    admission: Arc<Admission>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    for _ in 0..THREADS {
        let listener = listener.try_clone()?;
        let (ctx, writers, admission) = (ctx.clone(), writers.clone(), admission.clone());
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Some(ctx) = ctx.upgrade() else { return };
                    let node = Node {
                        ctx,
                        writers: writers.clone(),
                    };
                    match stream {
                        Ok(stream) => serve(&node, &admission, stream),
                        Err(e) => tracing::debug!(error = %e, "HTTP accept failed"),
                    }
                }
            })?;
    }
    Ok(bound)
}

fn serve(node: &Node, admission: &Admission, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Some((head, early)) = read_head(&mut stream) else {
        let bad = Response::new(400, "Bad Request", "bad request\n");
        let _ = stream.write_all(&bad.bytes(false));
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let (method, path) = match request.parse(&head) {
        Ok(httparse::Status::Complete(_)) => (
            request.method.unwrap_or(""),
            request.path.unwrap_or("/").split('?').next().unwrap_or("/"),
        ),
        _ => ("", ""),
    };
    let response = match (method, path) {
        ("", _) => Response::new(400, "Bad Request", "bad request\n"),
        ("GET", "/ws") => {
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
            };
            match websocket::accept(header) {
                Ok(switching) => {
                    let client = forwarded_client(node, &stream, header("x-forwarded-for"));
                    return upgrade(admission, stream, &switching, early, client);
                }
                Err(refused) => Response {
                    headers: "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                    ..Response::new(refused.status, refused.reason, format!("{}\n", refused.why))
                },
            }
        }
        _ => route(method, path, || node.readiness(), || node.metrics()),
    };
    let _ = stream.write_all(&response.bytes(method == "HEAD"));
}

/// The client's address when the upgrade carries `X-Forwarded-For`: the address it names if the request
/// came from a trusted proxy, else the peer's.
fn forwarded_client(node: &Node, stream: &TcpStream, header: Option<&str>) -> Option<IpAddr> {
    let peer = stream.peer_addr().ok()?.ip();
    let named = proxy::forwarded_for(header?)?;
    Some(node.ctx.proxies.client(peer, named))
}

/// Switches the connection to WebSocket and hands it to the connection pool.
fn upgrade(
    admission: &Admission,
    mut stream: TcpStream,
    switching: &str,
    early: Vec<u8>,
    client: Option<IpAddr>,
) {
    if stream.write_all(switching.as_bytes()).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(None);
    admission.admit(Accepted {
        stream,
        transport: Transport::WebSocket,
        early,
        client,
    });
}

/// The request head, once its blank line has come (within the size and time bounds), and whatever was
/// read after it.
fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let early = head.split_off(end + 4);
            return Some((head, early));
        }
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Routing of everything but `/ws`, apart from what readiness and the metrics page need to find out.
fn route(
    method: &str,
    path: &str,
    ready: impl FnOnce() -> Result<(), String>,
    metrics: impl FnOnce() -> String,
) -> Response {
    let asset = web::asset(path);
    if asset.is_none() && !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/ws") {
        return Response::new(404, "Not Found", "not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::new(405, "Method Not Allowed", "use GET\n");
    }
    if let Some(asset) = asset {
        return Response {
            content_type: asset.content_type,
            headers: PAGE_HEADERS,
            body: Cow::Borrowed(asset.bytes),
            ..Response::new(200, "OK", "")
        };
    }
    match path {
        "/healthz" => Response::new(200, "OK", "ok\n"),
        "/metrics" => Response {
            content_type: OPENMETRICS,
            ..Response::new(200, "OK", metrics())
        },
        "/ws" => Response::new(426, "Upgrade Required", "this path speaks WebSocket only\n"),
        _ => match ready() {
            Ok(()) => Response::new(200, "OK", "ready\n"),
            Err(why) => Response::new(503, "Service Unavailable", format!("not ready: {why}\n")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let ok = || Ok(());
        let page = || "# EOF\n".to_owned();
        assert_eq!(route("GET", "/healthz", ok, page).status, 200);
        assert_eq!(route("GET", "/readyz", ok, page).status, 200);
        assert_eq!(route("HEAD", "/readyz", ok, page).status, 200);
        let down = route(
            "GET",
            "/readyz",
            || Err("the store does not answer".into()),
            page,
        );
        assert_eq!(down.status, 503);
        assert!(String::from_utf8_lossy(&down.body).contains("the store does not answer"));
        let metrics = route("GET", "/metrics", ok, page);
        assert_eq!((metrics.status, metrics.content_type), (200, OPENMETRICS));
        assert_eq!(route("POST", "/healthz", ok, page).status, 405);
        assert_eq!(route("GET", "/nothing", ok, page).status, 404);
        assert_eq!(route("HEAD", "/ws", ok, page).status, 426);
        assert_eq!(route("POST", "/ws", ok, page).status, 405);
        let index = route("GET", "/", ok, page);
        assert_eq!(index.status, 200);
        assert!(index.content_type.starts_with("text/html"));
        assert!(index.headers.contains("Content-Security-Policy"));
    }

    #[test]
    fn responses_say_their_length_and_close() {
        assert!(
            !Response::new(200, "OK", "ok\n")
                .bytes(true)
                .ends_with(b"ok\n")
        );
        let bytes = Response::new(200, "OK", "ok\n").bytes(false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
    }
}
