//! Showing results: the table with its ratios (per round, with their spread,
//! under `--repeat`), the verdicts, the `--json` lines, and the
//! human-readable figures (sizes, times, rates) they use.

use crate::types::{Mode, Round, Row, Spread};
use std::fmt::Write as _;

/// A row's `--json` line: exactly the documented keys.
pub fn json_line(row: &Row) -> String {
    format!(
        "{{\"transport\":\"{}\",\"mode\":\"{}\",\"size\":{},\"rtt_p50_ns\":{},\
         \"rtt_p99_ns\":{},\"rtt_p999_ns\":{},\"rtt_max_ns\":{},\"msgs_per_s\":{:.1},\
         \"bytes_per_s\":{:.1}}}",
        row.transport,
        row.mode.name(),
        row.size,
        row.lat.p50,
        row.lat.p99,
        row.lat.p999,
        row.lat.max,
        row.msgs_per_s,
        row.bytes_per_s()
    )
}

/// A row's `--json` line with, for a row measured `--repeat` times, its
/// `rounds` (each round's figures and ratios to the floor of the same round)
/// and their `spread`; `rows` holds the floor. Exactly [`json_line`] for a
/// row measured once.
pub fn json_line_with_rounds(row: &Row, rows: &[Row]) -> String {
    let mut line = json_line(row);
    if row.rounds.is_empty() {
        return line;
    }
    let floor = floor_of(rows, row.mode).filter(|_| row.transport != "floor");
    let p50 = |x: &Round| x.lat.p50 as f64;
    let msgs = |x: &Round| x.msgs_per_s;
    let mut rounds = Vec::new();
    for a in &row.rounds {
        let mut o = format!(
            "{{\"group_size\":{},\"round\":{},\"rtt_p50_ns\":{},\"rtt_p99_ns\":{},\
             \"rtt_p999_ns\":{},\"rtt_max_ns\":{},\"msgs_per_s\":{:.1}",
            a.group, a.index, a.lat.p50, a.lat.p99, a.lat.p999, a.lat.max, a.msgs_per_s
        );
        if let Some(b) = floor.and_then(|f| same_round(f, a)) {
            for (key, f) in [
                ("p50_over_floor", &p50 as &dyn Fn(&Round) -> f64),
                ("msgs_over_floor", &msgs),
            ] {
                if let Some(r) = round_ratio(a, b, f) {
                    let _ = write!(o, ",\"{key}\":{r:.4}");
                }
            }
        }
        o.push('}');
        rounds.push(o);
    }
    let mut spreads = Vec::new();
    let own = [
        ("rtt_p50_ns", row.rounds.iter().map(p50).collect::<Vec<_>>()),
        ("msgs_per_s", row.rounds.iter().map(msgs).collect()),
    ];
    let ratios = floor.map(|f| {
        [
            ("p50_over_floor", round_ratios(row, f, p50)),
            ("msgs_over_floor", round_ratios(row, f, msgs)),
        ]
    });
    for (key, v) in own.into_iter().chain(ratios.into_iter().flatten()) {
        if let Some(s) = Spread::of(&v) {
            spreads.push(format!(
                "\"{key}\":{{\"median\":{:.4},\"min\":{:.4},\"max\":{:.4}}}",
                s.median, s.min, s.max
            ));
        }
    }
    line.pop();
    let _ = write!(
        line,
        ",\"rounds\":[{}],\"spread\":{{{}}}}}",
        rounds.join(","),
        spreads.join(",")
    );
    line
}

/// `base`'s round of the same group and number as `a`.
fn same_round<'a>(base: &'a Row, a: &Round) -> Option<&'a Round> {
    base.rounds
        .iter()
        .find(|b| b.group == a.group && b.index == a.index)
}

/// `f(a) / f(b)`, if that is a number.
fn round_ratio(a: &Round, b: &Round, f: &dyn Fn(&Round) -> f64) -> Option<f64> {
    let (x, y) = (f(a), f(b));
    (y > 0.0 && x.is_finite()).then(|| x / y)
}

/// Per round of `row`, `f` of it over `f` of `base`'s round of the same
/// group and number (empty unless both were measured `--repeat` times).
pub fn round_ratios(row: &Row, base: &Row, f: impl Fn(&Round) -> f64) -> Vec<f64> {
    row.rounds
        .iter()
        .filter_map(|a| round_ratio(a, same_round(base, a)?, &f))
        .collect()
}

