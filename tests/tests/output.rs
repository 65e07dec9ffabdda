//! Output and terminal behaviour against namespace hosts: a reader that closes the pipe early
//! (`prober … | head -2`).

use prober_tests::output::{parse_footer, tcp_syn_header};
use prober_tests::proc::{run, Finished};
use prober_tests::sweep::parse_sweep_footer;
use prober_tests::{ip_link_show, prober_bin, require_root, TestHost, OPEN_PORT};
use std::process::Command;
use std::time::Duration;

/// `prober <args> | head -2` in bash, whose exit status is prober's (`timeout` bounds it: 124
/// if prober had not ended after 30 s); stdout is what `head` printed, stderr prober's
/// (`redirect` may send it into the pipe as well).
fn into_head(args: &[&str], redirect: &str) -> Finished {
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(format!(
            r#"timeout 30 "$0" "$@" {redirect} | head -2; exit "${{PIPESTATUS[0]}}""#
        ))
        .arg(prober_bin())
        .args(args);
    run(bash, Duration::from_secs(40))
}

fn assert_no_xdp_left(host: &TestHost, run: &Finished) {
    let link = ip_link_show(&host.host_if, false).expect("ip link show");
    assert!(!link.contains("xdp"), "XDP left attached:\n{link}\n{run}");
}

/// Issue 12: once `head` had its two lines, prober's next write failed and it ended with
/// `prober: writing reply lines: Broken pipe (os error 32)` and exit status 2. Now the run ends
/// there quietly: hping3's footer (what was sent until then) and nothing else on stderr, exit
/// status 0 as ripgrep's, well before the count of probes would have taken.
#[test]
fn a_ping_into_a_closed_pipe_ends_quietly() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    // 1000 probes at 100 a second: 10 s if the closed pipe did not end the run.
    let run = into_head(&["-c", "1000", "-i", "u10000", "-S", "-p", &port, &a], "");
    let lines = run.stdout_lines();
    assert_eq!(lines.len(), 2, "{run}");
    assert_eq!(
        lines[0],
        tcp_syn_header(&a, &host.host_if, host.addr),
        "{run}"
    );
    assert!(lines[1].starts_with("len=44 "), "{run}");
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(
        footer.transmitted < 500,
        "the run went on after its reader had gone\n{run}"
    );
    assert_eq!(run.code(), Some(0), "{run}");
    assert_no_xdp_left(&host, &run);
}

/// A sweep of JSON lines into `head -2` (`redirect`: see [`into_head`]): two JSON lines come
/// out, and prober ends with 0, its XDP program gone. Returns prober's stderr.
fn sweep_into_head(redirect: &str) -> String {
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let run = into_head(
        &["--scan", "1-2000", "--rate", "1000", "-O", "json", &a],
        redirect,
    );
    let lines = run.stdout_lines();
    assert!(
        lines.len() == 2 && lines.iter().all(|line| line.starts_with('{')),
        "{run}"
    );
    assert_eq!(run.code(), Some(0), "{run}");
    assert_no_xdp_left(&host, &run);
    run.stderr
}

/// The same for a sweep: it stops sending when the reader has gone (2 000 probes at 1 000 a
/// second would take 2 s), prints its footer, marked interrupted, and nothing else.
#[test]
fn a_sweep_into_a_closed_pipe_ends_quietly() {
    require_root();
    let stderr = sweep_into_head("");
    let footer = parse_sweep_footer(&stderr).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    assert!(
        footer.interrupted && footer.sent < 1500,
        "{footer:?}\n{stderr}"
    );
    assert!(!stderr.contains("prober:"), "an error line:\n{stderr}");
}

/// With stderr in the same pipe (`2>&1 | head -2`) the footer cannot be written either: prober
/// must not fail on it (Rust's `eprintln!` panicked: exit status 101), but end with 0.
#[test]
fn a_sweep_with_stderr_in_the_closed_pipe_ends_quietly() {
    require_root();
    assert_eq!(sweep_into_head("2>&1"), "");
}
