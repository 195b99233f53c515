//! The self-describing segment header: the first 256 bytes of every segment.
//!
//! Every field is an atomic, so reading a header that another (possibly
//! hostile) process is writing is never a data race. Openers take one
//! snapshot ([`HeaderFields`]) after acquiring `init_state == READY` and
//! validate the snapshot; nothing is read from the header twice.
//!
//! ```text
//!   0 magic "SHMRING\0"   8 version   12 init_state   16 kind   20 flavor
//!  24 elem_size   32 elem_align   40 type fingerprint   48 capacity
//!  56 slot_count  64 slot_stride  72 control_offset     80 endpoints_offset
//!  88 endpoint_count   96 slots_offset   104 total_len
//! 112 creator_pid  116 creator_uid  120 creator_start  128 created_unix_ns
//! 136 wake_mode    140 reserved     144 checksum       152 msg_max
//! 160 payload_offset  168 payload_stride  176 creator_pid_ns
//! 184 type_name (32 bytes)  216..256 reserved
//! ```

use crate::error::SegmentError;
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::types::{TypeDesc, TypeName};

/// The first 8 bytes of every shmring segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");
/// The layout version this build writes and reads.
pub const VERSION: u32 = 7;
/// Bytes reserved for the header.
pub const HEADER_LEN: u64 = 256;

/// `init_state` values.
pub mod init {
    /// Fresh zeroed file: the creator has not started. (Never written:
    /// named for the protocol, which reads any other value as "not ready".)
    #[allow(dead_code)]
    pub const EMPTY: u32 = 0;
    /// The creator is writing the segment.
    pub const BUSY: u32 = 1;
    /// Complete and valid; published with Release.
    pub const READY: u32 = 2;
}

/// The header as it lies in the segment.
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    init_state: AtomicU32,
    kind: AtomicU32,
    flavor: AtomicU32,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    type_fingerprint: AtomicU64,
    capacity: AtomicU64,
    slot_count: AtomicU64,
    slot_stride: AtomicU64,
    control_offset: AtomicU64,
    endpoints_offset: AtomicU64,
    endpoint_count: AtomicU64,
    slots_offset: AtomicU64,
    total_len: AtomicU64,
    creator_pid: AtomicU32,
    creator_uid: AtomicU32,
    creator_start: AtomicU64,
    created_unix_ns: AtomicU64,
    wake_mode: AtomicU32,
    _reserved0: AtomicU32,
    checksum: AtomicU64,
    msg_max: AtomicU64,
    payload_offset: AtomicU64,
    payload_stride: AtomicU64,
    creator_pid_ns: AtomicU64,
    type_name: [AtomicU64; 4],
    _reserved: [AtomicU64; 5],
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_LEN as usize);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, init_state) == 12);
    assert!(offset_of!(Header, capacity) == 48);
    assert!(offset_of!(Header, total_len) == 104);
    assert!(offset_of!(Header, checksum) == 144);
    assert!(offset_of!(Header, creator_pid_ns) == 176);
    assert!(offset_of!(Header, type_name) == 184);
};

/// A plain copy of a segment header's fields, taken once: what
/// [`inspect`](crate::inspect::inspect) reports as
/// [`SegmentReport::header`](crate::inspect::SegmentReport::header), and
/// what the segment layer writes and validates. The numbers are as stored
/// (layout version 5); `kind` and `flavor` decode with
/// [`Kind::from_raw`](crate::Kind::from_raw) and
/// [`Flavor::from_raw`](crate::Flavor::from_raw). Later layout versions
/// may add fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HeaderFields {
    /// Must be the shmring magic, `b"SHMRING\0"` as a little-endian `u64`.
    pub magic: u64,
    /// Layout version.
    pub version: u32,
    /// What the segment holds (`Kind` as a number).
    pub kind: u32,
    /// Kind-specific variant (queue flavor).
    pub flavor: u32,
    /// Element size in bytes.
    pub elem_size: u64,
    /// Element alignment.
    pub elem_align: u64,
    /// Element type fingerprint.
    pub type_fingerprint: u64,
    /// Capacity asked for at creation.
    pub capacity: u64,
    /// Slots allocated.
    pub slot_count: u64,
    /// Bytes per slot.
    pub slot_stride: u64,
    /// Offset of the kind's control block.
    pub control_offset: u64,
    /// Offset of the endpoint table.
    pub endpoints_offset: u64,
    /// Entries in the endpoint table.
    pub endpoint_count: u64,
    /// Offset of slot 0.
    pub slots_offset: u64,
    /// Bytes the segment must have.
    pub total_len: u64,
    /// Creator's pid.
    pub creator_pid: u32,
    /// Creator's uid.
    pub creator_uid: u32,
    /// Creator's start time (clock ticks after boot).
    pub creator_start: u64,
    /// Wall-clock creation time (ns since the Unix epoch).
    pub created_unix_ns: u64,
    /// The wake protocol (`WakeMode` as a number).
    pub wake_mode: u32,
    /// Byte messages: the largest message, in bytes (0 for `Pod` queues).
    pub msg_max: u64,
    /// Byte messages: offset of slot 0's payload (each follows its slot's
    /// word).
    pub payload_offset: u64,
    /// Byte messages: bytes from one payload to the next (the slot stride).
    pub payload_stride: u64,
    /// The creator's pid namespace (inode of `/proc/self/ns/pid`; 0:
    /// unknown). Pids recorded in the segment mean something only there.
    pub creator_pid_ns: u64,
    /// The element type's name, for messages (see [`TypeName`]).
    pub type_name: [u64; 4],
    /// FNV-1a over every field above.
    pub checksum: u64,
}

