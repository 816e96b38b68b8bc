//! Integration tests: real `chatserver` processes over TCP, on the embedded SQLite store and on a real
//! MariaDB (see `support`). Run with `make test`.

mod support;

mod accounts;
mod chat;
mod client;
mod faults;
mod cluster;
mod framing;
mod lifecycle;
mod limits;
mod bench_smoke;
