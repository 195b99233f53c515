//! Looking at segments from outside: what `shmring ls`, `inspect`, `rm` and
//! `gc` show and do. Sits above every layer it reads: the segment layer
//! (header, endpoint table), the queue's control block and the MPMC ring's
//! occupancy.
//!
//! Only files that start with an intact shmring header are reported; any
//! other file in the directory is left alone and not listed. Nothing here
//! writes to a segment: `gc` only unlinks names it can prove unused (see
//! [`gc`]).

use crate::channel::control::{Peers, QueueControl, CLOSED};
use crate::error::SegmentError;
use crate::process::{liveness, Liveness, ProcId};
use crate::ring::mpmc::{occupancy, Intent, KEEP};
use crate::shm::endpoints::{EndpointTable, ENDPOINTS};
use crate::shm::header::MAGIC;
use crate::shm::segment::{Segment, SegmentOptions};
use crate::types::{Flavor, Kind, Role};
use std::mem::offset_of;

pub use crate::shm::header::HeaderFields;
pub use crate::shm::segment::Location;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory named segments live in.
pub const SHM_DIR: &str = "/dev/shm";

/// One endpoint-table entry, as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointState {
    /// Entry index.
    pub index: usize,
    /// Sender or receiver.
    pub role: Role,
    /// The owning process.
    pub pid: u32,
    /// Whether that process is alive (false: a reaper will reclaim it).
    pub alive: bool,
    /// MPMC byte queues: a receiver that keeps its claims
    /// ([`ByteReceiver::keep_claims`](crate::ByteReceiver::keep_claims)).
    /// A dead one's entry stays while it holds a message kept for
    /// [`ByteQueue::adopt_kept`](crate::ByteQueue::adopt_kept).
    pub keeps_claims: bool,
}

/// What a segment's header and control block say, read once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The name in `/dev/shm` (or the file name).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The file's size.
    pub file_size: u64,
    /// What it holds.
    pub kind: Kind,
    /// Queues: SPSC or MPMC.
    pub flavor: Option<Flavor>,
    /// Capacity (queues), length (arrays), 1 (structs).
    pub capacity: u64,
    /// Queues: messages queued now; maps and lists: their entries.
    pub occupancy: Option<u64>,
    /// Byte queues: the largest message.
    pub max_message: Option<u64>,
    /// Queues: the endpoint table's live entries.
    pub endpoints: Vec<EndpointState>,
    /// Queues: messages lost to processes that died mid-operation.
    pub lost: Option<u64>,
    /// Queues: whether the stream is closed (ended by its senders, or
    /// closed outright).
    pub closed: Option<bool>,
    /// Queues: endpoints reclaimed from dead processes so far.
    pub reaped: Option<u64>,
    /// Byte queues that are halves of a pipe: messages the receiving end
    /// found addressed to one of its predecessors.
    pub stale: Option<u64>,
    /// Queues: the sender and receiver generations (attaches so far).
    pub generations: Option<(u64, u64)>,
    /// Pids of the processes that map the file now (from `/proc/*/maps`).
    pub mapped_by: Vec<u32>,
    /// Pids whose `/proc/<pid>/maps` could not be read (another user's
    /// process when not root, `hidepid`, a non-dumpable process): any of
    /// them may map the file.
    pub maps_unreadable: Vec<u32>,
    /// The whole header.
    pub header: HeaderFields,
}

impl SegmentReport {
    /// Whether some live process whose maps could be read maps the segment,
    /// or a live endpoint is in it: `rm` refuses such a segment without
    /// `--force`. (`gc` asks more: [`keep_reason`](Self::keep_reason).)
    pub fn in_use(&self) -> bool {
        !self.mapped_by.is_empty() || self.endpoints.iter().any(|e| e.alive)
    }

