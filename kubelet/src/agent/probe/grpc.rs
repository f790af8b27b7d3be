//! The `grpc` probe check: one `grpc.health.v1.Health/Check` call to the
//! pod IP over plaintext HTTP/2 (no TLS, as the kubelet), asking for the
//! probe's `service` (empty when unset). Only `SERVING` passes.
//!
//! As in the kubelet (which dials with gRPC's blocking dial), connecting
//! is retried with gRPC's backoff until `timeoutSeconds` runs out, so a
//! port nobody listens on fails with the connect timeout, and the call
//! itself gets what is left of the timeout. The failure messages are the
//! kubelet's:
//! - `timeout: failed to connect service "10.244.0.7:9000" within 1s: context deadline exceeded`
//! - `timeout: health rpc did not complete within 1s`
//! - `error: this server does not implement the grpc health protocol (grpc.health.v1.Health): <message>`
//! - `error: health rpc probe failed: rpc error: code = NotFound desc = <message>`
//! - `service unhealthy (responded with "NOT_SERVING")`
//!
//! One difference: a port that accepts TCP but never speaks HTTP/2 fails
//! with the call timeout here (tonic's connect does not wait for the
//! server's HTTP/2 preface), where Go's dial reports the connect timeout.

use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracing::debug;

use super::check::{host_port, ProbeResult, USER_AGENT};

/// What a `grpc` probe calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCheck {
    /// The pod IP.
    pub host: String,
    /// `grpc.port`.
    pub port: u16,
    /// `grpc.service` (empty when unset: the server's overall health).
    pub service: String,
}

/// gRPC's connection backoff: the first retry after 1 s, each next one
/// 1.6 times later, at most 120 s apart.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Runs a `grpc` check: success iff the server answers `SERVING` within
/// `timeout`.
pub async fn grpc(check: &GrpcCheck, timeout: Duration) -> ProbeResult {
    let address = host_port(&check.host, check.port);
    let deadline = Instant::now() + timeout;
    let endpoint = match Endpoint::from_shared(format!("http://{address}"))
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(endpoint) => endpoint,
        Err(error) => {
            return ProbeResult::Failure(format!(
                "error: failed to connect service at {address:?}: {error}"
            ))
        }
    };
    let Ok(channel) = tokio::time::timeout_at(deadline, connect(&endpoint, &address)).await else {
        return ProbeResult::Failure(format!(
            "timeout: failed to connect service {address:?} within {}: context deadline exceeded",
            go_duration(timeout)
        ));
    };
    let rpc_timeout = || {
        ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        ))
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: check.service.clone(),
    });
    // The deadline travels as `grpc-timeout`, as Go's context deadline does.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let response = match tokio::time::timeout_at(
        deadline,
        HealthClient::new(channel).check(request),
    )
    .await
    {
        Err(_) => return rpc_timeout(),
        Ok(Err(status)) => {
            debug!(address = %address, service = %check.service, code = ?status.code(), "health rpc failed");
            // Past the deadline the call timed out, whatever a server
            // honouring `grpc-timeout` answered first (tonic's says
            // `Cancelled`): Go's client reports its own deadline.
            if Instant::now() >= deadline {
                return rpc_timeout();
            }
            return match status.code() {
                    Code::Unimplemented => ProbeResult::Failure(format!(
                        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                        status.message()
                    )),
                    Code::DeadlineExceeded => rpc_timeout(),
                    code => ProbeResult::Failure(format!(
                        "error: health rpc probe failed: rpc error: code = {} desc = {}",
                        go_code_name(code),
                        status.message()
                    )),
                };
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    match ServingStatus::try_from(response.status) {
        Ok(ServingStatus::Serving) => ProbeResult::Success,
        Ok(other) => ProbeResult::Failure(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
        // An enum value this proto version does not know: Go prints the
        // number.
        Err(_) => ProbeResult::Failure(format!(
            "service unhealthy (responded with {:?})",
            response.status.to_string()
        )),
    }
}

/// Connects, retrying with gRPC's backoff (the caller bounds it).
async fn connect(endpoint: &Endpoint, address: &str) -> Channel {
    let mut backoff = BACKOFF_BASE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(error) => {
                debug!(address = %address, error = %error, retry_in = ?backoff, "grpc probe connect failed");
                tokio::time::sleep(backoff).await;
                backoff = backoff.mul_f64(1.6).min(BACKOFF_MAX);
            }
        }
    }
}

