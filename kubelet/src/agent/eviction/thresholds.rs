//! Hard eviction thresholds (`--eviction-hard`), in the kubelet's form:
//! `memory.available<100Mi,nodefs.available<10%` — a signal, `<`, and a
//! quantity or a percentage of the signal's capacity.
//!
//! As in the kubelet, a value replaces the defaults as a whole (signals it
//! does not name are off), and `0%` (here also `0`) or `100%` turns a
//! signal off — as kind does with `nodefs.available<0%` so that hosts with
//! full disks still run pods. `imagefs` is the same filesystem as `nodefs`
//! (the node's data dir), so its thresholds are compared with the same
//! observation.

use std::fmt;
use std::str::FromStr;

/// The signals a hard threshold can name (the kubelet's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `memory.available`: the node's available memory (`MemAvailable`).
    MemoryAvailable,
    /// `nodefs.available`: free bytes of the node's filesystem.
    NodeFsAvailable,
    /// `nodefs.inodesFree`: free inodes of the node's filesystem.
    NodeFsInodesFree,
    /// `imagefs.available`: free bytes of the images' filesystem.
    ImageFsAvailable,
    /// `imagefs.inodesFree`: free inodes of the images' filesystem.
    ImageFsInodesFree,
}

const SIGNALS: [Signal; 5] = [
    Signal::MemoryAvailable,
    Signal::NodeFsAvailable,
    Signal::NodeFsInodesFree,
    Signal::ImageFsAvailable,
    Signal::ImageFsInodesFree,
];

impl Signal {
    /// The signal's name in `--eviction-hard`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory.available",
            Self::NodeFsAvailable => "nodefs.available",
            Self::NodeFsInodesFree => "nodefs.inodesFree",
            Self::ImageFsAvailable => "imagefs.available",
            Self::ImageFsInodesFree => "imagefs.inodesFree",
        }
    }

    /// The node condition a met threshold of this signal raises.
    pub fn condition(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "MemoryPressure",
            _ => "DiskPressure",
        }
    }

    /// The resource reclaimed when this signal's threshold is met (the
    /// word of the eviction message).
    pub fn resource(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory",
            Self::NodeFsAvailable | Self::ImageFsAvailable => "ephemeral-storage",
            Self::NodeFsInodesFree | Self::ImageFsInodesFree => "inodes",
        }
    }

    /// Whether the signal counts bytes (so quantities print in binary SI).
    fn bytes(self) -> bool {
        !matches!(self, Self::NodeFsInodesFree | Self::ImageFsInodesFree)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's value: an absolute quantity or a share of the capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdValue {
    /// An amount (bytes or inodes) and how it was written (`100Mi`).
    Quantity {
        /// The amount.
        amount: u64,
        /// The quantity as given, shown in messages.
        text: String,
    },
    /// A share of the capacity in percent, in (0, 100).
    Percentage(f64),
}

/// One hard threshold: evict when `signal`'s available amount drops below
/// `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// The limit.
    pub value: ThresholdValue,
}

/// A measured signal: how much is available out of how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Available now (bytes or inodes).
    pub available: u64,
    /// The total (bytes or inodes).
    pub capacity: u64,
}

/// The node's signals, as measured; `None` when not measured (a signal
/// without an observation never meets its threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observations {
    /// `memory.available` out of `MemTotal`.
    pub memory: Option<Observation>,
    /// Free bytes of the node's filesystem (also `imagefs`).
    pub nodefs: Option<Observation>,
    /// Free inodes of the node's filesystem (also `imagefs`).
    pub nodefs_inodes: Option<Observation>,
}

impl Observations {
    /// The observation of `signal`.
    pub fn get(&self, signal: Signal) -> Option<Observation> {
        match signal {
            Signal::MemoryAvailable => self.memory,
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => self.nodefs,
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => self.nodefs_inodes,
        }
    }
}

/// A quantity in Kubernetes' canonical binary form: `50Mi`, `51201Ki`,
/// `1000` (the form `resource.Quantity` prints bytes in).
pub fn format_bytes(bytes: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut value, mut exponent) = (bytes, 0);
    while value >= 1024 && value % 1024 == 0 && exponent < SUFFIXES.len() - 1 {
        value /= 1024;
        exponent += 1;
    }
    format!("{value}{}", SUFFIXES[exponent])
}

impl Threshold {
    /// The amount the available amount is compared with, for `capacity`.
    pub fn amount(&self, capacity: u64) -> u64 {
        match &self.value {
            ThresholdValue::Quantity { amount, .. } => *amount,
            ThresholdValue::Percentage(percent) => (capacity as f64 * percent / 100.0) as u64,
        }
    }