    /// Why `gc` must keep this segment, or `None` if it is proven unused:
    /// nobody maps it (every process's maps were read), no endpoint is
    /// alive, its kind is known, its creator is dead, and it holds nothing
    /// a later process could want: a queue with no message in it (an ended
    /// stream, or one nobody sent on), or a segment whose creator died
    /// before publishing it. Names stay until removed, so a queue holding
    /// messages and any shared state (Value, Array, struct) are kept: only
    /// `shmring rm` removes those.
    ///
    /// Liveness is judged in this process's pid namespace, the only one its
    /// `/proc` shows. A process of another pid namespace that shares this
    /// `/dev/shm` is invisible here, and a pid recorded there may name an
    /// unrelated process here; so a creator whose pid and start time still
    /// match a process here counts as alive, and one that does not is only
    /// dead *as far as this namespace can tell* (which `gc` says). A segment
    /// whose header records another pid namespace than this process's (or
    /// none it could read) is always kept: its users are invisible here.
    ///
    /// `ignore_unreadable`: judge only the processes whose maps could be
    /// read (the caller vouches that the others map none of its segments).
    pub fn keep_reason(&self, ignore_unreadable: bool) -> Option<String> {
        if !ignore_unreadable && !self.maps_unreadable.is_empty() {
            return Some(format!(
                "cannot read the memory maps of pid(s) {:?}, which may map it \
                 (run gc as root, or tell it to ignore them)",
                self.maps_unreadable
            ));
        }
        let alive = self.endpoints.iter().filter(|e| e.alive).count();
        if !self.mapped_by.is_empty() || alive > 0 {
            return Some(format!(
                "in use: mapped by {:?}, {alive} live endpoint(s)",
                self.mapped_by
            ));
        }
        if let Kind::Unknown(k) = self.kind {
            return Some(format!(
                "kind {k} is unknown to this build: cannot judge who holds it"
            ));
        }
        let ours = crate::process::pid_namespace();
        let theirs = self.header.creator_pid_ns;
        if theirs != ours || theirs == 0 {
            return Some(format!(
                "created in pid namespace {theirs}, this process lives in {ours}: \
                 its users' liveness cannot be judged from here"
            ));
        }
        let creator = self.creator();
        if liveness(creator) == Liveness::Alive {
            return Some(format!(
                "its creator (pid {}, start {}) is alive in this pid namespace",
                creator.pid, creator.start
            ));
        }
        if self.header_ready() {
            match self.kind {
                // Names stay until removed: gc removes only what holds
                // nothing a later process could want.
                Kind::Queue | Kind::ByteQueue => match self.occupancy {
                    // A message kept for an adopter is not counted in the
                    // occupancy (a receiver claimed it), but is wanted.
                    Some(0) if self.endpoints.iter().any(|e| !e.alive && e.keeps_claims) => {
                        return Some(
                            "a dead receiver's kept message(s) wait for an adopter \
                             (ByteQueue::adopt_kept; remove it with `shmring rm`)"
                                .into(),
                        )
                    }
                    Some(0) => {}
                    Some(n) => {
                        return Some(format!(
                            "holds {n} undelivered message(s) for a receiver still to come                              (remove it with `shmring rm`)"
                        ))
                    }
                    None => return Some("its occupancy could not be read".into()),
                },
                _ => {
                    return Some(
                        "holds shared state (a Value, Array, struct, map or list) that a later process                          may open by name (remove it with `shmring rm`)"
                            .into(),
                    )
                }
            }
        }
        None
    }

    /// Whether the creator finished and published the segment.
    fn header_ready(&self) -> bool {
        self.header.total_len != 0 && self.header.kind != 0
    }

    /// The creating process, as the header records it.
    fn creator(&self) -> ProcId {
        ProcId {
            pid: self.header.creator_pid,
            start: self.header.creator_start,
        }
    }
}

/// Who maps a file, from every `/proc/<pid>/maps` (read as bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mappers {
    /// Processes (other than this one) that map it.
    pub pids: Vec<u32>,
    /// Processes whose maps could not be read: they may map it.
    pub unreadable: Vec<u32>,
}

