//! The "floor" for the /metrics latency test: serves one fixed, already gzipped body over
//! HTTP/1.1 keep-alive and does nothing else, so wrk against it measures what this machine
//! (loopback, one pinned core, wrk itself) costs for those bytes, with zero rendering.
//! Built by bench/bench.py with `rustc -O`: standard library only, no Cargo project.
//!
//! One thread and an edge-triggered epoll loop, like the exporter's own runtime on one
//! core. (A thread per connection is as fast on average but, with 50 runnable threads on
//! one core, its tail latency is the kernel scheduler's, not the server's.) epoll is
//! declared by hand, hence the few `unsafe` calls; this is a benchmark tool, not the
//! product.
//!
//! Usage: replay_floor BODY_FILE PORT_FILE MAX_SECONDS
//! Listens on 127.0.0.1 (an ephemeral port, written to PORT_FILE) and exits by itself after
//! MAX_SECONDS.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

const MAX_CONNECTIONS: usize = 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;
const LISTENER: u64 = u64::MAX;

#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
}

const EPOLLIN: u32 = 0x001;
const EPOLLOUT: u32 = 0x004;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLET: u32 = 1 << 31;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    have: usize,
    /// Complete requests not yet fully answered.
    pending: usize,
    /// Bytes of the current answer already written.
    off: usize,
}

enum Next {
    Wait,
    Close,
}

impl Conn {
    /// Writes what is owed, reads what has arrived, until the socket would block.
    fn service(&mut self, resp: &[u8]) -> Next {
        loop {
            while self.pending > 0 {
                match self.stream.write(&resp[self.off..]) {
                    Ok(n) => {
                        self.off += n;
                        if self.off == resp.len() {
                            self.off = 0;
                            self.pending -= 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close,
                }
            }
            if self.have == self.buf.len() {
                return Next::Close; // oversized request head
            }
            match self.stream.read(&mut self.buf[self.have..]) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.have += n;
                    let mut start = 0;
                    while let Some(end) = find_head_end(&self.buf[start..self.have]) {
                        start += end;
                        self.pending += 1;
                    }
                    self.buf.copy_within(start..self.have, 0);
                    self.have -= start;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: replay_floor BODY_FILE PORT_FILE MAX_SECONDS");
        std::process::exit(2);
    }
    let body =
        std::fs::read(&args[1]).unwrap_or_else(|e| fail(&format!("read {}: {e}", args[1])));
    let max_secs: u64 = args[3]
        .parse()
        .unwrap_or_else(|_| fail("MAX_SECONDS must be an integer"));

    let mut resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n\
         content-encoding: gzip\r\nvary: Accept-Encoding\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(&body);

    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| fail(&format!("nonblocking: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let tmp = format!("{}.tmp", args[2]);
    std::fs::write(&tmp, port.to_string())
        .and_then(|()| std::fs::rename(&tmp, &args[2]))
        .unwrap_or_else(|e| fail(&format!("write port file: {e}")));

    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(max_secs));
        std::process::exit(0);
    });

    // SAFETY: plain system calls on descriptors this process owns; `events` outlives them.
    let ep = unsafe { epoll_create1(0) };
    if ep < 0 {
        fail("epoll_create1 failed");
    }
    let ctl = |op: i32, fd: i32, events: u32, data: u64| {
        let mut ev = EpollEvent { events, data };
        // SAFETY: see above.
        unsafe { epoll_ctl(ep, op, fd, &mut ev) }
    };
    if ctl(EPOLL_CTL_ADD, listener.as_raw_fd(), EPOLLIN, LISTENER) < 0 {
        fail("epoll_ctl(listener) failed");
    }

    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut events = vec![EpollEvent { events: 0, data: 0 }; 256];
    loop {
        // SAFETY: `events` has room for `events.len()` entries.
        let n = unsafe { epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            continue; // EINTR
        }
        for ev in &events[..n as usize] {
            let id = ev.data;
            if id == LISTENER {
                while let Ok((stream, _)) = listener.accept() {
                    if conns.len() >= MAX_CONNECTIONS
                        || stream.set_nonblocking(true).is_err()
                        || stream.set_nodelay(true).is_err()
                    {
                        continue; // dropped: closes the connection
                    }
                    let fd = stream.as_raw_fd();
                    next_id += 1;
                    let mut conn = Conn {
                        stream,
                        buf: vec![0; MAX_HEADER_BYTES],
                        have: 0,
                        pending: 0,
                        off: 0,
                    };
                    if ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, next_id)
                        < 0
                    {
                        continue;
                    }
                    // Data may already be there: edge-triggered epoll would not report it.
                    match conn.service(&resp) {
                        Next::Wait => {
                            conns.insert(next_id, conn);
                        }
                        Next::Close => {
                            ctl(EPOLL_CTL_DEL, fd, 0, 0);
                        }
                    }
                }
                continue;
            }
            let close = match conns.get_mut(&id) {
                Some(conn) => matches!(conn.service(&resp), Next::Close),
                None => false,
            };
            if close {
                if let Some(conn) = conns.remove(&id) {
                    ctl(EPOLL_CTL_DEL, conn.stream.as_raw_fd(), 0, 0);
                }
            }
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn fail(msg: &str) -> ! {
    eprintln!("replay_floor: {msg}");
    std::process::exit(1);
}
