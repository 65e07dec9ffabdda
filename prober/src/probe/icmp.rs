//! The ICMP kind (hping3 -1): echo requests by default, which the target's kernel answers with
//! echo replies; with -C (or --icmp-ts, --icmp-addr) the other query messages hping3 sends,
//! timestamp and address mask requests, matched by the same identifier and sequence number.
//! An IPv6 target gets ICMPv6's echo request (type 128) and answers with its echo reply (129);
//! ICMPv6 has no timestamps or address masks. A sweep of echoes (zmap's icmp_echoscan) finds
//! the hosts that are up: each echo carries its source-port slot as its identifier and the low
//! half of its target's cookie as its sequence number, which the reply echoes.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Result};
use prober_common::{
    syn_cookie,
    wire::{ICMP_ADDRESS_MASK, ICMP_ADDRESS_MASK_REPLY, ICMP_TIMESTAMP, ICMP_TIMESTAMP_REPLY},
    ProbeFilter, ReplyRecord, KIND_ICMP_ECHO,
};

use super::{
    ip::Transport, tcp::icmp_verdict, Answer, BuiltProbe, Endpoints, Payload, PingProbe,
    ProbeBuffer, ReplyFields, Status, SweepEndpoints, SweepProbe, Verdict,
};
use crate::random;

/// The ICMP message a run sends (hping3's -C TYPE and -K CODE), in ICMP's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage {
    pub icmp_type: u8,
    pub code: u8,
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const MS_PER_DAY: u64 = 86_400_000;

/// What follows the 8-byte header, by type: hping3's three ways of building a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// The -d / -E data.
    Echo,
    /// Originate (ms since midnight UT), receive and transmit timestamps (RFC 792).
    Timestamp,
    /// A zero address mask (RFC 950).
    AddressMask,
}

impl IcmpMessage {
    pub const ECHO_REQUEST: IcmpMessage = IcmpMessage {
        icmp_type: ICMP_ECHO,
        code: 0,
    };

    /// hping3's -C and -K: the echo, timestamp and address mask messages (requests or
    /// replies) that hping3 builds for them; the others refused, with why.
    pub fn new(icmp_type: u8, code: u8) -> Result<IcmpMessage> {
        match icmp_type {
            ICMP_ECHO_REPLY | ICMP_ECHO => {}
            ICMP_TIMESTAMP | ICMP_TIMESTAMP_REPLY | ICMP_ADDRESS_MASK | ICMP_ADDRESS_MASK_REPLY
                if code != 0 =>
            {
                bail!("-K {code}: timestamp and address mask messages have code 0 (hping3 sends 0 whatever -K says)")
            }
            ICMP_TIMESTAMP | ICMP_TIMESTAMP_REPLY | ICMP_ADDRESS_MASK | ICMP_ADDRESS_MASK_REPLY => {}
            3 | 4 | 5 | 11 => bail!(
                "-C {icmp_type}: hping3 sends an ICMP error about a made-up UDP packet for it, which prober does not"
            ),
            _ => bail!(
                "-C {icmp_type}: prober sends ICMP types 0 and 8 (echo), 13 and 14 (timestamp), 17 and 18 (address mask), as hping3 does without --force-icmp"
            ),
        }
        Ok(IcmpMessage { icmp_type, code })
    }

    fn layout(self) -> Layout {
        match self.icmp_type {
            ICMP_TIMESTAMP | ICMP_TIMESTAMP_REPLY => Layout::Timestamp,
            ICMP_ADDRESS_MASK | ICMP_ADDRESS_MASK_REPLY => Layout::AddressMask,
            _ => Layout::Echo,
        }
    }

    /// Whether it carries the -d / -E data (an echo does; hping3 ignores -d for the others).
    pub fn carries_data(self) -> bool {
        self.layout() == Layout::Echo
    }