/// Whether one `/proc/<pid>/maps` line maps the file `(dev, ino)` at `path`.
///
/// A line is `start-end perms offset major:minor inode path`; the path is
/// raw bytes (any but newline, which the kernel writes as `\012`), with
/// " (deleted)" appended once unlinked. The device and inode identify the
/// file whatever name it was mapped through (a hard link, a path that is
/// not UTF-8); the path is compared too, for file systems (overlayfs) whose
/// maps show another device than `stat` does.
fn line_maps(line: &[u8], dev: Option<(u64, u64)>, ino: u64, path: &[u8]) -> bool {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (Some(_), Some(_), Some(_), Some(dev_field), Some(ino_field)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return false;
    };
    let parsed_ino = std::str::from_utf8(ino_field)
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    if parsed_ino != Some(ino) || ino == 0 {
        return false;
    }
    let parsed_dev = std::str::from_utf8(dev_field).ok().and_then(|s| {
        let (ma, mi) = s.split_once(':')?;
        Some((
            u64::from_str_radix(ma, 16).ok()?,
            u64::from_str_radix(mi, 16).ok()?,
        ))
    });
    if dev.is_some() && parsed_dev == dev {
        return true;
    }
    let line = line.strip_suffix(b" (deleted)").unwrap_or(line);
    !path.is_empty() && line.ends_with(path)
}

/// Every process (other than this one) that maps `path`, from
/// `/proc/*/maps` read as bytes, and every process whose maps could not be
/// read (which may map it).
pub fn mappers(path: &Path) -> Mappers {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    let mut out = Mappers::default();
    let Ok(meta) = std::fs::metadata(path) else {
        return out;
    };
    let dev = (
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
    );
    // Newlines in a path are shown as "\012" in maps.
    let mut needle = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        if b == b'\n' {
            needle.extend_from_slice(b"\\012");
        } else {
            needle.push(b);
        }
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        // No /proc: nothing can be proven.
        out.unreadable.push(0);
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        match std::fs::read(format!("/proc/{pid}/maps")) {
            Ok(maps) => {
                if maps
                    .split(|&b| b == b'\n')
                    .any(|l| line_maps(l, Some(dev), meta.ino(), &needle))
                {
                    out.pids.push(pid);
                }
            }
            // Exited meanwhile: it maps nothing.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {}
            Err(_) => out.unreadable.push(pid),
        }
    }
    out
}

/// Pids (other than this one) that map `path`, from `/proc/<pid>/maps`.
/// Processes whose maps cannot be read are not listed: see [`mappers`].
pub fn mapped_by(path: &Path) -> Vec<u32> {
    mappers(path).pids
}

/// Whether the file at `path` starts with the shmring magic.
fn has_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| u64::from_le_bytes(magic) == MAGIC)
}

fn read_u64(seg: &Segment, offset: u64) -> Option<u64> {
    // Relaxed: a snapshot for display.
    seg.at::<AtomicU64>(offset, 1)
        // SAFETY: in bounds and aligned (checked by `at`), alive with `seg`.
        .map(|p| unsafe { p.as_ref() }.load(Ordering::Relaxed))
}

/// The end of what an SPSC queue's stamps say is published, from `head`
/// and the `tail` hint, as an attaching producer derives it
/// (`SpscRing::published_end`): the hint may be behind the stamps (a
/// producer killed between its last stamp and the hint), and `gc` must not
/// take a queue holding messages for an empty one. Every stamp is read
/// through the bounds-checked mapping; words further apart than a ring
/// allows, or a geometry that is not an SPSC ring's, leave the hint.
fn spsc_published_end(seg: &Segment, h: &HeaderFields, head: u64, hint: u64) -> u64 {
    let cap = h.capacity;
    if h.slot_count == 0 || !h.slot_count.is_power_of_two() || h.slot_count < cap {
        return hint;
    }
    let mask = h.slot_count - 1;
    let published = |pos: u64| {
        (pos & mask)
            .checked_mul(h.slot_stride)
            .and_then(|o| o.checked_add(h.slots_offset))
            .and_then(|o| read_u64(seg, o))
            == Some(pos.wrapping_add(1))
    };
    crate::ring::spsc::scan_end(head, hint, cap, published).unwrap_or(hint)
}

