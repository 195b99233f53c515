//! Process identity and liveness: a pid plus the process's start time, so a
//! reused pid is never mistaken for the process that used to hold it.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

/// A process, identified for life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// What a liveness check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The process exists and is the one recorded (or cannot be told apart).
    Alive,
    /// The process is gone, a zombie, or the pid belongs to a newer process.
    Dead,
}

/// Parses `(state, starttime)` out of `/proc/<pid>/stat` content.
pub(crate) fn parse_stat(stat: &[u8]) -> Option<(char, u64)> {
    // The command name (field 2) may hold any bytes, spaces, parentheses
    // and invalid UTF-8 included: fields resume after the last ')' and are
    // ASCII from there on.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22: 19 further fields on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Reads and parses `/proc/<id>/stat` (a process, or a thread by its tid).
/// `Err`: it could not be opened or read (`NotFound`: no such task);
/// `Ok(None)`: unparsable. Allocation-free (stack buffers), so liveness
/// checks may run on paths that promise no allocation.
pub(crate) fn stat_of(id: u32) -> std::io::Result<Option<(char, u64)>> {
    // "/proc/4294967295/stat" is 21 bytes.
    let mut path = [0u8; 32];
    let mut w = &mut path[..];
    write!(w, "/proc/{id}/stat")?;
    let len = 32 - w.len();
    let mut file = fs::File::open(OsStr::from_bytes(&path[..len]))?;
    // A stat line is a few hundred bytes (the command name is at most 64);
    // the fields parsed come within the first 1 KiB whatever the name.
    let mut buf = [0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(parse_stat(&buf[..got]))
}

/// `(state, starttime)` of `pid`, if readable and well-formed.
pub(crate) fn read_stat(pid: u32) -> Option<(char, u64)> {
    stat_of(pid).ok().flatten()
}

/// This process's identity. Read afresh each call (a forked child is a new
/// process); call it on setup paths only.
pub fn current() -> ProcId {
    let pid = std::process::id();
    let start = read_stat(pid).map_or(0, |(_, s)| s);
    ProcId { pid, start }
}

/// Whether `p` is still running. Conservative: anything short of proof of
/// death counts as alive, because a paused (SIGSTOP) or merely slow process
/// must keep what it holds.
pub fn liveness(p: ProcId) -> Liveness {
    let Ok(pid) = i32::try_from(p.pid) else {
        return Liveness::Dead;
    };
    if pid <= 0 {
        return Liveness::Dead;
    }
    // SAFETY: kill with signal 0 only checks that the pid exists.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return Liveness::Dead;
    }
    match read_stat(p.pid) {
        // Zombie or dead: it will never run again, whoever reaps it.
        Some(('Z' | 'X' | 'x', _)) => Liveness::Dead,
        Some((_, start)) if start != p.start => Liveness::Dead,
        // Unreadable /proc (hidepid, another namespace): kill() says it exists.
        _ => Liveness::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let s = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_stat(s.as_bytes()), Some(('S', 987654)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        // A name that is not UTF-8 (prctl accepts any bytes) still parses.
        let odd = b"77 (\xff\xfe)) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 42 20";
        assert_eq!(parse_stat(odd), Some(('Z', 42)));
    }

    #[test]
    fn this_process_is_alive_and_a_bogus_one_is_not() {
        let me = current();
        assert!(me.start > 0);
        assert_eq!(liveness(me), Liveness::Alive);
        let reused = ProcId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert_eq!(liveness(reused), Liveness::Dead);
        assert_eq!(liveness(ProcId { pid: 0, start: 0 }), Liveness::Dead);
    }
}
