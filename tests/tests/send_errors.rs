//! (i) A send error that ends a run — here the TX ring's `Network is down` once the veth is set
//! down mid-run — still gives the statistic footer, then one line saying what went wrong, and
//! exit status 2: for one target and for a sweep. (Before, the error went past the footer.)

use prober_tests::output::parse_footer_then;
use prober_tests::proc::{Finished, Proc};
use prober_tests::sweep::parse_sweep_footer;
use prober_tests::{prober_command, require_root, run_checked, TestHost, OPEN_PORT};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

fn set_down(host: &TestHost) {
    run_checked(Command::new("ip").args(["link", "set", "dev", &host.host_if, "down"]))
        .expect("ip link set down");
}

/// The lines after the footer must be exactly one `prober: ` line about the interface being
/// down; the exit status 2; no panic.
fn check_error_after_footer(run: &Finished, after: &[&str]) {
    assert!(
        matches!(after, [line] if line.starts_with("prober: ") && line.to_lowercase().contains("down")),
        "after the footer, one line should say the network is down\n{run}"
    );
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert_eq!(run.code(), Some(2), "exit status of a failed run\n{run}");
}

#[test]
fn a_ping_whose_interface_goes_down_prints_the_footer_and_exits_2() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (a, port) = (host.addr.to_string(), OPEN_PORT.to_string());
    let mut p = Proc::spawn(prober_command(&[
        "-c", "0", "-i", "u10000", "-S", "-p", &port, &a,
    ]));
    p.expect_line(Duration::from_secs(10), "the header");
    p.expect_line(Duration::from_secs(5), "a reply line");
    set_down(&host);
    let run = p.wait(TIMEOUT);
    let (footer, after) = parse_footer_then(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(
        footer.transmitted >= 1 && footer.received >= 1,
        "the footer counts what happened before the error\n{run}"
    );
    check_error_after_footer(&run, &after);
}

#[test]
fn a_sweep_whose_interface_goes_down_prints_the_footer_and_exits_2() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    // 65 535 probes at 5 000 a second would take 13 s.
    let mut p = Proc::spawn(prober_command(&[
        "-p", "1-65535", "--rate", "5000", "-O", "json", &a,
    ]));
    p.expect_line(Duration::from_secs(10), "the first result");
    set_down(&host);
    let run = p.wait(TIMEOUT);
    let footer = parse_sweep_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(
        footer.interrupted && footer.sent > 0 && footer.sent < 65535,
        "the footer says the sweep was cut short after some probes\n{run}"
    );
    let lines = run.stderr_lines();
    let title = lines
        .iter()
        .rposition(|l| *l == "--- prober sweep statistic ---")
        .expect("footer title");
    check_error_after_footer(&run, &lines[title + 5..]);
}

/// A sweep of several hosts on a directly connected network (which prober resolves itself and
/// probes through the TX ring, bound to the veth) whose veth and namespace are deleted
/// mid-sweep, with a second route to the same network in place (to another test host, which
/// counts every SYN that reaches it): not one probe may take that route, and the run ends with
/// its statistic, one line naming the interface, and exit 2. (Before, the sweep went on along
/// the other route and exited 0.)
#[test]
fn a_sweep_whose_interface_is_deleted_sends_nothing_along_the_next_route() {
    require_root();
    let target = TestHost::new().expect("test host");
    let neighbours = target.add_neighbours().expect("neighbours");
    let catch = TestHost::new().expect("second test host");
    catch
        .count_arriving("leaked", "tcp flags syn")
        .expect("nft counter");
    // The same /29 through the other veth, behind the connected route while that exists.
    let network = format!("{}/29", Ipv4Addr::from(u32::from(neighbours[0]) & !7));
    run_checked(Command::new("ip").args([
        "route",
        "add",
        &network,
        "via",
        &catch.addr.to_string(),
        "dev",
        &catch.host_if,
        "metric",
        "1000",
    ]))
    .expect("the second route");
    let mut args = vec!["-p", "1-20000", "--rate", "10000", "-O", "json"];
    let addresses: Vec<String> = neighbours.iter().map(ToString::to_string).collect();
    args.extend(addresses.iter().map(String::as_str));
    args.push("-V");
    let mut p = Proc::spawn(prober_command(&args));
    p.expect_line(Duration::from_secs(10), "the first result");
    let interface = target.host_if.clone();
    drop(target);
    let run = p.wait(TIMEOUT);
    assert!(
        run.stderr.contains("AF_PACKET TX ring"),
        "not the TX ring\n{run}"
    );
    assert_eq!(
        catch.arriving_packets("leaked").expect("counter"),
        0,
        "probes took the other route\n{run}"
    );
    // The interface's drop counters are gone with it, so the footer has `unknown` counts.
    assert!(
        run.stderr.contains("--- prober sweep statistic ---")
            && run.stderr.contains(", interrupted\n"),
        "the statistic of a sweep cut short\n{run}"
    );
    let last = run.stderr_lines().last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("prober: ") && last.contains(&interface),
        "the last line names the interface\n{run}"
    );
    assert_eq!(run.code(), Some(2), "{run}");
}

/// The route to the target moved to another interface mid-run (a more specific route through
/// another test host): the run ends with its statistic, one line saying where the route now
/// goes, and exit 2, instead of carrying on as if the silence meant something.
#[test]
fn a_ping_whose_route_moves_to_another_interface_ends_with_exit_2() {
    require_root();
    let target = TestHost::standard().expect("test host");
    let other = TestHost::new().expect("second test host");
    let (a, port) = (target.addr.to_string(), OPEN_PORT.to_string());
    let mut p = Proc::spawn(prober_command(&[
        "-c", "0", "-i", "u10000", "-S", "-p", &port, &a,
    ]));
    p.expect_line(Duration::from_secs(10), "the header");
    p.expect_line(Duration::from_secs(5), "a reply line");
    run_checked(Command::new("ip").args([
        "route",
        "add",
        &format!("{a}/32"),
        "via",
        &other.addr.to_string(),
        "dev",
        &other.host_if,
    ]))
    .expect("the more specific route");
    let run = p.wait(TIMEOUT);
    let (footer, after) = parse_footer_then(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(footer.received >= 1, "{run}");
    assert!(
        matches!(after.as_slice(), [line] if line.contains(&format!("the route to {a} changed"))
            && line.contains(&other.host_if)),
        "one line saying where the route went\n{run}"
    );
    assert_eq!(run.code(), Some(2), "{run}");
}
