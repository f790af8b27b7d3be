//! Service-account tokens: the signing key, the claims Kubernetes puts in a
//! bound token, issuing them (for the TokenRequest subresource) and checking
//! them (for the bearer-token authenticator).
//!
//! Tokens are ES256 JWTs signed by a P-256 key the server generates once and
//! keeps beside the CA (`sa.key`, with its public half in `sa.pub`, the names
//! kubeadm uses). A token names its namespace, ServiceAccount and, when
//! bound, the Pod or Secret it is bound to, each with its uid; a token stops
//! authenticating once any of those is gone or replaced, as upstream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::UserInfo;
use crate::store::{Store, StoreError};

/// The issuer (and default API audience) Kubernetes clusters use by default.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Errors issuing or checking service-account tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid service-account signing key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the service-account signing key must be an ECDSA P-256 key")]
    KeyAlgorithm,
    /// The JWT is malformed, badly signed, expired or for another audience.
    #[error("invalid bearer token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// A well-signed token whose ServiceAccount or bound object is gone or replaced.
    #[error("token has been invalidated: {0}")]
    Invalidated(String),
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
}

/// `{name, uid}` of an object a token refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` private claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// The claims of a service-account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:NAMESPACE:NAME`.
    pub sub: String,
    pub aud: Vec<String>,
    /// Expiry, notBefore and issued-at, in seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// A unique id per token.
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: PrivateClaims,
}

/// What a token is for: built by the TokenRequest handler.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

/// The signing key and the issuer and audiences of this API server.
pub struct ServiceAccountTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    api_audiences: Vec<String>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ServiceAccountTokens")
            .field("issuer", &self.issuer)
            .field("api_audiences", &self.api_audiences)
            .finish()
    }
}

impl ServiceAccountTokens {
    /// Loads `sa.key` from `pki_dir`, generating it (and `sa.pub`) the first time.
    /// The API audiences default to the issuer, as `--api-audiences` does.
    pub fn load_or_create(pki_dir: &Path, issuer: &str) -> Result<Self, TokenError> {
        let key_path = pki_dir.join("sa.key");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TokenError::Io { path, source }
        };
        let pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let pem = key.serialize_pem();
                std::fs::create_dir_all(pki_dir).map_err(io(pki_dir))?;
                write_private(&key_path, &pem).map_err(io(&key_path))?;
                let pub_path = pki_dir.join("sa.pub");
                std::fs::write(&pub_path, key.public_key_pem()).map_err(io(&pub_path))?;
                pem
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        Self::from_key_pem(&pem, issuer)
    }

    /// From a PKCS#8 P-256 private key in PEM.
    pub fn from_key_pem(pem: &str, issuer: &str) -> Result<Self, TokenError> {
        let key = rcgen::KeyPair::from_pem(pem)?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(TokenError::KeyAlgorithm);
        }
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(key.public_key_raw()),
            issuer: issuer.to_string(),
            api_audiences: vec![issuer.to_string()],
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences a token must carry one of to authenticate to this
    /// server, and the default audience of a TokenRequest that names none.
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// The claims of a token for `spec`, issued at `now` (seconds since the epoch).
    pub fn claims(&self, spec: &TokenSpec, now: i64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            sub: format!(
                "system:serviceaccount:{}:{}",
                spec.namespace, spec.serviceaccount.name
            ),
            aud: spec.audiences.clone(),
            exp: now + spec.expiration_seconds,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: PrivateClaims {
                namespace: spec.namespace.clone(),
                serviceaccount: spec.serviceaccount.clone(),
                pod: spec.pod.clone(),
                secret: spec.secret.clone(),
            },
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// A stable id of the public key (`kid`), so verifiers can tell keys apart.
    fn key_id(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let raw = self.decoding.try_get_as_bytes().unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(raw))
    }

    /// Checks the signature, issuer, time bounds and that the token is meant
    /// for this API server; returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(self.api_audiences.as_slice());
        v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "sub", "aud"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)?;
        let c = data.claims;
        let sub = format!(
            "system:serviceaccount:{}:{}",
            c.kubernetes.namespace, c.kubernetes.serviceaccount.name
        );
        if c.sub != sub {
            return Err(TokenError::Invalidated(format!(
                "subject {:?} does not match the kubernetes.io claim",
                c.sub
            )));
        }
        Ok(c)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// The user a token's claims stand for.
pub fn user_of(claims: &Claims) -> UserInfo {
    let ns = &claims.kubernetes.namespace;
    UserInfo {
        name: format!(
            "system:serviceaccount:{ns}:{}",
            claims.kubernetes.serviceaccount.name
        ),
        groups: vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_string(),
        ],
    }
}

/// Authenticates bearer JWTs: valid per [`ServiceAccountTokens::verify`], and
/// the ServiceAccount and any bound object still exist with the same uid.
#[derive(Clone)]
pub struct ServiceAccountAuthenticator {
    pub tokens: Arc<ServiceAccountTokens>,
    pub store: Arc<dyn Store>,
}

impl ServiceAccountAuthenticator {
    pub async fn authenticate(&self, token: &str) -> Result<UserInfo, TokenError> {
        let claims = self.tokens.verify(token)?;
        let k = &claims.kubernetes;
        let now = chrono::Utc::now();
        check_live(
            self.store.as_ref(),
            "serviceaccounts",
            &k.namespace,
            &k.serviceaccount,
            now,
        )
        .await?;
        if let Some(pod) = &k.pod {
            check_live(self.store.as_ref(), "pods", &k.namespace, pod, now).await?;
        }
        if let Some(secret) = &k.secret {
            check_live(self.store.as_ref(), "secrets", &k.namespace, secret, now).await?;
        }
        Ok(user_of(&claims))
    }
}

