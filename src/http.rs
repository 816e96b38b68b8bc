//! The node's HTTP listener (`--http ADDR`): health checks for nginx, systemd and Kubernetes probes, and
//! metrics for Prometheus.
//!
//! - `GET /healthz`: 200 while the process serves (this thread answering is the proof).
//! - `GET /readyz`: 200 when the node can do its work: the store answers and, in a cluster, the Redis
//!   subscription stands; 503 with the reason otherwise.
//! - `GET /metrics`: [`crate::metrics`] in the OpenMetrics text format.
//!
//! Anything else is 404 (an unknown path), 405 (another method) or 400 (not HTTP). One thread answers
//! the probes one at a time, each connection bounded in time and size, and closes each connection after
//! its answer: probes are small and rare, and a slow one cannot hold the chat listener up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::metrics::Now;
use crate::service::Context;
use crate::session::WriterCount;

/// The content type of the metrics page (the text format `prometheus-client` writes).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// How long a probe may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read; probes send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// A response: status line and body.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, reason: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            reason,
            content_type: PLAIN,
            body: body.into(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\n\r\n{}",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.body
        )
        .into_bytes()
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
        })
    }
}

/// Binds `addr` and answers probes on a thread of its own for as long as the node's context lives.
pub fn start(
    addr: SocketAddr,
    ctx: Weak<Context>,
    writers: Arc<WriterCount>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
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
                    Ok(stream) => serve(&node, stream),
                    Err(e) => tracing::debug!(error = %e, "HTTP accept failed"),
                }
            }
        })?;
    Ok(bound)
}

fn serve(node: &Node, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let response = match read_head(&mut stream) {
        Some(head) => answer(node, &head),
        None => Response::new(400, "Bad Request", "bad request\n"),
    };
    let _ = stream.write_all(&response.bytes());
}

/// The request head, once its blank line has come (within the size and time bounds).
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    Some(head)
}

/// The response to a request head.
fn answer(node: &Node, head: &[u8]) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Response::new(400, "Bad Request", "bad request\n"),
    }
    let path = request.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    route(
        request.method.unwrap_or(""),
        path,
        || node.readiness(),
        || node.metrics(),
    )
}

/// Routing, apart from what readiness and the metrics page need to find out.
fn route(
    method: &str,
    path: &str,
    ready: impl FnOnce() -> Result<(), String>,
    metrics: impl FnOnce() -> String,
) -> Response {
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Response::new(404, "Not Found", "not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::new(405, "Method Not Allowed", "use GET\n");
    }
    match path {
        "/healthz" => Response::new(200, "OK", "ok\n"),
        "/metrics" => Response {
            content_type: OPENMETRICS,
            ..Response::new(200, "OK", metrics())
        },
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
        assert!(down.body.contains("the store does not answer"));
        let metrics = route("GET", "/metrics", ok, page);
        assert_eq!((metrics.status, metrics.content_type), (200, OPENMETRICS));
        assert_eq!(route("POST", "/healthz", ok, page).status, 405);
        assert_eq!(route("GET", "/nothing", ok, page).status, 404);
    }

    #[test]
    fn responses_say_their_length_and_close() {
        let bytes = Response::new(200, "OK", "ok\n").bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
    }
}
