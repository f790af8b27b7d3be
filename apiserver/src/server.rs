//! Starting the API server: open the store, start the watch cache, make
//! sure the system namespaces exist, and serve HTTPS until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::auth::{AllowAuthenticated, Auth, TokenAuthenticator};
use crate::handlers::{self, ApiState, HandlerConfig};
use crate::metrics::{self, Metrics};
use crate::registry::Registry;
use crate::store::embedded::{EmbeddedConfig, EmbeddedStore};
use crate::store::etcd::{EtcdConfig, EtcdStore};
use crate::store::{Store, StoreError};
use crate::tls::{self, Pki};
use crate::watchcache::WatchCache;

/// Which storage backend to use.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// redb in a file (the default).
    Embedded { path: PathBuf },
    /// An external etcd.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

/// Everything the API server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    pub store: StoreConfig,
    /// Directory of the cluster CA and serving certificate.
    pub pki_dir: PathBuf,
    /// Names and addresses the serving certificate is valid for.
    pub tls_sans: Vec<String>,
    pub tokens: TokenAuthenticator,
    /// Events kept in memory for resuming watches.
    pub watch_cache_events: usize,
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
    /// The Service ClusterIP range (`--service-cluster-ip-range`).
    pub service_cidr: crate::allocator::ServiceCidr,
    /// The `iss` of service-account tokens (`--service-account-issuer`), also
    /// the audience tokens must carry to authenticate (`--api-audiences`).
    pub service_account_issuer: String,
    /// Admission plugins turned off (kube-apiserver's
    /// `--disable-admission-plugins`), e.g. `ServiceAccount` for an API
    /// server that runs without a controller manager.
    pub disable_admission_plugins: Vec<String>,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("address {addr} is already in use: stop the other process or choose another --port")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("service-account token setup failed: {0}")]
    ServiceAccountTokens(#[from] crate::serviceaccount::TokenError),
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
}

/// A running API server.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    /// The server's metrics; other in-process components add theirs here.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Embedded { path } => {
            Arc::new(EmbeddedStore::open(EmbeddedConfig::new(path)).await?)
        }
        StoreConfig::Etcd { endpoints, prefix } => Arc::new(
            EtcdStore::connect(EtcdConfig {
                endpoints: endpoints.clone(),
                prefix: prefix.clone(),
                dial_timeout: Duration::from_secs(5),
            })
            .await?,
        ),
    })
}

/// Builds the full application (API, health, metrics, auth) over a store.
pub async fn app(config: &Config, store: Arc<dyn Store>) -> Result<(Router, Router), ServerError> {
    app_with_metrics(config, store, Arc::new(Metrics::new())).await
}

/// [`app`] with a metrics registry the caller keeps.
pub async fn app_with_metrics(
    config: &Config,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
) -> Result<(Router, Router), ServerError> {
    let registry = Arc::new(Registry::builtin());
    let cache = WatchCache::start(store.clone(), "/registry/", config.watch_cache_events).await?;
    let namespaces = crate::namespaces::NamespaceCache::start(store.clone(), cache.clone()).await?;
    let pki_dir = config.pki_dir.clone();
    let issuer = config.service_account_issuer.clone();
    let sa_tokens = Arc::new(
        tokio::task::spawn_blocking(move || {
            crate::serviceaccount::ServiceAccountTokens::load_or_create(&pki_dir, &issuer)
        })
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))??,
    );
    let state = ApiState {
        store: store.clone(),
        registry: registry.clone(),
        cache,
        metrics: metrics.clone(),
        config: Arc::new(HandlerConfig {
            default_not_ready_toleration_seconds: config.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: config.default_unreachable_toleration_seconds,
            advertise_address: config.bind.to_string(),
            service_cidr: config.service_cidr,
            disabled_admission_plugins: config.disable_admission_plugins.clone(),
        }),
        openapi: Arc::new(crate::openapi::OpenApiCache::new((*registry).clone())),
        namespaces,
        agents: Arc::new(crate::metrics_api::Agents::new(
            crate::nodeclient::NodeClient::from_pki(&Pki::in_dir(&config.pki_dir)),
            crate::metrics_api::AgentsConfig::default(),
        )),
        service_account_tokens: sa_tokens.clone(),
    };
    let api = handlers::router(state);
    let ready_store = store.clone();
    let ca_pem = std::fs::read_to_string(Pki::in_dir(&config.pki_dir).ca_cert).unwrap_or_default();
    let health = Router::new()
        .route("/cacerts", get(move || async move { ca_pem }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let store = ready_store.clone();
                async move {
                    match store.current_revision().await {
                        Ok(_) => (StatusCode::OK, "ok".to_string()),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
                    }
                }
            }),
        );
    let metrics_route = Router::new()
        .route("/metrics", get(metrics::serve))
        .with_state(metrics.clone());
    let auth = Auth {
        authenticator: config.tokens.clone(),
        service_accounts: Some(crate::serviceaccount::ServiceAccountAuthenticator {
            tokens: sa_tokens,
            store: store.clone(),
        }),
        authorizer: Arc::new(AllowAuthenticated),
    };
    let inner = api.clone().merge(metrics_route);
    let full = inner
        .merge(health)
        .fallback(|| async { crate::error::ApiError::UnknownResource.into_response() })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::authenticate,
        ))
        // Resource handlers read bodies themselves, to answer 413 with a Status.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    Ok((full, api))
}

/// Creates the namespaces every cluster has, through the API itself.
async fn bootstrap(api: &Router) -> Result<(), ServerError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let req = Request::post("/api/v1/namespaces")
            .header("content-type", "application/json")
            .header("user-agent", "skiff-apiserver")
            .body(Body::from(body.to_string()))
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        let resp = api
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        let code = resp.status();
        if !(code.is_success() || code == StatusCode::CONFLICT) {
            return Err(ServerError::Bootstrap(format!(
                "creating namespace {ns} answered {code}"
            )));
        }
    }
    Ok(())
}

/// Starts the server: returns once it is listening and bootstrapped.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.bind).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServerError::AddrInUse { addr: config.bind }
        } else {
            ServerError::Bind {
                addr: config.bind,
                source,
            }
        }
    })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.bind,
        source,
    })?;
    let pki = Pki::in_dir(&config.pki_dir);
    let sans = config.tls_sans.clone();
    let pki2 = pki.clone();
    tokio::task::spawn_blocking(move || tls::ensure(&pki2, &sans))
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))??;
    let tls_config = tls::server_config(&pki)?;
    let store = open_store(&config.store).await?;
    let metrics = Arc::new(Metrics::new());
    let (app, api) = app_with_metrics(&config, store.clone(), metrics.clone()).await?;
    bootstrap(&api).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let (shutdown, mut stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            let mut stop_conn = stop.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::select! {
                    res = conn => {
                        if let Err(e) = res {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    _ = stop_conn.changed() => {}
                }
            });
        }
    });
    tracing::info!(addr = %local_addr, "API server listening");
    Ok(RunningServer {
        local_addr,
        store,
        metrics,
        shutdown,
        task,
    })
}
