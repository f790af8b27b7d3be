//! A client of the distribution API v2 (what Docker Hub, ghcr.io, Harbor
//! and `docker-registry` serve), enough to pull an image:
//!
//! - resolve a tag (or digest) to a manifest: `HEAD` then `GET
//!   /v2/<repo>/manifests/<ref>`, accepting OCI indexes and Docker manifest
//!   lists (then picking the `linux/<this arch>` entry), OCI manifests and
//!   Docker schema 2 manifests; every manifest is checked against its
//!   digest;
//! - fetch blobs (`GET /v2/<repo>/blobs/<digest>`), following redirects to
//!   storage backends without the registry's credentials; the config is
//!   verified here, layers by the content writer as they stream;
//! - authenticate as containerd does: anonymous first; on `401` the
//!   `WWW-Authenticate` challenge says how — `Basic` (the credentials
//!   themselves) or `Bearer realm=...,service=...,scope=...` (a token from
//!   the realm, fetched with the credentials when there are some).
//!
//! HTTPS (rustls, the system's roots) unless the registry is listed as
//! insecure, which means plain HTTP. Errors read like containerd's, since
//! they end up in `ErrImagePull` messages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::archive::{host_architecture, media_types, sha256_digest};
use super::reference::Reference;

/// How long to wait for a response's headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a blob download may stall between two chunks.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;
/// Manifests and indexes larger than this are refused (containerd: 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Image configs larger than this are refused.
const MAX_CONFIG_BYTES: usize = 16 << 20;

/// Docker schema 1 manifests, which containerd 1.6 converts and we refuse.
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type a pull accepts, for `Accept`.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Errors talking to a registry, worded like containerd's.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The tag or digest does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// The registry answered with an unexpected status (401 without usable
    /// credentials, 403, 5xx...).
    #[error("unexpected status from {method} request to {url}: {status}")]
    UnexpectedStatus {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// A token server refused the pull's scope (Docker Hub's answer for
    /// private or missing repositories).
    #[error("pull access denied, repository does not exist or may require authorization: server message: {0}")]
    AccessDenied(String),
    /// The Bearer token could not be fetched.
    #[error("failed to authorize: failed to fetch {kind} token: {source}")]
    Token {
        /// `anonymous` or `oauth`.
        kind: &'static str,
        /// Why.
        #[source]
        source: Box<RegistryError>,
    },
    /// The request could not be sent (connection refused, TLS...).
    #[error("failed to do request: {method} {url:?}: {message}")]
    Request {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// No response within [`RESPONSE_TIMEOUT`].
    #[error("failed to do request: {method} {url:?}: timed out after {timeout:?}")]
    Timeout {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// Reading a response body failed.
    #[error("reading {url}: {message}")]
    Body {
        /// The request's URL.
        url: String,
        /// The error.
        message: String,
    },
    /// Content does not match its digest.
    #[error("digest mismatch: {digest} has digest {actual}")]
    DigestMismatch {
        /// What was asked for.
        digest: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A manifest, index or config is malformed.
    #[error("parsing {digest}: {source}")]
    Json {
        /// The document.
        digest: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest of a type skiff cannot run (schema 1, artifacts...).
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// An index has no manifest for this machine.
    #[error("no match for platform linux/{0} in manifest: not found")]
    NoPlatform(String),
    /// A response or redirect carried an unusable URL.
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    /// The TLS client could not be set up.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Registry-wide settings of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host:port`, or `host` for any port) reached over plain
    /// HTTP instead of HTTPS.
    pub insecure: Vec<String>,
}

impl RegistryConfig {
    /// Whether `domain` (`host[:port]`) is reached over plain HTTP.
    pub fn is_insecure(&self, domain: &str) -> bool {
        let host = domain
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(domain, |(host, _)| host);
        self.insecure
            .iter()
            .any(|entry| entry == domain || (!entry.contains(':') && entry == host))
    }
}

/// A user name and password for one registry (from a pull secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or a personal access token).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`: send the credentials themselves.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: fetch a token first.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter for the token request.
        service: Option<String>,
        /// The `scope` parameter for the token request.
        scope: Option<String>,
        /// `error=` (e.g. `insufficient_scope`) when a token was refused.
        error: Option<String>,
    },
}

/// Parses the challenges of one `WWW-Authenticate` header value
/// (RFC 7235: `scheme k=v, k="quoted, value", scheme2 ...`); unknown
/// schemes are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', ',']);
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if let Some(value_part) = after.strip_prefix('=') {
            // A parameter of the current challenge.
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_string(), &value_part[end..])
            };
            if let Some((_, params)) = current.as_mut() {
                params.push((token.to_ascii_lowercase(), value));
            }
            rest = remaining;
        } else if token.is_empty() {
            break;
        } else {
            // A new challenge's scheme.
            if let Some(done) = current.take() {
                challenges.extend(challenge_of(done));
            }
            current = Some((token.to_ascii_lowercase(), Vec::new()));
            rest = after;
        }
    }
    if let Some(done) = current.take() {
        challenges.extend(challenge_of(done));
    }
    challenges
}

