//! Parsing and checking hping3-style output (prober's and hping3's own).
//!
//! Reply lines are compared as whole strings after masking the fields that legitimately vary
//! (`rtt`, and for ICMP the reply's IP `id`) with `*`, so every other field, the field order and the
//! spacing are checked exactly.

use crate::proc::Finished;
use std::net::IpAddr;

/// Bytes of the IP header a probe or reply without options or extension headers carries: 20
/// (IPv4) or 40 (IPv6).
pub fn ip_header_len(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    }
}

/// `HPING <target> (<ifname> <ip>): S set, 40 headers + 0 data bytes` (60 over IPv6).
pub fn tcp_syn_header(target: &str, ifname: &str, ip: impl Into<IpAddr>) -> String {
    let ip = ip.into();
    let headers = ip_header_len(ip) + 20;
    format!("HPING {target} ({ifname} {ip}): S set, {headers} headers + 0 data bytes")
}

/// `HPING <target> (<ifname> <ip>): icmp mode set, 28 headers + 0 data bytes` (48 over IPv6).
pub fn icmp_header(target: &str, ifname: &str, ip: impl Into<IpAddr>) -> String {
    let ip = ip.into();
    let headers = ip_header_len(ip) + 8;
    format!("HPING {target} ({ifname} {ip}): icmp mode set, {headers} headers + 0 data bytes")
}

/// A TCP reply line as [`normalize`] leaves it (rtt masked), from a Linux peer: ttl 64, and over
/// IPv4 DF and id 0 (IPv6 has neither).
pub fn tcp_reply(
    len: u32,
    ip: impl Into<IpAddr>,
    sport: u16,
    flags: &str,
    seq: u32,
    win: u32,
) -> String {
    tcp_reply_at_ttl(len, ip, 64, sport, flags, seq, win)
}

/// [`tcp_reply`] with another ttl (hop limit).
pub fn tcp_reply_at_ttl(
    len: u32,
    ip: impl Into<IpAddr>,
    ttl: u8,
    sport: u16,
    flags: &str,
    seq: u32,
    win: u32,
) -> String {
    let ip_fields = ip_fields(len, ip.into(), ttl, "DF id=0");
    format!("{ip_fields} sport={sport} flags={flags} seq={seq} win={win} rtt=* ms")
}

/// An ICMP echo-reply line as [`normalize`] leaves it (with `mask_id` over IPv4: rtt and id
/// masked) from a Linux peer, which sends echo replies without DF, ttl 64, 28 bytes for a
/// 0-byte echo request (48 over IPv6).
pub fn icmp_reply(ip: impl Into<IpAddr>, seq: u32) -> String {
    let ip = ip.into();
    icmp_reply_of(ip_header_len(ip) + 8, ip, 64, seq)
}

/// An ICMP echo-reply line of `len` bytes at `ttl`, as [`icmp_reply`].
pub fn icmp_reply_of(len: u32, ip: impl Into<IpAddr>, ttl: u8, seq: u32) -> String {
    let ip_fields = ip_fields(len, ip.into(), ttl, "id=*");
    format!("{ip_fields} icmp_seq={seq} rtt=* ms")
}

/// hping3's `len=<len> ip=<ip> ttl=<ttl>`, followed over IPv4 by `ipv4_fields` (`DF` if set, and
/// `id=`); IPv6 has neither.
fn ip_fields(len: u32, ip: IpAddr, ttl: u8, ipv4_fields: &str) -> String {
    match ip {
        IpAddr::V4(_) => format!("len={len} ip={ip} ttl={ttl} {ipv4_fields}"),
        IpAddr::V6(_) => format!("len={len} ip={ip} ttl={ttl}"),
    }
}

