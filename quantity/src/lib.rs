//! Kubernetes resource quantities (`100m`, `1Gi`, `1e3`, `0.5`), parsed
//! exactly as `resource.Quantity` does upstream.
//!
//! `k8s-openapi`'s `Quantity` is only the string; this parses it into an exact
//! value `mantissa × 10^exp10 × 2^exp2` so quantities can be validated with
//! Kubernetes' messages, compared (`requests <= limits`) and converted. The
//! API server (validation), the scheduler (requests in milli-CPU and bytes),
//! the HPA (milli-values of metrics) and the node agent (cgroup limits,
//! downward API, eviction) all read quantities through it, so they agree on
//! every value.
//!
//! It must not depend on any skiff component crate (apiserver, scheduler,
//! kubelet, controllers, proxy): components share it, never each other.

use std::cmp::Ordering;
use std::str::FromStr;

/// Digits kept in the mantissa; beyond this a quantity is rejected.
const MAX_DIGITS: usize = 36;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not have the shape number-then-suffix.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The number part could not be parsed (too many digits, several dots).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// The suffix is not a known SI, binary or exponent suffix.
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity: exactly `mantissa × 10^exp10 × 2^exp2`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses Kubernetes quantity syntax.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let bytes = s.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            _ => false,
        };
        let num_start = pos;
        while pos < bytes.len() && (bytes[pos].is_ascii_digit() || bytes[pos] == b'.') {
            pos += 1;
        }
        let number = &s[num_start..pos];
        if number.is_empty() || number == "." {
            return Err(QuantityError::Format);
        }
        let (mut mantissa, mut exp10) = parse_decimal(number)?;
        let (suffix_exp10, exp2) = parse_suffix(&s[pos..])?;
        exp10 = exp10
            .checked_add(suffix_exp10)
            .ok_or(QuantityError::Numeric)?;
        if negative {
            mantissa = -mantissa;
        }
        Ok(Self {
            mantissa,
            exp10,
            exp2,
        })
    }

    /// True for values below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// True for zero (`0`, `0m`, `0Gi`).
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value as a float (inexact for very large or precise values).
    pub fn as_f64(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exp10) * 2f64.powi(self.exp2 as i32)
    }

    /// The value in thousandths, rounded up, as `MilliValue()` upstream
    /// (`100m` → 100, `1` → 1000, `1Ki` → 1_024_000). Saturates at `i64` bounds.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(3)
    }

    /// The value rounded up to an integer, as `Value()` upstream.
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0)
    }

    /// `ceil(value × 10^shift)`, saturating.
    fn scaled_ceil(&self, shift: i32) -> i64 {
        if self.mantissa == 0 {
            return 0;
        }
        let Some(mut n) = pow2(self.exp2).and_then(|p| self.mantissa.checked_mul(p)) else {
            return self.saturated();
        };
        let e = self.exp10 + shift;
        if e >= 0 {
            match pow10(e).and_then(|p| n.checked_mul(p)) {
                Some(v) => n = v,
                None => return self.saturated(),
            }
        } else {
            let Some(p) = pow10(-e) else {
                // Smaller than any representable unit: 0 or the next integer up.
                return i64::from(n > 0);
            };
            let q = n.div_euclid(p);
            n = if n.rem_euclid(p) == 0 { q } else { q + 1 };
        }
        i64::try_from(n).unwrap_or_else(|_| self.saturated())
    }

    fn saturated(&self) -> i64 {
        if self.mantissa < 0 {
            i64::MIN
        } else {
            i64::MAX
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        // Bring both to the same power of ten and two, then compare integers;
        // fall back to floats only when that would overflow i128.
        let e10 = self.exp10.min(other.exp10);
        let e2 = self.exp2.min(other.exp2);
        let scale = |q: &Self| -> Option<i128> {
            let by10 = pow10(q.exp10 - e10)?;
            let by2 = pow2(q.exp2 - e2)?;
            q.mantissa.checked_mul(by10)?.checked_mul(by2)
        };
        match (scale(self), scale(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

fn pow10(e: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(e).ok()?)
}

fn pow2(e: u32) -> Option<i128> {
    2i128.checked_pow(e)
}

/// `"12.50"` → (1250, -2).
fn parse_decimal(number: &str) -> Result<(i128, i32), QuantityError> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) if !f.contains('.') => (i, f),
        Some(_) => return Err(QuantityError::Numeric),
        None => (number, ""),
    };
    let digits = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(QuantityError::Numeric);
    }
    let mantissa = if significant.is_empty() {
        0
    } else {
        significant
            .parse::<i128>()
            .map_err(|_| QuantityError::Numeric)?
    };
    let exp10 = -i32::try_from(frac_part.len()).map_err(|_| QuantityError::Numeric)?;
    Ok((mantissa, exp10))
}

