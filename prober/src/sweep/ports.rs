//! hping3's port specifications (`-p` / `--scan`): `80`, `1-1024,8080`, `all`, `known`.
use anyhow::{bail, Result};

use super::services;
use crate::echo;

/// The ports of a specification, ascending and without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList {
    /// As the user wrote it, for hping3's scan header.
    spec: String,
    ports: Vec<u16>,
    /// Where each port sits in `ports`, for mapping a reply back; `NOT_LISTED` elsewhere.
    index_of: Box<[u16]>,
}

const NOT_LISTED: u16 = u16::MAX;

impl PortList {
    pub fn parse(spec: &str) -> Result<PortList> {
        let mut listed = vec![false; 1 << 16];
        for item in spec.split(',') {
            match item.trim() {
                "all" => listed[1..].fill(true),
                "known" => {
                    for port in services::known_tcp_ports() {
                        listed[usize::from(port)] = true;
                    }
                }
                range => {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    let (Some(first), Some(last)) = (parse_port(first), parse_port(last)) else {
                        bail!(
                            "invalid port '{}': expected ports from 1 to 65535 as in 80, 1-1024,8080, all or known",
                            echo::value(range)
                        );
                    };
                    if first > last {
                        bail!(
                            "invalid port range '{}': the first port is above the last",
                            echo::value(range)
                        );
                    }
                    listed[usize::from(first)..=usize::from(last)].fill(true);
                }
            }
        }
        let ports: Vec<u16> = (1..=u16::MAX)
            .filter(|&port| listed[usize::from(port)])
            .collect();
        if ports.is_empty() {
            bail!("port specification '{}' names no ports", echo::value(spec));
        }
        let mut index_of = vec![NOT_LISTED; 1 << 16].into_boxed_slice();
        for (index, &port) in ports.iter().enumerate() {
            // At most 65535 ports are listed, so indexes stay below NOT_LISTED.
            index_of[usize::from(port)] = index as u16;
        }
        Ok(PortList {
            spec: spec.to_string(),
            ports,
            index_of,
        })
    }

    /// One position per host, port 0, for a kind without ports (an echo sweep).
    pub fn hosts_only() -> PortList {
        let mut index_of = vec![NOT_LISTED; 1 << 16].into_boxed_slice();
        index_of[0] = 0;
        PortList {
            spec: String::new(),
            ports: vec![0],
            index_of,
        }
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn len(&self) -> u64 {
        self.ports.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The only port, when the specification names exactly one.
    pub fn single(&self) -> Option<u16> {
        match self.ports[..] {
            [port] => Some(port),
            _ => None,
        }
    }

    pub fn get(&self, index: u64) -> u16 {
        self.ports[index as usize]
    }

    pub fn index(&self, port: u16) -> Option<u64> {
        match self.index_of[usize::from(port)] {
            NOT_LISTED => None,
            index => Some(u64::from(index)),
        }
    }
}

/// A port number from 1 to 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok().filter(|&port| port > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_merge_in_order() {
        let list = PortList::parse("8080,20-22,21,80").unwrap();
        assert_eq!(list.ports, [20, 21, 22, 80, 8080]);
        assert_eq!(list.index(80), Some(3));
        assert_eq!(list.index(81), None);
        assert_eq!(list.single(), None);
        assert_eq!(PortList::parse("443").unwrap().single(), Some(443));
    }

    #[test]
    fn all_is_every_port_but_zero() {
        let all = PortList::parse("all").unwrap();
        assert_eq!(all.len(), 65535);
        assert_eq!((all.get(0), all.get(65534)), (1, 65535));
        assert_eq!(all.index(65535), Some(65534));
    }

    #[test]
    fn bad_specifications_are_refused() {
        for spec in ["0", "70000", "10-5", "http", "", "1-2-3", "5,"] {
            assert!(PortList::parse(spec).is_err(), "{spec}");
        }
    }
}