/// Checks and masks a reply line: the line must end in ` rtt=<float with exactly one decimal> ms`;
/// that value becomes `*`. With `mask_id`, the `id=<u16>` field becomes `id=*`. Returns the masked
/// line and the rtt in ms.
pub fn normalize(line: &str, mask_id: bool) -> Result<(String, f64), String> {
    let mut toks: Vec<String> = line.split(' ').map(str::to_string).collect();
    if toks.len() < 2 || toks[toks.len() - 1] != "ms" {
        return Err(format!("reply line does not end in ` ms`: {line:?}"));
    }
    let rtt_idx = toks.len() - 2;
    let Some(val) = toks[rtt_idx].strip_prefix("rtt=") else {
        return Err(format!("no `rtt=` field before ` ms`: {line:?}"));
    };
    let rtt = parse_one_decimal(val).ok_or_else(|| {
        format!(
            "rtt {val:?} is not a non-negative number printed with one decimal (%.1f): {line:?}"
        )
    })?;
    toks[rtt_idx] = "rtt=*".to_string();
    if mask_id {
        let idx = toks
            .iter()
            .position(|t| t.starts_with("id="))
            .ok_or_else(|| format!("no `id=` field: {line:?}"))?;
        let v = &toks[idx][3..];
        if v.parse::<u16>().is_err() {
            return Err(format!("id {v:?} is not a 16-bit number: {line:?}"));
        }
        toks[idx] = "id=*".to_string();
    }
    Ok((toks.join(" "), rtt))
}

/// Parses `%.1f` output: digits, a dot, exactly one digit.
pub fn parse_one_decimal(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.')?;
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() != 1 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The statistics footer.
#[derive(Debug, Clone, PartialEq)]
pub struct Footer {
    pub target: String,
    pub transmitted: u64,
    pub received: u64,
    pub loss_percent: u64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

/// Parses stderr that must consist of exactly hping3's footer and nothing else:
/// ```text
///
/// --- <target> hping statistic ---
/// N packets transmitted, M packets received, L% packet loss
/// round-trip min/avg/max = a/b/c ms
/// ```
pub fn parse_footer(stderr: &str) -> Result<Footer, String> {
    let lines: Vec<&str> = stderr.split('\n').collect();
    // "\n--- ...\n...\n...\n" splits into ["", "--- ...", "...", "...", ""].
    if lines.len() != 5 || !lines[0].is_empty() || !lines[4].is_empty() {
        return Err(format!(
            "stderr is not exactly the 4-line statistics footer (blank line, `--- T hping statistic ---`, \
             counts, round-trip), each ending in a newline; got {stderr:?}"
        ));
    }
    let target = lines[1]
        .strip_prefix("--- ")
        .and_then(|s| s.strip_suffix(" hping statistic ---"))
        .ok_or_else(|| format!("bad footer title line {:?}", lines[1]))?
        .to_string();

    let counts = lines[2];
    let bad_counts = || format!("bad footer counts line {counts:?}");
    let (t, rest) = counts
        .split_once(" packets transmitted, ")
        .ok_or_else(bad_counts)?;
    let (r, rest) = rest
        .split_once(" packets received, ")
        .ok_or_else(bad_counts)?;
    let l = rest.strip_suffix("% packet loss").ok_or_else(bad_counts)?;
    let num = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_counts());
        }
        s.parse().map_err(|_| bad_counts())
    };
    let (transmitted, received, loss_percent) = (num(t)?, num(r)?, num(l)?);

    let rt = lines[3];
    let bad_rt = || {
        format!("bad footer round-trip line {rt:?} (want `round-trip min/avg/max = a/b/c ms`, %.1f each)")
    };
    let vals = rt
        .strip_prefix("round-trip min/avg/max = ")
        .and_then(|s| s.strip_suffix(" ms"))
        .ok_or_else(bad_rt)?;
    let v: Vec<f64> = vals
        .split('/')
        .map(|x| parse_one_decimal(x).ok_or_else(bad_rt))
        .collect::<Result<_, _>>()?;
    if v.len() != 3 {
        return Err(bad_rt());
    }
    Ok(Footer {
        target,
        transmitted,
        received,
        loss_percent,
        min: v[0],
        avg: v[1],
        max: v[2],
    })
}

/// Parses stderr that starts with hping3's footer (as [`parse_footer`] wants it) and returns the
/// lines after it, e.g. prober's `prober: …` lines on an error.
pub fn parse_footer_then(stderr: &str) -> Result<(Footer, Vec<&str>), String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let (footer, rest) = lines.split_at(lines.len().min(4));
    let footer = parse_footer(&format!("{}\n", footer.join("\n")))
        .map_err(|e| format!("{e}\n(the whole of stderr: {stderr:?})"))?;
    Ok((footer, rest.to_vec()))
}

