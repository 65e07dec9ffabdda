//! Target names and literals to addresses.
use std::net::{IpAddr, ToSocketAddrs};

use anyhow::{anyhow, bail, Result};

/// A host name or address literal as an address: the literal itself, or the first IPv4
/// address the resolver gives for a name, else its first IPv6 address.
pub fn resolve(host: &str) -> Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addresses: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|_| anyhow!("unknown host '{host}'"))?
        .map(|address| address.ip())
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(|| anyhow!("unknown host '{host}'"))
}

/// `ip`, which the user typed as `typed`, if prober can probe its family yet. Everything below
/// the modes takes either family; IPv6 still lacks its eBPF parser, its reply lines and the
/// ICMPv6 kind, so this is the one place that refuses it (for the targets of either mode and
/// a sweep's exclusions).
pub fn supported_family(ip: IpAddr, typed: &str) -> Result<IpAddr> {
    match ip {
        IpAddr::V4(_) => Ok(ip),
        IpAddr::V6(_) if typed.contains(':') => {
            bail!("IPv6 targets are not supported yet: '{typed}'")
        }
        IpAddr::V6(_) => {
            bail!("'{typed}' has only IPv6 addresses; IPv6 targets are not supported yet")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn literals_parse_without_lookups() {
        assert_eq!(
            resolve("198.18.0.2").unwrap(),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(
            resolve("::1").unwrap(),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
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
