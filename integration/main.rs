//! Integration tests: real `chatserver` processes over TCP, on the embedded SQLite store and on a real
//! MariaDB (see `support`). Run with `make test`.

mod support;

mod accounts;
mod bench_smoke;
mod browser;
mod chat;
mod client;
mod cluster;
mod dashboard;
mod devices;
mod durability;
mod faults;
mod framing;
mod groups;
mod http;
mod lifecycle;
mod limits;
mod log;
mod migrate;
mod people;
mod proxy;
mod readme;
mod run_cluster;
mod tls;
mod webdriver;
mod websocket;
