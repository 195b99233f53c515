//! Any `Serialize` / `Deserialize` value over a byte queue (cargo feature
//! `serde`), encoded with postcard.
//!
//! Sending encodes straight into a loaned slot (no intermediate buffer) and
//! commits the bytes written; receiving decodes straight from the slot, read
//! in place, then releases it. A value whose encoding does not fit the
//! queue's maximum message size is refused with `TooLarge` and nothing is
//! sent. The calls are methods of [`ByteSender`], [`ByteReceiver`] and
//! [`Connection`]; their errors (`ValueSendError`, `ValueRecvError`) are in
//! `error.rs` with every other public error.

use super::bytes::{ByteReceiver, ByteSender};
use super::bytes_core::{ByteLoan, ByteRef};
use super::pipe::Connection;
use crate::error::{ByteSendError, ValueRecvError, ValueSendError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Encodes `value` into the whole loaned slot and commits what was written.
/// Dropping the loan on failure abandons it: nothing is sent.
pub(crate) fn encode_commit<V: Serialize + ?Sized>(
    mut loan: ByteLoan<'_>,
    value: &V,
) -> Result<(), ValueSendError> {
    let max = loan.max_len();
    let n = match postcard::to_slice(value, loan.full_slot()) {
        Ok(used) => used.len(),
        Err(postcard::Error::SerializeBufferFull) => return Err(ValueSendError::TooLarge { max }),
        Err(e) => return Err(ValueSendError::Encode(e)),
    };
    loan.set_len(n)?;
    loan.commit();
    Ok(())
}

/// Decodes a value from a message read in place; the slot is released when
/// `msg` drops, decoded or not.
pub(crate) fn decode<V: DeserializeOwned>(msg: ByteRef<'_>) -> Result<V, ValueRecvError> {
    postcard::from_bytes(&msg).map_err(ValueRecvError::Decode)
}

impl ByteSender {
    /// Sends `value`, encoded with postcard directly into the queue, waiting
    /// while the queue is full.
    ///
    /// # Errors
    /// `TooLarge` (encoding beyond the maximum message size), `Encode`,
    /// `Send(Disconnected | Corrupted)`.
    pub fn send_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), ValueSendError> {
        let max = self.max_message_size();
        encode_commit(self.loan(max)?, value)
    }

    /// As [`send_value`](Self::send_value), without waiting (`Send(Full)`).
    ///
    /// # Errors
    /// As for [`send_value`](Self::send_value), plus `Send(Full)`.
    pub fn try_send_value<V: Serialize + ?Sized>(
        &mut self,
        value: &V,
    ) -> Result<(), ValueSendError> {
        let max = self.max_message_size();
        encode_commit(self.try_loan(max)?, value)
    }

    /// As [`send_value`](Self::send_value), waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`send_value`](Self::send_value), plus `Send(Timeout)`.
    pub fn send_value_timeout<V: Serialize + ?Sized>(
        &mut self,
        value: &V,
        timeout: Duration,
    ) -> Result<(), ValueSendError> {
        let max = self.max_message_size();
        encode_commit(self.loan_timeout(max, timeout)?, value)
    }
}

impl ByteReceiver {
    /// Receives a value, decoding it in place, waiting while empty.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`, `Decode` (the message is consumed).
    pub fn recv_value<V: DeserializeOwned>(&mut self) -> Result<V, ValueRecvError> {
        decode(self.recv_ref()?)
    }

    /// As [`recv_value`](Self::recv_value), without waiting (`Empty`).
    ///
    /// # Errors
    /// As for [`recv_value`](Self::recv_value), plus `Empty`.
    pub fn try_recv_value<V: DeserializeOwned>(&mut self) -> Result<V, ValueRecvError> {
        decode(self.try_recv_ref()?)
    }

    /// As [`recv_value`](Self::recv_value), waiting at most `timeout`
    /// (`Empty` when it passes).
    ///
    /// # Errors
    /// As for [`recv_value`](Self::recv_value), plus `Empty`.
    pub fn recv_value_timeout<V: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<V, ValueRecvError> {
        decode(self.recv_ref_timeout(timeout)?)
    }
}

impl Connection {
    /// Sends `value` (see [`ByteSender::send_value`]).
    ///
    /// # Errors
    /// As for [`ByteSender::send_value`]; `Send(Disconnected)` on an end
    /// that cannot send.
    pub fn send_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), ValueSendError> {
        self.sender()
            .ok_or(ByteSendError::Disconnected)?
            .send_value(value)
    }

    /// Receives a value (see [`ByteReceiver::recv_value`]).
    ///
    /// # Errors
    /// As for [`ByteReceiver::recv_value`]; `Disconnected` on an end that
    /// cannot receive.
    pub fn recv_value<V: DeserializeOwned>(&mut self) -> Result<V, ValueRecvError> {
        self.receiver()
            .ok_or(ValueRecvError::Disconnected)?
            .recv_value()
    }

    /// Receives a value, waiting at most `timeout` (`Empty` when it passes).
    ///
    /// # Errors
    /// As for [`recv_value`](Self::recv_value), plus `Empty`.
    pub fn recv_value_timeout<V: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<V, ValueRecvError> {
        self.receiver()
            .ok_or(ValueRecvError::Disconnected)?
            .recv_value_timeout(timeout)
    }
}
