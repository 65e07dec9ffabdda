//! The tools the RTT benchmark runs, described as data: how to invoke each against the responder
//! and how to read the per-probe RTTs from what it prints.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::errors::{InOrder, Probe, Reply};
use crate::bench::tools::Program;

/// The responder's open port that prober and hping3 probe.
pub const OPEN_PORT: u16 = 80;
/// prober's and hping3's base source port: probe n leaves from SOURCE_BASE + n, and their reply
/// lines print `seq=n`. nping sends every probe from this port.
pub const SOURCE_BASE: u16 = 40_000;
/// nping probes ports NPING_PORT_BASE, NPING_PORT_BASE + 1, ...: its probes all leave from one
/// source port with one sequence number, so the destination port is what tells them apart.
pub const NPING_PORT_BASE: u16 = 20_000;

#[derive(Clone, Copy)]
pub enum Protocol {
    TcpSyn,
    IcmpEcho,
}

pub struct RttTool {
    pub name: &'static str,
    pub program: Program,
    pub args: fn(&Invocation) -> Result<Vec<String>>,
    /// Reads the per-probe RTTs from the tool's stdout.
    pub replies: fn(&str) -> Result<Vec<Reply>>,
}

/// One run: what to probe, how, and from where.
pub struct Invocation<'a> {
    pub protocol: Protocol,
    pub probes: u16,
    pub interval: Duration,
    pub interface: &'a str,
    pub host_addr: Ipv4Addr,
    pub target: Ipv4Addr,
}

pub const TOOLS: &[RttTool] = &[
    RttTool {
        name: "prober",
        program: Program::Prober,
        args: prober_args,
        replies: prober_replies,
    },
    RttTool {
        name: "hping3",
        program: Program::Peer {
            command: "hping3",
            package: "hping3",
        },
        args: hping3_args,
        replies: hping3_replies,
    },
    RttTool {
        name: "nping",
        program: Program::Peer {
            command: "nping",
            package: "nmap",
        },
        args: nping_args,
        replies: nping_replies,
    },
];

/// hping3's command line, which prober shares: `-n` so that nothing is looked up, `-I` so that
/// the interface is not guessed.
fn hping3_args(inv: &Invocation) -> Result<Vec<String>> {
    let mut args: Vec<String> = match inv.protocol {
        Protocol::TcpSyn => vec![
            "-S".into(),
            "-p".into(),
            OPEN_PORT.to_string(),
            "-s".into(),
            SOURCE_BASE.to_string(),
        ],
        Protocol::IcmpEcho => vec!["-1".into()],
    };
    args.extend([
        "-c".into(),
        inv.probes.to_string(),
        "-i".into(),
        format!("u{}", inv.interval.as_micros()),
        "-n".into(),
        "-I".into(),
        inv.interface.to_owned(),
        inv.target.to_string(),
    ]);
    Ok(args)
}

fn prober_args(inv: &Invocation) -> Result<Vec<String>> {
    let mut args = vec!["--rtt-precision".to_owned(), "us".to_owned()];
    args.extend(hping3_args(inv)?);
    Ok(args)
}

/// nping paces in whole milliseconds (its timers count them). Every address is numeric and both
/// the interface and the source address are given, so it neither resolves nor routes anything.
fn nping_args(inv: &Invocation) -> Result<Vec<String>> {
    let interval_ms = inv.interval.as_millis();
    if interval_ms == 0 || Duration::from_millis(interval_ms as u64) != inv.interval {
        bail!(
            "nping cannot pace probes {:?} apart: only whole milliseconds",
            inv.interval
        );
    }
    let mut args: Vec<String> = match inv.protocol {
        // -c counts rounds over all the ports: one round of `probes` ports.
        Protocol::TcpSyn => vec![
            "--tcp".into(),
            "--flags".into(),
            "syn".into(),
            "-g".into(),
            SOURCE_BASE.to_string(),
            "-p".into(),
            format!("{NPING_PORT_BASE}-{}", NPING_PORT_BASE + inv.probes - 1),
            "-c".into(),
            "1".into(),
        ],
        Protocol::IcmpEcho => vec!["--icmp".into(), "-c".into(), inv.probes.to_string()],
    };
    args.extend([
        "--delay".into(),
        format!("{interval_ms}ms"),
        "-e".into(),
        inv.interface.to_owned(),
        "-S".into(),
        inv.host_addr.to_string(),
        inv.target.to_string(),
    ]);
    Ok(args)
}