impl HeaderFields {
    /// The element type described by the header.
    pub fn elem(&self) -> TypeDesc {
        TypeDesc {
            size: self.elem_size,
            align: self.elem_align,
            fingerprint: self.type_fingerprint,
            name: TypeName::from_words(self.type_name),
        }
    }

    /// A number naming this segment's incarnation: FNV-1a over the
    /// creation fields (wall-clock creation time, creator pid, start time,
    /// uid and pid namespace). A segment created again under the same name
    /// gets another one (its creation time differs).
    pub fn instance(&self) -> u64 {
        let mut h = Fnv::new();
        for v in [
            self.created_unix_ns,
            self.creator_pid as u64,
            self.creator_start,
            self.creator_uid as u64,
            self.creator_pid_ns,
        ] {
            h.u64(v);
        }
        h.finish()
    }

    /// FNV-1a over every field but the checksum.
    pub(crate) fn compute_checksum(&self) -> u64 {
        let mut h = Fnv::new();
        h.u64(self.magic);
        h.u64(self.version as u64);
        h.u64(self.kind as u64);
        h.u64(self.flavor as u64);
        for v in [
            self.elem_size,
            self.elem_align,
            self.type_fingerprint,
            self.capacity,
            self.slot_count,
            self.slot_stride,
            self.control_offset,
            self.endpoints_offset,
            self.endpoint_count,
            self.slots_offset,
            self.total_len,
            self.creator_pid as u64,
            self.creator_uid as u64,
            self.creator_start,
            self.created_unix_ns,
            self.wake_mode as u64,
            self.msg_max,
            self.payload_offset,
            self.payload_stride,
            self.creator_pid_ns,
        ] {
            h.u64(v);
        }
        for v in self.type_name {
            h.u64(v);
        }
        h.finish()
    }

    /// Checks magic, version and checksum: is this an intact shmring header?
    pub(crate) fn check_intact(&self) -> Result<(), SegmentError> {
        if self.magic != MAGIC {
            return Err(SegmentError::Corrupted("not a shmring segment (bad magic)"));
        }
        if self.version != VERSION {
            return Err(SegmentError::VersionMismatch {
                expected: VERSION,
                found: self.version,
            });
        }
        if self.checksum != self.compute_checksum() {
            return Err(SegmentError::Corrupted("header checksum mismatch"));
        }
        Ok(())
    }
}

impl Header {
    /// Reads the creator's progress. Acquire: once READY is seen, every
    /// header field and the initialised body are visible.
    pub fn init_state(&self) -> u32 {
        self.init_state.load(Ordering::Acquire)
    }

    /// The raw magic word (to tell "not ours" from "not finished yet").
    pub fn magic(&self) -> u64 {
        // Relaxed: a single word judged on its own.
        self.magic.load(Ordering::Relaxed)
    }

    /// Marks the segment as being written (creator only, first thing).
    pub fn begin_init(&self) {
        // Relaxed: nobody trusts BUSY; READY is the publication.
        self.init_state.store(init::BUSY, Ordering::Relaxed);
    }

    /// Publishes the segment (creator only, last thing).
    pub fn publish(&self) {
        // Release: every header field and every body write made by the
        // creator happens-before an opener that reads READY with Acquire.
        self.init_state.store(init::READY, Ordering::Release);
    }

