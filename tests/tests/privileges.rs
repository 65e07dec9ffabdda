//! Least privilege: (a) once set up, a running prober holds no capability in any set of any of
//! its threads and cannot gain one (NoNewPrivs), while it goes on probing and still reads its
//! counters at the end; (b) an ordinary user (uid 65534) who holds, as file capabilities,
//! exactly the ones prober's own refusal names runs the four basic cases: open port (SYN-ACK),
//! closed port (RST-ACK), filtered port (silence) and ICMP echo, with both eBPF programs loaded.

use std::fs;
use std::time::{Duration, Instant};

use prober_tests::output::{
    check_error, check_run, parse_footer, tcp_reply, tcp_syn_header, Expected,
};
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::sweep::parse_sweep_footer;
use prober_tests::unprivileged::ProberCopy;
use prober_tests::{prober_command, require_root, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its first output a run may still hold capabilities (it drops them before).
const DROP_WAIT: Duration = Duration::from_secs(3);
/// The capability sets of /proc/<pid>/task/<tid>/status; for root all of them end up empty.
const CAPABILITY_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];
const VETH_SYNACK_WIN: u32 = 64240;

/// One thread's capability sets and NoNewPrivs, as /proc shows them.
struct ThreadPrivileges {
    tid: String,
    fields: Vec<(String, String)>,
}

impl ThreadPrivileges {
    fn none_left(&self) -> bool {
        self.fields.iter().all(|(name, value)| match name.as_str() {
            "NoNewPrivs" => value == "1",
            _ => u64::from_str_radix(value, 16) == Ok(0),
        })
    }
}

/// Every thread of `pid` (threads that end while they are read are left out).
fn threads_of(pid: i32) -> Vec<ThreadPrivileges> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc/<pid>/task");
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let status = fs::read_to_string(task.path().join("status")).ok()?;
            let fields = status
                .lines()
                .filter_map(|line| line.split_once(':'))
                .filter(|(name, _)| CAPABILITY_SETS.contains(name) || *name == "NoNewPrivs")
                .map(|(name, value)| (name.to_string(), value.trim().to_string()))
                .collect();
            Some(ThreadPrivileges {
                tid: task.file_name().to_string_lossy().into_owned(),
                fields,
            })
        })
        .collect()
}

