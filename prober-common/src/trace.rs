//! The words of `--bpf-trace`. The eBPF programs log each decision as a few numbers (cheap to
//! log, and to verify); userspace turns them back into a line with these words.

/// What became of a packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Left to the host's stack, untouched.
    Passed = 0,
    /// Recorded as a reply and queued for userspace (a sweep's then dropped).
    Matched = 1,
    /// A reply, lost: the ring buffer was full.
    Lost = 2,
    /// A SYN-ACK sent back to its sender as a RST (XDP_TX).
    Bounced = 3,
    /// One of our probes leaving (TC egress).
    Departed = 4,
}

/// Why.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    AnswersAProbe = 0,
    NotSynAckOrRstAck = 1,
    AcknowledgesNoProbe = 2,
    NotAnEchoReply = 3,
    AnotherIdentifier = 4,
    RingBufferFull = 5,
    IsAProbe = 6,
    NotToOurMac = 7,
    MalformedHeader = 8,
    BadChecksum = 9,
    TooLongToVerify = 10,
    AnotherTarget = 11,
    AnswersNoAsk = 12,
    QuotesNoProbe = 13,
}

impl Fate {
    pub const ALL: [Fate; 5] = [
        Fate::Passed,
        Fate::Matched,
        Fate::Lost,
        Fate::Bounced,
        Fate::Departed,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Fate::Passed => "passed",
            Fate::Matched => "matched",
            Fate::Lost => "lost",
            Fate::Bounced => "bounced as RST",
            Fate::Departed => "left",
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::AnswersAProbe,
        Reason::NotSynAckOrRstAck,
        Reason::AcknowledgesNoProbe,
        Reason::NotAnEchoReply,
        Reason::AnotherIdentifier,
        Reason::RingBufferFull,
        Reason::IsAProbe,
        Reason::NotToOurMac,
        Reason::MalformedHeader,
        Reason::BadChecksum,
        Reason::TooLongToVerify,
        Reason::AnotherTarget,
        Reason::AnswersNoAsk,
        Reason::QuotesNoProbe,
    ];

    pub fn words(self) -> &'static str {
        match self {
            Reason::AnswersAProbe => "answers a probe",
            Reason::NotSynAckOrRstAck => "not the SYN-ACK or RST that answers the sweep's probes",
            Reason::AcknowledgesNoProbe => "acknowledges none of our probes",
            Reason::NotAnEchoReply => "not an echo reply",
            Reason::AnotherIdentifier => "another identifier than ours",
            Reason::RingBufferFull => "the ring buffer is full",
            Reason::IsAProbe => "one of our probes",
            Reason::NotToOurMac => "a frame for another MAC address, or a broadcast",
            Reason::MalformedHeader => {
                "a header the kernel would drop (version, length, data offset)"
            }
            Reason::BadChecksum => "a bad IP, TCP or ICMP checksum",
            Reason::TooLongToVerify => "too long to verify its checksum",
            Reason::AnotherTarget => "an ARP or neighbour answer for another address or MAC",
            Reason::AnswersNoAsk => {
                "answers none of our neighbour asks (unsolicited, gratuitous, or a second answer)"
            }
            Reason::QuotesNoProbe => "an ICMP error quoting none of our probes",
        }
    }
}

/// What each logged line holds, space-separated: the probe kind, the [`Fate`], the
/// [`Reason`], the packet's source address (a reply's) or destination (a probe's) as IPv6 text,
/// and the kind's two numbers (ports for TCP; identifier and sequence number for ICMP echo).
pub const FIELDS: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_names_its_own_word() {
        for (number, fate) in Fate::ALL.iter().enumerate() {
            assert_eq!(*fate as usize, number, "{fate:?}");
        }
        for (number, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, number, "{reason:?}");
        }
    }
}
