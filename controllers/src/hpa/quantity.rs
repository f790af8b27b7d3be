//! Resource quantities as milli-units, as Kubernetes' `Quantity.MilliValue()`
//! (rounded up) and `resource.NewMilliQuantity(v, DecimalSI)`, plus Go
//! duration strings (`"1s"`, `"1m0s"`) as metrics APIs write windows.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of `q` in thousandths, rounded up; `None` if it does not parse.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    parse_milli(q.0.trim())
}

fn parse_milli(s: &str) -> Option<i64> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    if number.is_empty() || number == "." {
        return None;
    }
    // The number as `mantissa * 10^exp10`, exactly.
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mut exp10 = -(frac_part.len() as i32) + 3; // in milli-units
    let mut binary: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => binary = 10,
        "Mi" => binary = 20,
        "Gi" => binary = 30,
        "Ti" => binary = 40,
        "Pi" => binary = 50,
        "Ei" => binary = 60,
        e if e.starts_with(['e', 'E']) => exp10 += e[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    let mut value = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        let div = 10i128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Rounded up, as MilliValue does (away from zero for the magnitude).
        value = (value + div - 1) / div;
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// `resource.NewMilliQuantity(milli, DecimalSI)` in its canonical form:
/// `1500m`, `2`, `3k`.
pub fn from_milli(milli: i64) -> Quantity {
    if milli % 1000 != 0 {
        return Quantity(format!("{milli}m"));
    }
    let mut v = milli / 1000;
    let mut suffix = "";
    for s in ["k", "M", "G", "T", "P", "E"] {
        if v == 0 || v % 1000 != 0 {
            break;
        }
        v /= 1000;
        suffix = s;
    }
    Quantity(format!("{v}{suffix}"))
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

    fn m(s: &str) -> Option<i64> {
        milli_value(&Quantity(s.to_string()))
    }

    #[test]
    fn quantities_become_milli_values_rounded_up() {
        assert_eq!(m("250m"), Some(250));
        assert_eq!(m("1"), Some(1000));
        assert_eq!(m("0.1"), Some(100));
        assert_eq!(m("1.5"), Some(1500));
        assert_eq!(m("12345n"), Some(1));
        assert_eq!(m("1Ki"), Some(1_024_000));
        assert_eq!(m("2k"), Some(2_000_000));
        assert_eq!(m("1e3"), Some(1_000_000));
        assert_eq!(m("-5"), Some(-5000));
        assert_eq!(m("abc"), None);
        assert_eq!(m("5x"), None);
    }

    #[test]
    fn milli_quantities_print_in_canonical_form() {
        assert_eq!(from_milli(1500).0, "1500m");
        assert_eq!(from_milli(2000).0, "2");
        assert_eq!(from_milli(0).0, "0");
        assert_eq!(from_milli(3_000_000).0, "3k");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("x"), None);
    }
}