/// Waits until no thread of `prober` holds a capability and every one has NoNewPrivs; fails
/// with what they still hold after [`DROP_WAIT`].
fn expect_no_privileges_left(prober: &mut Proc) {
    let deadline = Instant::now() + DROP_WAIT;
    loop {
        let threads = threads_of(prober.pid());
        if !threads.is_empty() && threads.iter().all(ThreadPrivileges::none_left) {
            return;
        }
        if Instant::now() >= deadline {
            let held: Vec<String> = threads
                .iter()
                .map(|thread| format!("thread {}: {:?}", thread.tid, thread.fields))
                .collect();
            prober.fail(&format!(
                "{DROP_WAIT:?} into the run, its threads still hold:\n{}",
                held.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_running_ping_holds_no_capability() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (target, port) = (host.addr.to_string(), OPEN_PORT.to_string());
    let mut prober = Proc::spawn(prober_command(&[
        "-c", "0", "-i", "1", "-S", "-p", &port, &target,
    ]));
    let header = prober.expect_line(TIMEOUT, "the header");
    if header != tcp_syn_header(&target, &host.host_if, host.addr) {
        prober.fail(&format!("unexpected header {header:?}"));
    }
    // Once a reply is shown, the reply loop (and its Ctrl-C handling) is running.
    prober.expect_line(TIMEOUT, "the first reply");
    expect_no_privileges_left(&mut prober);
    prober.signal(libc::SIGINT);
    let run = prober.wait(TIMEOUT);
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let replies = run.stdout_lines().len() as u64 - 1;
    assert!(
        footer.received >= 1 && footer.received == replies && replies <= footer.transmitted,
        "the footer should count the reply lines, at least one\n{run}"
    );
    assert_eq!(run.code(), Some(0), "exit status\n{run}");
}

/// A sweep drops them too (after opening its output, which root may need them for), and its
/// counters, read through the map's fd, stay readable: the footer has no `unknown`.
#[test]
fn a_running_sweep_holds_no_capability() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.addr.to_string();
    let mut prober = Proc::spawn(prober_command(&[
        "-S", "-p", "1-65535", "--rate", "100", "-O", "json", &target,
    ]));
    prober.expect_line(TIMEOUT, "the first result");
    expect_no_privileges_left(&mut prober);
    prober.signal(libc::SIGINT);
    let run = prober.wait(TIMEOUT);
    let footer = parse_sweep_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(footer.interrupted, "footer\n{run}");
    assert!(
        footer.matched >= 1 && footer.matched == footer.open + footer.closed,
        "the kernel's count of matched replies should be each open and closed port\n{run}"
    );
    assert_eq!(run.code(), Some(0), "exit status\n{run}");
}

/// The capabilities prober's refusal tells an ordinary user to grant: `setcap <these>+ep`.
fn capabilities_prober_names(copy: &ProberCopy, target: &str) -> String {
    let refused = run(
        copy.command_as_nobody(&["-c", "1", "-S", "-p", "80", target]),
        TIMEOUT,
    );
    let line = check_error(&refused, &["setcap"], &[]);
    line.split_once("setcap ")
        .and_then(|(_, rest)| rest.split_once("+ep"))
        .map(|(capabilities, _)| capabilities.to_string())
        .unwrap_or_else(|| panic!("no `setcap <capabilities>+ep` in the refusal\n{refused}"))
}

/// `args` and then `host`'s address, run by uid 65534 holding (as file capabilities) exactly
/// the capabilities prober's refusal names.
fn as_capable_user(host: &TestHost, args: &[&str]) -> Finished {
    let copy = ProberCopy::new().expect("a copy of prober for nobody");
    let target = host.addr.to_string();
    copy.grant(&capabilities_prober_names(&copy, &target))
        .expect("setcap");
    let mut args = args.to_vec();
    args.push(&target);
    run(copy.command_as_nobody(&args), TIMEOUT)
}

/// Four probes 200 ms apart with `mode`, as [`as_capable_user`].
fn probe_as_capable_user(host: &TestHost, mode: &[&str]) -> Finished {
    as_capable_user(host, &[&["-c", "4", "-i", "u200000"], mode].concat())
}

/// The TC egress program loads too: were it refused, departures would be timed in userspace,
/// which only -V tells (this kernel has TCX).
#[test]
fn with_file_capabilities_departures_are_timed_in_the_kernel() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = as_capable_user(
        &host,
        &["-V", "-c", "1", "-S", "-p", &OPEN_PORT.to_string()],
    );
    assert!(
        run.stdout.contains("send times from TC egress (kernel)"),
        "-V should say that TC egress times departures\n{run}"
    );
    assert_eq!(run.code(), Some(0), "exit status\n{run}");
}

/// SYNs to `port` of a standard test host, answered with (length, flags, window) or not at
/// all, checked line by line; silence must be the probes dropped, not probes never sent.
fn tcp_case(port: u16, answer: Option<(u32, &str, u32)>) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = probe_as_capable_user(&host, &["-S", "-p", &port.to_string()]);
    let replies = answer.map_or(Vec::new(), |(len, flags, window)| {
        (0..4)
            .map(|seq| tcp_reply(len, host.addr, port, flags, seq, window))
            .collect()
    });
    check_run(
        &run,
        &Expected::four_syns(host.addr, &host.host_if, replies),
    );
    if answer.is_none() {
        let dropped = host.dropped_packets(port).expect("nft counter");
        assert_eq!(
            dropped, 4,
            "the namespace dropped {dropped} probes, want 4\n{run}"
        );
    }
}

#[test]
fn with_file_capabilities_an_open_port_answers_syn_ack() {
    tcp_case(OPEN_PORT, Some((44, "SA", VETH_SYNACK_WIN)));
}

#[test]
fn with_file_capabilities_a_closed_port_answers_rst_ack() {
    tcp_case(CLOSED_PORT, Some((40, "RA", 0)));
}

#[test]
fn with_file_capabilities_a_filtered_port_stays_silent() {
    tcp_case(FILTERED_PORT, None);
}

#[test]
fn with_file_capabilities_icmp_echo_replies() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = probe_as_capable_user(&host, &["-1"]);
    check_run(
        &run,
        &Expected::four_echoes_answered(host.addr, &host.host_if),
    );
}
