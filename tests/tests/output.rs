//! Output and terminal behaviour against namespace hosts: a reader that closes the pipe early
//! (`prober … | head -2`), and the live status line on a real terminal (a tmux pane).

use prober_tests::output::{parse_footer, tcp_syn_header};
use prober_tests::proc::{run, Finished};
use prober_tests::sweep::{parse_csv, parse_list_line, parse_sweep_footer, sweep, TableRow};
use prober_tests::{
    hping3_bin, ip_link_show, prober_bin, require_root, run_checked, ScratchDir, TestHost,
    FILTERED_PORT, OPEN_PORT,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// A tmux server of the test's own: its socket in a scratch directory, the server killed and
/// the directory removed when dropped.
struct Tmux {
    dir: ScratchDir,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(self.dir.path.join("socket"));
        command
    }

    /// The pane's text from the start of its history, wrapped lines joined (`-J`): a line
    /// that wrapped shows as wider than the pane.
    fn capture(&self) -> String {
        run_checked(self.command().args(["capture-pane", "-p", "-J", "-S", "-"]))
            .expect("tmux capture-pane")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Runs `program` with `args` in a tmux pane `columns` wide (a real terminal, where stdout
/// and stderr are interleaved as a user sees them), showing `look` the pane's non-empty lines
/// every 100 ms; returns them once it has ended (with its exit status last: `exit=N`).
fn run_in_pane(
    columns: u16,
    program: &Path,
    args: &[&str],
    mut look: impl FnMut(&[&str]),
) -> Vec<String> {
    let tmux = Tmux {
        dir: ScratchDir::new("tmux").expect("scratch directory"),
    };
    let command = format!(
        "{} {}; echo exit=$?; sleep 120",
        program.display(),
        args.join(" ")
    );
    let size = columns.to_string();
    run_checked(
        tmux.command()
            .args(["new-session", "-d", "-x", &size, "-y", "50", &command]),
    )
    .expect("tmux new-session");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let screen = tmux.capture();
        let lines: Vec<&str> = screen.lines().filter(|l| !l.is_empty()).collect();
        look(&lines);
        if lines.last().is_some_and(|l| l.starts_with("exit=")) {
            return lines.iter().map(|l| l.to_string()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{command} did not end:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A status line: `H:MM:SS N% …`.
fn is_status_line(line: &str) -> bool {
    let mut words = line.split(' ');
    let clock = words.next().unwrap_or("");
    let percent = words.next().unwrap_or("");
    clock.len() >= 7
        && clock.bytes().all(|b| b.is_ascii_digit() || b == b':')
        && percent
            .strip_suffix('%')
            .is_some_and(|p| p.parse::<u8>().is_ok())
}

/// Open ports of [`scan_host`].
const OPEN: [u16; 4] = [22, 80, 443, 8080];

/// A host with listeners on [`OPEN`] and TCP to [`FILTERED_PORT`] (23) dropped.
fn scan_host() -> TestHost {
    let mut host = TestHost::new().expect("test host");
    for port in OPEN {
        host.listen_tcp(port).expect("listener");
    }
    host.drop_tcp_port(FILTERED_PORT).expect("nft drop rule");
    host
}

/// A scan table of every port (about 4 s at 15 000 a second: a status line every second, with
/// open ports found between them, in a random order) in a tmux pane `columns` wide. Issue 12:
/// at 80 columns the status line was 82 characters, wrapped, and its redraw (cursor up, clear
/// line) wiped result rows above it; wider, the last one stayed above the footer. Now, in every
/// look at the pane while the sweep runs and at its end: no line before the statistic is wider
/// than the pane, the status line is the last line if it is there at all, and at the end it is
/// gone and every open port's row is there, once.
fn status_line_beside_the_table(columns: u16) {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let (mut looks, mut status_seen) = (0, 0);
    let args = ["--scan", "1-65535", "--rate", "15000", &target];
    let lines = run_in_pane(columns, &prober_bin(), &args, |lines| {
        let screen = lines.join("\n");
        let statistic = lines
            .iter()
            .position(|l| *l == "--- prober sweep statistic ---")
            .unwrap_or(lines.len());
        for line in &lines[..statistic] {
            assert!(
                line.chars().count() <= usize::from(columns),
                "a line wider than the pane's {columns} columns: {line:?}\n{screen}"
            );
        }
        let status: Vec<usize> = (0..lines.len())
            .filter(|&i| is_status_line(lines[i]))
            .collect();
        assert!(
            status.is_empty() || status == [lines.len() - 1],
            "status lines other than the last line: {status:?}\n{screen}"
        );
        status_seen += status.len();
        looks += 1;
    });
    let screen = lines.join("\n");
    assert!(
        status_seen >= 2,
        "the status line was seen in {status_seen} of {looks} looks\n{screen}"
    );
    let rows: Vec<TableRow> = lines
        .iter()
        .filter_map(|line| TableRow::parse(line).ok())
        .collect();
    let ports: Vec<u16> = rows.iter().map(|row| row.port).collect();
    assert_eq!(
        ports.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(OPEN),
        "{screen}"
    );
    assert_eq!(ports.len(), OPEN.len(), "a row twice\n{screen}");
    assert!(
        lines.contains(&"Not responding ports: (23 telnet) ".to_string()),
        "{screen}"
    );
    assert_eq!(lines.last().unwrap(), "exit=0", "{screen}");
}

#[test]
fn the_status_line_in_an_80_column_terminal_leaves_every_row() {
    status_line_beside_the_table(80);
}

#[test]
fn the_status_line_in_a_wide_terminal_is_gone_before_the_statistic() {
    status_line_beside_the_table(200);
}

/// The scan table as the terminal showed it: from `Scanning …` (with -V hping3 first says which
/// interface it uses, prober what it sends through) to prober's statistic (or the end), the
/// exit status last.
fn table_on_screen(lines: &[String]) -> Vec<String> {
    let start = lines
        .iter()
        .position(|l| l.starts_with("Scanning "))
        .unwrap_or_else(|| panic!("no `Scanning` line:\n{}", lines.join("\n")));
    let end = lines
        .iter()
        .position(|l| l == "--- prober sweep statistic ---")
        .unwrap_or(lines.len() - 1);
    let mut table = lines[start..end].to_vec();
    table.push(lines[lines.len() - 1].clone());
    table
}

/// `--scan <spec> -S` (and `args`) by hping3 and by prober in 120-column panes against a
/// [`scan_host`]: the same table on the terminal, line for line, but for prober's statistic.
/// Rows come in the order of the replies; without -V (`sorted`), the order of prober's keyed
/// random probe order, so they are compared sorted then. Issue 12: prober printed `All replies
/// received. Done.` after `Not responding ports:` (hping3: before), left that list out when it
/// was empty (hping3 always prints it), and printed -V's rows unsorted (hping3's probe ports in
/// order).
fn table_side_by_side(spec: &str, args: &[&str], sorted: bool) {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let mut both: Vec<&str> = vec!["--scan", spec, "-S"];
    both.extend(args);
    both.push(&target);
    let hping3_args: Vec<&str> = ["-n"].iter().chain(&both).copied().collect();
    let hping3 = table_on_screen(&run_in_pane(120, &hping3_bin(), &hping3_args, |_| {}));
    let prober = table_on_screen(&run_in_pane(120, &prober_bin(), &both, |_| {}));
    let ordered = |mut lines: Vec<String>| {
        if sorted {
            let rows: Vec<usize> = (0..lines.len())
                .filter(|&i| TableRow::parse(&lines[i]).is_ok())
                .collect();
            if let (Some(&first), Some(&last)) = (rows.first(), rows.last()) {
                lines[first..=last].sort();
            }
        }
        lines
    };
    let (hping3, prober) = (ordered(hping3), ordered(prober));
    assert_eq!(
        prober,
        hping3,
        "=== prober ===\n{}\n=== hping3 ===\n{}",
        prober.join("\n"),
        hping3.join("\n")
    );
    assert!(
        hping3.len() > 8,
        "hping3's table has no rows:\n{}",
        hping3.join("\n")
    );
}

#[test]
fn the_scan_table_ends_as_hping3_ends_it() {
    table_side_by_side("1-100", &[], true);
}

#[test]
fn the_scan_table_lists_no_responding_ports_even_when_there_are_none() {
    table_side_by_side("79-81", &[], true);
}

#[test]
fn verbose_scan_table_rows_come_in_port_order() {
    table_side_by_side("20-25", &["-V"], false);
}

/// Issue 12: a full sweep's JSON or CSV is mostly closed ports, and there was no way to keep
/// to the open ones. `--open` (nmap's) writes open ports only, in every format: here 3 of 8
/// ports, without the closed ones and the filtered one (23).
#[test]
fn open_writes_open_ports_only_in_every_format() {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let want: BTreeSet<u16> = [22, 80, 443].into();
    for format in ["json", "csv", "list"] {
        let args = ["--scan", "20-25,80,443", "-O", format, "--open", &target];
        let swept = sweep(&args, Duration::from_secs(60));
        let ports: Vec<u16> = match format {
            "json" => swept.json().iter().map(|r| r.port).collect(),
            "csv" => parse_csv(&swept.run.stdout)
                .unwrap_or_else(|e| panic!("{e}\n{}", swept.run))
                .iter()
                .map(|r| r.port)
                .collect(),
            _ => masscan_list(&swept.run.stdout)
                .1
                .iter()
                .map(|line| parse_list_line(&format!("{line} 0")).unwrap().1)
                .collect(),
        };
        assert_eq!(
            (ports.len(), ports.iter().copied().collect::<BTreeSet<_>>()),
            (want.len(), want.clone()),
            "{format}\n{}",
            swept.run
        );
        let footer = swept.footer();
        assert_eq!(
            (footer.open, footer.closed, footer.filtered),
            (3, 4, 1),
            "the statistic counts them all\n{}",
            swept.run
        );
        assert_eq!(swept.run.code(), Some(0), "{}", swept.run);
    }
}

/// The lines of masscan's `-oL`: `#masscan`, `open tcp <port> <ip> <time>` lines (the time
/// left out here), `# end`.
fn masscan_list(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let (ends, middle) = match lines[..] {
        [first, ref middle @ .., last] => (vec![first.to_string(), last.to_string()], middle),
        _ => panic!("not even two lines: {text:?}"),
    };
    let open = middle
        .iter()
        .map(|line| {
            parse_list_line(line).unwrap_or_else(|e| panic!("{e}\n{text}"));
            line.rsplit_once(' ').expect("a time").0.to_string()
        })
        .collect();
    (ends, open)
}

/// Issue 12: `-O list` wrote masscan's `-oL` lines without its first (`#masscan`) and last
/// (`# end`) lines, which masscan's readers may look for. Side by side with masscan itself on
/// the same namespace host (its frames addressed by hand: `--router-mac`, as the benchmark's).
#[test]
fn list_output_is_framed_as_masscans() {
    require_root();
    assert!(
        !Path::new("/etc/masscan/masscan.conf").exists(),
        "masscan would add its settings (targets among them) from /etc/masscan/masscan.conf"
    );
    let host = scan_host();
    let target = host.addr.to_string();
    let ports = "20-25,80,443";
    let dir = ScratchDir::new("masscan").expect("scratch directory");
    let masscan_out = dir.path.join("masscan.list");
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", host.host_if))
        .expect("the host end's MAC");
    let peer_mac = run_checked(
        host.command_in_ns("cat")
            .arg(format!("/sys/class/net/{}/address", host.peer_if)),
    )
    .expect("the namespace end's MAC");
    let mut masscan = Command::new("timeout");
    masscan
        .args(["-k", "2", "60", "masscan", "-p", ports, "--rate", "1000"])
        .args(["--noreset", "--wait", "1", "-e", &host.host_if])
        .args(["--adapter-ip", &host.host_addr.to_string()])
        .args([
            "--adapter-mac",
            host_mac.trim(),
            "--router-mac",
            peer_mac.trim(),
        ])
        .arg("-oL")
        .arg(&masscan_out)
        .arg(&target);
    let masscan_run = run(masscan, Duration::from_secs(70));
    assert_eq!(masscan_run.code(), Some(0), "{masscan_run}");
    let masscan = masscan_list(&std::fs::read_to_string(&masscan_out).expect("masscan's list"));
    let prober = sweep(
        &["--scan", ports, "-O", "list", &target],
        Duration::from_secs(60),
    );
    assert_eq!(
        masscan.0,
        ["#masscan", "# end"],
        "masscan itself:\n{masscan_run}"
    );
    assert_eq!(
        masscan.1.len(),
        3,
        "masscan found 22, 80 and 443:\n{masscan_run}"
    );
    assert_eq!(masscan_list(&prober.run.stdout), masscan, "{}", prober.run);
}

/// `--bpf-trace` writes its lines to stderr from the reply loop, where the status line is
/// drawn: the status line would have them run on after it. It is left out then.
#[test]
fn no_status_line_beside_the_bpf_trace() {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let args = ["--scan", "1-3000", "--rate", "1000", "--bpf-trace", &target];
    let mut looks = 0;
    let lines = run_in_pane(200, &prober_bin(), &args, |lines| {
        looks += 1;
        for line in lines {
            assert!(!is_status_line(line), "a status line: {line:?}");
            assert!(
                line.starts_with("bpf: ") || !line.contains("bpf: "),
                "a trace line run on after another: {line:?}"
            );
        }
    });
    assert!(
        lines.iter().filter(|l| l.starts_with("bpf: ")).count() > 100 && looks > 10,
        "{}",
        lines.join("\n")
    );
}
