//! What the user typed as a host, read one way everywhere: an address is a dotted quad (four
//! decimal numbers from 0 to 255, no leading zeros) or IPv6 text, and anything else is a host
//! name, resolved once. The C library's other numeric forms — octal `010.0.0.1` (8.0.0.1),
//! bare integers `3232235777`, short forms `127.1`, hex `0x7f.1` — are refused: handed to the
//! resolver, they would be read as some other address, or sent to DNS as names.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use anyhow::{anyhow, bail, Result};

use crate::echo;

/// A host as typed: an address literal, or a name to look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    Address(IpAddr),
    Name(&'a str),
}

/// The longest name DNS carries (RFC 1035: 255 octets on the wire, 253 characters as text).
const LONGEST_NAME: usize = 253;

impl<'a> Host<'a> {
    pub fn parse(text: &'a str) -> Result<Host<'a>> {
        // Names never hold a colon.
        if text.contains(':') {
            return text
                .parse::<Ipv6Addr>()
                .map(|address| Host::Address(address.into()))
                .map_err(|_| anyhow!("'{}' is not a valid IPv6 address", echo::value(text)));
        }
        if written_as_number(text) {
            return text
                .parse::<Ipv4Addr>()
                .map(|address| Host::Address(address.into()))
                .map_err(|_| {
                    anyhow!(
                        "'{}' is not a valid address: an IPv4 address is four decimal numbers \
                         from 0 to 255 without leading zeros (a.b.c.d)",
                        echo::value(text)
                    )
                });
        }
        Ok(Host::Name(text))
    }
}

/// `name` if it is a host name as DNS and /etc/hosts have them (RFC 1123, and the underscore
/// of service names), one final dot allowed: nothing else goes to the resolver.
fn valid_name(name: &str) -> Result<&str> {
    let labels = name.strip_suffix('.').unwrap_or(name);
    let valid = !labels.is_empty()
        && labels.len() <= LONGEST_NAME
        && labels.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        bail!(
            "invalid host name '{}': expected letters, digits, '-', '_' and dots",
            echo::value(name)
        );
    }
    Ok(name)
}

/// Whether the C library's resolver would read `text` as a number rather than a name: parts
/// between dots that are decimal or `0x` hexadecimal numbers (inet_aton's forms), or empty.
fn written_as_number(text: &str) -> bool {
    let mut numbers = 0;
    for part in text.split('.') {
        let number = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            Some(hex) => hex.chars().all(|c| c.is_ascii_hexdigit()),
            None => !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()),
        };
        if !number && !part.is_empty() {
            return false;
        }
        numbers += usize::from(number);
    }
    numbers > 0
}

/// A host name or address literal as an address: the literal itself, or the first IPv4
/// address the resolver gives for a name, else its first IPv6 address.
pub fn resolve(text: &str) -> Result<IpAddr> {
    let name = match Host::parse(text)? {
        Host::Address(address) => return Ok(address),
        Host::Name(name) => valid_name(name)?,
    };
    let unknown = || anyhow!("unknown host '{}'", echo::value(name));
    let addresses: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map_err(|_| unknown())?
        .map(|address| address.ip())
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(unknown)
}

/// `ip`, which the user typed as `typed`, if prober can probe its family yet. Everything below
/// the modes takes either family; IPv6 still lacks its eBPF parser, its reply lines and the
/// ICMPv6 kind, so this is the one place that refuses it (for the targets of either mode and
/// a sweep's exclusions).
pub fn supported_family(ip: IpAddr, typed: &str) -> Result<IpAddr> {
    let typed_shown = echo::value(typed);
    match ip {
        IpAddr::V4(_) => Ok(ip),
        IpAddr::V6(_) if typed.contains(':') => {
            bail!("IPv6 targets are not supported yet: '{typed_shown}'")
        }
        IpAddr::V6(_) => {
            bail!("'{typed_shown}' has only IPv6 addresses; IPv6 targets are not supported yet")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Host<'static> {
        Host::Address(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[test]
    fn literals_parse_without_lookups() {
        assert_eq!(
            resolve("198.18.0.2").unwrap(),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(resolve("::1").unwrap(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(Host::parse("0.0.0.0").unwrap(), v4(0, 0, 0, 0));
        assert_eq!(
            Host::parse("255.255.255.255").unwrap(),
            v4(255, 255, 255, 255)
        );
        assert_eq!(
            Host::parse("::ffff:198.18.4.2").unwrap(),
            Host::Address("::ffff:198.18.4.2".parse().unwrap())
        );
    }

    #[test]
    fn other_numeric_forms_are_refused_not_resolved() {
        for text in [
            "010.0.0.1",       // octal: 8.0.0.1 to inet_aton
            "198.018.200.002", // leading zeros: a DNS query to getaddrinfo
            "3232235777",      // a bare integer: 192.168.1.1
            "127.1",           // a short form: 127.0.0.1
            "0x7f.0.0.1",      // hex
            "0x7f000001",
            "0X7F.1",
            "1.2.3.4.",
            "1.2.3.4.5",
            "256.0.0.1",
            "1..2.3",
            "0x",
        ] {
            let error = Host::parse(text).unwrap_err().to_string();
            assert!(error.contains("is not a valid address"), "{text}: {error}");
            assert_eq!(resolve(text).unwrap_err().to_string(), error);
        }
        assert_eq!(
            Host::parse("010.0.0.1").unwrap_err().to_string(),
            "'010.0.0.1' is not a valid address: an IPv4 address is four decimal numbers from 0 \
             to 255 without leading zeros (a.b.c.d)"
        );
        assert!(Host::parse("2001:db8::g")
            .unwrap_err()
            .to_string()
            .contains("not a valid IPv6 address"));
    }

    #[test]
    fn names_are_names_and_only_valid_ones_are_looked_up() {
        for name in [
            "localhost",
            "example.com.",
            "1.example",
            "host-1.0x1f.net",
            "a.b0",
        ] {
            assert_eq!(Host::parse(name).unwrap(), Host::Name(name), "{name}");
            assert_eq!(valid_name(name).unwrap(), name);
        }
        for bad in [
            "+1.2.3.4",
            "",
            ".",
            "...",
            "a..b",
            ".a",
            "with space",
            "tab\there",
            "\x1b[31mred",
            "rtl\u{202e}moc",
            "b\u{fc}cher.example",
            "semi;colon",
            &"a".repeat(LONGEST_NAME + 1),
        ] {
            // valid_name, not resolve: a name wrongly found valid must not become a DNS query.
            assert!(
                valid_name(bad)
                    .unwrap_err()
                    .to_string()
                    .starts_with("invalid host name '"),
                "{bad:?}"
            );
        }
        assert_eq!(
            valid_name("\x1b]0;title\x07").unwrap_err().to_string(),
            "invalid host name '\\x1b]0;title\\x07': expected letters, digits, '-', '_' and dots"
        );
    }

    #[test]
    fn ipv6_is_refused_with_a_clear_message() {
        let literal = supported_family(resolve("::1").unwrap(), "::1").unwrap_err();
        assert_eq!(
            literal.to_string(),
            "IPv6 targets are not supported yet: '::1'"
        );
        let name = supported_family("2001:db8::2".parse().unwrap(), "v6only.example");
        assert!(name
            .unwrap_err()
            .to_string()
            .contains("has only IPv6 addresses"));
        assert!(supported_family(IpAddr::V4(Ipv4Addr::LOCALHOST), "localhost").is_ok());
    }
}