/// Reads the report of the segment at `location` (named or path).
///
/// # Errors
/// As for opening: `NotFound`, `Corrupted`, `VersionMismatch`, ….
pub fn inspect(location: &Location) -> Result<SegmentReport, SegmentError> {
    let opts = SegmentOptions {
        trust_shared: true,
        ..SegmentOptions::default()
    };
    let (seg, h) = Segment::open(location, &opts)?;
    let path = seg.path().unwrap_or_default();
    let name = match location {
        Location::Named(n) => n.clone(),
        _ => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let kind = Kind::from_raw(h.kind);
    let is_queue = matches!(kind, Kind::Queue | Kind::ByteQueue);
    let flavor = Flavor::from_raw(h.flavor).filter(|_| is_queue);
    let mut report = SegmentReport {
        name,
        file_size: seg.len(),
        kind,
        flavor,
        capacity: h.capacity,
        occupancy: None,
        max_message: (kind == Kind::ByteQueue).then_some(h.msg_max),
        endpoints: Vec::new(),
        lost: None,
        closed: None,
        reaped: None,
        stale: None,
        generations: None,
        mapped_by: Vec::new(),
        maps_unreadable: Vec::new(),
        path,
        header: h,
    };
    let m = mappers(&report.path);
    report.mapped_by = m.pids;
    report.maps_unreadable = m.unreadable;
    if kind.grows() {
        report.occupancy = read_u64(&seg, crate::container::COUNT_AT);
    }
    if is_queue && h.control_offset > 0 {
        let at = |field: usize| h.control_offset + field as u64;
        let head = read_u64(&seg, at(offset_of!(QueueControl, head)));
        let tail = read_u64(&seg, at(offset_of!(QueueControl, tail)));
        report.occupancy = match (flavor, head, tail) {
            (Some(Flavor::Spsc), Some(hd), Some(tl)) => {
                let end = spsc_published_end(&seg, &h, hd, tl);
                Some(crate::ring::spsc::occupancy(hd, end, h.capacity))
            }
            (Some(Flavor::Mpmc), Some(hd), Some(tl)) => Some(occupancy(hd, tl, h.capacity)),
            _ => None,
        };
        let peers = offset_of!(QueueControl, peers);
        report.reaped = read_u64(&seg, at(peers + offset_of!(Peers, reaped)));
        report.lost = read_u64(&seg, at(peers + offset_of!(Peers, lost)));
        report.closed =
            read_u64(&seg, at(peers + offset_of!(Peers, senders))).map(|w| w & CLOSED != 0);
        if kind == Kind::ByteQueue {
            report.stale = read_u64(&seg, at(peers + offset_of!(Peers, stale)));
        }
        let generation = peers + offset_of!(Peers, generation);
        report.generations = read_u64(&seg, at(generation))
            .zip(read_u64(&seg, at(generation + size_of::<AtomicU64>())));
        if let Some(table) = seg.at::<AtomicU64>(h.endpoints_offset, ENDPOINTS as u64) {
            // SAFETY: ENDPOINTS words in bounds (checked by `at`), alive
            // with `seg`.
            let words = unsafe { std::slice::from_raw_parts(table.as_ptr(), ENDPOINTS) };
            // The KEEP flag of entry `i`'s intent record (the records follow
            // the table, 64 bytes each; `flags` is their third word).
            let keeps = |i: usize| {
                let flags = (ENDPOINTS as u64 * 8)
                    .checked_add(i as u64 * size_of::<Intent>() as u64 + 16)
                    .and_then(|o| h.endpoints_offset.checked_add(o));
                flavor == Some(Flavor::Mpmc)
                    && flags
                        .and_then(|o| read_u64(&seg, o))
                        .is_some_and(|f| f & KEEP != 0)
            };
            report.endpoints = EndpointTable::new(words)
                .entries()
                .map(|e| EndpointState {
                    index: e.index,
                    role: e.role,
                    pid: e.owner.pid,
                    // An entry being reaped belongs to a dead endpoint (its
                    // word names the reaper, not the owner).
                    alive: !e.reaping && liveness(e.owner) == Liveness::Alive,
                    keeps_claims: e.role == Role::Receiver && keeps(e.index),
                })
                .collect();
        }
    }
    Ok(report)
}

/// Every shmring segment in `dir` (default `/dev/shm`): a report, or the
/// error that opening it gave. Files without the shmring magic are skipped.
pub fn scan(dir: &Path) -> Vec<Result<SegmentReport, (PathBuf, SegmentError)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| has_magic(p))
        .collect();
    paths.sort();
    for path in paths {
        let loc = if dir == Path::new(SHM_DIR) {
            Location::Named(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        } else {
            Location::Path(path.clone())
        };
        out.push(inspect(&loc).map_err(|e| (path, e)));
    }
    out
}

