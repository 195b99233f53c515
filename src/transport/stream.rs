//! The kernel transports — pipe, FIFO, Unix socket, TCP — as byte streams
//! framed with a 4-byte little-endian length before each message.

use super::{LinkOptions, Transport, TransportError, TransportKind};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Read buffer: small messages arrive with one `read` for header and body.
const READ_BUF: usize = 64 * 1024;

/// Waits up to `timeout` (`None`: forever) for `events` on `fd`; whether
/// they came. Never gives up before `timeout` has passed: the wait is
/// rounded up to whole milliseconds, and a signal only resumes it for the
/// time left.
fn poll_fd(fd: BorrowedFd<'_>, events: PollFlags, timeout: Option<Duration>) -> io::Result<bool> {
    let mut p = [PollFd::new(fd, events)];
    let start = Instant::now();
    loop {
        let ms = match timeout {
            None => PollTimeout::NONE,
            Some(t) => {
                let left = t.saturating_sub(start.elapsed());
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut p, ms) {
            Ok(0) => {
                if ms == PollTimeout::ZERO || timeout.is_some_and(|t| start.elapsed() >= t) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn io_err(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected => TransportError::Disconnected,
        _ => TransportError::Io(e),
    }
}

/// A framed message stream over a readable and a writable descriptor (the
/// same socket twice, or the two pipes / FIFOs of one end).
#[derive(Debug)]
pub struct StreamTransport {
    kind: TransportKind,
    max: usize,
    reader: BufReader<File>,
    writer: File,
}

impl StreamTransport {
    /// An endpoint reading from `read` and writing to `write`, carrying
    /// messages of at most `max` bytes.
    pub fn new(kind: TransportKind, read: OwnedFd, write: OwnedFd, max: usize) -> Self {
        StreamTransport {
            kind,
            max,
            reader: BufReader::with_capacity(READ_BUF, File::from(read)),
            writer: File::from(write),
        }
    }

    fn check_len(&self, len: usize) -> Result<(), TransportError> {
        if len > self.max || len > u32::MAX as usize {
            return Err(TransportError::TooLarge { len, max: self.max });
        }
        Ok(())
    }

    /// Writes the length and the message, with as few `writev` calls as the
    /// kernel allows.
    fn write_frame(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        let header = (msg.len() as u32).to_le_bytes();
        let total = header.len() + msg.len();
        let mut done = 0;
        while done < total {
            let n = if done < header.len() {
                let bufs = [IoSlice::new(&header[done..]), IoSlice::new(msg)];
                self.writer.write_vectored(&bufs)
            } else {
                self.writer.write(&msg[done - header.len()..])
            };
            match n {
                Ok(0) => return Err(TransportError::Disconnected),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }

    /// Reads one frame (the caller knows data is there, or blocks for it).
    fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.reader.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Err(TransportError::Disconnected),
                Ok(0) => return Err(TransportError::Truncated { expected: 4, got }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > self.max {
            return Err(TransportError::Corrupted("frame length beyond the maximum"));
        }
        buf.clear();
        buf.reserve(len);
        let n = (&mut self.reader)
            .take(len as u64)
            .read_to_end(buf)
            .map_err(io_err)?;
        if n < len {
            return Err(TransportError::Truncated {
                expected: len,
                got: n,
            });
        }
        Ok(len)
    }

    /// Whether a frame can be read without waiting more than `timeout`
    /// for its first byte.
    fn readable(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        poll_fd(
            self.reader.get_ref().as_fd(),
            PollFlags::POLLIN,
            Some(timeout),
        )
        .map_err(io_err)
    }
}

impl Transport for StreamTransport {
    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn max_message_size(&self) -> usize {
        self.max
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.check_len(msg.len())?;
        self.write_frame(msg)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.check_len(msg.len())?;
        if !poll_fd(
            self.writer.as_fd(),
            PollFlags::POLLOUT,
            Some(Duration::ZERO),
        )
        .map_err(io_err)?
        {
            return Err(TransportError::WouldBlock);
        }
        self.write_frame(msg)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.read_frame(buf)
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        if !self.readable(Duration::ZERO)? {
            return Err(TransportError::WouldBlock);
        }
        self.read_frame(buf)
    }

    fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        if !self.readable(timeout)? {
            return Err(TransportError::Timeout);
        }
        self.read_frame(buf)
    }
}

/// TCP endpoints, between processes of one host or two: the way out for
/// programs that outgrow one machine.
#[derive(Debug)]
pub struct TcpTransport;

impl TcpTransport {
    /// An endpoint over a connected stream (sets `TCP_NODELAY`).
    ///
    /// # Errors
    /// `Io` if the socket cannot be configured or duplicated.
    pub fn from_stream(stream: TcpStream, max: usize) -> Result<StreamTransport, TransportError> {
        stream.set_nodelay(true)?;
        let write = stream.try_clone()?;
        Ok(StreamTransport::new(
            TransportKind::Tcp,
            OwnedFd::from(stream),
            OwnedFd::from(write),
            max,
        ))
    }

    /// Connects to `addr` (for example `"10.0.0.2:7000"`).
    ///
    /// # Errors
    /// `Io` if the connection fails.
    pub fn connect(
        addr: impl ToSocketAddrs,
        max: usize,
    ) -> Result<StreamTransport, TransportError> {
        Self::from_stream(TcpStream::connect(addr)?, max)
    }

    /// Accepts one connection on `listener`.
    ///
    /// # Errors
    /// `Io` if accepting fails.
    pub fn accept(listener: &TcpListener, max: usize) -> Result<StreamTransport, TransportError> {
        let (s, _) = listener.accept()?;
        Self::from_stream(s, max)
    }
}

/// What a kernel link holds before `fork`.
#[derive(Debug)]
pub(super) enum StreamLink {
    Pipe {
        /// Left → right.
        lr: (OwnedFd, OwnedFd),
        /// Right → left.
        rl: (OwnedFd, OwnedFd),
    },
    Fifo {
        dir: FifoDir,
    },
    Unix {
        left: UnixStream,
        right: UnixStream,
    },
    Tcp {
        listener: TcpListener,
    },
}

/// The directory holding a FIFO link's two FIFOs, "lr" and "rl". Dropping
/// it removes them, whether or not the ends were opened (each end removes
/// the names once it has both FIFOs open; a link dropped unused must not
/// leave them behind).
#[derive(Debug)]
pub(super) struct FifoDir(PathBuf);

impl FifoDir {
    fn lr(&self) -> PathBuf {
        self.0.join("lr")
    }

    fn rl(&self) -> PathBuf {
        self.0.join("rl")
    }
}

impl Drop for FifoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.lr());
        let _ = std::fs::remove_file(self.rl());
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn fifo_dir(base: Option<&Path>) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
    // Relaxed: a process-local counter for unique names.
    let n = N.fetch_add(1, Ordering::Relaxed);
    base.join(format!("shmring-fifo-{}-{n}", std::process::id()))
}

fn mkfifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
    nix::unistd::mkfifo(c.as_c_str(), mode).map_err(io::Error::from)
}

fn open_fifo(path: &Path, write: bool) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(nix::fcntl::OFlag::O_CLOEXEC.bits())
        .open(path)?;
    Ok(OwnedFd::from(f))
}

impl StreamLink {
    pub(super) fn new(kind: TransportKind, opts: &LinkOptions) -> Result<Self, TransportError> {
        Ok(match kind {
            TransportKind::Pipe => {
                let (r1, w1) = io::pipe()?;
                let (r2, w2) = io::pipe()?;
                StreamLink::Pipe {
                    lr: (OwnedFd::from(r1), OwnedFd::from(w1)),
                    rl: (OwnedFd::from(r2), OwnedFd::from(w2)),
                }
            }
            TransportKind::Fifo => {
                let path = fifo_dir(opts.fifo_dir.as_deref());
                std::fs::create_dir(&path)?;
                // From here on, dropping `dir` removes what was made.
                let dir = FifoDir(path);
                mkfifo(&dir.lr())?;
                mkfifo(&dir.rl())?;
                StreamLink::Fifo { dir }
            }
            TransportKind::Unix => {
                let (left, right) = UnixStream::pair()?;
                StreamLink::Unix { left, right }
            }
            TransportKind::Tcp => StreamLink::Tcp {
                listener: TcpListener::bind("127.0.0.1:0")?,
            },
            TransportKind::ShmSpsc | TransportKind::ShmMpmc => {
                unreachable!("shared-memory kinds are made by ShmLink")
            }
        })
    }

    pub(super) fn kind(&self) -> TransportKind {
        match self {
            StreamLink::Pipe { .. } => TransportKind::Pipe,
            StreamLink::Fifo { .. } => TransportKind::Fifo,
            StreamLink::Unix { .. } => TransportKind::Unix,
            StreamLink::Tcp { .. } => TransportKind::Tcp,
        }
    }

    pub(super) fn pair(
        self,
        max: usize,
    ) -> Result<(StreamTransport, StreamTransport), TransportError> {
        let kind = self.kind();
        match self {
            StreamLink::Pipe { lr, rl } => Ok((
                StreamTransport::new(kind, rl.0, lr.1, max),
                StreamTransport::new(kind, lr.0, rl.1, max),
            )),
            StreamLink::Fifo { dir } => {
                // The opens block until the other side opens: one end on a
                // helper thread.
                let other = StreamLink::Fifo {
                    dir: FifoDir(dir.0.clone()),
                };
                std::thread::scope(|s| {
                    let right = s.spawn(move || other.end(false, max));
                    let left = StreamLink::Fifo { dir }.end(true, max);
                    let right = right.join().map_err(|_| {
                        TransportError::Io(io::Error::other("FIFO open thread panicked"))
                    })?;
                    Ok((left?, right?))
                })
            }
            StreamLink::Unix { left, right } => {
                let lw = left.try_clone()?;
                let rw = right.try_clone()?;
                Ok((
                    StreamTransport::new(kind, OwnedFd::from(left), OwnedFd::from(lw), max),
                    StreamTransport::new(kind, OwnedFd::from(right), OwnedFd::from(rw), max),
                ))
            }
            StreamLink::Tcp { listener } => {
                // The connection completes in the backlog before accept.
                let right = TcpTransport::connect(listener.local_addr()?, max)?;
                let left = TcpTransport::accept(&listener, max)?;
                Ok((left, right))
            }
        }
    }

    pub(super) fn end(self, left: bool, max: usize) -> Result<StreamTransport, TransportError> {
        let kind = self.kind();
        match self {
            // The other end's descriptors drop (close) here, so that each
            // side sees end-of-stream when its peer goes.
            StreamLink::Pipe { lr, rl } => {
                let (read, write) = if left { (rl.0, lr.1) } else { (lr.0, rl.1) };
                Ok(StreamTransport::new(kind, read, write, max))
            }
            StreamLink::Fifo { dir } => {
                // Both sides open "lr" first, then "rl", so the blocking
                // opens pair up instead of deadlocking.
                let (lr, rl) = (dir.lr(), dir.rl());
                let (read, write) = if left {
                    let w = open_fifo(&lr, true)?;
                    (open_fifo(&rl, false)?, w)
                } else {
                    let r = open_fifo(&lr, false)?;
                    (r, open_fifo(&rl, true)?)
                };
                // Both ends have opened both FIFOs: the names can go.
                drop(dir);
                Ok(StreamTransport::new(kind, read, write, max))
            }
            StreamLink::Unix { left: l, right: r } => {
                let s = if left { l } else { r };
                let w = s.try_clone()?;
                Ok(StreamTransport::new(
                    kind,
                    OwnedFd::from(s),
                    OwnedFd::from(w),
                    max,
                ))
            }
            StreamLink::Tcp { listener } => {
                if left {
                    TcpTransport::accept(&listener, max)
                } else {
                    TcpTransport::connect(listener.local_addr()?, max)
                }
            }
        }
    }
}