/// hping3's loss percentage (statistics.c): integer arithmetic on unsigned ints.
pub fn hping_loss_percent(sent: u64, recv: u64) -> u64 {
    if recv > 0 {
        100u64.saturating_sub(recv * 100 / sent.max(1))
    } else if sent == 0 {
        0
    } else {
        100
    }
}

/// What a complete run must have printed.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The target exactly as typed on the command line.
    pub target: String,
    /// Exact header line.
    pub header: String,
    /// Exact reply lines after [`normalize`] (see [`tcp_reply`], [`icmp_reply`]).
    pub replies: Vec<String>,
    /// Mask the `id` field (ICMP: it is the reply's IP id, which varies).
    pub mask_id: bool,
    /// Probes that must be reported as transmitted.
    pub transmitted: u64,
}

impl Expected {
    /// `-c 4 -S` to `ip`, typed as its address, out of `ifname`, answered by `replies`.
    pub fn four_syns(ip: impl Into<IpAddr>, ifname: &str, replies: Vec<String>) -> Expected {
        let ip = ip.into();
        let target = ip.to_string();
        Expected {
            header: tcp_syn_header(&target, ifname, ip),
            target,
            replies,
            mask_id: false,
            transmitted: 4,
        }
    }

    /// `-c 4 -1` to `ip`, typed as its address, out of `ifname`: four echo replies.
    pub fn four_echoes_answered(ip: impl Into<IpAddr>, ifname: &str) -> Expected {
        let ip = ip.into();
        let target = ip.to_string();
        Expected {
            header: icmp_header(&target, ifname, ip),
            target,
            replies: (0..4).map(|seq| icmp_reply(ip, seq)).collect(),
            // The reply's IP id varies; IPv6 has none.
            mask_id: ip.is_ipv4(),
            transmitted: 4,
        }
    }
}

/// Checks a finished run against `exp`, panicking with the complete output on any difference:
/// stdout is exactly the header and the expected reply lines (no `DUP!`, nothing else); every rtt
/// is `%.1f`, >= 0 and no larger than the wall-clock duration of the run; stderr is exactly the
/// footer, with the counts and hping3's loss percentage; footer min/max equal the smallest/largest
/// printed rtt, min <= avg <= max and avg is within 0.1 ms of the mean of the printed values (each
/// printed value is rounded to 0.1); with no replies the round-trip line is 0.0/0.0/0.0; the exit
/// status is 0 with replies and 1 without. Returns the rtts.
pub fn check_run(run: &Finished, exp: &Expected) -> Vec<f64> {
    let fail = |msg: String| -> ! { panic!("{msg}\n\nexpected:\n{exp:#?}\n\nactual run:\n{run}") };
    let out = run.stdout_lines();
    if out.first() != Some(&exp.header.as_str()) {
        fail(format!(
            "first stdout line is not the header {:?}",
            exp.header
        ));
    }
    let replies = &out[1..];
    if replies.len() != exp.replies.len() {
        fail(format!(
            "expected {} reply lines after the header, got {}",
            exp.replies.len(),
            replies.len()
        ));
    }
    let mut rtts = Vec::new();
    for (i, (got, want)) in replies.iter().zip(&exp.replies).enumerate() {
        let (masked, rtt) =
            normalize(got, exp.mask_id).unwrap_or_else(|e| fail(format!("reply {i}: {e}")));
        if &masked != want {
            fail(format!(
                "reply line {i} differs:\n  got (masked): {masked}\n  want:         {want}"
            ));
        }
        let wall_ms = run.elapsed.as_secs_f64() * 1000.0;
        if rtt > wall_ms {
            fail(format!(
                "reply {i}: rtt {rtt} ms is longer than the whole run ({wall_ms:.1} ms)"
            ));
        }
        rtts.push(rtt);
    }
    check_footer(run, &exp.target, exp.transmitted, &rtts).unwrap_or_else(|e| fail(e));
    let want_code = if rtts.is_empty() { 1 } else { 0 };
    if run.code() != Some(want_code) {
        fail(format!(
            "exit status should be {want_code} ({} replies)",
            rtts.len()
        ));
    }
    rtts
}

