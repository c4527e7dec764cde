//! llmgate: a streaming reverse proxy and sidecar for Open WebUI, Ollama and
//! OpenAI-compatible relays.
//!
//! `main.rs` parses the command line; everything else lives here so tests can run the
//! proxy in-process: `Server::bind(&config)`, then `server.run(shutdown)`.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod auth;
pub mod bare_errors;
pub mod body;
pub mod config;
pub mod error;
pub mod exchange;
pub mod framing;
pub mod guard;
pub mod headers;
pub mod identity;
pub mod label_cap;
pub mod limits;
pub mod listener;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod observe;
pub mod path;
pub mod probe;
pub mod reload;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod upgrade;
pub mod upstream;

pub use config::Config;
pub use server::{DrainReport, Server};
