//! Authentication (bearer tokens) and the authorization hook.
//!
//! Static tokens live in a file under the data dir, one
//! `token,user,group1|group2` per line; service-account JWTs (see
//! [`crate::serviceaccount`]) are accepted too. A request without a valid token gets 401; the health endpoints
//! stay open for probes. Authorization is a trait so a later RBAC issue can
//! plug in; today every authenticated user may do everything.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// Decides whether a user may make a request.
pub trait Authorizer: Send + Sync + 'static {
    fn allowed(&self, user: &UserInfo, method: &axum::http::Method, path: &str) -> bool;
}

/// Lets every authenticated user do everything (until RBAC lands).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn allowed(&self, _user: &UserInfo, _method: &axum::http::Method, _path: &str) -> bool {
        true
    }
}

/// Static bearer tokens.
#[derive(Clone, Default)]
pub struct TokenAuthenticator {
    tokens: Arc<HashMap<String, UserInfo>>,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("TokenAuthenticator")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenAuthenticator {
    pub fn new(tokens: HashMap<String, UserInfo>) -> Self {
        Self {
            tokens: Arc::new(tokens),
        }
    }

    /// Parses `token,user,group1|group2` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Self {
        let mut tokens = HashMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut parts = line.splitn(3, ',');
            let (Some(token), Some(user)) = (parts.next(), parts.next()) else {
                continue;
            };
            let groups = parts
                .next()
                .map(|g| {
                    g.split('|')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                token.trim().to_string(),
                UserInfo {
                    name: user.trim().to_string(),
                    groups,
                },
            );
        }
        Self::new(tokens)
    }

    pub fn authenticate(&self, header: Option<&str>) -> Option<UserInfo> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token).cloned()
    }
}

/// Auth state for the middleware.
#[derive(Clone)]
pub struct Auth {
    pub authenticator: TokenAuthenticator,
    pub service_accounts: Option<crate::serviceaccount::ServiceAccountAuthenticator>,
    pub authorizer: Arc<dyn Authorizer>,
}

fn is_public(path: &str) -> bool {
    // Probes, and the cluster CA (public by nature; agents check it against
    // the hash in their node token).
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/cacerts")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Middleware: 401 without a known token, 403 when the authorizer says no.
pub async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match auth.authenticator.authenticate(header) {
        Some(user) => user,
        None => match service_account_user(&auth, header).await {
            Some(user) => user,
            None => return ApiError::Unauthorized.into_response(),
        },
    };
    if !auth
        .authorizer
        .allowed(&user, req.method(), req.uri().path())
    {
        return ApiError::Forbidden(format!(
            "User {:?} cannot {} {}",
            user.name,
            req.method(),
            req.uri().path()
        ))
        .into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// The service account a bearer JWT stands for, if it is one and still valid.
async fn service_account_user(auth: &Auth, header: Option<&str>) -> Option<UserInfo> {
    let sa = auth.service_accounts.as_ref()?;
    let token = header?.strip_prefix("Bearer ")?.trim();
    if !crate::serviceaccount::looks_like_jwt(token) {
        return None;
    }
    match sa.authenticate(token).await {
        Ok(user) => Some(user),
        Err(error) => {
            tracing::debug!(%error, "service-account token refused");
            None
        }
    }
}

/// A random token (32 hex characters).
pub fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bearer_tokens_authenticate_and_others_do_not() {
        let a = TokenAuthenticator::parse(
            "# comment\nabc,admin,system:masters\n\nnode1tok,system:node:n1,system:nodes\n",
        );
        let admin = a.authenticate(Some("Bearer abc")).expect("admin");
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.groups, vec!["system:masters".to_string()]);
        assert!(a.authenticate(Some("Bearer nope")).is_none());
        assert!(a.authenticate(Some("Basic abc")).is_none());
        assert!(a.authenticate(None).is_none());
    }
}
