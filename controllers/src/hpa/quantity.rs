//! Resource quantities as milli-units, as Kubernetes' `Quantity.MilliValue()`
//! (rounded up) and `resource.NewMilliQuantity(v, DecimalSI)`, plus Go
//! duration strings (`"1s"`, `"1m0s"`) as metrics APIs write windows.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of `q` in thousandths, rounded up; `None` if it does not parse.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    quantity::milli_value(&q.0)
}

/// `resource.NewMilliQuantity(milli, DecimalSI)` in its canonical form:
/// `1500m`, `2`, `3k`.
pub fn from_milli(milli: i64) -> Quantity {
    Quantity(quantity::from_milli(milli))
}

/// A Go `time.Duration` string (`"1s"`, `"1m30s"`, `"500ms"`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|e| *e > 0)?;
        let value: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_wrap_the_shared_parser_and_printer() {
        assert_eq!(milli_value(&Quantity("250m".into())), Some(250));
        assert_eq!(milli_value(&Quantity("5x".into())), None);
        assert_eq!(from_milli(1500).0, "1500m");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("x"), None);
    }
}