fn challenge_of((scheme, params): (String, Vec<(String, String)>)) -> Option<Challenge> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match scheme.as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        }),
        _ => None,
    }
}

fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// A content descriptor in a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteDescriptor {
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// The platform, in an index.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An index entry's platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `linux`...
    pub os: String,
    /// `v8`, `v7`...
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IndexDocument {
    #[serde(default)]
    manifests: Vec<RemoteDescriptor>,
}

#[derive(Debug, Deserialize)]
struct ManifestDocument {
    config: RemoteDescriptor,
    #[serde(default)]
    layers: Vec<RemoteDescriptor>,
}

#[derive(Debug, Deserialize)]
struct MediaTypeOnly {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// The variant this machine prefers for `arch` (`arm64` → `v8`).
fn preferred_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// Picks the manifest for `linux/<arch>` from an index, as containerd's
/// default platform matcher does: entries for other platforms (including
/// `unknown/unknown` attestations) are skipped; among matches the
/// preferred variant (or none) wins; an entry without a platform is the
/// last resort.
pub fn select_platform<'a>(
    manifests: &'a [RemoteDescriptor],
    arch: &str,
) -> Option<&'a RemoteDescriptor> {
    let preferred = preferred_variant(arch);
    let rank = |descriptor: &RemoteDescriptor| -> Option<u8> {
        match &descriptor.platform {
            None => Some(3),
            Some(p) if p.os != "linux" || p.architecture != arch => None,
            Some(p) => match p.variant.as_deref() {
                None | Some("") => Some(if preferred.is_none() { 0 } else { 1 }),
                Some(v) if Some(v) == preferred => Some(0),
                Some(_) => Some(2),
            },
        }
    };
    manifests
        .iter()
        .filter_map(|d| rank(d).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
}

/// A manifest or index as fetched, verified against its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its bytes, exactly as served (they hash to `digest`).
    pub bytes: Bytes,
}

impl FetchedManifest {
    /// Its descriptor.
    pub fn descriptor(&self) -> RemoteDescriptor {
        RemoteDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: i64::try_from(self.bytes.len()).unwrap_or(i64::MAX),
            platform: None,
        }
    }
}

/// An image resolved in a registry: what to fetch.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The index or list the reference named, when it named one.
    pub index: Option<FetchedManifest>,
    /// The image manifest for this machine.
    pub manifest: FetchedManifest,
    /// The config's descriptor.
    pub config: RemoteDescriptor,
    /// The layers, bottom first.
    pub layers: Vec<RemoteDescriptor>,
}

