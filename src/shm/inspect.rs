//! Looking at segments from outside: what `shmring ls`, `inspect`, `rm` and
//! `gc` show and do.
//!
//! Only files that start with an intact shmring header are reported; any
//! other file in the directory is left alone and not listed. Nothing here
//! writes to a segment: `gc` only unlinks names that no live process maps
//! and no live endpoint holds.

use super::endpoints::{EndpointTable, ENDPOINTS};
use super::header::{HeaderFields, MAGIC};
use super::segment::{Location, Segment, SegmentOptions};
use crate::channel::control::{Peers, QueueControl};
use crate::channel::{FLAVOR_MPMC, FLAVOR_SPSC};
use crate::error::{Flavor, Kind, Role, SegmentError};
use crate::process::{liveness, Liveness};
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory named segments live in.
pub const SHM_DIR: &str = "/dev/shm";

/// One endpoint-table entry, as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointState {
    /// Entry index.
    pub index: usize,
    /// Sender or receiver.
    pub role: Role,
    /// The owning process.
    pub pid: u32,
    /// Whether that process is alive (false: a reaper will reclaim it).
    pub alive: bool,
}

/// What a segment's header and control block say, read once.
#[derive(Clone, Debug)]
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
    /// Queues: messages queued now.
    pub occupancy: Option<u64>,
    /// Byte queues: the largest message.
    pub max_message: Option<u64>,
    /// Queues: the endpoint table's live entries.
    pub endpoints: Vec<EndpointState>,
    /// Queues: messages lost to processes that died mid-operation.
    pub lost: Option<u64>,
    /// Queues: endpoints reclaimed from dead processes so far.
    pub reaped: Option<u64>,
    /// Pids of the processes that map the file now (from `/proc/*/maps`).
    pub mapped_by: Vec<u32>,
    /// The whole header.
    pub header: HeaderFields,
}

impl SegmentReport {
    /// Whether some live process maps the segment or holds a live endpoint
    /// in it: `gc` never removes such a segment.
    pub fn in_use(&self) -> bool {
        !self.mapped_by.is_empty() || self.endpoints.iter().any(|e| e.alive)
    }
}

/// Pids (other than this one) that map `path`, from `/proc/<pid>/maps`.
pub fn mapped_by(path: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = path.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
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
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        // A mapped file shows as its path; an unlinked one gains " (deleted)".
        if maps
            .lines()
            .any(|l| l.ends_with(&needle) || l.ends_with(&format!("{needle} (deleted)")))
        {
            pids.push(pid);
        }
    }
    pids
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
    let flavor = match (is_queue, h.flavor) {
        (true, FLAVOR_SPSC) => Some(Flavor::Spsc),
        (true, FLAVOR_MPMC) => Some(Flavor::Mpmc),
        _ => None,
    };
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
        reaped: None,
        mapped_by: mapped_by(&path),
        path,
        header: h,
    };
    if is_queue && h.control_offset > 0 {
        let at = |field: usize| h.control_offset + field as u64;
        let head = read_u64(&seg, at(offset_of!(QueueControl, head)));
        let tail = read_u64(&seg, at(offset_of!(QueueControl, tail)));
        report.occupancy = match (flavor, head, tail) {
            (Some(Flavor::Spsc), Some(hd), Some(tl)) => Some(tl.wrapping_sub(hd).min(h.capacity)),
            (Some(Flavor::Mpmc), Some(hd), Some(tl)) => {
                Some(crate::ring::mpmc::occupancy(hd, tl, h.capacity))
            }
            _ => None,
        };
        let peers = offset_of!(QueueControl, peers);
        report.reaped = read_u64(&seg, at(peers + offset_of!(Peers, reaped)));
        report.lost = read_u64(&seg, at(peers + offset_of!(Peers, lost)));
        if let Some(table) = seg.at::<AtomicU64>(h.endpoints_offset, ENDPOINTS as u64) {
            // SAFETY: ENDPOINTS words in bounds (checked by `at`), alive
            // with `seg`.
            let words = unsafe { std::slice::from_raw_parts(table.as_ptr(), ENDPOINTS) };
            report.endpoints = EndpointTable::new(words)
                .entries()
                .map(|e| EndpointState {
                    index: e.index,
                    role: e.role,
                    pid: e.owner.pid,
                    alive: liveness(e.owner) == Liveness::Alive,
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
pub struct GcOutcome {
    /// The segment's file.
    pub path: PathBuf,
    /// Whether it was removed.
    pub removed: bool,
    /// Why it was kept, or what removing it did.
    pub reason: String,
}

/// Removes the shmring segments in `dir` that no live process maps and no
/// live endpoint holds. Segments in use are kept, foreign files untouched;
/// a segment whose header does not validate is kept and reported (remove
/// it by name with `rm` once you know it is not in use).
pub fn gc(dir: &Path, dry_run: bool) -> Vec<GcOutcome> {
    let mut out = Vec::new();
    for r in scan(dir) {
        match r {
            Ok(rep) if rep.in_use() => out.push(GcOutcome {
                path: rep.path,
                removed: false,
                reason: format!(
                    "in use: mapped by {:?}, {} live endpoint(s)",
                    rep.mapped_by,
                    rep.endpoints.iter().filter(|e| e.alive).count()
                ),
            }),
            Ok(rep) => {
                let removed = !dry_run && std::fs::remove_file(&rep.path).is_ok();
                out.push(GcOutcome {
                    path: rep.path,
                    removed,
                    reason: if dry_run {
                        "unused (dry run: kept)".into()
                    } else if removed {
                        "unused: removed".into()
                    } else {
                        "unused, but removing it failed".into()
                    },
                });
            }
            Err((path, e)) => out.push(GcOutcome {
                path,
                removed: false,
                reason: format!("not a valid segment, kept: {e}"),
            }),
        }
    }
    out
}