    /// The types of the message and of the reply it is matched with, in `target`'s ICMP; an
    /// error for a message its family's ICMP does not have. A reply sent (-C 0, 14, 18) gets
    /// none, but one of its own type is shown, as hping3 does.
    pub fn types(self, target: IpAddr) -> Result<(u8, u8)> {
        let reply = match self.icmp_type {
            ICMP_ECHO => ICMP_ECHO_REPLY,
            ICMP_TIMESTAMP => ICMP_TIMESTAMP_REPLY,
            ICMP_ADDRESS_MASK => ICMP_ADDRESS_MASK_REPLY,
            reply => reply,
        };
        match (target, self.layout()) {
            (IpAddr::V4(_), _) => Ok((self.icmp_type, reply)),
            (IpAddr::V6(_), Layout::Echo) => {
                let of = |icmp_type| match icmp_type {
                    ICMP_ECHO => ICMPV6_ECHO_REQUEST,
                    _ => ICMPV6_ECHO_REPLY,
                };
                Ok((of(self.icmp_type), of(reply)))
            }
            (IpAddr::V6(_), _) => bail!(
                "-C {}: timestamp and address mask messages are IPv4's ICMP; ICMPv6 has neither",
                self.icmp_type
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct IcmpEcho {
    pub endpoints: Endpoints,
    /// Echo identifier of this run's probes (random, so concurrent runs don't mix).
    pub id: u16,
    pub message: IcmpMessage,
}

const ICMP_HEADER_LEN: usize = 8;

impl IcmpEcho {
    pub fn new(endpoints: Endpoints, message: IcmpMessage) -> Result<IcmpEcho> {
        message.types(endpoints.target)?;
        Ok(IcmpEcho {
            endpoints,
            // Not 0: with probes of one flow no identifier would sum with a sequence number
            // other than 0 to it (see `identifier`).
            id: (random()? as u16).max(1),
            message,
        })
    }

    /// The identifier of the echo with sequence number `seq`: the run's, or with probes of one
    /// flow the one whose one's complement sum with `seq` is the run's, so that every probe
    /// has the same checksum (as paris-traceroute's; [`ProbeFilter::is_our_echo`]).
    fn identifier(&self, seq: u16) -> u16 {
        let id = self.id;
        if !self.endpoints.one_flow || seq == 0 {
            id
        } else if id > seq {
            id - seq
        } else {
            id + (0xffff - seq)
        }
    }

    /// The message's types in the target's ICMP (checked when it was made).
    fn types(&self) -> (u8, u8) {
        self.message
            .types(self.endpoints.target)
            .expect("checked by IcmpEcho::new")
    }
}

/// Milliseconds since midnight UT, as ICMP timestamps count them (RFC 792).
fn ms_since_midnight_ut() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as u64 % MS_PER_DAY
}

/// hping3's lines about a timestamp reply's `data`, `now_ms` after midnight UT: the three
/// timestamps, and the time since the originate one (across midnight too).
fn timestamp_lines(data: &[u8; 12], now_ms: u64, out: &mut String) {
    let word = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let (originate, receive, transmit) = (word(0), word(4), word(8));
    let rtt = (now_ms + MS_PER_DAY - u64::from(originate) % MS_PER_DAY) % MS_PER_DAY;
    let _ = write!(
        out,
        "\nICMP timestamp: Originate={originate} Receive={receive} Transmit={transmit}\nICMP timestamp RTT tsrtt={rtt}\n"
    );
}

impl PingProbe for IcmpEcho {
    fn mode(&self) -> String {
        "icmp mode set".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let timestamps;
        let data: &[u8] = match self.message.layout() {
            Layout::Echo => self.endpoints.payload.of_probe(n),
            Layout::Timestamp => {
                let originate = ms_since_midnight_ut() as u32;
                timestamps = [originate.to_be_bytes(), [0; 4], [0; 4]].concat();
                &timestamps
            }
            Layout::AddressMask => &[0; 4],
        };
        let ip =
            self.endpoints
                .ip_header(n, Transport::Icmp, (ICMP_HEADER_LEN + data.len()) as u16);
        let (icmp_type, _) = self.types();
        let seq = n as u16;
        let query = ip.icmp_query(
            (icmp_type, self.message.code),
            (self.identifier(seq), seq),
            data,
        );
        ip.write_with(&query, data, buf)
    }

    /// hping3 counts the 8-byte ICMP header alone, not the timestamps or mask after it.
    fn headers_len(&self) -> usize {
        let fields = match self.message.layout() {
            Layout::Echo => self.payload().size(),
            Layout::Timestamp => 12,
            Layout::AddressMask => 4,
        };
        self.build(0, &mut self.buffer()) - fields
    }

    fn filter(&self) -> ProbeFilter {
        let (icmp_type, icmp_reply_type) = self.types();
        ProbeFilter {
            kind: KIND_ICMP_ECHO,
            icmp_id: self.id,
            icmp_type,
            icmp_reply_type,
            ..self.endpoints.filter()
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.icmp_seq
    }

    fn write_fields(&self, _reply: &ReplyRecord, seq: u16, line: &mut String) {
        let _ = write!(line, "icmp_seq={seq}");
    }

    fn write_after(&self, reply: &ReplyRecord, lines: &mut String) {
        match self.message.layout() {
            Layout::Echo => {}
            Layout::Timestamp => timestamp_lines(&reply.icmp_data, ms_since_midnight_ut(), lines),
            Layout::AddressMask => {
                let [a, b, c, d, ..] = reply.icmp_data;
                let _ = write!(
                    lines,
                    "\nICMP address mask: icmpam={}\n",
                    Ipv4Addr::new(a, b, c, d)
                );
            }
        }
    }
}

/// The echo request's and reply's types of `addr`'s family's ICMP.
fn echo_types(addr: IpAddr) -> (u8, u8) {
    IcmpMessage::ECHO_REQUEST
        .types(addr)
        .expect("echo requests go to either family")
}

/// A sweep's echo requests, one per host.
#[derive(Clone, Copy, Debug)]
pub struct IcmpEchoSweep {
    pub endpoints: SweepEndpoints,
}

impl SweepProbe for IcmpEchoSweep {
    fn protocol(&self) -> &'static str {
        "icmp"
    }

    fn has_ports(&self) -> bool {
        false
    }

    fn filter(&self) -> ProbeFilter {
        let (icmp_type, icmp_reply_type) = echo_types(self.endpoints.source);
        ProbeFilter {
            icmp_type,
            icmp_reply_type,
            ..self.endpoints.filter(KIND_ICMP_ECHO)
        }
    }

    /// `port` is none of ICMP's: the sweep's one position per host.
    fn build(
        &self,
        target: IpAddr,
        _port: u16,
        source_port: u16,
        epoch: u16,
        buf: &mut ProbeBuffer,
    ) -> BuiltProbe {
        let SweepEndpoints {
            source, cookie_key, ..
        } = self.endpoints;
        let seq = syn_cookie(cookie_key, &target.into(), 0, &source.into(), source_port) as u16;
        let ip = self
            .endpoints
            .ip_header(target, epoch, Transport::Icmp, ICMP_HEADER_LEN as u16);
        let (request, _) = echo_types(target);
        let echo = ip.icmp_query((request, 0), (source_port, seq), &[]);
        BuiltProbe {
            len: ip.write_with(&echo, &[], buf),
            cookie: u32::from(seq),
        }
    }

    /// An echo reply says the host is up; an ICMP error about the echo (a router's host
    /// unreachable, a filter's admin-prohibited, a time exceeded) that it is down, for that
    /// reason and from that sender.
    fn classify(&self, reply: &ReplyRecord) -> Answer {
        let error = reply.icmp_error();
        Answer {
            host: reply.src_addr.into(),
            port: 0,
            source_port: reply.icmp_id,
            cookie: u32::from(reply.icmp_seq),
            verdict: match error {
                Some(error) => Verdict {
                    status: Status::Down,
                    reason: icmp_verdict(error).reason,
                },
                None => Verdict {
                    status: Status::Up,
                    reason: "echo-reply",
                },
            },
            fields: ReplyFields::of(reply, None),
        }
    }

    fn silence(&self) -> Verdict {
        Verdict {
            status: Status::Down,
            reason: "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use prober_tests::internet_checksum;

    use super::*;
    use crate::probe::IpFields;

    fn endpoints(target: IpAddr) -> Endpoints {
        let source = match target {
            IpAddr::V4(_) => IpAddr::from([198, 18, 0, 1]),
            IpAddr::V6(_) => "2001:db8::1".parse().unwrap(),
        };
        Endpoints {
            source,
            target,
            ttl: 64,
            first_ip_id: 7,
            fields: IpFields::default(),
            payload: Payload::filler(3),
            one_flow: false,
            random_source: None,
        }
    }

    fn probe(icmp_type: u8, code: u8) -> IcmpEcho {
        let message = IcmpMessage::new(icmp_type, code).unwrap();
        IcmpEcho {
            id: 0xbeef,
            ..IcmpEcho::new(endpoints(IpAddr::from([198, 18, 0, 2])), message).unwrap()
        }
    }

    /// Probe `n`'s ICMP message, its checksum and the IPv4 header's checked.
    fn message(probe: &IcmpEcho, n: u64) -> Vec<u8> {
        let mut buf = probe.buffer();
        let len = probe.build(n, &mut buf);
        let packet = &buf[..len];
        assert_eq!((packet[0], packet[9]), (0x45, 1), "IPv4 carrying ICMP");
        assert_eq!(usize::from(u16::from_be_bytes([packet[2], packet[3]])), len);
        assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
        assert_eq!(internet_checksum(&packet[20..]), 0, "ICMP checksum");
        let icmp = &packet[20..];
        assert_eq!(
            &icmp[4..8],
            &[0xbe, 0xef, 0, n as u8],
            "identifier, sequence"
        );
        icmp.to_vec()
    }

    #[test]
    fn a_timestamp_request_carries_its_originate_time_and_no_data() {
        let probe = probe(ICMP_TIMESTAMP, 0);
        let before = ms_since_midnight_ut();
        let icmp = message(&probe, 3);
        let after = ms_since_midnight_ut();
        assert_eq!(icmp.len(), 20, "header and three timestamps, not -d's data");
        assert_eq!((icmp[0], icmp[1]), (13, 0));
        let originate = u64::from(u32::from_be_bytes(icmp[8..12].try_into().unwrap()));
        assert!(
            (before..=after).contains(&originate) || after < before,
            "{before} <= {originate} <= {after}"
        );
        assert_eq!(&icmp[12..], &[0; 8], "receive and transmit: zero");
        let filter = probe.filter();
        assert_eq!(
            (
                filter.kind,
                filter.icmp_id,
                filter.icmp_type,
                filter.icmp_reply_type
            ),
            (KIND_ICMP_ECHO, 0xbeef, 13, 14)
        );
        assert_eq!(probe.headers_len(), 28, "hping3's: IP and the ICMP header");
    }

    #[test]
    fn an_address_mask_request_carries_a_zero_mask() {
        let probe = probe(ICMP_ADDRESS_MASK, 0);
        let icmp = message(&probe, 1);
        assert_eq!(icmp.len(), 12);
        assert_eq!((icmp[0], icmp[1]), (17, 0));
        assert_eq!(&icmp[8..], &[0; 4]);
        let filter = probe.filter();
        assert_eq!((filter.icmp_type, filter.icmp_reply_type), (17, 18));
        assert_eq!(probe.headers_len(), 28);
    }

    #[test]
    fn echo_messages_take_the_code_and_the_data() {
        let probe = probe(0, 5);
        let icmp = message(&probe, 2);
        assert_eq!(
            (icmp[0], icmp[1]),
            (0, 5),
            "-C 0 -K 5: an echo reply of code 5"
        );
        assert_eq!(&icmp[8..], b"XXX", "-d 3");
        let filter = probe.filter();
        assert_eq!((filter.icmp_type, filter.icmp_reply_type), (0, 0));
        assert_eq!(probe.headers_len(), 28);
        let request = probe_of(8, 9);
        assert_eq!((request[0], request[1]), (8, 9));
    }

    fn probe_of(icmp_type: u8, code: u8) -> Vec<u8> {
        message(&probe(icmp_type, code), 0)
    }

    #[test]
    fn icmpv6_takes_echoes_only() {
        let target = IpAddr::from("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let echo = IcmpEcho::new(endpoints(target), IcmpMessage::new(8, 3).unwrap()).unwrap();
        let mut buf = echo.buffer();
        let len = echo.build(0, &mut buf);
        assert_eq!(
            (buf[40], buf[41], len),
            (128, 3, 51),
            "ICMPv6's echo request"
        );
        assert_eq!(
            (echo.filter().icmp_type, echo.filter().icmp_reply_type),
            (128, 129)
        );
        for icmp_type in [13, 14, 17, 18] {
            let error = IcmpEcho::new(endpoints(target), IcmpMessage::new(icmp_type, 0).unwrap())
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("-C {icmp_type}: timestamp and address mask messages are IPv4's ICMP; ICMPv6 has neither")
            );
        }
    }

    #[test]
    fn types_hping3_does_not_build_so_are_refused() {
        let refused = |icmp_type, code| IcmpMessage::new(icmp_type, code).unwrap_err().to_string();
        assert_eq!(
            refused(3, 0),
            "-C 3: hping3 sends an ICMP error about a made-up UDP packet for it, which prober does not"
        );
        assert!(refused(42, 0).starts_with("-C 42: prober sends ICMP types 0 and 8 (echo)"));
        assert!(refused(13, 1).starts_with("-K 1: timestamp and address mask messages have code 0"));
        assert!(!IcmpMessage::new(13, 0).unwrap().carries_data());
        assert!(IcmpMessage::new(8, 0).unwrap().carries_data());
    }

    #[test]
    fn replies_read_as_hping3_prints_them() {
        let data = [0, 0, 0, 100, 0, 0, 0, 110, 0, 0, 0, 111];
        let mut lines = String::new();
        timestamp_lines(&data, 104, &mut lines);
        assert_eq!(
            lines,
            "\nICMP timestamp: Originate=100 Receive=110 Transmit=111\nICMP timestamp RTT tsrtt=4\n"
        );
        let mut lines = String::new();
        let just_before_midnight = (MS_PER_DAY as u32 - 3).to_be_bytes();
        timestamp_lines(
            &[just_before_midnight, [0; 4], [0; 4]]
                .concat()
                .try_into()
                .unwrap(),
            2,
            &mut lines,
        );
        assert!(lines.ends_with("tsrtt=5\n"), "across midnight: {lines}");
        let reply = ReplyRecord {
            icmp_data: [255, 255, 254, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..ReplyRecord::default()
        };
        let mut lines = String::new();
        probe(ICMP_ADDRESS_MASK, 0).write_after(&reply, &mut lines);
        assert_eq!(lines, "\nICMP address mask: icmpam=255.255.254.0\n");
        let mut lines = String::new();
        probe(ICMP_ECHO, 0).write_after(&reply, &mut lines);
        assert_eq!(lines, "", "an echo reply has no lines after its own");
    }
}
