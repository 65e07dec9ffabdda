//! The host's own traffic is untouched by a sweep (issue 9, finding 5): its connections from
//! ports inside the sweep's source-port block go on working while the sweep runs (the XDP program
//! passes what carries no cookie), and a block the host's own TCP uses is refused before anything
//! is sent: one inside the ephemeral port range, or one holding a port a socket of the host has.
//! Without `-s`, a default block that holds such a port gives way to a clear one.
//!
//! Each test with `-s` uses its own source-port block, below the ephemeral range, so that their
//! sockets and sweeps, run in parallel, never meet.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use prober_tests::output::check_error;
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::sweep::{expected_outcome, Outcome, Status, Swept};
use prober_tests::{prober_command, require_root, TestHost, FILTERED_PORT, OPEN_PORT};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

const TIMEOUT: Duration = Duration::from_secs(60);
/// A sweep's block of source ports.
const BLOCK: u16 = 4096;
/// Long enough for a failed connect to have retried its SYN once (after 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What a sweep of `ports` of [`TestHost::standard`] finds.
fn standard_outcome(host: &TestHost, ports: RangeInclusive<u16>) -> Outcome {
    expected_outcome(&[host.addr.into()], ports, |_, port| match port {
        OPEN_PORT => Status::Open,
        FILTERED_PORT => Status::Filtered,
        _ => Status::Closed,
    })
}

/// The refusal of a sweep of `host` from source port `first`.
fn refused_sweep(host: &TestHost, first: u16) -> Finished {
    let (first, target) = (first.to_string(), host.addr.to_string());
    run(
        prober_command(&["-s", &first, "--scan", "1-10", &target]),
        TIMEOUT,
    )
}

/// A TCP connection from `from` to `to` that sends a byte, gets it back and sees the other end
/// close first (so that the TIME-WAIT, which holds a port for a minute, is not the host's).
fn exchange_a_byte(from: SocketAddrV4, to: SocketAddrV4, byte: u8) -> Result<(), String> {
    let step =
        |what: &str, error: std::io::Error| format!("from port {}: {what}: {error}", from.port());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| step("socket", e))?;
    socket.bind(&from.into()).map_err(|e| step("bind", e))?;
    socket
        .connect_timeout(&to.into(), CONNECT_TIMEOUT)
        .map_err(|e| step("connect", e))?;
    let mut stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| step("read timeout", e))?;
    stream.write_all(&[byte]).map_err(|e| step("write", e))?;
    let mut back = [0; 2];
    stream
        .read_exact(&mut back[..1])
        .map_err(|e| step("read", e))?;
    if back[0] != byte {
        return Err(format!(
            "from port {}: sent {byte}, got {}",
            from.port(),
            back[0]
        ));
    }
    match stream
        .read(&mut back)
        .map_err(|e| step("read to the end", e))?
    {
        0 => Ok(()),
        more => Err(format!(
            "from port {}: {more} bytes more than sent",
            from.port()
        )),
    }
}

/// Answers each connection's byte with the same byte, then closes it; ends when `listener` is
/// shut down.
fn echo_a_byte_each(listener: &TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let mut byte = [0];
        let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
        if stream.read_exact(&mut byte).is_ok() {
            let _ = stream.write_all(&byte);
        }
    }
}

/// 100 connections from the host to the namespace, from ports spread over the sweep's block,
/// while the sweep runs: every one connects and exchanges a byte. (Before the XDP program passed
/// segments without a cookie, it dropped their SYN-ACKs: none connected.)
#[test]
fn the_hosts_connections_from_the_sweeps_ports_work_during_a_sweep() {
    const FIRST: u16 = 24576;
    const CONNECTIONS: u16 = 100;
    /// Outside the swept ports, so the sweep's results do not depend on it.
    const ECHO_PORT: u16 = 7000;
    require_root();
    let host = TestHost::standard().expect("test host");
    let listener = host
        .in_ns(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, ECHO_PORT)))
        .expect("entering the namespace")
        .expect("echo listener");
    let (first, target) = (FIRST.to_string(), host.addr.to_string());
    // 6 000 probes at 1 000 a second: six seconds of sweep for connections that take a few.
    let args = [
        "-s", &first, "-p", "1-6000", "--rate", "1000", "-O", "json", &target,
    ];
    let started = SystemTime::now();
    let mut prober = Proc::spawn(prober_command(&args));
    // Results stream as replies arrive, so the first one says the XDP program is attached.
    prober.expect_line(Duration::from_secs(5), "the first result");

    let to = SocketAddrV4::new(host.addr, ECHO_PORT);
    let failures: Vec<String> = std::thread::scope(|scope| {
        scope.spawn(|| echo_a_byte_each(&listener));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let from = SocketAddrV4::new(host.host_addr, FIRST + i * (BLOCK / CONNECTIONS));
                scope.spawn(move || exchange_a_byte(from, to, i as u8))
            })
            .collect();
        let failures = clients
            .into_iter()
            .filter_map(|client| client.join().expect("client thread").err())
            .collect();
        // Wakes the echo thread's accept, so that the scope can end.
        SockRef::from(&listener)
            .shutdown(Shutdown::Both)
            .expect("shutting the echo listener down");
        failures
    });
    let still_sweeping = prober.running();
    let swept = Swept::new(prober.wait(TIMEOUT), started);
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} connections from the sweep's source ports failed, e.g. {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(3)],
        swept.run
    );
    assert!(
        still_sweeping,
        "the sweep ended before the connections did: they were not made during it\n{}",
        swept.run
    );
    let footer = swept.check_outcome(&swept.json(), &standard_outcome(&host, 1..=6000));
    assert_eq!(
        footer.unmatched,
        u64::from(CONNECTIONS),
        "each connection's SYN-ACK is passed to the host as unmatched\n{}",
        swept.run
    );
}

