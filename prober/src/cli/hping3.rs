//! hping3's options that prober does not have: refused with what they are and why, rather
//! than as arguments clap has never heard of.

/// What hping3's `option` (as typed: `-2`, `--udp`, `--icmp-ts=…`) is, and why prober does
/// not take it; None for an option hping3 does not have either.
pub fn missing(option: &str) -> Option<&'static str> {
    let name = option.split_once('=').map_or(option, |(name, _)| name);
    MISSING
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, why)| *why)
}

/// hping3's options (its --help), grouped by what prober says of them.
const MISSING: [(&[&str], &str); 13] = [
    (
        &["--tcp-mss"],
        "is a TCP option of hping3's, which prober does not have yet",
    ),
    (
        &["--force-icmp", "--icmp-gw", "--icmp-help"],
        "forges ICMP errors and redirects (hping3's -C 3, 4, 5 and 11), which prober does not",
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
            missing("-9"),
            Some("is hping3's listen mode, which prober does not have")
        );
        assert_eq!(missing("--listen"), missing("-9"));
        assert_eq!(missing("-2"), None, "prober's own");
        assert_eq!(missing("--tr-stop=1"), None, "prober's own");
        assert_eq!(missing("-Q"), None, "prober's own");
        assert_eq!(missing("--no-such-option"), None);
        assert_eq!(missing("-S"), None, "prober's own");
        assert_eq!(missing("--icmp-ts"), None, "prober's own");
        assert_eq!(missing("-0"), None, "prober's own");
    }
}