impl RemoteImage {
    /// What the image record points at: the index when there is one.
    pub fn target(&self) -> RemoteDescriptor {
        self.index.as_ref().unwrap_or(&self.manifest).descriptor()
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The node's registry client: one connection pool for every pull.
#[derive(Clone)]
pub struct RegistryClient {
    http: HttpClient,
    config: Arc<RegistryConfig>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.config)
            .finish()
    }
}

impl RegistryClient {
    /// A client trusting the system's root certificates.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A malformed system certificate is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if !native.errors.is_empty() {
            tracing::debug!(
                errors = native.errors.len(),
                "some system root certificates could not be read"
            );
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(https),
            config: Arc::new(config),
        })
    }

    /// A session pulling `reference`, authenticating with `credentials`
    /// when the registry asks.
    pub fn session(&self, reference: &Reference, credentials: Option<Credentials>) -> Session {
        let scheme = if self.config.is_insecure(&reference.domain) {
            "http"
        } else {
            "https"
        };
        Session {
            http: self.http.clone(),
            base: format!("{scheme}://{}", reference.registry_host()),
            reference: reference.clone(),
            credentials,
            authorization: None,
        }
    }
}

/// One pull's conversation with a registry (it keeps the token).
pub struct Session {
    http: HttpClient,
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("base", &self.base)
            .field("image", &self.reference.name)
            .finish()
    }
}

