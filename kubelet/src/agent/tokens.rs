//! The node's service-account token cache, as the kubelet's token manager
//! keeps it: a token is reused until 80% of its lifetime has passed or it
//! is 24 hours old, whichever comes first; then a new one is requested. If
//! that request fails, the old token is served while it has not expired.
//! Expired tokens are dropped whenever a new one is stored.

use std::collections::HashMap;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::jiff::Timestamp;

/// A token older than this is refreshed whatever its expiry (kubelet: 24h).
pub(crate) const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;

/// Cached TokenRequest answers by what was asked.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    entries: HashMap<String, TokenRequest>,
}

/// What identifies a request: the account, audiences, lifetime and bound object.
pub(crate) fn key(namespace: &str, service_account: &str, request: &TokenRequest) -> String {
    let spec = &request.spec;
    let bound = spec.bound_object_ref.as_ref().map(|r| {
        format!(
            "{}/{}/{}/{}",
            r.api_version.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default()
        )
    });
    format!(
        "{namespace}/{service_account}|{}|{:?}|{}",
        spec.audiences.join(","),
        spec.expiration_seconds,
        bound.unwrap_or_default()
    )
}

fn expiry(token: &TokenRequest) -> Option<i64> {
    token
        .status
        .as_ref()
        .map(|s| s.expiration_timestamp.0.as_second())
}

/// Whether a cached token should be replaced at `now` (seconds since the epoch).
pub(crate) fn requires_refresh(token: &TokenRequest, now: i64) -> bool {
    let (Some(exp), Some(ttl)) = (expiry(token), token.spec.expiration_seconds) else {
        return true;
    };
    let issued = exp - ttl;
    now >= issued + MAX_TTL_SECONDS || now >= exp - ttl * 20 / 100
}

impl TokenCache {
    /// A cached token that is not yet due for refresh.
    pub(crate) fn fresh(&self, key: &str, now: Timestamp) -> Option<TokenRequest> {
        self.entries
            .get(key)
            .filter(|t| !requires_refresh(t, now.as_second()))
            .cloned()
    }

    /// A cached token that has not expired (served when a refresh fails).
    pub(crate) fn unexpired(&self, key: &str, now: Timestamp) -> Option<TokenRequest> {
        self.entries
            .get(key)
            .filter(|t| expiry(t).is_some_and(|exp| exp > now.as_second()))
            .cloned()
    }

    /// Stores a new token and drops the expired ones.
    pub(crate) fn insert(&mut self, key: String, token: TokenRequest, now: Timestamp) {
        let now = now.as_second();
        self.entries
            .retain(|_, t| expiry(t).is_some_and(|exp| exp > now));
        self.entries.insert(key, token);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenRequestSpec, TokenRequestStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("timestamp")
    }

    fn token(issued: i64, ttl: i64) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(ttl),
                ..Default::default()
            },
            status: Some(TokenRequestStatus {
                token: "t".into(),
                expiration_timestamp: Time(at(issued + ttl)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_is_refreshed_once_eighty_percent_of_its_lifetime_has_passed() {
        let t = token(1_000_000, 3600);
        assert!(!requires_refresh(&t, 1_000_000 + 2879));
        assert!(requires_refresh(&t, 1_000_000 + 2880));
    }

    #[test]
    fn a_long_lived_token_is_refreshed_after_a_day() {
        let t = token(1_000_000, 7 * 24 * 3600);
        assert!(!requires_refresh(&t, 1_000_000 + MAX_TTL_SECONDS - 1));
        assert!(requires_refresh(&t, 1_000_000 + MAX_TTL_SECONDS));
    }

    #[test]
    fn the_cache_serves_fresh_tokens_and_falls_back_to_unexpired_ones() {
        let mut cache = TokenCache::default();
        cache.insert("k".into(), token(1_000_000, 3600), at(1_000_000));
        assert!(cache.fresh("k", at(1_000_100)).is_some());
        assert!(cache.fresh("k", at(1_003_000)).is_none(), "due for refresh");
        assert!(cache.unexpired("k", at(1_003_000)).is_some(), "still valid");
        assert!(cache.unexpired("k", at(1_003_600)).is_none(), "expired");
        cache.insert("other".into(), token(1_003_600, 3600), at(1_003_600));
        assert_eq!(cache.len(), 1, "the expired token is dropped");
    }

    #[test]
    fn requests_for_other_pods_or_audiences_do_not_share_a_token() {
        use k8s_openapi::api::authentication::v1::BoundObjectReference;
        let request = |aud: &str, uid: &str| TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![aud.to_string()],
                expiration_seconds: Some(3600),
                bound_object_ref: Some(BoundObjectReference {
                    kind: Some("Pod".into()),
                    name: Some("p".into()),
                    uid: Some(uid.into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        let a = key("ns", "sa", &request("x", "u1"));
        assert_eq!(a, key("ns", "sa", &request("x", "u1")));
        assert_ne!(a, key("ns", "sa", &request("y", "u1")));
        assert_ne!(a, key("ns", "sa", &request("x", "u2")));
        assert_ne!(a, key("ns", "other", &request("x", "u1")));
    }
}