    /// The threshold quantity as the eviction message shows it.
    pub fn quantity_text(&self, capacity: u64) -> String {
        match &self.value {
            ThresholdValue::Quantity { text, .. } => text.clone(),
            ThresholdValue::Percentage(_) if self.signal.bytes() => {
                format_bytes(self.amount(capacity))
            }
            ThresholdValue::Percentage(_) => self.amount(capacity).to_string(),
        }
    }

    /// Whether `observations` meet this threshold (available below it).
    pub fn met(&self, observations: &Observations) -> bool {
        observations
            .get(self.signal)
            .is_some_and(|o| o.capacity > 0 && o.available < self.amount(o.capacity))
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            ThresholdValue::Quantity { text, .. } => write!(f, "{}<{text}", self.signal),
            ThresholdValue::Percentage(percent) => write!(f, "{}<{percent}%", self.signal),
        }
    }
}

/// The node conditions the thresholds raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodePressure {
    /// `MemoryPressure`.
    pub memory: bool,
    /// `DiskPressure`.
    pub disk: bool,
}

impl NodePressure {
    /// The conditions that are True, as the kubelet lists them in
    /// messages: `[MemoryPressure DiskPressure]`.
    pub fn conditions(self) -> Vec<&'static str> {
        let mut conditions = Vec::new();
        if self.memory {
            conditions.push("MemoryPressure");
        }
        if self.disk {
            conditions.push("DiskPressure");
        }
        conditions
    }
}

/// The hard eviction thresholds of a node (kubelet `--eviction-hard`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionThresholds {
    thresholds: Vec<Threshold>,
}

impl Default for EvictionThresholds {
    /// The kubelet's defaults: `memory.available<100Mi,
    /// nodefs.available<10%, imagefs.available<15%, nodefs.inodesFree<5%`.
    fn default() -> Self {
        let quantity = |signal, amount, text: &str| Threshold {
            signal,
            value: ThresholdValue::Quantity {
                amount,
                text: text.to_string(),
            },
        };
        let percent = |signal, percent| Threshold {
            signal,
            value: ThresholdValue::Percentage(percent),
        };
        Self {
            thresholds: vec![
                quantity(Signal::MemoryAvailable, 100 * 1024 * 1024, "100Mi"),
                percent(Signal::NodeFsAvailable, 10.0),
                percent(Signal::ImageFsAvailable, 15.0),
                percent(Signal::NodeFsInodesFree, 5.0),
            ],
        }
    }
}

impl EvictionThresholds {
    /// No thresholds: nothing is ever evicted and no pressure is reported.
    pub fn none() -> Self {
        Self {
            thresholds: Vec::new(),
        }
    }

    /// The thresholds, in the order given.
    pub fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }

    /// The thresholds `observations` meet, memory first (the kubelet
    /// reclaims memory before anything else).
    pub fn met<'a>(&'a self, observations: &Observations) -> Vec<&'a Threshold> {
        let mut met: Vec<&Threshold> = self
            .thresholds
            .iter()
            .filter(|t| t.met(observations))
            .collect();
        met.sort_by_key(|t| t.signal != Signal::MemoryAvailable);
        met
    }

    /// The pressure conditions `observations` raise.
    pub fn pressure(&self, observations: &Observations) -> NodePressure {
        let met = self.met(observations);
        NodePressure {
            memory: met.iter().any(|t| t.signal.condition() == "MemoryPressure"),
            disk: met.iter().any(|t| t.signal.condition() == "DiskPressure"),
        }
    }
}

impl fmt::Display for EvictionThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.thresholds.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Why an `--eviction-hard` value is refused; each message names the bad
/// part and the expected form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// A part is not `SIGNAL<VALUE`.
    #[error("eviction threshold {part:?} is not SIGNAL<QUANTITY or SIGNAL<PERCENT%, e.g. memory.available<100Mi,nodefs.available<10%")]
    Form {
        /// The part.
        part: String,
    },
    /// The signal is not one the node measures.
    #[error("unknown eviction signal {signal:?} in {part:?}: use memory.available, nodefs.available, nodefs.inodesFree, imagefs.available or imagefs.inodesFree")]
    Signal {
        /// The signal as written.
        signal: String,
        /// The part.
        part: String,
    },
    /// The value is neither a quantity nor a percentage.
    #[error("bad eviction threshold value {value:?} for {signal}: use a quantity such as 100Mi or 1Gi, or a percentage such as 10%")]
    Value {
        /// The signal.
        signal: Signal,
        /// The value as written.
        value: String,
    },
    /// A percentage outside 0–100%.
    #[error("eviction threshold {value:?} for {signal} must be a percentage between 0% and 100%")]
    Percentage {
        /// The signal.
        signal: Signal,
        /// The value as written.
        value: String,
    },
    /// The same signal twice.
    #[error("eviction signal {signal} is given twice: give each signal once")]
    Duplicate {
        /// The signal.
        signal: Signal,
    },
}

