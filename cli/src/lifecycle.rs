//! `shmring ls`, `inspect`, `rm`, `gc`: the life of segments in `/dev/shm`.

use crate::types::Failure;
use clap::Args;
use serde_json::json;
use shmring::inspect::{self, Location, SegmentReport, SHM_DIR};
use shmring::{Flavor, Role, SegmentError};
use std::path::{Path, PathBuf};

/// Where to look.
#[derive(Args, Debug)]
pub struct DirArgs {
    /// The directory to scan (default /dev/shm).
    #[arg(long, default_value = SHM_DIR)]
    dir: PathBuf,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// `shmring ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    dir: DirArgs,
}

/// `shmring inspect NAME`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A name in /dev/shm, or a path (containing '/').
    name: String,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `shmring rm NAME...`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Names in /dev/shm, or paths (containing '/').
    #[arg(required = true)]
    names: Vec<String>,
    /// Remove even a segment that a live process maps or holds an endpoint in.
    #[arg(long)]
    force: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// `shmring gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Judge only the processes whose memory maps can be read (by default a
    /// process whose maps cannot be read may map anything, so gc keeps all).
    #[arg(long)]
    ignore_unreadable: bool,
}

fn location(name: &str) -> Location {
    if name.contains('/') {
        Location::Path(PathBuf::from(name))
    } else {
        Location::Named(name.to_string())
    }
}

fn flavor(f: Option<Flavor>) -> &'static str {
    match f {
        Some(Flavor::Spsc) => "spsc",
        Some(Flavor::Mpmc) => "mpmc",
        None => "-",
    }
}

