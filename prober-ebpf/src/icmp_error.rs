//! ICMP and ICMPv6 errors about our TCP, UDP and ICMP echo probes: unreachables,
//! admin-prohibited, time exceeded; and ICMP errors about our raw IP probes (protocol
//! unreachable, mostly), whose quotes may end at the quoted IP header: ours when they are from
//! our address to the target, of the probes' protocol, with one of their IP ids.
//!
//! An error may come from any router on the way, so its sender says nothing: it is ours only
//! when the packet it quotes is one of our probes — from our address and one of our source
//! ports, to the target and port probed (one target), and then for TCP with the probe's
//! sequence number, which in a sweep is the SYN cookie of that quoted (target, port, us, our
//! port); for UDP, which has no such number, with the probe's length (userspace then takes
//! only what answers a probe it sent, from the source port it left from, as for UDP answers:
//! see [`crate::udp`]); or from our address to the target, an echo request with our
//! identifier, whose sequence number names the probe. Checked as the kernel would check it
//! first (MAC, IP header and ICMP checksums over the message).
use aya_ebpf::{macros::map, maps::PerCpuArray};
use prober_common::{
    syn_cookie,
    trace::Reason,
    wire::{self, Checksum, Frame, IpPacket, QuotedProbe, Quoting, UDP_HEADER_LEN},
    ProbeFilter, ReplyRecord, IPPROTO_TCP, IPPROTO_UDP, KIND_ICMP_ECHO, KIND_RAW_IP, KIND_TCP,
    KIND_UDP,
};

use crate::{
    icmp,
    reply::{self, Decision, Probe},
};

/// Room for the quote being read, off the 512-byte stack (as [`crate::maps`]' packet room is).
#[map]
static QUOTES: PerCpuArray<QuotedProbe> = PerCpuArray::with_max_entries(1, 0);

/// Whether `ip` is an ICMP error for [`reply`] to judge: a TCP, UDP, ICMP echo or raw IP
/// filter's, of its family's ICMP.
#[inline(always)]
pub fn wanted(frame: &impl Frame, ip: &IpPacket, filter: &ProbeFilter) -> bool {
    matches!(
        filter.kind,
        KIND_TCP | KIND_UDP | KIND_ICMP_ECHO | KIND_RAW_IP
    ) && ip.protocol == ip.icmp_protocol()
        && wire::is_icmp_error_type(frame, ip)
}

