//! Counts read from the kernel at the end of a run, which can fail (an interface deleted
//! mid-run): the footer then says `unknown` and why, instead of a 0 that did not happen or no
//! footer at all.
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    Count(u64),
    /// The read failed, for this reason.
    Unknown(String),
}

impl Default for Reading {
    fn default() -> Reading {
        Reading::Count(0)
    }
}

impl Reading {
    pub fn of(result: anyhow::Result<u64>) -> Reading {
        match result {
            Ok(count) => Reading::Count(count),
            Err(error) => Reading::Unknown(format!("{error:#}")),
        }
    }

    /// The count if it was read and is above zero.
    pub fn positive(&self) -> Option<u64> {
        match self {
            Reading::Count(count) if *count > 0 => Some(*count),
            _ => None,
        }
    }

    /// Why the read failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Reading::Count(_) => None,
            Reading::Unknown(why) => Some(why),
        }
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reading::Count(count) => write!(f, "{count}"),
            Reading::Unknown(_) => f.write_str("unknown"),
        }
    }
}

/// One line per failed read, for after the footer; empty when every read succeeded.
pub fn failures<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> Vec<String> {
    let mut lines: Vec<String> = readings
        .into_iter()
        .filter_map(Reading::failure)
        .map(|why| format!("prober: a count above is unknown: {why}"))
        .collect();
    lines.dedup();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_shows_as_unknown_never_as_zero() {
        let failed = Reading::of(Err(anyhow::anyhow!("reading /sys/x: gone")));
        assert_eq!(failed.to_string(), "unknown");
        assert_eq!(failed.positive(), None);
        assert_eq!(Reading::of(Ok(3)).to_string(), "3");
        assert_eq!(
            failures([&failed, &Reading::Count(1), &failed]),
            ["prober: a count above is unknown: reading /sys/x: gone"]
        );
    }
}