/// The name Go's `codes.Code` prints (tonic spells two differently).
fn go_code_name(code: Code) -> String {
    match code {
        Code::Ok => "OK".to_string(),
        Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    }
}

/// `d` as Go's `time.Duration` prints it (`1s`, `1m30s`, `500ms`), to the
/// millisecond.
pub fn go_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, fraction) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::pin::Pin;

    use futures::Stream;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::HealthCheckResponse;
    use tonic_health::server::HealthReporter;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Serves `health` on a free loopback port; returns the port.
    async fn serve<S>(health: HealthServer<S>) -> Result<u16, std::io::Error>
    where
        S: Health,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Ok(port)
    }

    /// tonic-health's own server, with `reporter` to set statuses.
    async fn health_server() -> Result<(HealthReporter, u16), std::io::Error> {
        let (reporter, service) = tonic_health::server::health_reporter();
        Ok((reporter, serve(service).await?))
    }

    fn check(port: u16, service: &str) -> GrpcCheck {
        GrpcCheck {
            host: "127.0.0.1".to_string(),
            port,
            service: service.to_string(),
        }
    }

    fn failure(result: ProbeResult) -> String {
        match result {
            ProbeResult::Failure(message) => message,
            ProbeResult::Success => "passed".to_string(),
        }
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_grpc_probe_passes_when_the_server_answers_serving() -> TestResult {
        let (reporter, port) = health_server().await?;
        // The empty service is the server's overall health, SERVING by default.
        assert_eq!(grpc(&check(port, ""), T).await, ProbeResult::Success);
        reporter
            .set_service_status("app.Api", tonic_health::ServingStatus::Serving)
            .await;
        assert_eq!(grpc(&check(port, "app.Api"), T).await, ProbeResult::Success);
        Ok(())
    }

    #[tokio::test]
    async fn a_grpc_probe_fails_with_the_status_when_the_service_is_not_serving() -> TestResult {
        let (reporter, port) = health_server().await?;
        reporter
            .set_service_status("app.Api", tonic_health::ServingStatus::NotServing)
            .await;
        assert_eq!(
            failure(grpc(&check(port, "app.Api"), T).await),
            r#"service unhealthy (responded with "NOT_SERVING")"#
        );
        reporter
            .set_service_status("", tonic_health::ServingStatus::Unknown)
            .await;
        assert_eq!(
            failure(grpc(&check(port, ""), T).await),
            r#"service unhealthy (responded with "UNKNOWN")"#
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_grpc_probe_for_an_unknown_service_fails_with_the_rpc_error() -> TestResult {
        let (_reporter, port) = health_server().await?;
        assert_eq!(
            failure(grpc(&check(port, "no.Such"), T).await),
            "error: health rpc probe failed: rpc error: code = NotFound desc = service not registered"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_grpc_probe_to_a_server_without_the_health_service_says_so() -> TestResult {
        // A gRPC server with no services: every method is Unimplemented.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::default())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        assert_eq!(
            failure(grpc(&check(port, ""), T).await),
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_grpc_probe_with_nothing_listening_fails_at_its_timeout_as_a_connect_timeout(
    ) -> TestResult {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let started = std::time::Instant::now();
        let message = failure(grpc(&check(port, ""), Duration::from_millis(300)).await);
        assert_eq!(
            message,
            format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 300ms: context deadline exceeded"
            )
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        Ok(())
    }

    /// A health service whose `Check` never answers in time.
    struct Stuck;

    #[tonic::async_trait]
    impl Health for Stuck {
        async fn check(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Err(Status::unavailable("too late"))
        }

        type WatchStream =
            Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("watch"))
        }
    }

    #[tokio::test]
    async fn a_grpc_probe_whose_call_does_not_finish_fails_at_its_timeout() -> TestResult {
        let port = serve(HealthServer::new(Stuck)).await?;
        let started = std::time::Instant::now();
        assert_eq!(
            failure(grpc(&check(port, ""), Duration::from_millis(500)).await),
            "timeout: health rpc did not complete within 500ms"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        Ok(())
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}