#[inline(never)]
pub fn reply(frame: &impl Frame, ip: &IpPacket, filter: &ProbeFilter, arrived_ns: u64) -> Decision {
    let Some(quoted) = QUOTES.get_ptr_mut(0) else {
        return Decision::IGNORED;
    };
    // SAFETY: an in-bounds per-CPU slot, used by one program at a time on this CPU.
    let quoted = unsafe { &mut *quoted };
    *quoted = QuotedProbe::default();
    let quoting = match filter.kind {
        KIND_RAW_IP => wire::icmp_error_about_ip(frame, ip, quoted),
        _ => wire::icmp_error(frame, ip, quoted),
    };
    match quoting {
        Quoting::NotAnError => return Decision::IGNORED,
        Quoting::Malformed => return reply::malformed(ip, (0, 0), Reason::MalformedHeader),
        Quoting::Error(_) => {}
    }
    if filter.kind == KIND_RAW_IP {
        return about_raw_ip(frame, ip, filter, quoted, arrived_ns);
    }
    let echo = filter.kind == KIND_ICMP_ECHO;
    // The kind's two numbers: ports for TCP and UDP, identifier and sequence number for ICMP
    // echo.
    let numbers = if echo {
        (quoted.echo_id(), quoted.echo_seq())
    } else {
        (quoted.dest_port, quoted.source_port)
    };
    // Errors about the host's own traffic (another ping's echo requests among it) are none of
    // our business, and not traced.
    let sweep = reply::sweep(filter);
    let ours = if echo {
        quoted.is_echo_request(ip.version)
            && if sweep {
                filter.is_our_port(quoted.echo_id())
            } else {
                quoted.dst == filter.target_addr
                    && filter.is_our_echo(quoted.echo_id(), quoted.echo_seq())
            }
    } else {
        let protocol = if filter.kind == KIND_UDP {
            IPPROTO_UDP
        } else {
            IPPROTO_TCP
        };
        let to_target = reply::sweep(filter)
            || (quoted.dst == filter.target_addr && filter.probes_port(quoted.dest_port));
        quoted.protocol == protocol && to_target && filter.is_our_port(quoted.source_port)
    };
    if quoted.src != filter.local_addr || !ours {
        return Decision::IGNORED;
    }
    if let Err(refused) = reply::validated(frame, ip, filter, numbers, Checksum::Message) {
        return refused;
    }
    // Which of one target's echo requests it was is the sequence number's to say, as for echo
    // replies (userspace knows which were sent); a sweep's echo must carry its target's
    // cookie, a TCP probe its own sequence number, a UDP probe its length.
    let seq_offset = quoted.seq.wrapping_sub(tcp_probe_seq(filter, quoted));
    let quotes_a_probe = match filter.kind {
        KIND_ICMP_ECHO => {
            !sweep
                || quoted.echo_seq()
                    == icmp::sweep_cookie(filter, &quoted.dst, &quoted.src, quoted.echo_id())
        }
        KIND_UDP => {
            // A sweep's datagrams carry no data.
            let data_len = if reply::sweep(filter) {
                0
            } else {
                filter.tcp_data_len
            };
            usize::from(quoted.udp_length()) == UDP_HEADER_LEN + usize::from(data_len)
        }
        _ => filter.tcp_rest(seq_offset) == 0,
    };
    if !quotes_a_probe {
        return reply::unmatched(ip, numbers, Reason::QuotesNoProbe);
    }
    let probe = if echo {
        Probe {
            slot: icmp::slot(filter, quoted.echo_id(), quoted.echo_seq()),
            target: quoted.dst,
            target_port: 0,
        }
    } else if filter.kind == KIND_UDP {
        Probe {
            // The quoted checksum is the low half of `seq` (see QuotedProbe::udp_length).
            slot: filter.udp_slot(
                ip.version,
                quoted.source_port,
                quoted.ip_id,
                quoted.seq as u16,
            ),
            target: quoted.dst,
            target_port: quoted.dest_port,
        }
    } else {
        Probe {
            slot: filter.tcp_slot(quoted.source_port, seq_offset),
            target: quoted.dst,
            target_port: quoted.dest_port,
        }
    };
    // Read where it is: a copy on the stack would be a call to memcpy, which returns the
    // stack pointer it copied to, and the verifier refuses that (at TCX ingress it is a call).
    let quoted: &QuotedProbe = quoted;
    reply::matched(filter, ip, numbers, &probe, arrived_ns, |record| {
        error_fields(record, ip, quoted);
        if echo {
            record.icmp_id = quoted.echo_id();
            record.icmp_seq = quoted.echo_seq();
        } else {
            record.src_port = quoted.dest_port;
            record.dst_port = quoted.source_port;
            record.tcp_seq = quoted.seq;
            // Which probe it quotes, for the kinds whose fields do not say (UDP of one flow
            // over IPv4: the quoted IP id's offset).
            record.icmp_seq = probe.slot;
        }
    })
}

/// The sequence number of the TCP probe `quoted` is: in a sweep the SYN cookie of its
/// (target, port, us, our port), for one target the filter's.
#[inline(always)]
fn tcp_probe_seq(filter: &ProbeFilter, quoted: &QuotedProbe) -> u32 {
    if reply::sweep(filter) {
        syn_cookie(
            filter.cookie_key,
            &quoted.dst,
            quoted.dest_port,
            &quoted.src,
            quoted.source_port,
        )
    } else {
        filter.tcp_seq
    }
}

/// An ICMP error about one of our raw IP probes, if it quotes one: numbered by the quoted IP id.
/// (Inlined: as a call it would take more arguments than BPF passes in registers.)
#[inline(always)]
fn about_raw_ip(
    frame: &impl Frame,
    ip: &IpPacket,
    filter: &ProbeFilter,
    quoted: &QuotedProbe,
    arrived_ns: u64,
) -> Decision {
    let numbers = (quoted.ip_id, 0);
    let ours = quoted.protocol == filter.ip_protocol
        && quoted.src == filter.local_addr
        && quoted.dst == filter.target_addr;
    if !ours {
        return Decision::IGNORED;
    }
    if let Err(refused) = reply::validated(frame, ip, filter, numbers, Checksum::Message) {
        return refused;
    }
    if !filter.is_our_ip_id(quoted.ip_id) {
        return reply::unmatched(ip, numbers, Reason::QuotesNoProbe);
    }
    let probe = Probe {
        slot: quoted.ip_id.wrapping_sub(filter.ip_id_base),
        target: quoted.dst,
        target_port: 0,
    };
    reply::matched(filter, ip, numbers, &probe, arrived_ns, |record| {
        error_fields(record, ip, quoted);
        record.icmp_seq = probe.slot;
    })
}

/// What every error's record says: who sent it, about which host, which error.
#[inline(always)]
fn error_fields(record: &mut ReplyRecord, ip: &IpPacket, quoted: &QuotedProbe) {
    record.icmp_from = ip.src;
    record.src_addr = quoted.dst;
    record.icmp_type = quoted.icmp_type;
    record.icmp_code = quoted.code;
    record.l4_checksum = quoted.checksum;
}