/// A suffix as (power of ten, power of two).
fn parse_suffix(suffix: &str) -> Result<(i32, u32), QuantityError> {
    let known = match suffix {
        "" => Some((0, 0)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => None,
    };
    if let Some(k) = known {
        return Ok(k);
    }
    // Decimal exponent: e or E, an optional sign, then digits.
    let Some(rest) = suffix.strip_prefix(['e', 'E']) else {
        return Err(
            if suffix
                .bytes()
                .all(|c| b"eEinumkKMGTP+-0123456789".contains(&c))
            {
                QuantityError::Suffix
            } else {
                QuantityError::Format
            },
        );
    };
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(QuantityError::Format);
    }
    let exp: i32 = rest.parse().map_err(|_| QuantityError::Numeric)?;
    Ok((exp, 0))
}

/// `q` in thousandths, rounded up (`"100m"` → 100, `"2"` → 2000),
/// saturating; `None` if `q` is not a quantity.
pub fn milli_value(q: &str) -> Option<i64> {
    Quantity::parse(q).ok().map(|q| q.milli_value())
}

/// `q` rounded up to an integer (`"1Gi"` → 1073741824, `"1.5"` → 2),
/// saturating; `None` if `q` is not a quantity.
pub fn value(q: &str) -> Option<i64> {
    Quantity::parse(q).ok().map(|q| q.value())
}

/// `q` as a float; `None` if `q` is not a quantity.
pub fn as_f64(q: &str) -> Option<f64> {
    Quantity::parse(q)
        .ok()
        .map(|q| q.as_f64())
        .filter(|v| v.is_finite())
}

/// `resource.NewMilliQuantity(milli, DecimalSI)` in its canonical form:
/// `1500m`, `2`, `3k`.
pub fn from_milli(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
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
    format!("{v}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn quantities_parse_every_kubernetes_suffix() {
        let table: &[(&str, i64)] = &[
            ("0", 0),
            ("1", 1000),
            ("100m", 100),
            ("0.5", 500),
            (".5", 500),
            ("1.", 1000),
            ("+2", 2000),
            ("-1", -1000),
            ("1k", 1_000_000),
            ("1Ki", 1_024_000),
            ("1Mi", 1_048_576_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("2500u", 3),
            ("1n", 1),
            ("1G", 1_000_000_000_000),
        ];
        for (s, milli) in table {
            assert_eq!(q(s).milli_value(), *milli, "{s}");
        }
        assert_eq!(q("1Gi").value(), 1_073_741_824);
        assert_eq!(q("1500m").value(), 2);
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "abc", "1.2.3", "1Qi", "1 Gi", "Gi", "-", ".", "1e", "1ee3", "1Kii", "1e3.5",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Quantity::parse("x").err().map(|e| e.to_string()).unwrap_or_default(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn quantities_compare_exactly_across_suffixes() {
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("1k"), q("1e3"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("1E") > q("1Pi"));
        assert!(q("1e300") > q("1Ei"));
    }

    #[test]
    fn signs_and_zero_are_reported() {
        assert!(q("-100m").is_negative());
        assert!(!q("100m").is_negative());
        assert!(q("0Gi").is_zero());
        assert!((q("1.5").as_f64() - 1.5).abs() < f64::EPSILON);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        assert_eq!(q("1e30").milli_value(), i64::MAX);
        assert_eq!(q("-1e30").value(), i64::MIN);
        assert_eq!(q("1e-30").value(), 1);
    }

    #[test]
    fn the_string_helpers_parse_round_and_print() {
        assert_eq!(milli_value("250m"), Some(250));
        assert_eq!(milli_value("12345n"), Some(1));
        assert_eq!(milli_value("5x"), None);
        assert_eq!(value("1.5"), Some(2));
        assert_eq!(value("1e40"), Some(i64::MAX));
        assert_eq!(as_f64("128Mi"), Some(134_217_728.0));
        assert_eq!(as_f64("500m"), Some(0.5));
        assert_eq!(as_f64("lots"), None);
    }

    #[test]
    fn milli_values_print_in_canonical_decimal_form() {
        assert_eq!(from_milli(1500), "1500m");
        assert_eq!(from_milli(2000), "2");
        assert_eq!(from_milli(3_000_000), "3k");
        assert_eq!(from_milli(0), "0");
        assert_eq!(from_milli(-250), "-250m");
    }
}
