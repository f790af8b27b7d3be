//! A keep-alive HTTP/1.1 server answering `ok` to every request: the
//! backend the Service benchmark packs into an image (`skiff image build`)
//! and runs as a pod.
//!
//! Usage: `keepalive_server [PORT]` (default 8080, on every address).

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().context("PORT must be a number")?,
        None => 8080,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| format!("cannot listen on port {port}"))?;
        e2e::load::serve_keep_alive(listener).await;
        Ok(())
    })
}