/// Footer checks of [`check_run`]: stderr is exactly the footer for `target`, `transmitted` probes
/// and the given printed rtts.
pub fn check_footer(
    run: &Finished,
    target: &str,
    transmitted: u64,
    rtts: &[f64],
) -> Result<Footer, String> {
    let f = parse_footer(&run.stderr)?;
    let received = rtts.len() as u64;
    if f.target != target {
        return Err(format!(
            "footer names {:?}, want the target as typed, {target:?}",
            f.target
        ));
    }
    if (f.transmitted, f.received) != (transmitted, received) {
        return Err(format!(
            "footer says {} transmitted / {} received, want {transmitted} / {received}",
            f.transmitted, f.received
        ));
    }
    let loss = hping_loss_percent(transmitted, received);
    if f.loss_percent != loss {
        return Err(format!(
            "footer says {}% packet loss, want {loss}%",
            f.loss_percent
        ));
    }
    if rtts.is_empty() {
        if (f.min, f.avg, f.max) != (0.0, 0.0, 0.0) {
            return Err("with no replies the round-trip line must be 0.0/0.0/0.0".into());
        }
        return Ok(f);
    }
    let min = rtts.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    if (f.min - min).abs() > 1e-9 || (f.max - max).abs() > 1e-9 {
        return Err(format!(
            "footer min/max {}/{} are not the smallest/largest printed rtt {min}/{max}",
            f.min, f.max
        ));
    }
    if f.avg < f.min - 1e-9 || f.avg > f.max + 1e-9 || (f.avg - mean).abs() > 0.1 + 1e-9 {
        return Err(format!(
            "footer avg {} is not between min and max and within 0.1 of the printed rtts' mean {mean:.3}",
            f.avg
        ));
    }
    Ok(f)
}

/// prober's run must equal hping3's: the same header, the same reply lines in the same order after
/// masking rtt (and `id` with `mask_id`), the same footer counts and the same exit status.
pub fn compare_with_hping3(hping3: &Finished, prober: &Finished, mask_id: bool) {
    let fail = |msg: String| -> ! {
        panic!("prober differs from hping3: {msg}\n\n=== hping3 ===\n{hping3}\n\n=== prober ===\n{prober}")
    };
    let h = hping3.stdout_lines();
    let p = prober.stdout_lines();
    if h.first() != p.first() {
        fail(format!(
            "headers differ:\n  hping3: {:?}\n  prober: {:?}",
            h.first(),
            p.first()
        ));
    }
    if h.len() != p.len() {
        fail(format!(
            "hping3 printed {} stdout lines, prober {}",
            h.len(),
            p.len()
        ));
    }
    for (i, (hl, pl)) in h.iter().zip(&p).enumerate().skip(1) {
        let hn = normalize(hl, mask_id).unwrap_or_else(|e| fail(format!("hping3 line {i}: {e}")));
        let pn = normalize(pl, mask_id).unwrap_or_else(|e| fail(format!("prober line {i}: {e}")));
        if hn.0 != pn.0 {
            fail(format!(
                "line {i} differs:\n  hping3: {}\n  prober: {}",
                hn.0, pn.0
            ));
        }
    }
    let hf = parse_footer(&hping3.stderr).unwrap_or_else(|e| fail(format!("hping3 footer: {e}")));
    let pf = parse_footer(&prober.stderr).unwrap_or_else(|e| fail(format!("prober footer: {e}")));
    if (&hf.target, hf.transmitted, hf.received, hf.loss_percent)
        != (&pf.target, pf.transmitted, pf.received, pf.loss_percent)
    {
        fail(format!(
            "footers differ (apart from rtts):\n  hping3: {hf:?}\n  prober: {pf:?}"
        ));
    }
    if hping3.code() != prober.code() {
        fail(format!(
            "exit status: hping3 {:?}, prober {:?}",
            hping3.code(),
            prober.code()
        ));
    }
}

