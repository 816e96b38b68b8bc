//! clusterchat: a cluster chat server speaking the wire protocol of the C++ "cluster chat server" teaching
//! project (see `docs/PROTOCOL.md`).
//!
//! # Layout
//! - [`protocol`]: msgid and errno numbers, the frame codec and the WebSocket codec, request parsing, reply
//!   encoding.
//! - [`server`]: the `std::net` listener, the connection limit and shutdown; [`pool`]: the bounded pool of
//!   connection workers.
//! - [`session`]: one connection: its read loop, its writer, and its transport (framed TCP or WebSocket).
//! - [`mailbox`]: a connection's bounded outgoing queue; [`online`]: user id → mailbox for this node.
//! - [`service`]: what each request does (account, friend, group, chat), over a shared [`service::Context`].
//! - [`store`]: the `Store` trait, MySQL and embedded SQLite, and the log's group commit; [`bus`]: delivery
//!   between nodes; [`priority`]: the log's threads run ahead of the connections'.
//! - [`hasher`]: argon2id off the connection threads; [`config`]: settings; [`node`]: a whole node;
//!   [`http`]: the HTTP listener (`--http`): the web client ([`web`]), WebSocket upgrades, health checks
//!   and [`metrics`].
//! - [`client`]: a blocking protocol client for the `chat` binary, the bench tool and the tests.
//!
//! # The path of one message
//! Socket → [`session`] reads bytes → its transport cuts a frame ([`protocol::frame`], or
//! [`protocol::websocket`] for a WebSocket) → [`service::dispatch`] parses and
//! checks it → [`service::chat`] sets the chat aside until the read's frames are handled
//! ([`service::pending`]) → the log writer ([`store::batch`]) commits them, with whatever else waits, in
//! one transaction that gives each its position → the chat is routed, on the log's completion thread (on a
//! node alone) or the sender's (in a cluster): to the recipient's mailbox through [`online`] when they
//! are on this node, else through the [`bus`] to their node, else into their offline list, a pointer into
//! the log → the recipient's connection writes it to their socket, and the sender gets its acknowledgement.
#![forbid(unsafe_code)]

pub mod bus;
pub mod client;
pub mod config;
pub mod hasher;
pub mod http;
pub mod limit;
pub mod mailbox;
pub mod metrics;
pub mod model;
pub mod node;
pub mod online;
pub mod pool;
pub mod priority;
pub mod protocol;
pub mod server;
pub mod service;
pub mod session;
pub mod store;
pub mod web;
