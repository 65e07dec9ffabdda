//! /etc/services, read once per run: the TCP service names hping3's scan table shows, and the
//! ports `known` stands for. (Asking `getservbyport` for each row read the file anew every
//! time: 65 535 rows took 1.66 s.)
use std::{collections::HashMap, sync::OnceLock};

const SERVICES: &str = "/etc/services";

fn table() -> &'static HashMap<u16, String> {
    static TABLE: OnceLock<HashMap<u16, String>> = OnceLock::new();
    TABLE.get_or_init(|| parse(&std::fs::read_to_string(SERVICES).unwrap_or_default()))
}

/// The name /etc/services gives a TCP port ("" for none), as hping3's scan table shows it.
pub fn service_name(port: u16) -> &'static str {
    table().get(&port).map_or("", String::as_str)
}

/// Every TCP port /etc/services names (hping3's `known`).
pub fn known_tcp_ports() -> impl Iterator<Item = u16> {
    table().keys().copied()
}

/// Port → first name given for it over TCP, as `getservbyport(port, "tcp")` finds it.
fn parse(text: &str) -> HashMap<u16, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut words = line.split('#').next().unwrap_or("").split_whitespace();
        let (Some(name), Some(port_and_protocol)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(port) = port_and_protocol
            .strip_suffix("/tcp")
            .and_then(|port| port.parse().ok())
        else {
            continue;
        };
        names.entry(port).or_insert_with(|| name.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tcp_name_of_a_port_wins() {
        let names = parse(
            "# comment\nssh 22/tcp # SSH\nssh 22/udp\nhttp 80/tcp www\nwww-alt 80/tcp\n\
             bad x/tcp\nlonely\nsnmp 161/udp\n",
        );
        assert_eq!(names.len(), 2);
        assert_eq!(names[&22], "ssh");
        assert_eq!(names[&80], "http");
    }

    #[test]
    fn names_are_the_ones_getservbyport_gives() {
        let listed: Vec<u16> = known_tcp_ports().collect();
        for port in listed.into_iter().chain(0..=1024) {
            assert_eq!(service_name(port), getservbyport(port), "port {port}");
        }
    }

    /// The C library's answer, as prober asked it before.
    fn getservbyport(port: u16) -> String {
        // SAFETY: getservbyport returns static storage, copied out at once; this test is the
        // only caller in its thread and no other test calls it.
        unsafe {
            let entry = libc::getservbyport(i32::from(port.to_be()), c"tcp".as_ptr());
            if entry.is_null() {
                return String::new();
            }
            std::ffi::CStr::from_ptr((*entry).s_name)
                .to_string_lossy()
                .into_owned()
        }
    }
}
