//! Parsers of option values: each turns text into a validated value, or says in one line
//! what was expected.
use std::{fmt::Display, net::IpAddr, ops::RangeInclusive, str::FromStr, time::Duration};

use crate::{
    echo,
    net::resolve::Host,
    probe::PortStep,
    sweep::{ports::PortList, Shard},
};

/// What `-p` asks for: one port, hping3's ping of it (`80`, `0`, `+80`: one port up for each
/// reply, `++80`: for each probe); or a list or range, even of one port (`80-80`), a sweep of
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestPorts {
    One { port: u16, step: PortStep },
    Sweep(PortList),
}

pub fn dest_ports(text: &str) -> Result<DestPorts, String> {
    let (step, number) = if let Some(number) = text.strip_prefix("++") {
        (PortStep::PerProbe, number)
    } else if let Some(number) = text.strip_prefix('+') {
        (PortStep::PerReply, number)
    } else {
        (PortStep::Fixed, text)
    };
    if !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()) {
        if let Ok(port) = number.parse() {
            return Ok(DestPorts::One { port, step });
        }
    } else if step == PortStep::Fixed {
        return PortList::parse(text)
            .map(DestPorts::Sweep)
            .map_err(|error| error.to_string());
    }
    Err(format!(
        "invalid port '{}': expected a port from 0 to 65535 (+N: one up for each reply, ++N: \
         for each probe), or ports from 1 to 65535 as in 1-1024,8080, all or known",
        echo::value(text)
    ))
}

pub fn count(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid count '{}': expected a number (0: until interrupted)",
            echo::value(text)
        )
    })
}

pub fn rate(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!(
            "invalid rate '{}': expected a positive number of probes per second",
            echo::value(text)
        )),
    }
}

/// A whole number from `range`, or a message that says what was expected:
/// `invalid ttl 'abc': expected a number from 0 to 255`.
fn whole<T>(text: &str, what: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    match text.parse() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(format!(
            "invalid {what} '{}': expected a number from {} to {}",
            echo::value(text),
            range.start(),
            range.end()
        )),
    }
}

pub fn port(text: &str) -> Result<u16, String> {
    whole(text, "port", 1..=u16::MAX)
}

pub fn ttl(text: &str) -> Result<u8, String> {
    whole(text, "ttl", 0..=u8::MAX)
}

/// An ICMP type or code (-C, -K).
pub fn icmp_number(text: &str) -> Result<u8, String> {
    whole(text, "ICMP type or code", 0..=u8::MAX)
}

/// An IP protocol number (-H).
pub fn ip_protocol(text: &str) -> Result<u8, String> {
    whole(text, "IP protocol", 0..=u8::MAX)
}

pub fn window(text: &str) -> Result<u16, String> {
    whole(text, "window", 0..=u16::MAX)
}

pub fn retries(text: &str) -> Result<u32, String> {
    whole(text, "retry count", 0..=u32::MAX)
}

pub fn seed(text: &str) -> Result<u64, String> {
    whole(text, "seed", 0..=u64::MAX)
}

pub fn wait(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=86_400.0).contains(&seconds) => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!(
            "invalid wait '{}': expected seconds from 0 to 86400",
            echo::value(text)
        )),
    }
}

pub fn shard(text: &str) -> Result<Shard, String> {
    // Far more machines than anyone has, and small enough that position arithmetic never
    // overflows.
    const MOST_SHARDS: u64 = 1 << 32;
    let invalid = || {
        format!(
            "invalid shard '{}': expected I/N with 1 <= I <= N <= {MOST_SHARDS}",
            echo::value(text)
        )
    };
    let (index, count) = text.split_once('/').ok_or_else(invalid)?;
    match (index.parse::<u64>(), count.parse::<u64>()) {
        (Ok(index), Ok(count)) if (1..=count).contains(&index) && count <= MOST_SHARDS => {
            Ok(Shard {
                index: index - 1,
                count,
            })
        }
        _ => Err(invalid()),
    }
}

pub fn interval(text: &str) -> Result<Duration, String> {
    // A day is far beyond any useful probe interval and keeps deadline arithmetic in range.
    const LONGEST: Duration = Duration::from_secs(24 * 3600);
    let parsed = match text.strip_prefix('u') {
        Some(micros) => micros.parse().map(Duration::from_micros),
        None => text.parse().map(Duration::from_secs),
    };
    match parsed {
        Ok(interval) if interval <= LONGEST => Ok(interval),
        _ => Err(format!(
            "invalid interval '{}': expected seconds, or uX for X microseconds, at most a day",
            echo::value(text)
        )),
    }
}

/// hping3's -o: the TOS byte in hexadecimal, with or without `0x` (`-o 10` and `-o 0x10` are
/// both 0x10; hping3 itself reads only the first two characters, so its `-o 0x10` sends 0).
pub fn tos(text: &str) -> Result<u8, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    match digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => u8::from_str_radix(digits, 16).ok(),
        false => None,
    }
    .ok_or_else(|| {
        format!(
            "invalid TOS '{}': expected a hexadecimal byte from 0 to ff (-o 10, -o 0x10)",
            echo::value(text)
        )
    })
}