/// A ratio cell: `1.32 (1.25–1.41)`, the median and the range of the
/// per-round ratios, when `row` and `base` (another row) were both measured
/// `--repeat` times; otherwise the ratio of the two rows' figures.
fn ratio_cell(
    row: &Row,
    base: Option<&Row>,
    per_round: impl Fn(&Round) -> f64,
    whole: impl Fn(&Row) -> f64,
) -> String {
    if let Some(b) = base.filter(|b| !std::ptr::eq(*b, row)) {
        if let Some(s) = Spread::of(&round_ratios(row, b, per_round)) {
            return format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max);
        }
    }
    ratio(whole(row), base.map(whole))
}

/// `8 B`, `1 KiB`, `64 KiB`, `1.5 MiB`.
pub fn human_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Three significant digits.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `83 ns`, `1.23 µs`, `45.1 ms`.
pub fn human_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{} µs", sig3(v / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{} ms", sig3(v / 1e6))
    } else {
        format!("{} s", sig3(v / 1e9))
    }
}

/// `423 M/s`, `42.1 k/s`.
pub fn human_rate(r: f64) -> String {
    if r >= 1e9 {
        format!("{} G/s", sig3(r / 1e9))
    } else if r >= 1e6 {
        format!("{} M/s", sig3(r / 1e6))
    } else if r >= 1e3 {
        format!("{} k/s", sig3(r / 1e3))
    } else {
        format!("{} /s", sig3(r))
    }
}

/// `9.50 GiB/s`.
pub fn human_bytes_rate(r: f64) -> String {
    const K: f64 = 1024.0;
    if r >= K * K * K {
        format!("{} GiB/s", sig3(r / (K * K * K)))
    } else if r >= K * K {
        format!("{} MiB/s", sig3(r / (K * K)))
    } else if r >= K {
        format!("{} KiB/s", sig3(r / K))
    } else {
        format!("{} B/s", sig3(r))
    }
}

/// `0-1`, `0,2-3`.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            let _ = write!(out, "{}-{}", cpus[i], cpus[j]);
        } else {
            let _ = write!(out, "{}", cpus[i]);
        }
        i = j + 1;
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

fn find<'a>(
    rows: &'a [Row],
    transport: &str,
    mode: Mode,
    size: usize,
    loan: bool,
) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.transport == transport && r.mode == mode && r.size == size && r.loan == loan)
}

fn floor_of(rows: &[Row], mode: Mode) -> Option<&Row> {
    find(rows, "floor", mode, 8, false)
}