/// hping3's reply lines (prober's are the same): `... seq=N ... rtt=0.087 ms` for TCP, where the
/// reply answers the probe from SOURCE_BASE + N to OPEN_PORT, and `... icmp_seq=N rtt=...` for
/// echo. Lines without `rtt=` (the header) are skipped; a `DUP!` line reads like any other and,
/// finding its probe already paired, counts as unmatched.
fn hping_style_replies(stdout: &str, echo_seq_sent: fn(u16) -> u16) -> Result<Vec<Reply>> {
    let mut replies = Vec::new();
    for line in stdout.lines().filter(|l| l.contains(" rtt=")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .with_context(|| format!("no {name} in {line:?}"))
        };
        let rtt_ms: f64 = field("rtt=")?
            .parse()
            .with_context(|| format!("rtt in {line:?}"))?;
        let probe = match field("icmp_seq=") {
            Ok(seq) => Probe::Echo {
                seq: echo_seq_sent(
                    seq.parse()
                        .with_context(|| format!("icmp_seq in {line:?}"))?,
                ),
            },
            Err(_) => {
                let n: u16 = field("seq=")?
                    .parse()
                    .with_context(|| format!("seq in {line:?}"))?;
                Probe::Tcp {
                    source_port: SOURCE_BASE.wrapping_add(n),
                    dest_port: OPEN_PORT,
                }
            }
        };
        replies.push(Reply {
            probe,
            rtt_ns: (rtt_ms * 1e6).round() as i64,
        });
    }
    Ok(replies)
}

/// prober's echo requests carry `icmp_seq` as it prints it.
fn prober_replies(stdout: &str) -> Result<Vec<Reply>> {
    hping_style_replies(stdout, |seq| seq)
}

/// hping3 writes the echo sequence number into the request in host byte order: `icmp_seq=1`
/// went out as 256 on x86 (what tcpdump and the responder see).
fn hping3_replies(stdout: &str) -> Result<Vec<Reply>> {
    hping_style_replies(stdout, |seq| u16::from_be_bytes(seq.to_ne_bytes()))
}

/// nping prints no per-probe RTT, only `SENT (0.0119s) ...` and `RCVD (0.0120s) ...` lines with
/// times since its start; a reply's RTT is its RCVD time − the SENT time of the probe it
/// answers, both to 0.1 ms. The probe is read from each line, because what nping sends differs
/// from what it was asked for (see rtt.rs), and repeated probes pair in order.
fn nping_replies(stdout: &str) -> Result<Vec<Reply>> {
    let mut sent = InOrder::new();
    let mut replies = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (direction, time) = match words.as_slice() {
            [direction @ ("SENT" | "RCVD"), time, ..] => (*direction, time),
            _ => continue,
        };
        let secs: f64 = time
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix("s)"))
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("no time in {line:?}"))?;
        let at_ns = (secs * 1e9).round() as i64;
        let probe = nping_probe(&words, direction == "RCVD")
            .with_context(|| format!("unexpected nping line {line:?}"))?;
        if direction == "SENT" {
            sent.put(probe, at_ns);
        } else {
            let sent_ns = sent
                .take(&probe)
                .with_context(|| format!("no SENT line for {line:?}"))?;
            replies.push(Reply {
                probe,
                rtt_ns: at_ns - sent_ns,
            });
        }
    }
    Ok(replies)
}

