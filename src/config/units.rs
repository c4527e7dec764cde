//! Human-friendly durations ("250ms", "2s", "5m") and sizes ("100MiB") for the config file.

use serde::{de, Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a human string in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write a number with a unit, e.g. \"250ms\", \"2s\", \"5m\""
            ))
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A byte size: a plain integer, or a string such as "512KiB", "100MiB", "1GiB", "10MB".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size {s:?}; write e.g. \"100MiB\", \"512KiB\" or a byte count")
        })?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("100MiB").unwrap().0, 100 << 20);
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert_eq!(ByteSize::parse("2 GiB").unwrap().0, 2 << 30);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }
}