/// A bad-input run: exit status 2, stderr exactly one line starting with `prober: `, no panic text;
/// the line contains (case-insensitively) every word of `all` and at least one of `any` (if given).
/// Returns the line.
pub fn check_error(run: &Finished, all: &[&str], any: &[&str]) -> String {
    let fail = |msg: String| -> ! { panic!("{msg}\n\nactual run:\n{run}") };
    if run.code() != Some(2) {
        fail(format!(
            "exit status should be 2 (error), got {}",
            run.status
        ));
    }
    for bad in ["panicked", "RUST_BACKTRACE"] {
        if run.stderr.contains(bad) || run.stdout.contains(bad) {
            fail(format!("output contains panic text {bad:?}"));
        }
    }
    let lines = run.stderr_lines();
    if lines.len() != 1 || !run.stderr.ends_with('\n') {
        fail(format!(
            "stderr should be exactly one newline-terminated line, got {} line(s)",
            lines.len()
        ));
    }
    let line = lines[0];
    if !line.starts_with("prober: ") {
        fail("the error line should start with `prober: `".to_string());
    }
    let lower = line.to_lowercase();
    for w in all {
        if !lower.contains(&w.to_lowercase()) {
            fail(format!("the error line should mention {w:?}"));
        }
    }
    if !any.is_empty() && !any.iter().any(|w| lower.contains(&w.to_lowercase())) {
        fail(format!("the error line should mention one of {any:?}"));
    }
    if run
        .stdout
        .lines()
        .any(|l| l.starts_with("len=") || l.starts_with("DUP! "))
    {
        fail("an erroring run printed reply lines".to_string());
    }
    line.to_string()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn normalize_masks_rtt_and_id() {
        let (m, rtt) = normalize(
            "len=44 ip=198.18.4.2 ttl=64 DF id=0 sport=80 flags=SA seq=0 win=64240 rtt=0.4 ms",
            false,
        )
        .unwrap();
        let a: IpAddr = "198.18.4.2".parse().unwrap();
        assert_eq!(m, tcp_reply(44, a, 80, "SA", 0, 64240));
        assert_eq!(rtt, 0.4);
        let (m, _) = normalize(
            "len=28 ip=198.18.4.2 ttl=64 id=403 icmp_seq=3 rtt=12.0 ms",
            true,
        )
        .unwrap();
        assert_eq!(m, icmp_reply(a, 3));
        assert!(normalize("len=28 ip=x ttl=64 id=1 icmp_seq=0 rtt=0.45 ms", true).is_err());
        assert!(normalize("len=28 ip=x ttl=64 id=1 icmp_seq=0 rtt=-1.0 ms", true).is_err());
        assert!(normalize("len=28 ip=x ttl=64 id=1 icmp_seq=0 rtt=1 ms", true).is_err());
        assert!(normalize("len=28 ip=x ttl=64 id=70000 icmp_seq=0 rtt=1.0 ms", true).is_err());
        let (m, _) = normalize(
            "DUP! len=28 ip=198.18.4.2 ttl=64 id=1 icmp_seq=0 rtt=1.0 ms",
            true,
        )
        .unwrap();
        assert_ne!(m, icmp_reply(a, 0));
        let b: IpAddr = "2001:db8:100:400::2".parse().unwrap();
        let (m, _) = normalize(
            "len=64 ip=2001:db8:100:400::2 ttl=64 sport=80 flags=SA seq=1 win=64800 rtt=0.1 ms",
            false,
        )
        .unwrap();
        assert_eq!(m, tcp_reply(64, b, 80, "SA", 1, 64800));
        assert_eq!(
            icmp_reply(b, 2),
            "len=48 ip=2001:db8:100:400::2 ttl=64 icmp_seq=2 rtt=* ms"
        );
        assert_eq!(
            tcp_syn_header("h", "lo", b),
            "HPING h (lo 2001:db8:100:400::2): S set, 60 headers + 0 data bytes"
        );
        assert_eq!(
            icmp_header("h", "lo", b),
            "HPING h (lo 2001:db8:100:400::2): icmp mode set, 48 headers + 0 data bytes"
        );
    }

    #[test]
    fn footer_parses() {
        let f = parse_footer(
            "\n--- 1.2.3.4 hping statistic ---\n4 packets transmitted, 3 packets received, 25% packet loss\n\
             round-trip min/avg/max = 0.1/0.6/1.0 ms\n",
        )
        .unwrap();
        assert_eq!((f.transmitted, f.received, f.loss_percent), (4, 3, 25));
        assert_eq!((f.min, f.avg, f.max), (0.1, 0.6, 1.0));
        assert_eq!(f.target, "1.2.3.4");
        assert!(parse_footer("x\n--- a hping statistic ---\n1 packets transmitted, 1 packets received, 0% packet loss\nround-trip min/avg/max = 0.1/0.1/0.1 ms\n").is_err());
        assert_eq!(hping_loss_percent(4, 0), 100);
        assert_eq!(hping_loss_percent(3, 2), 34);
        assert_eq!(hping_loss_percent(0, 0), 0);
    }
}
