//! Joining a node to a server, as k3s does: the node token carries a hash of
//! the cluster CA (`K10<sha256 of ca.crt>::<token>`), so an agent that only
//! has the token can fetch the CA from `/cacerts`, check it against the
//! hash, and from then on verify the server like any other client.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// The node token for a CA and a bearer token.
pub fn node_token(ca_pem: &str, token: &str) -> String {
    format!("K10{:x}::{token}", Sha256::digest(ca_pem.as_bytes()))
}

/// Splits a node token into the CA hash and the bearer token.
pub fn parse_node_token(text: &str) -> Result<(String, String)> {
    let text = text.trim();
    let rest = text
        .strip_prefix("K10")
        .ok_or_else(|| anyhow!("the node token must look like K10<hash>::<token>: copy DATA_DIR/node-token from the server"))?;
    let (hash, token) = rest.split_once("::").ok_or_else(|| {
        anyhow!("the node token has no '::': copy DATA_DIR/node-token from the server")
    })?;
    if hash.len() != 64 || token.is_empty() {
        bail!("the node token is malformed: copy DATA_DIR/node-token from the server");
    }
    Ok((hash.to_string(), token.to_string()))
}

/// Fetches the cluster CA from `server` without trusting it yet, and accepts
/// it only if it matches the hash in the node token.
pub async fn fetch_ca(server: &str, ca_hash: &str) -> Result<String> {
    let mut config = kube::Config::new(
        server
            .parse()
            .with_context(|| format!("invalid --server URL {server:?}"))?,
    );
    // Only to fetch the CA, which is then checked against the token's hash.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("cannot build a client for --server")?;
    let req = http::Request::get("/cacerts")
        .body(Vec::new())
        .context("cannot build the /cacerts request")?;
    let pem = client.request_text(req).await.with_context(|| {
        format!("cannot fetch the cluster CA from {server}: is the server running and reachable?")
    })?;
    let got = format!("{:x}", Sha256::digest(pem.as_bytes()));
    if got != ca_hash {
        bail!("the server at {server} presented a CA that does not match the node token: check --server and the token");
    }
    Ok(pem)
}

/// Writes the agent's kubeconfig (server, verified CA, node token).
pub fn write_agent_kubeconfig(path: &Path, server: &str, ca_pem: &str, token: &str) -> Result<()> {
    crate::cluster::write_kubeconfig_file(path, server, ca_pem, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_tokens_round_trip_and_reject_plain_tokens() {
        let t = node_token("-----BEGIN CERTIFICATE-----\n", "abc");
        let (hash, token) = parse_node_token(&t).expect("parses");
        assert_eq!(token, "abc");
        assert_eq!(hash.len(), 64);
        assert!(parse_node_token("abc").is_err());
        assert!(parse_node_token("K10short::abc").is_err());
    }
}
