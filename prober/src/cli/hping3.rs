//! hping3's options that prober does not have: refused with what they are and why, rather
//! than as arguments clap has never heard of.

/// What hping3's `option` (as typed: `-2`, `--udp`, `--tr-stop=…`) is, and why prober does
/// not take it; None for an option hping3 does not have either.
pub fn missing(option: &str) -> Option<&'static str> {
    let name = option.split_once('=').map_or(option, |(name, _)| name);
    MISSING
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, why)| *why)
}

/// hping3's options (its --help), grouped by what prober says of them.
const MISSING: [(&[&str], &str); 16] = [
    (
        &["-2", "--udp"],
        "is hping3's UDP mode, which prober does not have yet",
    ),
    (
        &["-0", "--rawip", "-H", "--ipproto"],
        "is hping3's raw IP mode, which prober does not have yet",
    ),
    (
        &[
            "-T",
            "--traceroute",
            "--tr-stop",
            "--tr-keep-ttl",
            "--tr-no-rtt",
        ],
        "is hping3's traceroute, which prober does not have yet",
    ),
    (
        &["--tcp-mss"],
        "is a TCP option of hping3's, which prober does not have yet",
    ),
    (
        &[
            "-C",
            "--icmptype",
            "-K",
            "--icmpcode",
            "--force-icmp",
            "--icmp-gw",
            "--icmp-ts",
            "--icmp-addr",
            "--icmp-help",
        ],
        "sends ICMP other than echo requests, which prober does not have yet",
    ),
    (
        &["--rand-dest"],
        "probes random destinations, which prober does not: sweep a block instead (198.18.4.0/24)",
    ),
    (
        &["-x", "--morefrag", "-g", "--fragoff", "-m", "--mtu"],
        "sets fragment fields or sizes, which prober does not (its -f fragments as hping3's does by default)",
    ),
    (
        &["-G", "--rroute", "--lsrr", "--ssrr"],
        "sets IP options, which prober's probes never carry",
    ),
    (
        &["--tcpoff"],
        "sets a fake TCP data offset, which prober does not (its -O is the output format)",
    ),
    (
        &["-b", "--badcksum"],
        "sends bad checksums, which prober never does",
    ),
    (
        &["-W", "--winid", "-r", "--rel"],
        "reads IP ids hping3's way, which prober does not",
    ),
    (
        &["-9", "--listen"],
        "is hping3's listen mode, which prober does not have",
    ),
    (
        &["-D", "--debug"],
        "is hping3's debugging output: prober's is --bpf-trace and -V",
    ),
    (
        &["-z", "--bind", "-Z", "--unbind"],
        "binds Ctrl+Z, which prober does not",
    ),
    (
        &[
            "--beep", "-e", "--sign", "-j", "--dump", "-J", "--print", "-B", "--safe", "-u",
            "--end",
        ],
        "is an hping3 option prober does not have",
    ),
    (
        &["--apd-send"],
        "is hping3's packet description language, which prober does not have",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hping3s_missing_options_are_told_apart_from_unknown_ones() {
        assert_eq!(
            missing("-2"),
            Some("is hping3's UDP mode, which prober does not have yet")
        );
        assert_eq!(missing("--udp"), missing("-2"));
        assert_eq!(missing("--tr-stop=1"), missing("-T"));
        assert_eq!(missing("-Q"), None, "prober's own now");
        assert_eq!(missing("--no-such-option"), None);
        assert_eq!(missing("-S"), None, "prober's own");
    }
}