fn report_json(r: &SegmentReport) -> serde_json::Value {
    let alive = r.endpoints.iter().filter(|e| e.alive).count();
    json!({
        "name": r.name,
        "path": r.path,
        "kind": r.kind.to_string(),
        "flavor": flavor(r.flavor),
        "capacity": r.capacity,
        "occupancy": r.occupancy,
        "max_message": r.max_message,
        "endpoints_alive": alive,
        "endpoints_dead": r.endpoints.len() - alive,
        "endpoints": r.endpoints.iter().map(|e| json!({
            "index": e.index,
            "role": if e.role == Role::Sender { "sender" } else { "receiver" },
            "pid": e.pid,
            "alive": e.alive,
            "keeps_claims": e.keeps_claims,
        })).collect::<Vec<_>>(),
        "lost": r.lost,
        "closed": r.closed,
        "reaped": r.reaped,
        "stale": r.stale,
        "generations": r.generations.map(|(s, r)| json!({"sender": s, "receiver": r})),
        "mapped_by": r.mapped_by,
        "maps_unreadable": r.maps_unreadable,
        "size": r.file_size,
        "in_use": r.in_use(),
        "header": {
            "version": r.header.version,
            "kind": r.header.kind,
            "flavor": r.header.flavor,
            "elem_size": r.header.elem_size,
            "elem_align": r.header.elem_align,
            "type_fingerprint": format!("{:016x}", r.header.type_fingerprint),
            "capacity": r.header.capacity,
            "slot_count": r.header.slot_count,
            "slot_stride": r.header.slot_stride,
            "control_offset": r.header.control_offset,
            "endpoints_offset": r.header.endpoints_offset,
            "slots_offset": r.header.slots_offset,
            "total_len": r.header.total_len,
            "msg_max": r.header.msg_max,
            "payload_offset": r.header.payload_offset,
            "payload_stride": r.header.payload_stride,
            "creator_pid": r.header.creator_pid,
            "creator_uid": r.header.creator_uid,
            "created_unix_ns": r.header.created_unix_ns,
            "wake_mode": r.header.wake_mode,
        },
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `shmring ls`: every shmring segment in the directory.
pub fn ls(args: LsArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let found = inspect::scan(dir);
    if args.dir.json {
        for r in &found {
            let v = match r {
                Ok(rep) => report_json(rep),
                Err((path, e)) => json!({"path": path, "error": e.to_string()}),
            };
            println!("{v}");
        }
        return Ok(());
    }
    println!(
        "{:<32} {:<20} {:<6} {:>9} {:>9} {:>11} {:>6} {:>12}",
        "NAME", "KIND", "FLAVOR", "CAPACITY", "QUEUED", "ALIVE/DEAD", "LOST", "SIZE"
    );
    for r in &found {
        match r {
            Ok(rep) => {
                let alive = rep.endpoints.iter().filter(|e| e.alive).count();
                println!(
                    "{:<32} {:<20} {:<6} {:>9} {:>9} {:>11} {:>6} {:>12}",
                    rep.name,
                    if rep.closed == Some(true) {
                        format!("{} (closed)", rep.kind)
                    } else {
                        rep.kind.to_string()
                    },
                    flavor(rep.flavor),
                    rep.capacity,
                    opt(rep.occupancy),
                    format!("{alive}/{}", rep.endpoints.len() - alive),
                    opt(rep.lost),
                    rep.file_size
                );
            }
            Err((path, e)) => println!("{:<32} error: {e}", path.display()),
        }
    }
    if found.is_empty() {
        println!("(no shmring segments in {})", dir.display());
    }
    Ok(())
}

fn not_found(name: &str, e: SegmentError) -> Failure {
    match e {
        SegmentError::NotFound(_) => Failure::Usage(format!("no segment named {name:?}")),
        e => Failure::Run(format!("{name}: {e}")),
    }
}

/// `shmring inspect NAME`: the whole header and counters.
pub fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let r = inspect::inspect(&location(&args.name)).map_err(|e| not_found(&args.name, e))?;
    let v = report_json(&r);
    if args.json {
        println!("{v}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Failure::Run(e.to_string()))?
        );
    }
    Ok(())
}

/// `shmring rm NAME...`: removes segments, refusing ones in use unless forced.
pub fn rm(args: RmArgs) -> Result<(), Failure> {
    let mut failed = None;
    for name in &args.names {
        let loc = location(name);
        let outcome = match inspect::inspect(&loc) {
            Ok(r) if r.in_use() && !args.force => Err(format!(
                "{name}: in use (mapped by {:?}, {} live endpoint(s)); --force to remove anyway",
                r.mapped_by,
                r.endpoints.iter().filter(|e| e.alive).count()
            )),
            Ok(r) => std::fs::remove_file(&r.path).map_err(|e| format!("{name}: {e}")),
            Err(SegmentError::NotFound(_)) => Err(format!("{name}: no such segment")),
            // Not a valid shmring segment: never removed by this tool.
            Err(e) => Err(format!("{name}: not removed: {e}")),
        };
        if args.json {
            println!(
                "{}",
                json!({"name": name, "removed": outcome.is_ok(), "error": outcome.as_ref().err()})
            );
        } else {
            match &outcome {
                Ok(()) => println!("removed {name}"),
                Err(m) => eprintln!("shmring rm: {m}"),
            }
        }
        if let Err(m) = outcome {
            failed = Some(m);
        }
    }
    match failed {
        Some(m) => Err(Failure::Run(m)),
        None => Ok(()),
    }
}

/// `shmring gc`: removes segments it can prove unused; prints why it kept
/// each other one (see `shmring::inspect::gc`).
pub fn gc(args: GcArgs) -> Result<(), Failure> {
    let dir: &Path = &args.dir.dir;
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    for o in inspect::gc(dir, args.dry_run, args.ignore_unreadable) {
        if args.dir.json {
            println!(
                "{}",
                json!({"path": o.path, "removed": o.removed, "reason": o.reason})
            );
        } else {
            println!(
                "{} {}: {}",
                if o.removed { "removed" } else { "kept   " },
                o.path.display(),
                o.reason
            );
        }
    }
    Ok(())
}