impl FromStr for EvictionThresholds {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut thresholds = Vec::new();
        let mut seen = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let form = || ThresholdError::Form {
                part: part.to_string(),
            };
            let (name, value) = part.split_once('<').ok_or_else(form)?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || value.is_empty() {
                return Err(form());
            }
            let signal = SIGNALS
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| ThresholdError::Signal {
                    signal: name.to_string(),
                    part: part.to_string(),
                })?;
            if seen.contains(&signal) {
                return Err(ThresholdError::Duplicate { signal });
            }
            seen.push(signal);
            if let Some(threshold) = parse_value(signal, value)? {
                thresholds.push(threshold);
            }
        }
        Ok(Self { thresholds })
    }
}

/// One threshold's value; `None` for the values that turn a signal off.
fn parse_value(signal: Signal, value: &str) -> Result<Option<Threshold>, ThresholdError> {
    let bad = || ThresholdError::Value {
        signal,
        value: value.to_string(),
    };
    if let Some(number) = value.strip_suffix('%') {
        let percent: f64 = number.trim().parse().map_err(|_| bad())?;
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(ThresholdError::Percentage {
                signal,
                value: value.to_string(),
            });
        }
        if percent == 0.0 || percent == 100.0 {
            return Ok(None);
        }
        return Ok(Some(Threshold {
            signal,
            value: ThresholdValue::Percentage(percent),
        }));
    }
    let amount = quantity::as_f64(value)
        .filter(|v| *v >= 0.0 && *v < u64::MAX as f64)
        .ok_or_else(bad)?;
    if amount == 0.0 {
        return Ok(None);
    }
    Ok(Some(Threshold {
        signal,
        value: ThresholdValue::Quantity {
            amount: amount.ceil() as u64,
            text: value.to_string(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * MI;

    fn parse(text: &str) -> Result<EvictionThresholds, ThresholdError> {
        text.parse()
    }

    #[test]
    fn the_kubelet_form_parses_into_quantities_and_percentages() -> Result<(), ThresholdError> {
        let cases: &[(&str, &[(Signal, ThresholdValue)])] = &[
            (
                "memory.available<100Mi",
                &[(
                    Signal::MemoryAvailable,
                    ThresholdValue::Quantity {
                        amount: 100 * MI,
                        text: "100Mi".into(),
                    },
                )],
            ),
            (
                "memory.available<1Gi, nodefs.available<10%,imagefs.inodesFree<5%",
                &[
                    (
                        Signal::MemoryAvailable,
                        ThresholdValue::Quantity {
                            amount: GI,
                            text: "1Gi".into(),
                        },
                    ),
                    (Signal::NodeFsAvailable, ThresholdValue::Percentage(10.0)),
                    (Signal::ImageFsInodesFree, ThresholdValue::Percentage(5.0)),
                ],
            ),
            (
                "nodefs.inodesFree<1k,imagefs.available<500M",
                &[
                    (
                        Signal::NodeFsInodesFree,
                        ThresholdValue::Quantity {
                            amount: 1000,
                            text: "1k".into(),
                        },
                    ),
                    (
                        Signal::ImageFsAvailable,
                        ThresholdValue::Quantity {
                            amount: 500_000_000,
                            text: "500M".into(),
                        },
                    ),
                ],
            ),
            // 0%, 0 and 100% turn a signal off; an empty value sets none.
            ("memory.available<0,nodefs.available<0%", &[]),
            ("imagefs.available<100%", &[]),
            ("", &[]),
        ];
        for (text, expected) in cases {
            let parsed = parse(text)?;
            let got: Vec<(Signal, ThresholdValue)> = parsed
                .thresholds()
                .iter()
                .map(|t| (t.signal, t.value.clone()))
                .collect();
            assert_eq!(&got, expected, "{text}");
        }
        Ok(())
    }

    #[test]
    fn bad_values_name_the_part_and_the_expected_form() {
        let cases: &[(&str, &str)] = &[
            ("memory.available", "\"memory.available\" is not SIGNAL<QUANTITY or SIGNAL<PERCENT%"),
            ("memory.available>100Mi", "is not SIGNAL<QUANTITY"),
            ("<100Mi", "is not SIGNAL<QUANTITY"),
            ("memory.free<100Mi", "unknown eviction signal \"memory.free\" in \"memory.free<100Mi\": use memory.available"),
            ("pid.available<10%", "unknown eviction signal \"pid.available\""),
            ("memory.available<lots", "bad eviction threshold value \"lots\" for memory.available: use a quantity such as 100Mi"),
            ("memory.available<-1Mi", "bad eviction threshold value \"-1Mi\""),
            ("nodefs.available<x%", "bad eviction threshold value \"x%\""),
            ("nodefs.available<150%", "\"150%\" for nodefs.available must be a percentage between 0% and 100%"),
            ("memory.available<1Gi,memory.available<2Gi", "memory.available is given twice"),
        ];
        for (text, expected) in cases {
            match parse(text) {
                Ok(parsed) => panic!("{text} parsed as {parsed}"),
                Err(error) => {
                    let message = error.to_string();
                    assert!(message.contains(expected), "{text}: {message}");
                    assert!(!message.contains('\n'), "{text}: one line");
                }
            }
        }
    }

    #[test]
    fn the_defaults_are_the_kubelets() -> Result<(), ThresholdError> {
        let defaults = EvictionThresholds::default();
        assert_eq!(
            defaults.to_string(),
            "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%"
        );
        assert_eq!(parse(&defaults.to_string())?, defaults);
        Ok(())
    }

    #[test]
    fn signals_are_compared_with_quantities_and_shares_of_their_capacity(
    ) -> Result<(), ThresholdError> {
        let thresholds = parse("memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%")?;
        let observe = |memory: u64, disk: u64, inodes: u64| Observations {
            memory: Some(Observation {
                available: memory,
                capacity: 4 * GI,
            }),
            nodefs: Some(Observation {
                available: disk,
                capacity: 100 * GI,
            }),
            nodefs_inodes: Some(Observation {
                available: inodes,
                capacity: 1000,
            }),
        };
        let cases = [
            (observe(GI, 50 * GI, 500), NodePressure::default()),
            (
                observe(99 * MI, 50 * GI, 500),
                NodePressure {
                    memory: true,
                    disk: false,
                },
            ),
            // Exactly at the threshold is not below it.
            (observe(100 * MI, 10 * GI, 50), NodePressure::default()),
            (
                observe(GI, 10 * GI - 1, 500),
                NodePressure {
                    memory: false,
                    disk: true,
                },
            ),
            (
                observe(GI, 50 * GI, 49),
                NodePressure {
                    memory: false,
                    disk: true,
                },
            ),
            (
                observe(0, 0, 0),
                NodePressure {
                    memory: true,
                    disk: true,
                },
            ),
        ];
        for (observations, expected) in cases {
            assert_eq!(
                thresholds.pressure(&observations),
                expected,
                "{observations:?}"
            );
        }
        // Nothing measured: no pressure.
        assert_eq!(
            thresholds.pressure(&Observations::default()),
            NodePressure::default()
        );
        Ok(())
    }

    #[test]
    fn met_thresholds_list_memory_first() -> Result<(), ThresholdError> {
        let thresholds = parse("nodefs.available<10%,memory.available<1Gi")?;
        let observations = Observations {
            memory: Some(Observation {
                available: 0,
                capacity: GI,
            }),
            nodefs: Some(Observation {
                available: 0,
                capacity: GI,
            }),
            nodefs_inodes: None,
        };
        let met = thresholds.met(&observations);
        assert_eq!(met.len(), 2);
        assert_eq!(met[0].signal, Signal::MemoryAvailable);
        Ok(())
    }

    #[test]
    fn threshold_quantities_print_as_kubernetes_prints_them() -> Result<(), ThresholdError> {
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(52_428_800), "50Mi");
        assert_eq!(format_bytes(51_201 * 1024), "51201Ki");
        assert_eq!(format_bytes(12_345_678), "12345678");
        let thresholds = parse("memory.available<1000Ti,nodefs.available<10%")?;
        let [memory, disk] = thresholds.thresholds() else {
            panic!("two thresholds");
        };
        assert_eq!(memory.quantity_text(GI), "1000Ti");
        assert_eq!(disk.quantity_text(10 * GI), "1Gi");
        Ok(())
    }
}