impl Session {
    fn manifest_url(&self, object: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{object}",
            self.base, self.reference.repository
        )
    }

    fn blob_url(&self, digest: &str) -> String {
        format!(
            "{}/v2/{}/blobs/{digest}",
            self.base, self.reference.repository
        )
    }

    /// The digest the reference currently points at (`HEAD` of the
    /// manifest); `None` when the registry does not say.
    pub async fn head(&mut self) -> Result<Option<String>, RegistryError> {
        let url = self.manifest_url(self.reference.object());
        let response = self.send(Method::HEAD, &url, Some(MANIFEST_ACCEPT)).await?;
        self.check(&Method::HEAD, &url, &response)?;
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(self.reference.digest.clone().or(header))
    }

    /// Resolves the reference to the manifest for this machine; `digest`
    /// (from [`Session::head`]) pins what the reference pointed at.
    pub async fn resolve(&mut self, digest: Option<&str>) -> Result<RemoteImage, RegistryError> {
        let object = digest.unwrap_or(self.reference.object()).to_string();
        let top = self.fetch_manifest(&object, digest).await?;
        let (index, manifest) = if is_index(&top.media_type) {
            let parsed: IndexDocument = parse(&top.digest, &top.bytes)?;
            let arch = host_architecture();
            let chosen = select_platform(&parsed.manifests, arch)
                .ok_or_else(|| RegistryError::NoPlatform(arch.to_string()))?
                .clone();
            let manifest = self
                .fetch_manifest(&chosen.digest, Some(&chosen.digest))
                .await?;
            (Some(top), manifest)
        } else {
            (None, top)
        };
        if manifest.media_type != media_types::OCI_MANIFEST
            && manifest.media_type != media_types::DOCKER_MANIFEST
        {
            return Err(RegistryError::UnsupportedMediaType(manifest.media_type));
        }
        let parsed: ManifestDocument = parse(&manifest.digest, &manifest.bytes)?;
        Ok(RemoteImage {
            index,
            manifest,
            config: parsed.config,
            layers: parsed.layers,
        })
    }

    async fn fetch_manifest(
        &mut self,
        object: &str,
        expected: Option<&str>,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.manifest_url(object);
        let response = self.send(Method::GET, &url, Some(MANIFEST_ACCEPT)).await?;
        self.check(&Method::GET, &url, &response)?;
        let header_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(response, &url, MAX_MANIFEST_BYTES).await?;
        let actual = sha256_digest(&bytes);
        let wanted = expected
            .map(str::to_string)
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(wanted) = wanted {
            if wanted != actual {
                return Err(RegistryError::DigestMismatch {
                    digest: wanted,
                    actual,
                });
            }
        }
        let body: MediaTypeOnly = parse(&actual, &bytes)?;
        let media_type = match (body.media_type, header_type) {
            (Some(t), _) if !t.is_empty() => t,
            (_, Some(t)) if t != "application/json" && !t.is_empty() => t,
            // No type anywhere: an OCI index has `manifests`.
            _ if body.manifests.is_some() => media_types::OCI_INDEX.to_string(),
            _ => media_types::OCI_MANIFEST.to_string(),
        };
        if media_type == DOCKER_SCHEMA1 {
            return Err(RegistryError::UnsupportedMediaType(media_type));
        }
        Ok(FetchedManifest {
            digest: actual,
            media_type,
            bytes,
        })
    }

    /// A small blob (the config), verified against its digest.
    pub async fn fetch_blob(
        &mut self,
        descriptor: &RemoteDescriptor,
    ) -> Result<Bytes, RegistryError> {
        let url = self.blob_url(&descriptor.digest);
        let response = self.send(Method::GET, &url, None).await?;
        self.check(&Method::GET, &url, &response)?;
        let bytes = read_limited(response, &url, MAX_CONFIG_BYTES).await?;
        let actual = sha256_digest(&bytes);
        if actual != descriptor.digest {
            return Err(RegistryError::DigestMismatch {
                digest: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A layer's bytes as they arrive; the reader fails if the transfer
    /// stalls for [`BODY_IDLE_TIMEOUT`]. The caller verifies the digest.
    pub async fn blob_reader(
        &mut self,
        descriptor: &RemoteDescriptor,
    ) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, RegistryError> {
        let url = self.blob_url(&descriptor.digest);
        let response = self.send(Method::GET, &url, None).await?;
        self.check(&Method::GET, &url, &response)?;
        let body = response.into_body();
        let stream = futures::stream::unfold(body, |mut body| async move {
            loop {
                match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
                    Err(_) => {
                        let error = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the registry stopped sending",
                        );
                        return Some((Err(error), body));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(error))) => {
                        return Some((Err(std::io::Error::other(error)), body));
                    }
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            return Some((Ok::<Bytes, std::io::Error>(data), body));
                        }
                    }
                }
            }
        });
        Ok(tokio_util::io::StreamReader::new(Box::pin(stream)))
    }

    /// Maps a non-success status to the error containerd would report.
    fn check(
        &self,
        method: &Method,
        url: &str,
        response: &Response<Incoming>,
    ) -> Result<(), RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound(self.reference.name.clone()));
        }
        if status == StatusCode::UNAUTHORIZED {
            let refused_scope =
                challenges_of(response.headers())
                    .into_iter()
                    .find_map(|c| match c {
                        Challenge::Bearer {
                            error: Some(error), ..
                        } if error == "insufficient_scope" => Some(error),
                        _ => None,
                    });
            if let Some(error) = refused_scope {
                return Err(RegistryError::AccessDenied(format!(
                    "{error}: authorization failed"
                )));
            }
        }
        Err(RegistryError::UnexpectedStatus {
            method: method.clone(),
            url: url.to_string(),
            status,
        })
    }

    /// Sends a request, answering one `401` challenge by authenticating
    /// and sending it again.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let mut answered = false;
        loop {
            let response = request(
                &self.http,
                method.clone(),
                url,
                accept,
                self.authorization.as_deref(),
            )
            .await?;
            if response.status() == StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                let challenges = challenges_of(response.headers());
                if self.authorize(&challenges).await? {
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Sets the `Authorization` a challenge asks for; `false` when there
    /// is nothing more to try.
    async fn authorize(&mut self, challenges: &[Challenge]) -> Result<bool, RegistryError> {
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => Some((realm.clone(), service.clone(), scope.clone())),
            Challenge::Basic => None,
        });
        if let Some((realm, service, scope)) = bearer {
            let scope =
                scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
            let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
            self.authorization = Some(format!("Bearer {token}"));
            return Ok(true);
        }
        let basic = challenges.contains(&Challenge::Basic);
        match &self.credentials {
            Some(credentials) if basic => {
                let header = credentials.basic();
                if self.authorization.as_deref() == Some(header.as_str()) {
                    return Ok(false);
                }
                self.authorization = Some(header);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A Bearer token from `realm` (the credentials as Basic auth when
    /// there are some; anonymous otherwise).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let kind = if self.credentials.is_some() {
            "oauth"
        } else {
            "anonymous"
        };
        let wrap = |source| RegistryError::Token {
            kind,
            source: Box::new(source),
        };
        let mut query = Vec::new();
        if let Some(service) = service {
            query.push(format!("service={}", percent_encode(service)));
        }
        query.push(format!("scope={}", percent_encode(scope)));
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{}", query.join("&"));
        let basic = self.credentials.as_ref().map(Credentials::basic);
        let response = request(&self.http, Method::GET, &url, None, basic.as_deref())
            .await
            .map_err(wrap)?;
        if !response.status().is_success() {
            return Err(wrap(RegistryError::UnexpectedStatus {
                method: Method::GET,
                url,
                status: response.status(),
            }));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let bytes = read_limited(response, &url, 1 << 20).await.map_err(wrap)?;
        let parsed: TokenResponse = parse("token response", &bytes).map_err(wrap)?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                wrap(RegistryError::Body {
                    url,
                    message: "no token in the response".to_string(),
                })
            })
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_LIST
}

fn parse<T: serde::de::DeserializeOwned>(digest: &str, bytes: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::Json {
        digest: digest.to_string(),
        source,
    })
}