fn shm_of(rows: &[Row], mode: Mode, size: usize) -> Option<&Row> {
    find(rows, "shm-spsc", mode, size, false)
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a.is_finite() => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// Where a transport comes in the table.
fn rank(transport: &str) -> usize {
    const ORDER: [&str; 13] = [
        "floor",
        "memcpy",
        "xcopy",
        "shm-spsc",
        "shm-mpmc",
        "pipe",
        "fifo",
        "unix",
        "tcp",
        "python-queue",
        "python-pipe",
        "python-shmring-queue",
        "python-shmring-pipe",
    ];
    ORDER
        .iter()
        .position(|&t| t == transport)
        .unwrap_or(ORDER.len())
}

/// Rows in the table's order: transport, mode, size, copy before loan.
pub fn sorted(rows: &[Row]) -> Vec<Row> {
    let mut v = rows.to_vec();
    v.sort_by_key(|r| (rank(&r.transport), r.mode, r.size, r.loan));
    v
}

/// One line of a table: `cells` padded to `widths`, two spaces apart, left-
/// aligned where `left(column)`, else right-aligned; no trailing spaces.
pub fn columns(
    cells: &[impl AsRef<str>],
    widths: &[usize],
    left: impl Fn(usize) -> bool,
) -> String {
    let mut s = String::new();
    for (i, c) in cells.iter().enumerate() {
        let c = c.as_ref();
        let pad = widths
            .get(i)
            .map_or(0, |w| w.saturating_sub(c.chars().count()));
        if i > 0 {
            s.push_str("  ");
        }
        if left(i) {
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        } else {
            s.push_str(&" ".repeat(pad));
            s.push_str(c);
        }
    }
    s.trim_end().to_string()
}

/// The table: absolute figures and ratios, one row per (transport, mode, size).
pub fn table(rows: &[Row]) -> String {
    let rows = &sorted(rows)[..];
    let header = [
        "transport",
        "mode",
        "size",
        "loan",
        "rtts",
        "p50",
        "p99",
        "p99.9",
        "max",
        "msgs/s",
        "bytes/s",
        "p50÷floor",
        "p50÷shm",
        "msgs÷floor",
        "msgs÷shm",
    ];
    let mut cells: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let floor = floor_of(rows, r.mode);
        let shm = shm_of(
            rows,
            r.mode,
            if r.transport == "floor" { 8 } else { r.size },
        );
        cells.push(vec![
            r.transport.clone(),
            r.mode.name().into(),
            human_size(r.size),
            if r.loan { "loan" } else { "" }.into(),
            r.lat.count.to_string(),
            human_ns(r.lat.p50),
            human_ns(r.lat.p99),
            human_ns(r.lat.p999),
            human_ns(r.lat.max),
            human_rate(r.msgs_per_s),
            human_bytes_rate(r.bytes_per_s()),
            ratio_cell(r, floor, |x| x.lat.p50 as f64, |x| x.lat.p50 as f64),
            ratio_cell(r, shm, |x| x.lat.p50 as f64, |x| x.lat.p50 as f64),
            ratio_cell(r, floor, |x| x.msgs_per_s, |x| x.msgs_per_s),
            ratio_cell(r, shm, |x| x.msgs_per_s, |x| x.msgs_per_s),
        ]);
    }
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let left = |i: usize| i < 4;
    let line = |cols: &[String]| columns(cols, &widths, left);
    let mut out = String::new();
    let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    out.push_str(&line(&h));
    out.push('\n');
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    let mut last: Option<(&str, Mode)> = None;
    for (r, c) in rows.iter().zip(&cells) {
        if let Some((t, m)) = last {
            if t != r.transport || m != r.mode {
                // A blank line between transports keeps the table readable.
                if t != r.transport {
                    out.push('\n');
                }
            }
        }
        last = Some((&r.transport, r.mode));
        out.push_str(&line(c));
        out.push('\n');
    }
    out.push_str(
        "p50÷floor: over the floor of the same mode (spin: cache-line ping-pong; block: raw \
         futex ping-pong), lower is better.\np50÷shm: over shm-spsc of the same mode and size. \
         msgs÷…: throughput ratios, higher is faster.\nloan rows: loan + commit and recv_ref in place, only an 8-byte header \
         written and read (their bytes/s is nominal); not in --json.",
    );
    if rows.iter().any(|r| r.transport == "xcopy") {
        out.push_str(
            "\nmemcpy: one core copying the size between two buffers of its own, cache-hot (p50: \
             one copy). xcopy: the cross-core copy floor, two processes and only the copies \
             (round trip: into a bare buffer, out and back, out; stream: a bare ring, one copy \
             in, one out).",
        );
    }
    if let Some(n) = rows
        .iter()
        .flat_map(|r| r.rounds.iter().map(|x| x.index + 1))
        .max()
    {
        let _ = write!(
            out,
            "\n--repeat {n}: the floor and shm rows show the median of {n} rounds per size, \
             measured round-robin; their ratios are computed per round (against the floor or \
             shm-spsc of the same round): median (min–max). A wide range: a noisy run."
        );
        for f in rows.iter().filter(|r| r.transport == "floor") {
            let v: Vec<f64> = f.rounds.iter().map(|x| x.lat.p50 as f64).collect();
            if let Some(s) = Spread::of(&v) {
                let _ = write!(
                    out,
                    "\nfloor {}: p50 {} median over {} rounds, {}–{} ({:+.0}%/{:+.0}%).",
                    f.mode.name(),
                    human_ns(s.median.round() as u64),
                    v.len(),
                    human_ns(s.min as u64),
                    human_ns(s.max as u64),
                    100.0 * (s.min / s.median - 1.0),
                    100.0 * (s.max / s.median - 1.0)
                );
            }
        }
    }
    out
}

/// One target: its text, the measured ratio, and whether it passed (None:
/// not measured in this run).
struct Verdict {
    what: &'static str,
    got: Option<(String, bool)>,
}