/// -a: a source address, IPv4 or IPv6, as typed (never a name to look up).
pub fn source_address(text: &str) -> Result<IpAddr, String> {
    match Host::parse(text) {
        Ok(Host::Address { ip, zone: None }) => Ok(ip),
        Ok(_) => Err(format!(
            "invalid source address '{}': expected an IPv4 or IPv6 address without a zone \
             (198.18.0.1, 2001:db8::1)",
            echo::value(text)
        )),
        Err(error) => Err(error.to_string()),
    }
}

/// -M and -L: a 32-bit TCP number, decimal or `0x` hexadecimal.
pub fn tcp_number(text: &str) -> Result<u32, String> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        None if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "invalid TCP number '{}': expected 0 to 4294967295, decimal or 0x hexadecimal",
            echo::value(text)
        )
    })
}

/// -d: data bytes a probe carries (what fits an IPv4 packet after the headers).
pub fn data_size(text: &str) -> Result<u16, String> {
    const MOST: u16 = 65_495;
    match text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().ok().filter(|&size| size <= MOST),
        false => None,
    }
    .ok_or_else(|| {
        format!(
            "invalid data size '{}': expected a number of bytes from 0 to {MOST}",
            echo::value(text)
        )
    })
}

/// -N: an IPv4 identification.
pub fn ip_id(text: &str) -> Result<u16, String> {
    match text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().ok(),
        false => None,
    }
    .ok_or_else(|| {
        format!(
            "invalid IP id '{}': expected a number from 0 to 65535",
            echo::value(text)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_like_hping3() {
        assert_eq!(interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(interval("u100"), Ok(Duration::from_micros(100)));
        assert!(interval("abc").unwrap_err().contains("interval"));
        assert!(interval("u").is_err());
        assert!(interval("99999999999").is_err());
    }

    #[test]
    fn one_port_pings_and_a_list_or_range_sweeps() {
        let one = |port, step| Ok(DestPorts::One { port, step });
        assert_eq!(dest_ports("80"), one(80, PortStep::Fixed));
        assert_eq!(
            dest_ports("0"),
            one(0, PortStep::Fixed),
            "hping3 takes port 0"
        );
        assert_eq!(dest_ports("+80"), one(80, PortStep::PerReply));
        assert_eq!(dest_ports("++79"), one(79, PortStep::PerProbe));
        assert_eq!(dest_ports("++0"), one(0, PortStep::PerProbe));
        for bad in [
            "+", "++", "+++80", "+80-90", "++all", "+-1", "65536", "+65536",
        ] {
            assert!(
                dest_ports(bad)
                    .unwrap_err()
                    .starts_with(&format!("invalid port '{bad}': expected a port from 0")),
                "{bad}"
            );
        }
        let range = |spec| DestPorts::Sweep(PortList::parse(spec).unwrap());
        assert_eq!(dest_ports("80-80"), Ok(range("80-80")));
        assert_eq!(dest_ports("80,81"), Ok(range("80,81")));
        assert_eq!(dest_ports("all"), Ok(range("all")));
        assert!(dest_ports("65536")
            .unwrap_err()
            .starts_with("invalid port '65536'"));
        assert!(dest_ports("").is_err());
    }

    #[test]
    fn whole_numbers_name_their_range() {
        assert_eq!(ttl("0"), Ok(0));
        assert_eq!(
            ttl("abc"),
            Err("invalid ttl 'abc': expected a number from 0 to 255".into())
        );
        assert!(ttl("256").unwrap_err().ends_with("from 0 to 255"));
        assert!(ttl("-1").unwrap_err().starts_with("invalid ttl '-1'"));
        assert_eq!(window("65535"), Ok(65535));
        assert!(window("-1").unwrap_err().ends_with("from 0 to 65535"));
        assert!(retries("-1")
            .unwrap_err()
            .starts_with("invalid retry count '-1'"));
        assert!(seed("x").unwrap_err().starts_with("invalid seed 'x'"));
    }

    #[test]
    fn shards_waits_rates_and_counts_parse() {
        assert_eq!(shard("2/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["0/2", "3/2", "1", "a/b", "1/0", "1/4611686018427387904"] {
            assert!(shard(bad).unwrap_err().contains("invalid shard"), "{bad}");
        }
        assert_eq!(wait("0.5"), Ok(Duration::from_millis(500)));
        assert!(wait("-1").is_err());
        assert!(wait("86401").is_err());
        assert!(rate("0").is_err());
        assert_eq!(rate("7"), Ok(7));
        assert!(count("-1").unwrap_err().starts_with("invalid count '-1'"));
        assert!(port("0").is_err() && port("65536").is_err());
        assert_eq!(port("65535"), Ok(65535));
    }

    #[test]
    fn header_fields_parse_as_hping3_writes_them() {
        assert_eq!(tos("10"), Ok(0x10));
        assert_eq!(tos("0x10"), Ok(0x10));
        assert_eq!(tos("FF"), Ok(0xff));
        for bad in ["", "0x", "100", "-1", "+1", "1g"] {
            assert!(tos(bad).is_err(), "{bad}");
        }
        assert_eq!(tcp_number("4294967295"), Ok(u32::MAX));
        assert_eq!(tcp_number("0xDEADBEEF"), Ok(0xdead_beef));
        for bad in ["", "0x", "-1", "+1", "4294967296", "0x100000000"] {
            assert!(tcp_number(bad).is_err(), "{bad}");
        }
        assert_eq!(ip_id("65535"), Ok(65535));
        for bad in ["", "-1", "+1", "65536", "0x10"] {
            assert!(ip_id(bad).is_err(), "{bad}");
        }
    }
}