    /// Overwrites the version field (tests of version checks).
    #[doc(hidden)]
    pub fn set_version_for_test(&self, v: u32) {
        // Relaxed: test-only scribbling.
        self.version.store(v, Ordering::Relaxed);
    }

    /// Takes a snapshot. Relaxed loads: ordered after the caller's Acquire
    /// of `init_state`; a concurrent scribbler yields a snapshot that fails
    /// validation, never undefined behaviour.
    pub fn read(&self) -> HeaderFields {
        let r = Ordering::Relaxed;
        HeaderFields {
            magic: self.magic.load(r),
            version: self.version.load(r),
            kind: self.kind.load(r),
            flavor: self.flavor.load(r),
            elem_size: self.elem_size.load(r),
            elem_align: self.elem_align.load(r),
            type_fingerprint: self.type_fingerprint.load(r),
            capacity: self.capacity.load(r),
            slot_count: self.slot_count.load(r),
            slot_stride: self.slot_stride.load(r),
            control_offset: self.control_offset.load(r),
            endpoints_offset: self.endpoints_offset.load(r),
            endpoint_count: self.endpoint_count.load(r),
            slots_offset: self.slots_offset.load(r),
            total_len: self.total_len.load(r),
            creator_pid: self.creator_pid.load(r),
            creator_uid: self.creator_uid.load(r),
            creator_start: self.creator_start.load(r),
            created_unix_ns: self.created_unix_ns.load(r),
            wake_mode: self.wake_mode.load(r),
            msg_max: self.msg_max.load(r),
            payload_offset: self.payload_offset.load(r),
            payload_stride: self.payload_stride.load(r),
            creator_pid_ns: self.creator_pid_ns.load(r),
            type_name: std::array::from_fn(|i| self.type_name[i].load(r)),
            checksum: self.checksum.load(r),
        }
    }

    /// Writes every field (creator only, between `begin_init` and `publish`).
    /// The checksum is computed here.
    pub fn write(&self, f: &HeaderFields) {
        // Relaxed stores: published by `publish`'s Release.
        let r = Ordering::Relaxed;
        self.magic.store(f.magic, r);
        self.version.store(f.version, r);
        self.kind.store(f.kind, r);
        self.flavor.store(f.flavor, r);
        self.elem_size.store(f.elem_size, r);
        self.elem_align.store(f.elem_align, r);
        self.type_fingerprint.store(f.type_fingerprint, r);
        self.capacity.store(f.capacity, r);
        self.slot_count.store(f.slot_count, r);
        self.slot_stride.store(f.slot_stride, r);
        self.control_offset.store(f.control_offset, r);
        self.endpoints_offset.store(f.endpoints_offset, r);
        self.endpoint_count.store(f.endpoint_count, r);
        self.slots_offset.store(f.slots_offset, r);
        self.total_len.store(f.total_len, r);
        self.creator_pid.store(f.creator_pid, r);
        self.creator_uid.store(f.creator_uid, r);
        self.creator_start.store(f.creator_start, r);
        self.created_unix_ns.store(f.created_unix_ns, r);
        self.wake_mode.store(f.wake_mode, r);
        self.msg_max.store(f.msg_max, r);
        self.payload_offset.store(f.payload_offset, r);
        self.payload_stride.store(f.payload_stride, r);
        self.creator_pid_ns.store(f.creator_pid_ns, r);
        for (w, v) in self.type_name.iter().zip(f.type_name) {
            w.store(v, r);
        }
        self.checksum.store(f.compute_checksum(), r);
    }
}

/// 64-bit FNV-1a, for checksums and type fingerprints (stable across builds).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// The [`TypeDesc`] of `T`: size, alignment, and a fingerprint of its name.
///
/// The name comes from `std::any::type_name`, which is stable for one
/// compiler and crate graph: processes built from the same code agree;
/// binaries built by different compilers might not (then opening reports
/// `TypeMismatch` rather than risking a misread).
pub fn type_desc<T>() -> TypeDesc {
    let size = std::mem::size_of::<T>() as u64;
    let align = std::mem::align_of::<T>() as u64;
    let mut h = Fnv::new();
    h.bytes(std::any::type_name::<T>().as_bytes());
    h.u64(size);
    h.u64(align);
    TypeDesc {
        size,
        align,
        fingerprint: h.finish(),
        name: TypeName::new(std::any::type_name::<T>()),
    }
}
