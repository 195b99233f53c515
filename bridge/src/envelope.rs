//! The optional framing of inbound messages: the AMQP message id travels
//! with the body, so that a local consumer can drop duplicates.

/// The `--envelope` framing of a message written into the local queue by an
/// inbound bridge: `[u16 little-endian id length][message id][body]`.
///
/// The broker redelivers a message whose ack was lost (a bridge killed
/// between committing it locally and acking it): the copy carries the same
/// message id, and a consumer that remembers recent ids can drop it.
///
/// # Examples
/// ```
/// use shmring_bridge::Envelope;
/// let framed = Envelope::encode(b"00000000000000ab-7", b"hello");
/// let env = Envelope::decode(&framed).unwrap();
/// assert_eq!(env.message_id, b"00000000000000ab-7");
/// assert_eq!(env.body, b"hello");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The AMQP `message_id` property (empty if the message had none).
    pub message_id: &'a [u8],
    /// The message body, as published.
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Bytes the envelope adds to a body with an id of `id_len` bytes.
    pub const fn overhead(id_len: usize) -> usize {
        2 + id_len
    }

    /// Frames `body` with `message_id`.
    ///
    /// # Panics
    /// If `message_id` is longer than 65 535 bytes (an AMQP short string,
    /// where message ids live, has at most 255).
    pub fn encode(message_id: &[u8], body: &[u8]) -> Vec<u8> {
        let len = u16::try_from(message_id.len()).expect("message id of at most 65535 bytes");
        let mut out = Vec::with_capacity(Self::overhead(message_id.len()) + body.len());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(message_id);
        out.extend_from_slice(body);
        out
    }

    /// Splits a framed message into its id and body; `None` if it is
    /// shorter than its own header says.
    pub fn decode(framed: &'a [u8]) -> Option<Envelope<'a>> {
        let (len, rest) = framed.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        (rest.len() >= len).then(|| Envelope {
            message_id: &rest[..len],
            body: &rest[len..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let f = Envelope::encode(b"id", b"");
        assert_eq!(f, [2, 0, b'i', b'd']);
        assert_eq!(
            Envelope::decode(&f),
            Some(Envelope {
                message_id: b"id",
                body: b""
            })
        );
        assert_eq!(Envelope::decode(&f[..3]), None);
        assert_eq!(Envelope::decode(&[1]), None);
        let empty = Envelope::encode(b"", b"x");
        assert_eq!(Envelope::decode(&empty).unwrap().body, b"x");
    }
}
