//! Wall-clock timestamps in the API's types.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

fn now_timestamp() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Now, with microseconds (Lease `renewTime`).
pub(crate) fn micro_now() -> MicroTime {
    MicroTime(now_timestamp())
}

/// Now, in whole seconds as Kubernetes serializes `metav1.Time`.
pub(crate) fn now() -> Time {
    let t = now_timestamp();
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}
