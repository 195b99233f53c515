//! The plain descriptions shared by the API and the segment header: what a
//! segment holds ([`Kind`]), which ring a queue uses ([`Flavor`]), which end
//! an endpoint is ([`Role`]), and an element type as recorded
//! ([`TypeDesc`], [`TypeName`]). The numbers a header stores for `Kind` and
//! `Flavor` are defined here, beside the enums (`raw` / `from_raw`).

use std::fmt;

/// What a segment holds: the `kind` field of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A bounded queue of fixed-size `Pod` values.
    Queue,
    /// A bounded queue of variable-length byte messages.
    ByteQueue,
    /// One value of a `ShmSafe` type ([`Shared`](crate::Shared), `Value`).
    Struct,
    /// An array of `Pod` values with a lock (`Array`).
    Array,
    /// A map of byte keys to byte values that grows as needed
    /// ([`SharedMap`](crate::SharedMap)).
    Map,
    /// A list of byte values that grows as needed
    /// ([`SharedList`](crate::SharedList)).
    List,
    /// A kind this build of shmring does not know (the raw header value).
    Unknown(u32),
}

impl Kind {
    /// The kinds this build knows, in header order.
    const KNOWN: [Kind; 6] = [
        Kind::Queue,
        Kind::ByteQueue,
        Kind::Struct,
        Kind::Array,
        Kind::Map,
        Kind::List,
    ];

    /// The value of the header's `kind` field for this kind: the one place
    /// the numbers are defined.
    pub const fn raw(self) -> u32 {
        match self {
            Kind::Queue => 1,
            Kind::ByteQueue => 2,
            Kind::Struct => 3,
            Kind::Array => 4,
            Kind::Map => 5,
            Kind::List => 6,
            Kind::Unknown(k) => k,
        }
    }

    /// Whether segments of this kind grow after creation: their file may
    /// be longer than the header's `total_len` (the containers, which move
    /// their contents to larger regions of their own file), and their
    /// memfds carry no seal against growing.
    pub const fn grows(self) -> bool {
        matches!(self, Kind::Map | Kind::List)
    }

    /// The kind a header's `kind` field names.
    pub fn from_raw(kind: u32) -> Kind {
        Kind::KNOWN
            .into_iter()
            .find(|k| k.raw() == kind)
            .unwrap_or(Kind::Unknown(kind))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Queue => f.write_str("queue"),
            Kind::ByteQueue => f.write_str("byte queue"),
            Kind::Struct => f.write_str("shared struct"),
            Kind::Array => f.write_str("shared array"),
            Kind::Map => f.write_str("shared map"),
            Kind::List => f.write_str("shared list"),
            Kind::Unknown(k) => write!(f, "unknown kind {k}"),
        }
    }
}

/// Which ring algorithm a queue uses, fixed at creation and recorded in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// One sender and one receiver at a time (across all processes).
    Spsc,
    /// Any number of senders and receivers, in any processes.
    Mpmc,
}

impl Flavor {
    /// The value of the header's `flavor` field for this flavor: the one
    /// place the numbers are defined.
    pub const fn raw(self) -> u32 {
        match self {
            Flavor::Spsc => 1,
            Flavor::Mpmc => 2,
        }
    }

    /// The flavor a header's `flavor` field names, if any.
    pub fn from_raw(flavor: u32) -> Option<Flavor> {
        [Flavor::Spsc, Flavor::Mpmc]
            .into_iter()
            .find(|f| f.raw() == flavor)
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Spsc => "spsc",
            Flavor::Mpmc => "mpmc",
        })
    }
}

/// Bytes of a type's name a header records.
pub(crate) const TYPE_NAME_LEN: usize = 32;

/// A type's name as a header records it: the end of `std::any::type_name`
/// (the type's own name, after its path), at most 32 bytes
/// cut on a character boundary. For messages; the fingerprint, not the
/// name, decides whether two types match.
#[derive(Clone, Copy)]
pub struct TypeName {
    bytes: [u8; TYPE_NAME_LEN],
}

impl TypeName {
    /// The last [`TYPE_NAME_LEN`] bytes of `name` (whole characters).
    pub(crate) fn new(name: &str) -> Self {
        let mut start = name.len().saturating_sub(TYPE_NAME_LEN);
        while !name.is_char_boundary(start) {
            start += 1;
        }
        let tail = &name.as_bytes()[start..];
        let mut bytes = [0u8; TYPE_NAME_LEN];
        bytes[..tail.len()].copy_from_slice(tail);
        TypeName { bytes }
    }

    /// From the words a header stores (little-endian), as read.
    pub(crate) fn from_words(words: [u64; TYPE_NAME_LEN / 8]) -> Self {
        let mut bytes = [0u8; TYPE_NAME_LEN];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        TypeName { bytes }
    }

    /// The words a header stores.
    pub(crate) fn words(&self) -> [u64; TYPE_NAME_LEN / 8] {
        let mut words = [0u64; TYPE_NAME_LEN / 8];
        for (w, chunk) in words.iter_mut().zip(self.bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        words
    }

    /// The name (lossy: a header from shared memory may hold any bytes;
    /// empty if none was recorded).
    pub fn as_string(&self) -> String {
        let len = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TYPE_NAME_LEN);
        String::from_utf8_lossy(&self.bytes[..len]).into_owned()
    }
}

impl fmt::Debug for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_string(), f)
    }
}

/// Size, alignment and fingerprint of an element type, as recorded in a
/// header, with its name for messages. Two descriptions are equal when
/// size, alignment and fingerprint are (the name is not compared: the
/// fingerprint already hashes the whole name).
#[derive(Clone, Copy, Debug)]
pub struct TypeDesc {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u64,
    /// A hash of the type's name, size and alignment.
    pub fingerprint: u64,
    /// The type's name, as far as recorded.
    pub name: TypeName,
}

impl PartialEq for TypeDesc {
    fn eq(&self, other: &Self) -> bool {
        (self.size, self.align, self.fingerprint) == (other.size, other.align, other.fingerprint)
    }
}

impl Eq for TypeDesc {}

impl std::hash::Hash for TypeDesc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.size, self.align, self.fingerprint).hash(state);
    }
}

impl fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.as_string();
        if name.is_empty() {
            write!(f, "a type of ")?;
        } else {
            write!(f, "`{name}` (")?;
        }
        write!(
            f,
            "size {} align {} fingerprint {:#018x}",
            self.size, self.align, self.fingerprint
        )?;
        if !name.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Which end of a queue an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A sending endpoint.
    Sender,
    /// A receiving endpoint.
    Receiver,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_keep_their_end_whole() {
        let short = TypeName::new("u64");
        assert_eq!(short.as_string(), "u64");
        assert_eq!(TypeName::from_words(short.words()).as_string(), "u64");
        let long = TypeName::new("my_application::protocol::messages::OrderUpdate");
        assert_eq!(long.as_string(), "::protocol::messages::OrderUpdate"[1..]);
        // A multi-byte character at the cut is left out whole.
        let name = format!("{}é{}", "a".repeat(10), "b".repeat(TYPE_NAME_LEN - 1));
        assert_eq!(
            TypeName::new(&name).as_string(),
            "b".repeat(TYPE_NAME_LEN - 1)
        );
        // Bytes from shared memory that are not UTF-8 still print.
        let junk = TypeName::from_words([u64::MAX; TYPE_NAME_LEN / 8]);
        assert!(!junk.as_string().is_empty());
    }
}