/// The scheme and authority of a URL (`https://reg:5000`).
fn origin(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// Sends one request, following redirects; `authorization` goes only to
/// the original origin (never to a storage backend a blob redirects to).
async fn request(
    http: &HttpClient,
    method: Method,
    url: &str,
    accept: Option<&str>,
    authorization: Option<&str>,
) -> Result<Response<Incoming>, RegistryError> {
    let first_origin = origin(url).ok_or_else(|| RegistryError::InvalidUrl(url.to_string()))?;
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(USER_AGENT, concat!("skiff/", env!("CARGO_PKG_VERSION")));
        if let Some(accept) = accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            if origin(&url).as_deref() == Some(first_origin.as_str()) {
                builder = builder.header(AUTHORIZATION, authorization);
            }
        }
        let request = builder
            .body(Empty::new())
            .map_err(|_| RegistryError::InvalidUrl(url.clone()))?;
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, http.request(request))
            .await
            .map_err(|_| RegistryError::Timeout {
                method: method.clone(),
                url: url.clone(),
                timeout: RESPONSE_TIMEOUT,
            })?
            .map_err(|error| RegistryError::Request {
                method: method.clone(),
                url: url.clone(),
                message: error_chain(&error),
            })?;
        if response.status().is_redirection() {
            if let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
            {
                url = join_location(&url, location)?;
                continue;
            }
        }
        return Ok(response);
    }
    Err(RegistryError::InvalidUrl(format!(
        "{url} (more than {MAX_REDIRECTS} redirects)"
    )))
}

/// Resolves a `Location` header against the URL that returned it.
fn join_location(base: &str, location: &str) -> Result<String, RegistryError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let origin = origin(base).ok_or_else(|| RegistryError::InvalidUrl(base.to_string()))?;
    if location.starts_with('/') {
        return Ok(format!("{origin}{location}"));
    }
    let path = base
        .strip_prefix(&origin)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    Ok(format!("{origin}{dir}/{location}"))
}

