//! What the user typed as a host, read one way everywhere: an address is a dotted quad (four
//! decimal numbers from 0 to 255, no leading zeros) or IPv6 text (a link-local one with its
//! zone, `fe80::1%eth0`), and anything else is a host name, resolved once. The C library's other
//! numeric forms — octal `010.0.0.1` (8.0.0.1), bare integers `3232235777`, short forms `127.1`,
//! hex `0x7f.1` — are refused: handed to the resolver, they would be read as some other
//! address, or sent to DNS as names.
//!
//! `-4` and `-6` choose the family: a name gives its first address of that family, and a
//! literal of the other family is refused. Without them a name gives its first address in the
//! order getaddrinfo sorts them (RFC 6724), as ping does.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use anyhow::{anyhow, bail, Result};

use super::Interface;
use crate::echo;

/// An address family, as `-4` and `-6` choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The option that asks for it.
    fn option(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }
}

/// A host as typed: an address literal, or a name to look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// An address, and for IPv6 the zone after its `%`, if any.
    Address {
        ip: IpAddr,
        zone: Option<&'a str>,
    },
    Name(&'a str),
}

/// Where a run's probes go: an address, and the interface a link-local address's zone names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub ip: IpAddr,
    pub zone: Option<Interface>,
}

/// The longest name DNS carries (RFC 1035: 255 octets on the wire, 253 characters as text).
const LONGEST_NAME: usize = 253;

