//! (b) prober and hping3 (/usr/sbin/hping3), run one after the other with the same arguments against
//! the same host, print the same thing: the same header, the same reply lines in every field but
//! `rtt` (and, for ICMP, the reply's IP `id`), the same footer counts and the same exit status.
//! hping3's own run is also checked against the expected lines first, so a failure says which of
//! the two is off.

use prober_tests::output::{
    check_run, compare_with_hping3, icmp_header, icmp_reply, tcp_reply, tcp_syn_header, Expected,
};
use prober_tests::proc::{run, Finished};
use prober_tests::{
    hping3_command, loopback_lock, prober_command, require_root, TestHost, CLOSED_PORT,
    FILTERED_PORT, OPEN_PORT,
};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const VETH_SYNACK_WIN: u32 = 64240;

/// Runs hping3 and then prober with `args` (the target last); returns (hping3, prober).
fn both(args: &[String]) -> (Finished, Finished) {
    let h = run(hping3_command(args), TIMEOUT);
    let p = run(prober_command(args), TIMEOUT);
    (h, p)
}

fn args(list: &[&str], target: &str) -> Vec<String> {
    let mut v: Vec<String> = ["-c", "4", "-i", "u200000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(list.iter().map(|s| s.to_string()));
    v.push(target.to_string());
    v
}

fn tcp_case(port: u16, extra: &[&str], replies: impl Fn(&TestHost) -> Vec<String>) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let p = port.to_string();
    let mut list = vec!["-S", "-p", &p];
    list.extend_from_slice(extra);
    let (h, pr) = both(&args(&list, &a));
    let exp = Expected {
        header: tcp_syn_header(&a, &host.host_if, host.addr),
        target: a.clone(),
        replies: replies(&host),
        mask_id: false,
        transmitted: 4,
    };
    check_run(&h, &exp); // the baseline is what we think it is
    compare_with_hping3(&h, &pr, false);
}

#[test]
fn open_port_same_as_hping3() {
    tcp_case(OPEN_PORT, &[], |h| {
        (0..4)
            .map(|s| tcp_reply(44, h.addr, OPEN_PORT, "SA", s, VETH_SYNACK_WIN))
            .collect()
    });
}

#[test]
fn closed_port_same_as_hping3() {
    tcp_case(CLOSED_PORT, &[], |h| {
        (0..4)
            .map(|s| tcp_reply(40, h.addr, CLOSED_PORT, "RA", s, 0))
            .collect()
    });
}

#[test]
fn filtered_port_same_as_hping3() {
    tcp_case(FILTERED_PORT, &[], |_| Vec::new());
}

#[test]
fn icmp_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let (h, p) = both(&args(&["-1"], &a));
    let exp = Expected {
        header: icmp_header(&a, &host.host_if, host.addr),
        target: a.clone(),
        replies: (0..4).map(|s| icmp_reply(host.addr, s)).collect(),
        mask_id: true,
        transmitted: 4,
    };
    check_run(&h, &exp);
    compare_with_hping3(&h, &p, true);
}

/// `-I <host_if>` and `-s <base port>` do not change what is printed.
#[test]
fn interface_and_base_port_options_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let p = OPEN_PORT.to_string();
    let (h, pr) = both(&args(
        &["-S", "-p", &p, "-I", &host.host_if, "-s", "41000"],
        &a,
    ));
    let exp = Expected {
        header: tcp_syn_header(&a, &host.host_if, host.addr),
        target: a.clone(),
        replies: (0..4)
            .map(|s| tcp_reply(44, host.addr, OPEN_PORT, "SA", s, VETH_SYNACK_WIN))
            .collect(),
        mask_id: false,
        transmitted: 4,
    };
    check_run(&h, &exp);
    compare_with_hping3(&h, &pr, false);
}

/// `-q`: header and footer only, for both.
#[test]
fn quiet_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let p = OPEN_PORT.to_string();
    let (h, pr) = both(&args(&["-q", "-S", "-p", &p], &a));
    assert_eq!(
        h.stdout_lines().len(),
        1,
        "hping3 -q should print only its header\n{h}"
    );
    compare_with_hping3(&h, &pr, false);
}

/// On loopback too (prober attaches to `lo`; hold the loopback lock).
#[test]
fn loopback_open_and_closed_same_as_hping3() {
    require_root();
    let _lo = loopback_lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let open = listener.local_addr().unwrap().port().to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.local_addr().unwrap().port().to_string()
    };
    for port in [&open, &closed] {
        let (h, p) = both(&args(&["-S", "-p", port], "127.0.0.1"));
        assert_eq!(
            h.stdout_lines().len(),
            5,
            "hping3 on loopback port {port} should get 4 replies\n{h}"
        );
        compare_with_hping3(&h, &p, false);
    }
}