/// The targets of the bench issue, checked on this run's rows.
pub fn verdicts(rows: &[Row]) -> String {
    let p50 = |t: &str, m: Mode, size: usize, loan: bool| {
        find(rows, t, m, size, loan).map(|r| r.lat.p50 as f64)
    };
    let shm_spin = p50("shm-spsc", Mode::Spin, 8, false);
    let at_most = |a: Option<f64>, b: Option<f64>, limit: f64| -> Option<(String, bool)> {
        let (a, b) = (a?, b?);
        let r = a / b;
        Some((format!("{r:.2}×"), r <= limit))
    };
    // `a` over `b`: under --repeat, the median of the per-round ratios (as
    // in the table), with their range. Round trips must stay at or below
    // `limit`; streaming rates (`stream`) at or above it.
    let vs_row = |a: &Row, b: &Row, stream: bool, limit: f64| -> Option<(String, bool)> {
        let pass = |r: f64| if stream { r >= limit } else { r <= limit };
        let ratios = if stream {
            round_ratios(a, b, |x| x.msgs_per_s)
        } else {
            round_ratios(a, b, |x| x.lat.p50 as f64)
        };
        match Spread::of(&ratios) {
            Some(s) => Some((
                format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max),
                pass(s.median),
            )),
            None => {
                let r = if stream {
                    a.msgs_per_s / b.msgs_per_s
                } else {
                    a.lat.p50 as f64 / b.lat.p50 as f64
                };
                Some((format!("{r:.2}×"), pass(r)))
            }
        }
    };
    // Against the floor of the same mode.
    let vs_floor = |t: &str, mode: Mode, stream: bool, limit: f64| -> Option<(String, bool)> {
        vs_row(
            find(rows, t, mode, 8, false)?,
            floor_of(rows, mode)?,
            stream,
            limit,
        )
    };
    // A streaming rate over a copy reference of the same size (spin).
    let vs_copy = |t: &str, reference: &str, size: usize, limit: f64| {
        vs_row(
            find(rows, t, Mode::Spin, size, false)?,
            find(rows, reference, Mode::Spin, size, false)?,
            true,
            limit,
        )
    };
    let faster = |slow: Option<f64>, limit: f64| -> Option<(String, bool)> {
        let (s, f) = (slow?, shm_spin?);
        let r = s / f;
        Some((format!("{r:.0}× faster"), r >= limit))
    };
    let rate = |t: &str, m: Mode| find(rows, t, m, 8, false).map(|r| r.msgs_per_s);
    let block = |t: &str| p50(t, Mode::Block, 8, false);
    // `a` over `b` at or below `limit` (round trips) or, `higher`, at or
    // above it (how many times faster, or streaming rates).
    let ratio_vs = |a: Option<f64>, b: Option<f64>, limit: f64, higher: bool| {
        let (a, b) = (a?, b?);
        let r = a / b;
        Some((
            format!("{r:.2}×"),
            if higher { r >= limit } else { r <= limit },
        ))
    };
    let list = [
        Verdict {
            what: "shm-spsc spin 8 B p50 ≤ 1.15× floor spin",
            got: vs_floor("shm-spsc", Mode::Spin, false, 1.15),
        },
        Verdict {
            what: "shm-mpmc spin 8 B p50 ≤ 1.4× floor spin",
            got: vs_floor("shm-mpmc", Mode::Spin, false, 1.4),
        },
        Verdict {
            what: "shm-spsc spin 8 B streaming ≥ 0.5× floor spin's rate",
            got: vs_floor("shm-spsc", Mode::Spin, true, 0.5),
        },
        Verdict {
            what: "shm-mpmc spin 8 B streaming ≥ 0.4× floor spin's rate",
            got: vs_floor("shm-mpmc", Mode::Spin, true, 0.4),
        },
        Verdict {
            what: "shm-spsc spin 1 KiB streaming ≥ 0.5× memcpy's rate (one core)",
            got: vs_copy("shm-spsc", "memcpy", 1 << 10, 0.5),
        },
        Verdict {
            what: "shm-spsc spin 64 KiB streaming ≥ 0.5× memcpy's rate (one core)",
            got: vs_copy("shm-spsc", "memcpy", 64 << 10, 0.5),
        },
        Verdict {
            what: "shm-spsc spin 8 B p50 ≥ 50× faster than pipe",
            got: faster(p50("pipe", Mode::Block, 8, false), 50.0),
        },
        Verdict {
            what: "shm-spsc spin 8 B p50 ≥ 100× faster than tcp",
            got: faster(p50("tcp", Mode::Block, 8, false), 100.0),
        },
        Verdict {
            what: "shm-spsc spin 8 B p50 ≥ 200× faster than python-queue",
            got: faster(p50("python-queue", Mode::Block, 8, false), 200.0),
        },
        Verdict {
            what: "shm-spsc block 8 B p50 ≤ 1.1× raw futex ping-pong (floor block)",
            got: vs_floor("shm-spsc", Mode::Block, false, 1.1),
        },
        Verdict {
            what: "shm-spsc spin 64 KiB loan p50 ≤ 2× shm-spsc spin 8 B p50",
            got: at_most(p50("shm-spsc", Mode::Spin, 64 << 10, true), shm_spin, 2.0),
        },
        Verdict {
            what: "python-shmring-queue block 8 B p50 ≥ 10× faster than python-queue",
            got: ratio_vs(
                block("python-queue"),
                block("python-shmring-queue"),
                10.0,
                true,
            ),
        },
        Verdict {
            what: "python-shmring-queue block 8 B p50 ≤ 1.3× shm-mpmc block 8 B",
            got: ratio_vs(block("python-shmring-queue"), block("shm-mpmc"), 1.3, false),
        },
        Verdict {
            what: "python-shmring-pipe block 8 B p50 ≤ 1.3× shm-spsc block 8 B",
            got: ratio_vs(block("python-shmring-pipe"), block("shm-spsc"), 1.3, false),
        },
        Verdict {
            what: "python-shmring-queue block 8 B streaming ≥ 5× python-queue's rate",
            got: ratio_vs(
                rate("python-shmring-queue", Mode::Block),
                rate("python-queue", Mode::Block),
                5.0,
                true,
            ),
        },
        Verdict {
            what: "python-shmring-queue block 8 B streaming ≥ 1 M msgs/s",
            got: rate("python-shmring-queue", Mode::Block).map(|r| (human_rate(r), r >= 1e6)),
        },
    ];
    let mut out = String::from("Targets (p50 of round trips, streaming rates; this run):\n");
    let w = list
        .iter()
        .map(|v| v.what.chars().count())
        .max()
        .unwrap_or(0);
    for v in &list {
        let (status, detail) = match &v.got {
            Some((d, true)) => ("PASS", d.as_str()),
            Some((d, false)) => ("FAIL", d.as_str()),
            None => ("n/a ", "not measured in this run"),
        };
        let pad = w - v.what.chars().count();
        let _ = writeln!(out, "  [{status}] {}{}  {detail}", v.what, " ".repeat(pad));
    }
    if let (Some(l), Some(l8)) = (
        p50("shm-spsc", Mode::Spin, 64 << 10, true),
        p50("shm-spsc", Mode::Spin, 8, true),
    ) {
        let _ = writeln!(out, "         (64 KiB loan ÷ 8 B loan: {:.2}×)", l / l8);
    }
    // Where the copies stand against the cross-core copy floor.
    for x in rows
        .iter()
        .filter(|r| r.transport == "xcopy" && r.mode == Mode::Spin && !r.loan)
    {
        let of = |t: &str| {
            vs_copy(t, "xcopy", x.size, 0.0).map(|(d, _)| format!("{t} streaming {d} xcopy"))
        };
        let mut parts: Vec<String> = ["shm-spsc", "shm-mpmc"]
            .iter()
            .filter_map(|t| of(t))
            .collect();
        if let Some((d, _)) = vs_copy("xcopy", "memcpy", x.size, 0.0) {
            parts.push(format!("xcopy itself {d} memcpy"));
        }
        if !parts.is_empty() {
            let _ = writeln!(
                out,
                "         ({}: {}; xcopy is the cross-core copy floor: the copies alone, \
                 no queue)",
                human_size(x.size),
                parts.join(", ")
            );
        }
    }
    let binding: Vec<String> = [
        ("queue", "python-shmring-queue", "shm-mpmc"),
        ("pipe", "python-shmring-pipe", "shm-spsc"),
    ]
    .iter()
    .filter_map(|(k, py, rs)| {
        let r = p50(py, Mode::Spin, 8, false)? / p50(rs, Mode::Spin, 8, false)?;
        Some(format!("{k} {r:.1}× {rs} spin"))
    })
    .collect();
    if block("python-shmring-queue").is_some() || block("python-shmring-pipe").is_some() {
        let _ = writeln!(
            out,
            "         (python-shmring block is the package's default, spin 20 µs then sleep: a \
             ping-pong answered within 20 µs never sleeps, while the Rust block rows spin 0 and \
             always sleep{})",
            if binding.is_empty() {
                String::new()
            } else {
                format!(
                    "; the binding's own cost, python-shmring spin 8 B p50 over Rust's: {}",
                    binding.join(", ")
                )
            }
        );
    }
    out.trim_end().to_string()
}
