//! A real UDP server in a test host's namespace, for the probes that find a port open.
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::{Family, TestHost};

/// What the server answers every datagram with.
pub const ANSWER: &[u8] = b"hello";

/// A real UDP server in the test host's namespace: a kernel socket bound there, answering
/// every datagram with [`ANSWER`] until dropped.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(host: &TestHost, family: Family, port: u16) -> UdpServer {
        let address = SocketAddr::new(host.target(family), port);
        let socket = host
            .in_ns(move || UdpSocket::bind(address))
            .expect("entering the namespace")
            .expect("binding the UDP server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    socket.send_to(ANSWER, from).expect("answering");
                }
            }
        });
        UdpServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