/// `-s` whose block overlaps net.ipv4.ip_local_port_range is refused: the host's own connections
/// take their ports from there.
#[test]
fn a_block_inside_the_ephemeral_range_is_refused() {
    require_root();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("reading ip_local_port_range");
    let (low, high) = match range.split_whitespace().collect::<Vec<_>>()[..] {
        [low, high] => (low.parse::<u16>().unwrap(), high.parse::<u16>().unwrap()),
        _ => panic!("ip_local_port_range reads {range:?}"),
    };
    let host = TestHost::standard().expect("test host");
    // A block that fits below 65536 and starts in the range (61440 would be taken as the default).
    let first = low.min(61439);
    let refused = refused_sweep(&host, first);
    check_error(
        &refused,
        &[
            &format!("-s {first}"),
            &format!("ephemeral port range {low}-{high}"),
            "ip_local_port_range",
        ],
        &[],
    );
}

/// `-s` whose block holds a port a TCP socket of the host uses (listening, or connected) is
/// refused, naming the port.
#[test]
fn a_block_with_a_port_the_host_uses_is_refused() {
    const LISTENING: u16 = 10000;
    const CONNECTED_FROM: u16 = 14000;
    require_root();
    let host = TestHost::standard().expect("test host");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, LISTENING)).expect("host listener");
    let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    client
        .bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, CONNECTED_FROM).into())
        .expect("binding the client");
    client
        .connect(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, LISTENING).into())
        .expect("connecting to the host listener");
    let (accepted, _) = listener.accept().expect("accepting");

    // 8192-12287 holds the listener's port, 12288-16383 the client's (and not the listener's).
    for (first, held) in [(8192, LISTENING), (12288, CONNECTED_FROM)] {
        let refused = refused_sweep(&host, first);
        check_error(
            &refused,
            &[
                &format!("-s {first}"),
                &format!("port {held}, held by a TCP socket of this host"),
            ],
            &[],
        );
    }
    // The listener's end closes first, so no TIME-WAIT holds the client's port afterwards.
    drop(accepted);
    let mut client = TcpStream::from(client);
    client
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .expect("read timeout");
    assert_eq!(client.read(&mut [0]).expect("reading the close"), 0);
}

/// Without `-s`, a default block (61440-65535) that holds a port of the host gives way to a clear
/// block, which `-V` names; the probes come from it.
#[test]
fn the_default_block_moves_off_a_port_the_host_uses() {
    const HELD: u16 = 65000;
    require_root();
    let host = TestHost::standard().expect("test host");
    host.add_counter("syns", "tcp flags == syn")
        .expect("nft counter");
    host.add_counter("from_default", "tcp flags == syn tcp sport 61440-65535")
        .expect("nft counter");
    let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, HELD)).expect("host listener");
    let target = host.addr.to_string();
    let started = SystemTime::now();
    let args = ["-V", "--scan", "1-100", "-O", "json", &target];
    let swept = Swept::new(run(prober_command(&args), TIMEOUT), started);

    let why = format!(
        ", since the default source ports 61440-65535 include port {HELD}, held by a TCP socket \
         of this host"
    );
    let moved = swept
        .run
        .stderr_lines()
        .into_iter()
        .find_map(|line| line.strip_prefix("sending from source ports "))
        .and_then(|rest| Some(rest.split_once(&why)?.0.to_string()))
        .unwrap_or_else(|| swept.fail("-V does not say which block the sweep took, and why"));
    let block: Vec<u16> = moved.split('-').map(|port| port.parse().unwrap()).collect();
    assert_eq!(
        block[1] - block[0],
        BLOCK - 1,
        "{moved}: not a block\n{}",
        swept.run
    );
    assert!(!(block[0]..=block[1]).contains(&HELD), "{}", swept.run);
    swept.check_outcome(&swept.json(), &standard_outcome(&host, 1..=100));
    // 100 ports less the filtered one, whose drop rule comes before the counters.
    assert_eq!(host.counter_packets("syns").unwrap(), 99, "{}", swept.run);
    assert_eq!(
        host.counter_packets("from_default").unwrap(),
        0,
        "probes from the default block\n{}",
        swept.run
    );
}