/// The probe a SENT line sent or a RCVD line answers:
/// `TCP 198.18.0.1:40000 > 198.18.0.2:20001 S ...` (reversed in replies) or
/// `ICMP [198.18.0.1 > 198.18.0.2 Echo request (type=8/code=0) id=4309 seq=2] ...`.
fn nping_probe(words: &[&str], reply: bool) -> Option<Probe> {
    match words.get(2..)? {
        ["TCP", from, ">", to, ..] => {
            let port = |endpoint: &str| endpoint.rsplit_once(':')?.1.parse::<u16>().ok();
            let (ours, theirs) = if reply { (to, from) } else { (from, to) };
            Some(Probe::Tcp {
                source_port: port(ours)?,
                dest_port: port(theirs)?,
            })
        }
        ["ICMP", rest @ ..] => {
            let seq = rest
                .iter()
                .find_map(|w| w.strip_prefix("seq="))?
                .trim_end_matches(']');
            Some(Probe::Echo {
                seq: seq.parse().ok()?,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(protocol: Protocol, interval: Duration) -> Invocation<'static> {
        Invocation {
            protocol,
            probes: 1000,
            interval,
            interface: "prbt0",
            host_addr: Ipv4Addr::new(198, 18, 0, 1),
            target: Ipv4Addr::new(198, 18, 0, 2),
        }
    }

    #[test]
    fn hping_style_tcp_and_echo_lines() {
        let stdout = "HPING 198.18.0.2 (prbt0 198.18.0.2): S set, 40 headers + 0 data bytes\n\
            len=44 ip=198.18.0.2 ttl=64 DF id=0 sport=80 flags=SA seq=3 win=64240 rtt=0.087 ms\n\
            len=28 ip=198.18.0.2 ttl=64 id=1234 icmp_seq=5 rtt=20.1 ms\n";
        let replies = prober_replies(stdout).unwrap();
        assert_eq!(
            replies,
            [
                Reply {
                    probe: Probe::Tcp {
                        source_port: SOURCE_BASE + 3,
                        dest_port: OPEN_PORT
                    },
                    rtt_ns: 87_000
                },
                Reply {
                    probe: Probe::Echo { seq: 5 },
                    rtt_ns: 20_100_000
                },
            ]
        );
    }

    #[test]
    fn hping3_echo_sequence_numbers_as_sent() {
        let replies = hping3_replies("len=28 ip=198.18.0.2 ttl=64 id=1 icmp_seq=1 rtt=0.1 ms\n");
        let sent = u16::from_be_bytes(1u16.to_ne_bytes());
        assert_eq!(replies.unwrap()[0].probe, Probe::Echo { seq: sent });
    }

    #[test]
    fn nping_pairs_received_with_sent_lines() {
        // As nping 0.7.93 prints them: port 20000 went out as a copy of 20001.
        let stdout = "\nStarting Nping 0.7.93 ( https://nmap.org/nping ) at 2026-11-24 19:22 UTC\n\
            SENT (0.0119s) TCP 198.18.0.1:40000 > 198.18.0.2:20001 S ttl=64 id=10421 iplen=40  seq=3023493189 win=1480 \n\
            SENT (0.0129s) TCP 198.18.0.1:40000 > 198.18.0.2:20001 S ttl=64 id=10421 iplen=40  seq=3023493189 win=1480 \n\
            RCVD (0.0131s) TCP 198.18.0.2:20001 > 198.18.0.1:40000 SA ttl=64 id=0 iplen=44  seq=1 win=64240 <mss 1460>\n\
            RCVD (0.0132s) TCP 198.18.0.2:20001 > 198.18.0.1:40000 SA ttl=64 id=0 iplen=44  seq=2 win=64240 <mss 1460>\n\
            SENT (0.0178s) ICMP [198.18.0.1 > 198.18.0.2 Echo request (type=8/code=0) id=4309 seq=2] IP [ttl=64 id=14981 iplen=28 ]\n\
            RCVD (0.0179s) ICMP [198.18.0.2 > 198.18.0.1 Echo reply (type=0/code=0) id=4309 seq=2] IP [ttl=64 id=32655 iplen=28 ]\n\
            \n\
            Max rtt: 0.021ms | Min rtt: 0.005ms | Avg rtt: 0.011ms\n";
        let replies = nping_replies(stdout).unwrap();
        let tcp = Probe::Tcp {
            source_port: 40_000,
            dest_port: 20_001,
        };
        assert_eq!(
            replies,
            [
                Reply {
                    probe: tcp,
                    rtt_ns: 1_200_000
                },
                Reply {
                    probe: tcp,
                    rtt_ns: 300_000
                },
                Reply {
                    probe: Probe::Echo { seq: 2 },
                    rtt_ns: 100_000
                },
            ]
        );
        assert!(nping_replies(
            "RCVD (0.0179s) ICMP [198.18.0.2 > 198.18.0.1 Echo reply (type=0/code=0) id=1 seq=9]\n"
        )
        .is_err());
    }

    #[test]
    fn command_lines() {
        let tcp = inv(Protocol::TcpSyn, Duration::from_millis(5));
        assert_eq!(
            prober_args(&tcp).unwrap().join(" "),
            "--rtt-precision us -S -p 80 -s 40000 -c 1000 -i u5000 -n -I prbt0 198.18.0.2"
        );
        assert_eq!(
            nping_args(&tcp).unwrap().join(" "),
            "--tcp --flags syn -g 40000 -p 20000-20999 -c 1 --delay 5ms -e prbt0 -S 198.18.0.1 198.18.0.2"
        );
        let icmp = inv(Protocol::IcmpEcho, Duration::from_millis(1));
        assert_eq!(
            hping3_args(&icmp).unwrap().join(" "),
            "-1 -c 1000 -i u1000 -n -I prbt0 198.18.0.2"
        );
        assert!(nping_args(&inv(Protocol::IcmpEcho, Duration::from_micros(1500))).is_err());
    }
}