impl<'a> Host<'a> {
    pub fn parse(text: &'a str) -> Result<Host<'a>> {
        // Names never hold a colon.
        if text.contains(':') {
            let (address, zone) = match text.split_once('%') {
                Some((address, zone)) => (address, Some(zone)),
                None => (text, None),
            };
            let ip = address
                .parse::<Ipv6Addr>()
                .ok()
                .filter(|_| zone != Some(""))
                .ok_or_else(|| anyhow!("'{}' is not a valid IPv6 address", echo::value(text)))?;
            // The kernel drops IPv6 packets to or from such addresses, and prober keeps IPv4
            // addresses in this form: taken as IPv6, it would name an IPv4 host.
            if let Some(v4) = ip.to_ipv4_mapped() {
                bail!(
                    "'{}' is an IPv4-mapped address, which IPv6 packets never carry: probe {v4}",
                    echo::value(text)
                );
            }
            return Ok(Host::Address {
                ip: ip.into(),
                zone,
            });
        }
        if written_as_number(text) {
            return text
                .parse::<Ipv4Addr>()
                .map(|address| Host::Address {
                    ip: address.into(),
                    zone: None,
                })
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

    /// Whether [`Host::parse`] reads `text` as an address (or refuses it as a malformed one)
    /// rather than as a name.
    pub fn is_literal(text: &str) -> bool {
        text.contains(':') || written_as_number(text)
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

/// A host name or address literal as the address to probe: the literal itself, or the first
/// address the resolver gives for a name (of the `family` asked for, if one is).
pub fn resolve(text: &str, family: Option<Family>) -> Result<Destination> {
    let name = match Host::parse(text)? {
        Host::Address { ip, zone } => {
            require_family(ip, text, family)?;
            let zone = zone_interface(zone, is_link_local(ip), text)?;
            return Ok(Destination { ip, zone });
        }
        Host::Name(name) => valid_name(name)?,
    };
    let unknown = || anyhow!("unknown host '{}'", echo::value(name));
    let addresses: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map_err(|_| unknown())?
        .map(|address| address.ip().to_canonical())
        .collect();
    let ip = first_of_family(&addresses, family).ok_or_else(|| match family {
        Some(family) if !addresses.is_empty() => {
            anyhow!("'{}' has no {} address", echo::value(name), family.name())
        }
        _ => unknown(),
    })?;
    // DNS gives no zone: a link-local address from it cannot be probed.
    if is_link_local(ip) {
        bail!(
            "'{}' resolves to link-local {ip}, which needs a zone: probe {ip}%IF",
            echo::value(name)
        );
    }
    Ok(Destination { ip, zone: None })
}

/// The first of a name's addresses, in the resolver's order, of `family` if one is asked for.
fn first_of_family(addresses: &[IpAddr], family: Option<Family>) -> Option<IpAddr> {
    addresses
        .iter()
        .find(|&&ip| family.is_none_or(|family| Family::of(ip) == family))
        .copied()
}

/// An error when `ip`, typed as `typed`, is not of the family `-4` or `-6` asked for.
pub fn require_family(ip: IpAddr, typed: &str, asked: Option<Family>) -> Result<()> {
    match asked {
        Some(family) if Family::of(ip) != family => bail!(
            "{} asks for {}, but '{}' is an {} address",
            family.option(),
            family.name(),
            echo::value(typed),
            Family::of(ip).name()
        ),
        _ => Ok(()),
    }
}

/// Whether `ip` is an IPv6 link-local unicast address (fe80::/10).
pub fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// The interface a zone names (`%eth0`, or `%2` by index), for a target typed as `typed` that is
/// link-local (a block: lies in fe80::/10): every link has the same link-local addresses, so
/// they mean nothing without one. Other addresses take no zone (`-I` names their interface).
pub fn zone_interface(
    zone: Option<&str>,
    link_local: bool,
    typed: &str,
) -> Result<Option<Interface>> {
    let shown = echo::value(typed);
    match (zone, link_local) {
        (None, false) => Ok(None),
        (None, true) => {
            // The zone goes on the address, before a block's prefix length.
            let (address, prefix) = match typed.split_once('/') {
                Some((address, prefix)) => (address, format!("/{prefix}")),
                None => (typed, String::new()),
            };
            bail!(
                "'{shown}' is link-local: name the interface it is on as its zone, {}%IF{}",
                echo::value(address),
                echo::value(&prefix)
            )
        }
        (Some(_), false) => bail!(
            "'{shown}' has a zone, which only link-local addresses take: name the interface \
             with -I"
        ),
        // A zone of digits alone is an interface index (RFC 4007 11.2), as for getaddrinfo.
        (Some(zone), true) => match zone.bytes().all(|b| b.is_ascii_digit()) {
            true => zone
                .parse()
                .ok()
                .map_or_else(|| Interface::by_name(zone), Interface::by_index)
                .map(Some),
            false => Interface::by_name(zone).map(Some),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Host<'static> {
        Host::Address {
            ip: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            zone: None,
        }
    }

    fn address(text: &str) -> Destination {
        resolve(text, None).unwrap()
    }

    fn refusal(text: &str, family: Option<Family>) -> String {
        resolve(text, family).unwrap_err().to_string()
    }

    #[test]
    fn literals_parse_without_lookups() {
        assert_eq!(
            address("198.18.0.2"),
            Destination {
                ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
                zone: None
            }
        );
        assert_eq!(address("::1").ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            address("2001:DB8:0:0::2").ip.to_string(),
            "2001:db8::2",
            "shown in RFC 5952's form"
        );
        assert_eq!(Host::parse("0.0.0.0").unwrap(), v4(0, 0, 0, 0));
        assert_eq!(
            Host::parse("255.255.255.255").unwrap(),
            v4(255, 255, 255, 255)
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
            assert_eq!(refusal(text, None), error);
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
    fn ipv4_mapped_addresses_are_refused_as_ipv6() {
        for text in ["::ffff:198.18.4.2", "::FFFF:c612:0402"] {
            assert_eq!(
                refusal(text, None),
                format!(
                    "'{text}' is an IPv4-mapped address, which IPv6 packets never carry: probe \
                     198.18.4.2"
                )
            );
        }
        assert!(Host::parse("::ffff:198.18.4.2/120").is_err());
    }

    #[test]
    fn the_family_asked_for_must_be_the_literals() {
        assert_eq!(
            refusal("198.18.0.2", Some(Family::V6)),
            "-6 asks for IPv6, but '198.18.0.2' is an IPv4 address"
        );
        assert_eq!(
            refusal("2001:db8::2", Some(Family::V4)),
            "-4 asks for IPv4, but '2001:db8::2' is an IPv6 address"
        );
        assert_eq!(
            resolve("2001:db8::2", Some(Family::V6)).unwrap().ip,
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        assert!(resolve("198.18.0.2", Some(Family::V4)).is_ok());
    }

    #[test]
    fn a_name_gives_its_first_address_of_the_family_asked_for() {
        let v4 = IpAddr::from([198, 18, 0, 2]);
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        let both = [v6, v4];
        assert_eq!(
            first_of_family(&both, None),
            Some(v6),
            "getaddrinfo's order"
        );
        assert_eq!(first_of_family(&both, Some(Family::V4)), Some(v4));
        assert_eq!(first_of_family(&both, Some(Family::V6)), Some(v6));
        assert_eq!(first_of_family(&[v4], Some(Family::V6)), None);
        assert_eq!(first_of_family(&[], None), None);
    }

    #[test]
    fn link_local_targets_need_their_interface_as_zone() {
        assert_eq!(
            refusal("fe80::1", None),
            "'fe80::1' is link-local: name the interface it is on as its zone, fe80::1%IF"
        );
        assert_eq!(
            zone_interface(None, true, "fe80::/120")
                .unwrap_err()
                .to_string(),
            "'fe80::/120' is link-local: name the interface it is on as its zone, \
             fe80::%IF/120"
        );
        // `lo` is in every network namespace, as index 1.
        let lo = Interface::by_name("lo").unwrap();
        for text in ["fe80::1%lo", "fe80::1%1", "FE80::1%lo"] {
            assert_eq!(
                address(text),
                Destination {
                    ip: "fe80::1".parse().unwrap(),
                    zone: Some(lo.clone())
                },
                "{text}"
            );
        }
        assert_eq!(
            refusal("fe80::1%prb-no-such-if", None),
            "unknown interface 'prb-no-such-if'"
        );
        assert_eq!(
            refusal("2001:db8::2%lo", None),
            "'2001:db8::2%lo' has a zone, which only link-local addresses take: name the \
             interface with -I"
        );
        assert!(refusal("fe80::1%", None).contains("not a valid IPv6 address"));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local(IpAddr::from([169, 254, 0, 1])));
    }
}
