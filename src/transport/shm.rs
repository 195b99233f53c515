//! The shared-memory transports: one byte queue per direction (SPSC or
//! MPMC), anonymous segments shared across `fork`.

use super::{LinkOptions, Transport, TransportError, TransportKind};
use crate::channel::{ByteQueue, ByteReceiver, ByteSender};
use crate::error::{ByteSendError, RecvError, RecvTimeoutError, TryRecvError};
use crate::types::Flavor;
use std::time::Duration;

fn send_err(e: ByteSendError) -> TransportError {
    match e {
        ByteSendError::TooLarge { len, max } => TransportError::TooLarge { len, max },
        ByteSendError::Full => TransportError::WouldBlock,
        ByteSendError::Timeout => TransportError::Timeout,
        ByteSendError::Disconnected | ByteSendError::Closed => TransportError::Disconnected,
        ByteSendError::Corrupted => TransportError::Corrupted("shared queue"),
    }
}

fn try_recv_err(e: TryRecvError) -> TransportError {
    match e {
        TryRecvError::Empty => TransportError::WouldBlock,
        TryRecvError::Disconnected | TryRecvError::Closed => TransportError::Disconnected,
        TryRecvError::Corrupted => TransportError::Corrupted("shared queue"),
    }
}

/// One end of a shared-memory link: a byte sender and a byte receiver.
#[derive(Debug)]
pub struct ShmTransport {
    kind: TransportKind,
    // Dropped in declaration order: the receiving half first, so that a
    // peer that sees the end of our messages also finds nobody receiving
    // its sends (as with `Connection`, and as closing a pipe or socket).
    rx: ByteReceiver,
    tx: ByteSender,
}

impl ShmTransport {
    /// An endpoint over an attached sender and receiver (of queues going
    /// opposite ways).
    pub fn new(tx: ByteSender, rx: ByteReceiver) -> Self {
        ShmTransport {
            kind: TransportKind::ShmSpsc,
            tx,
            rx,
        }
    }

    /// The sending half (for loans).
    pub fn sender(&mut self) -> &mut ByteSender {
        &mut self.tx
    }

    /// Both halves at once: reply with a loan while still holding the
    /// request read in place.
    pub fn split(&mut self) -> (&mut ByteSender, &mut ByteReceiver) {
        (&mut self.tx, &mut self.rx)
    }

    /// The receiving half (for in-place reads).
    pub fn receiver(&mut self) -> &mut ByteReceiver {
        &mut self.rx
    }
}

impl Transport for ShmTransport {
    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn max_message_size(&self) -> usize {
        self.tx.max_message_size()
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.tx.send(msg).map_err(send_err)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.tx.try_send(msg).map_err(send_err)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.rx.recv_into(buf).map_err(|e| match e {
            RecvError::Disconnected | RecvError::Closed => TransportError::Disconnected,
            RecvError::Corrupted => TransportError::Corrupted("shared queue"),
        })
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.rx.try_recv_into(buf).map_err(try_recv_err)
    }

    fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        self.rx
            .recv_into_timeout(buf, timeout)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => TransportError::Timeout,
                RecvTimeoutError::Disconnected | RecvTimeoutError::Closed => {
                    TransportError::Disconnected
                }
                RecvTimeoutError::Corrupted => TransportError::Corrupted("shared queue"),
            })
    }

    fn set_spin(&mut self, spin: Duration) {
        self.tx.set_spin(spin);
        self.rx.set_spin(spin);
    }
}

/// The queues of a shared-memory link, made before `fork`.
#[derive(Debug)]
pub(super) struct ShmLink {
    kind: TransportKind,
    /// Left → right.
    to_right: ByteQueue,
    /// Right → left.
    to_left: ByteQueue,
}

impl ShmLink {
    pub(super) fn new(kind: TransportKind, opts: &LinkOptions) -> Result<Self, TransportError> {
        let flavor = if kind == TransportKind::ShmMpmc {
            Flavor::Mpmc
        } else {
            Flavor::Spsc
        };
        let q = || {
            ByteQueue::builder()
                .flavor(flavor)
                .capacity(opts.capacity)
                .max_message_size(opts.max_message_size as u64)
                .wake_mode(opts.wake_mode)
                .create_anonymous()
        };
        Ok(ShmLink {
            kind,
            to_right: q()?,
            to_left: q()?,
        })
    }

    pub(super) fn kind(&self) -> TransportKind {
        self.kind
    }

    pub(super) fn pair(self) -> Result<(ShmTransport, ShmTransport), TransportError> {
        let end = |send_q: &ByteQueue, recv_q: &ByteQueue| -> Result<_, TransportError> {
            Ok(ShmTransport {
                kind: self.kind,
                tx: send_q.sender()?,
                rx: recv_q.receiver()?,
            })
        };
        Ok((
            end(&self.to_right, &self.to_left)?,
            end(&self.to_left, &self.to_right)?,
        ))
    }

    pub(super) fn end(self, left: bool) -> Result<ShmTransport, TransportError> {
        let (send_q, recv_q) = if left {
            (&self.to_right, &self.to_left)
        } else {
            (&self.to_left, &self.to_right)
        };
        Ok(ShmTransport {
            kind: self.kind,
            tx: send_q.sender()?,
            rx: recv_q.receiver()?,
        })
    }
}