/// What `gc` did with one segment.
#[derive(Debug)]
#[non_exhaustive]
pub struct GcOutcome {
    /// The segment's file.
    pub path: PathBuf,
    /// Whether it was removed.
    pub removed: bool,
    /// Why it was kept, or what removing it did.
    pub reason: String,
}

/// Removes the shmring segments in `dir` that it can prove unused
/// ([`SegmentReport::keep_reason`]): every process's memory maps were read
/// (as bytes, so no path is skipped) and none maps it, no endpoint is
/// alive, its kind is known and its creator is dead. Anything it cannot
/// judge is kept, with the reason; foreign files are untouched; a segment
/// whose header does not validate is kept and reported (remove it by name
/// with `rm` once you know it is not in use).
///
/// Liveness is judged in this pid namespace: processes of another pid
/// namespace that share the directory are invisible to `/proc` here, and
/// each removal says so.
///
/// A process whose maps cannot be read (another user's, when not root; a
/// non-dumpable one; `hidepid`) may map anything, so by default its mere
/// presence keeps every segment; `ignore_unreadable` judges only the
/// processes that can be read.
pub fn gc(dir: &Path, dry_run: bool, ignore_unreadable: bool) -> Vec<GcOutcome> {
    let mut out = Vec::new();
    for r in scan(dir) {
        match r {
            Ok(rep) => match rep.keep_reason(ignore_unreadable) {
                Some(reason) => out.push(GcOutcome {
                    path: rep.path,
                    removed: false,
                    reason,
                }),
                None => {
                    let loc = if dir == Path::new(SHM_DIR) {
                        Location::Named(rep.name.clone())
                    } else {
                        Location::Path(rep.path.clone())
                    };
                    // Only if no process holds it now (each handle holds
                    // its file locked, shared: one that opened it after
                    // the scan read the maps is seen here) and the name
                    // still names the file judged.
                    let outcome = if dry_run {
                        Ok(false)
                    } else {
                        Segment::remove_unused(&loc, &rep.path)
                    };
                    if let Ok(false) = outcome {
                        if !dry_run {
                            out.push(GcOutcome {
                                path: rep.path,
                                removed: false,
                                reason: "in use: a process opened it while gc looked".into(),
                            });
                            continue;
                        }
                    }
                    let removed = matches!(outcome, Ok(true));
                    let why = format!(
                        "unused: no process maps it, no live endpoint, creator pid {} is dead \
                         (judged in this pid namespace only)",
                        rep.header.creator_pid
                    );
                    out.push(GcOutcome {
                        path: rep.path,
                        removed,
                        reason: if dry_run {
                            format!("{why}; dry run: kept")
                        } else if removed {
                            format!("{why}; removed")
                        } else {
                            format!("{why}; removing it failed")
                        },
                    });
                }
            },
            Err((path, e)) => out.push(GcOutcome {
                path,
                removed: false,
                reason: format!("not a valid segment, kept: {e}"),
            }),
        }
    }
    out
}
