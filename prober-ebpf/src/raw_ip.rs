//! The raw IP kind (hping3 -0 -H PROTO, IPv4): bare IP headers of the user's protocol, told
//! apart by their IP ids. Nothing answers them but ICMP errors quoting them, which
//! [`crate::icmp_error`] matches; here, our probes leaving.
use prober_common::{wire::IpPacket, ProbeFilter};

use crate::reply::Probe;

/// The probe this is, if it is one of ours leaving (TC egress): numbered by its IP id's offset
/// from the first.
#[inline(always)]
pub fn departure(ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    if ip.protocol != filter.ip_protocol || !filter.is_our_ip_id(ip.id) {
        return None;
    }
    Some(Probe {
        slot: ip.id.wrapping_sub(filter.ip_id_base),
        target: ip.dst,
        target_port: 0,
    })
}