/// The object exists with the same uid and is not past its deletion time
/// (a pod in its grace period still counts, as upstream).
async fn check_live(
    store: &dyn Store,
    plural: &str,
    namespace: &str,
    want: &ObjectRef,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), TokenError> {
    let key = format!("/registry/core/{plural}/{namespace}/{}", want.name);
    let Some(kv) = store.get(&key).await? else {
        return Err(TokenError::Invalidated(format!(
            "{plural} {namespace}/{} not found",
            want.name
        )));
    };
    let obj: Value = crate::watchcache::decode_object(&kv.value, kv.mod_revision)?;
    object_is_live(&obj, plural, want, now)
}

fn object_is_live(
    obj: &Value,
    plural: &str,
    want: &ObjectRef,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), TokenError> {
    let uid = crate::objects::meta_str(obj, "uid").unwrap_or("");
    if uid != want.uid {
        return Err(TokenError::Invalidated(format!(
            "{plural} {} uid ({uid}) does not match claim ({})",
            want.name, want.uid
        )));
    }
    if let Some(ts) = crate::objects::meta_str(obj, "deletionTimestamp") {
        let past = chrono::DateTime::parse_from_rfc3339(ts).map_or(true, |t| t < now);
        if past {
            return Err(TokenError::Invalidated(format!(
                "{plural} {} is being deleted",
                want.name
            )));
        }
    }
    Ok(())
}

/// A bearer token that looks like a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens() -> ServiceAccountTokens {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        ServiceAccountTokens::from_key_pem(&key.serialize_pem(), DEFAULT_ISSUER).expect("tokens")
    }

    fn spec() -> TokenSpec {
        TokenSpec {
            namespace: "ns1".into(),
            serviceaccount: ObjectRef {
                name: "robot".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(ObjectRef {
                name: "web".into(),
                uid: "pod-uid".into(),
            }),
            secret: None,
            audiences: vec![DEFAULT_ISSUER.into()],
            expiration_seconds: 3600,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn payload(token: &str) -> Value {
        use base64::Engine as _;
        let part = token.split('.').nth(1).unwrap_or("");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn a_token_carries_the_claims_kubernetes_puts_in_a_bound_token() {
        let t = tokens();
        let issued = now();
        let token = t.sign(&t.claims(&spec(), issued)).expect("sign");
        let p = payload(&token);
        assert_eq!(p["iss"], DEFAULT_ISSUER);
        assert_eq!(p["sub"], "system:serviceaccount:ns1:robot");
        assert_eq!(p["aud"], json!([DEFAULT_ISSUER]));
        assert_eq!(p["iat"], issued);
        assert_eq!(p["nbf"], issued);
        assert_eq!(p["exp"], issued + 3600);
        assert_eq!(
            p["kubernetes.io"],
            json!({
                "namespace": "ns1",
                "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                "pod": {"name": "web", "uid": "pod-uid"},
            })
        );
        let claims = t.verify(&token).expect("verify");
        assert_eq!(
            claims.kubernetes.pod.as_ref().map(|p| p.uid.as_str()),
            Some("pod-uid")
        );
        let user = user_of(&claims);
        assert_eq!(user.name, "system:serviceaccount:ns1:robot");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns1",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = tokens();
        let token = t.sign(&t.claims(&spec(), now() - 7200)).expect("sign");
        assert!(matches!(t.verify(&token), Err(TokenError::Jwt(_))));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let t = tokens();
        let mut s = spec();
        s.audiences = vec!["vault".into()];
        let token = t.sign(&t.claims(&s, now())).expect("sign");
        let result = t.verify(&token);
        assert!(
            matches!(&result, Err(TokenError::Jwt(e))
                if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidAudience),
            "{result:?}"
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let token = tokens()
            .sign(&tokens().claims(&spec(), now()))
            .expect("sign");
        assert!(tokens().verify(&token).is_err());
        assert!(tokens().verify("not.a.jwt").is_err());
    }

    #[test]
    fn a_bound_object_with_another_uid_or_past_its_deletion_invalidates_the_token() {
        let want = ObjectRef {
            name: "web".into(),
            uid: "pod-uid".into(),
        };
        let now = chrono::Utc::now();
        let same = json!({"metadata": {"name": "web", "uid": "pod-uid"}});
        assert!(object_is_live(&same, "pods", &want, now).is_ok());
        let recreated = json!({"metadata": {"name": "web", "uid": "other"}});
        assert!(matches!(
            object_is_live(&recreated, "pods", &want, now),
            Err(TokenError::Invalidated(_))
        ));
        let grace = (now + chrono::Duration::seconds(30)).to_rfc3339();
        let terminating =
            json!({"metadata": {"name": "web", "uid": "pod-uid", "deletionTimestamp": grace}});
        assert!(object_is_live(&terminating, "pods", &want, now).is_ok());
        let past = (now - chrono::Duration::seconds(30)).to_rfc3339();
        let gone =
            json!({"metadata": {"name": "web", "uid": "pod-uid", "deletionTimestamp": past}});
        assert!(object_is_live(&gone, "pods", &want, now).is_err());
    }

    #[test]
    fn the_signing_key_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ServiceAccountTokens::load_or_create(dir.path(), DEFAULT_ISSUER).expect("first");
        let token = a.sign(&a.claims(&spec(), now())).expect("sign");
        let b = ServiceAccountTokens::load_or_create(dir.path(), DEFAULT_ISSUER).expect("second");
        assert!(b.verify(&token).is_ok());
        assert!(dir.path().join("sa.pub").exists());
    }
}
