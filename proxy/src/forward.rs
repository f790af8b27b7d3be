//! Listeners and connection splicing.
//!
//! One accept task per bound address (ClusterIP:port or
//! node-address:nodePort). Each accepted connection picks a backend from
//! the route's *current* endpoints (swapped in whole on every watch event),
//! falls back to the next endpoint when a connect fails, then copies bytes
//! both ways while the response meter counts HTTP responses. Removing a
//! listener stops new connections only: open ones finish on their own
//! (drain).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::counters::{Counters, PodCounter, ServiceCounter};
use crate::endpoints::{Backend, Backends};
use crate::meter::ResponseMeter;

/// Where connections to one address go.
#[derive(Debug)]
pub struct Route {
    pub namespace: String,
    pub service: String,
    backends: RwLock<Arc<Backends>>,
    counter: ServiceCounter,
}

impl Route {
    pub fn new(namespace: &str, service: &str, backends: Backends, counters: &Counters) -> Self {
        Self {
            namespace: namespace.to_string(),
            service: service.to_string(),
            backends: RwLock::new(Arc::new(backends)),
            counter: counters.service(namespace, service),
        }
    }

    /// Swaps in new endpoints; connections already open keep theirs.
    pub fn set_backends(&self, backends: Backends) {
        *self.backends.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(backends);
    }

    fn backends(&self) -> Arc<Backends> {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What every connection needs besides its route.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub counters: Counters,
    pub connect_timeout: Duration,
}

/// Accepts on `listener` until the task is aborted.
pub async fn accept_loop(listener: TcpListener, route: Arc<Route>, ctx: ConnContext) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let route = route.clone();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    handle(client, peer, route, ctx).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, service = %route.service, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connect(backends: &Backends, timeout: Duration) -> Option<(TcpStream, Backend)> {
    for backend in backends.attempt_order() {
        match tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await {
            Ok(Ok(stream)) => return Some((stream, backend.clone())),
            Ok(Err(e)) => {
                tracing::debug!(backend = %backend.addr, error = %e, "backend refused; trying the next")
            }
            Err(_) => tracing::debug!(backend = %backend.addr, "backend connect timed out"),
        }
    }
    None
}

async fn handle(client: TcpStream, peer: SocketAddr, route: Arc<Route>, ctx: ConnContext) {
    let backends = route.backends();
    let Some((backend_stream, backend)) = connect(&backends, ctx.connect_timeout).await else {
        tracing::debug!(
            namespace = %route.namespace,
            service = %route.service,
            %peer,
            endpoints = backends.eligible().len(),
            "no backend accepted the connection"
        );
        route.counter.record("failed", true);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend_stream.set_nodelay(true);
    let pod = backend
        .pod
        .as_deref()
        .map(|p| ctx.counters.pod(&route.namespace, p));
    let meter = splice(client, backend_stream, &route.counter, pod.as_deref()).await;
    if meter.responses() == 0 {
        // Not HTTP (or no response at all): one request per connection.
        route.counter.record("none", false);
        if let Some(pod) = &pod {
            pod.record(false);
        }
    }
}

/// Copies both ways until both sides are done; meters backend→client.
async fn splice(
    client: TcpStream,
    backend: TcpStream,
    counter: &ServiceCounter,
    pod: Option<&PodCounter>,
) -> ResponseMeter {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let mut meter = ResponseMeter::new();
    {
        let upstream = async {
            let result = tokio::io::copy(&mut client_read, &mut backend_write).await;
            let _ = backend_write.shutdown().await;
            result.map(|_| ())
        };
        let downstream = async {
            let mut buf = vec![0u8; 32 * 1024];
            let result = loop {
                let n = match backend_read.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(e),
                };
                meter.feed(&buf[..n], &mut |status| {
                    counter.record_status(status);
                    if let Some(pod) = pod {
                        pod.record(status >= 500);
                    }
                });
                if let Err(e) = client_write.write_all(&buf[..n]).await {
                    break Err(e);
                }
            };
            let _ = client_write.shutdown().await;
            result
        };
        tokio::pin!(upstream);
        tokio::pin!(downstream);
        // Either side failing ends the connection; a clean EOF waits for the other.
        tokio::select! {
            up = &mut upstream => if up.is_ok() { let _ = downstream.await; },
            down = &mut downstream => if down.is_ok() { let _ = upstream.await; },
        }
    }
    meter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::Backend;

    fn backend(addr: SocketAddr, pod: &str) -> Backend {
        Backend {
            addr,
            pod: Some(pod.to_string()),
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A loopback HTTP server answering every request line with `status`.
    async fn http_server(status: u16) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let requests = buf[..n].windows(4).filter(|w| w == b"\r\n\r\n").count();
                        for _ in 0..requests {
                            let reply =
                                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                            if stream.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_refused_backend_falls_back_to_the_next_and_responses_are_counted_per_pod() {
        let live = http_server(503).await;
        // A port nothing listens on: bind, take the address, close.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let counters = Counters::new();
        let route = Arc::new(Route::new(
            "default",
            "web",
            Backends::new(&[backend(dead, "dead"), backend(live, "live")]),
            &counters,
        ));
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let ctx = ConnContext {
            counters: counters.clone(),
            connect_timeout: Duration::from_secs(1),
        };
        tokio::spawn(accept_loop(front, route, ctx));
        for _ in 0..2 {
            let mut client = TcpStream::connect(front_addr).await.expect("connect");
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while got.windows(2).filter(|w| w == b"ok").count() < 2 {
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
        }
        // The counters are updated before the bytes are forwarded.
        let pods = counters.snapshot_pods();
        let live_pod = pods.iter().find(|p| p.pod == "live").expect("live pod");
        assert_eq!((live_pod.requests, live_pod.errors), (4, 4));
        assert!(pods.iter().all(|p| p.pod != "dead" || p.requests == 0));
    }

    #[tokio::test]
    async fn an_open_connection_drains_after_its_endpoint_is_removed_while_new_ones_are_refused() {
        let live = http_server(200).await;
        let counters = Counters::new();
        let route = Arc::new(Route::new(
            "default",
            "web",
            Backends::new(&[backend(live, "live")]),
            &counters,
        ));
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let ctx = ConnContext {
            counters: counters.clone(),
            connect_timeout: Duration::from_secs(1),
        };
        tokio::spawn(accept_loop(front, route.clone(), ctx));
        let mut open = TcpStream::connect(front_addr).await.expect("connect");
        let mut buf = [0u8; 256];
        open.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let n = open.read(&mut buf).await.expect("read");
        assert!(buf[..n].ends_with(b"ok"));

        route.set_backends(Backends::new(&[]));
        // The open connection keeps its backend.
        open.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let n = open.read(&mut buf).await.expect("read");
        assert!(buf[..n].ends_with(b"ok"));
        // A new one has nowhere to go and is closed.
        let mut fresh = TcpStream::connect(front_addr).await.expect("connect");
        let _ = fresh.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let n = fresh.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
    }
}