async fn read_limited(
    response: Response<Incoming>,
    url: &str,
    limit: usize,
) -> Result<Bytes, RegistryError> {
    let body = Limited::new(response.into_body(), limit);
    let collected = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.collect())
        .await
        .map_err(|_| RegistryError::Body {
            url: url.to_string(),
            message: "timed out".to_string(),
        })?
        .map_err(|error| RegistryError::Body {
            url: url.to_string(),
            message: error.to_string(),
        })?;
    Ok(collected.to_bytes())
}

/// An error and its causes, `: `-separated (hyper's own message is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(arch: &str, variant: Option<&str>, digest: &str) -> RemoteDescriptor {
        RemoteDescriptor {
            media_type: media_types::OCI_MANIFEST.to_string(),
            digest: digest.to_string(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.to_string(),
                os: "linux".to_string(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        let challenges = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            challenges,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_string(),
                service: Some("registry.docker.io".to_string()),
                scope: Some("repository:library/busybox:pull".to_string()),
                error: None,
            }]
        );
    }

    #[test]
    fn a_basic_challenge_and_an_insufficient_scope_error_are_read() {
        assert_eq!(
            parse_challenges(r#"Basic realm="skiff-test""#),
            vec![Challenge::Basic]
        );
        let refused = parse_challenges(
            r#"Bearer realm="https://a/token", error="insufficient_scope", scope="repository:a,b:pull""#,
        );
        let Some(Challenge::Bearer { error, scope, .. }) = refused.first() else {
            panic!("a bearer challenge: {refused:?}");
        };
        assert_eq!(error.as_deref(), Some("insufficient_scope"));
        // A comma inside quotes belongs to the value.
        assert_eq!(scope.as_deref(), Some("repository:a,b:pull"));
    }

    #[test]
    fn unknown_schemes_are_skipped_and_unquoted_values_read() {
        let challenges =
            parse_challenges("Negotiate abc, Bearer realm=https://r/token,service=reg");
        assert_eq!(
            challenges,
            vec![Challenge::Bearer {
                realm: "https://r/token".to_string(),
                service: Some("reg".to_string()),
                scope: None,
                error: None,
            }]
        );
    }

    #[test]
    fn the_index_entry_for_this_architecture_is_picked_and_attestations_skipped() {
        let mut attestation = descriptor("unknown", None, "sha256:att");
        if let Some(p) = attestation.platform.as_mut() {
            p.os = "unknown".to_string();
        }
        let manifests = vec![
            attestation,
            descriptor("arm64", Some("v8"), "sha256:arm64"),
            descriptor("amd64", None, "sha256:amd64"),
            descriptor("arm", Some("v7"), "sha256:arm"),
        ];
        assert_eq!(
            select_platform(&manifests, "amd64").map(|d| d.digest.as_str()),
            Some("sha256:amd64")
        );
        assert_eq!(
            select_platform(&manifests, "arm64").map(|d| d.digest.as_str()),
            Some("sha256:arm64")
        );
        assert_eq!(select_platform(&manifests, "s390x"), None);
    }

    #[test]
    fn the_preferred_variant_wins_and_a_platformless_entry_is_the_last_resort() {
        let manifests = vec![
            descriptor("arm64", Some("v9"), "sha256:v9"),
            descriptor("arm64", None, "sha256:plain"),
            descriptor("arm64", Some("v8"), "sha256:v8"),
        ];
        assert_eq!(
            select_platform(&manifests, "arm64").map(|d| d.digest.as_str()),
            Some("sha256:v8")
        );
        let bare = vec![RemoteDescriptor {
            platform: None,
            ..descriptor("amd64", None, "sha256:bare")
        }];
        assert_eq!(
            select_platform(&bare, "amd64").map(|d| d.digest.as_str()),
            Some("sha256:bare")
        );
    }

    #[test]
    fn only_listed_registries_are_insecure() {
        let config = RegistryConfig {
            insecure: vec!["127.0.0.1:5000".to_string(), "lab.local".to_string()],
        };
        assert!(config.is_insecure("127.0.0.1:5000"));
        assert!(!config.is_insecure("127.0.0.1:5001"));
        assert!(config.is_insecure("lab.local:443"));
        assert!(!config.is_insecure("docker.io"));
    }

    #[test]
    fn redirects_resolve_against_the_registry_url() {
        assert_eq!(
            join_location("http://r:5000/v2/a/blobs/x", "/store/x?sig=1").expect("join"),
            "http://r:5000/store/x?sig=1"
        );
        assert_eq!(
            join_location("http://r:5000/v2/a/blobs/x", "https://cdn/x").expect("join"),
            "https://cdn/x"
        );
    }

    #[test]
    fn token_query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
    }

    /// A fake registry that wants a Bearer token from its own `/token`
    /// (given only for the right Basic credentials), serves a two-platform
    /// index, and redirects blob downloads to another origin
    /// (`localhost`) that must not see the registry's `Authorization`.
    mod fake {
        use std::sync::{Arc, Mutex};

        use axum::body::Body;
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::Response;
        use axum::routing::get;
        use axum::Router;

        use super::super::sha256_digest;

        pub struct Fake {
            pub port: u16,
            pub config_digest: String,
            pub storage_auth: Arc<Mutex<Vec<Option<String>>>>,
        }

        #[derive(Clone)]
        struct S {
            port: u16,
            index: Vec<u8>,
            manifest: Vec<u8>,
            manifest_digest: String,
            config: Vec<u8>,
            storage_auth: Arc<Mutex<Vec<Option<String>>>>,
        }

        fn reply(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Response {
            let mut builder = Response::builder().status(status);
            for (k, v) in headers {
                builder = builder.header(*k, v);
            }
            builder.body(Body::from(body)).expect("a response")
        }

        fn authorized(headers: &HeaderMap) -> bool {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer tok-1")
        }

        fn challenge(state: &S) -> Response {
            reply(
                StatusCode::UNAUTHORIZED,
                &[(
                    "www-authenticate",
                    format!(
                        r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:team/app:pull""#,
                        state.port
                    ),
                )],
                Vec::new(),
            )
        }

        async fn token(headers: HeaderMap) -> Response {
            // "u:p" in base64.
            if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic dTpw") {
                reply(StatusCode::OK, &[], br#"{"token":"tok-1"}"#.to_vec())
            } else {
                reply(StatusCode::UNAUTHORIZED, &[], Vec::new())
            }
        }

        async fn manifests(
            State(state): State<S>,
            Path(object): Path<String>,
            headers: HeaderMap,
        ) -> Response {
            if !authorized(&headers) {
                return challenge(&state);
            }
            let index_digest = sha256_digest(&state.index);
            let (body, media_type) = if object == "1" || object == index_digest {
                (
                    state.index.clone(),
                    "application/vnd.oci.image.index.v1+json",
                )
            } else if object == state.manifest_digest {
                (
                    state.manifest.clone(),
                    "application/vnd.oci.image.manifest.v1+json",
                )
            } else {
                return reply(StatusCode::NOT_FOUND, &[], Vec::new());
            };
            reply(
                StatusCode::OK,
                &[
                    ("content-type", media_type.to_string()),
                    ("docker-content-digest", sha256_digest(&body)),
                ],
                body,
            )
        }

        async fn blobs(
            State(state): State<S>,
            Path(digest): Path<String>,
            headers: HeaderMap,
        ) -> Response {
            if !authorized(&headers) {
                return challenge(&state);
            }
            reply(
                StatusCode::TEMPORARY_REDIRECT,
                // Another origin (a storage backend, as S3 or a CDN).
                &[(
                    "location",
                    format!("http://localhost:{}/storage/{digest}", state.port),
                )],
                Vec::new(),
            )
        }

        async fn storage(State(state): State<S>, headers: HeaderMap) -> Response {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Ok(mut seen) = state.storage_auth.lock() {
                seen.push(auth);
            }
            reply(StatusCode::OK, &[], state.config.clone())
        }

        pub async fn start(arch: &str) -> Fake {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
            let config_digest = sha256_digest(&config);
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": [],
            })
            .to_string()
            .into_bytes();
            let manifest_digest = sha256_digest(&manifest);
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "s390x"}},
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(), "platform": {"os": "linux", "architecture": arch}},
                ],
            })
            .to_string()
            .into_bytes();
            let storage_auth = Arc::new(Mutex::new(Vec::new()));
            let state = S {
                port,
                index,
                manifest,
                manifest_digest,
                config,
                storage_auth: storage_auth.clone(),
            };
            let app = Router::new()
                .route("/token", get(token))
                .route("/v2/team/app/manifests/{object}", get(manifests))
                .route("/v2/team/app/blobs/{digest}", get(blobs))
                .route("/storage/{digest}", get(storage))
                .with_state(state);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Fake {
                port,
                config_digest,
                storage_auth,
            }
        }
    }

    #[tokio::test]
    async fn a_bearer_registry_is_pulled_with_a_token_and_blobs_follow_redirects_without_it() {
        let fake = fake::start(host_architecture()).await;
        let host = format!("127.0.0.1:{}", fake.port);
        let client = RegistryClient::new(RegistryConfig {
            insecure: vec![host.clone()],
        })
        .expect("client");
        let reference = Reference::parse(&format!("{host}/team/app:1")).expect("reference");
        let credentials = Credentials {
            username: "u".to_string(),
            password: "p".to_string(),
        };
        let mut session = client.session(&reference, Some(credentials));
        let digest = session.head().await.expect("head");
        let image = session.resolve(digest.as_deref()).await.expect("resolve");
        assert_eq!(image.index.as_ref().map(|i| i.digest.clone()), digest);
        assert_eq!(image.config.digest, fake.config_digest);
        let config = session.fetch_blob(&image.config).await.expect("config");
        assert_eq!(sha256_digest(&config), fake.config_digest);
        let seen = fake.storage_auth.lock().expect("lock").clone();
        assert_eq!(seen, vec![None], "the storage backend never sees the token");
    }

    #[tokio::test]
    async fn a_bearer_registry_without_credentials_fails_like_containerd() {
        let fake = fake::start(host_architecture()).await;
        let host = format!("127.0.0.1:{}", fake.port);
        let client = RegistryClient::new(RegistryConfig {
            insecure: vec![host.clone()],
        })
        .expect("client");
        let reference = Reference::parse(&format!("{host}/team/app:1")).expect("reference");
        let error = client
            .session(&reference, None)
            .head()
            .await
            .expect_err("no token for anonymous");
        assert_eq!(
            error.to_string(),
            format!("failed to authorize: failed to fetch anonymous token: unexpected status from GET request to http://{host}/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull: 401 Unauthorized")
        );
    }

    #[tokio::test]
    async fn an_index_without_this_platform_is_refused() {
        let fake = fake::start("s390x-not-this-one").await;
        let host = format!("127.0.0.1:{}", fake.port);
        let client = RegistryClient::new(RegistryConfig {
            insecure: vec![host.clone()],
        })
        .expect("client");
        let reference = Reference::parse(&format!("{host}/team/app:1")).expect("reference");
        let mut session = client.session(
            &reference,
            Some(Credentials {
                username: "u".to_string(),
                password: "p".to_string(),
            }),
        );
        let error = session.resolve(None).await.expect_err("no platform");
        assert!(matches!(error, RegistryError::NoPlatform(_)), "{error}");
    }

    #[test]
    fn credentials_never_print_their_password() {
        let credentials = Credentials {
            username: "u".to_string(),
            password: "hunter2".to_string(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
        assert_eq!(credentials.basic(), "Basic dTpodW50ZXIy");
    }
}
