//! A TCP proxy in front of the broker for the review tests: it forwards
//! both ways until told to stall one direction (stop reading from it, so
//! nothing more passes), at once or when the client sends a given AMQP
//! method (class, method) — e.g. the first `basic.publish` (60, 40).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An AMQP method, then whether to stall client → broker and broker → client.
pub type Trigger = ((u16, u16), bool, bool);

#[derive(Default)]
pub struct Flags {
    /// Client → broker stalled.
    pub c2s: AtomicBool,
    /// Broker → client stalled.
    pub s2c: AtomicBool,
    /// When the client sends this method: stall (c2s, s2c) as given.
    pub trigger: Mutex<Option<Trigger>>,
    /// The trigger fired.
    pub fired: AtomicBool,
    pub socks: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    pub port: u16,
    pub flags: Arc<Flags>,
}

impl Proxy {
    pub fn new(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let flags = Arc::new(Flags::default());
        let f = flags.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let Ok(s) = TcpStream::connect(&upstream) else {
                    continue;
                };
                f.socks.lock().unwrap().push(c.try_clone().unwrap());
                f.socks.lock().unwrap().push(s.try_clone().unwrap());
                let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                let f1 = f.clone();
                std::thread::spawn(move || pump(c, s2, f1, true));
                let f2 = f.clone();
                std::thread::spawn(move || pump(s, c2, f2, false));
            }
        });
        Proxy { port, flags }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stall on the client's next (class, method).
    pub fn stall_on(&self, method: (u16, u16), c2s: bool, s2c: bool) {
        *self.flags.trigger.lock().unwrap() = Some((method, c2s, s2c));
    }

    /// Cuts every proxied connection.
    pub fn cut(&self) {
        for s in self.flags.socks.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn has_method(buf: &[u8], (class, method): (u16, u16)) -> bool {
    // A method frame: type 1, channel (2), size (4), class (2), method (2).
    let pat = [
        (class >> 8) as u8,
        class as u8,
        (method >> 8) as u8,
        method as u8,
    ];
    buf.windows(11).any(|w| w[0] == 1 && w[7..11] == pat)
}

fn pump(mut from: TcpStream, mut to: TcpStream, f: Arc<Flags>, c2s: bool) {
    from.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let stalled = if c2s { &f.c2s } else { &f.s2c };
        if stalled.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        if c2s {
            let mut t = f.trigger.lock().unwrap();
            if let Some((m, sc, ss)) = *t {
                if has_method(&buf[..n], m) {
                    *t = None;
                    f.s2c.store(ss, Ordering::Release);
                    f.c2s.store(sc, Ordering::Release);
                    f.fired.store(true, Ordering::Release);
                    if sc {
                        // This chunk is swallowed: the broker never sees it.
                        continue;
                    }
                }
            }
        }
        // Read before the stall, forwarded after it: withheld too (the
        // stall may have begun while this pump waited in `read`).
        while !c2s && f.s2c.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
