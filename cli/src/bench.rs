//! `shmring bench`: sets up the run (CPUs, the Python interpreter, the
//! notes), measures the plan one job at a time (the floor, the shmring
//! transports, Python) under the watchdog and a progress bar, gathers the
//! rounds of `--repeat` into rows of medians, and prints the table, the
//! `--json` lines or the plot.

use crate::args::{BenchArgs, CpuPair};
use crate::plan;
use crate::types::{Config, Failure, Latency, Mode, Round, Row, Spread, Target};
use crate::{amqp, copy, floor, link, plot, python, report, scale, sys};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmring::transport::TransportKind;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Picks the two CPUs, or explains why there are not two.
fn choose_cpus(asked: Option<CpuPair>) -> Result<(usize, usize), Failure> {
    let allowed = sys::allowed_cpus()
        .map_err(|e| Failure::Run(format!("reading this process's CPU affinity: {e}")))?;
    let list = report::cpu_list(&allowed);
    if allowed.len() < 2 {
        return Err(Failure::Usage(format!(
            "shmring bench needs two CPUs, one for each process, and this process may run on \
             only one (CPU {list})"
        )));
    }
    match asked {
        None => Ok((allowed[0], allowed[1])),
        Some(CpuPair(a, b)) => {
            for c in [a, b] {
                if !allowed.contains(&c) {
                    return Err(Failure::Usage(format!(
                        "--cpus: CPU {c} is not online or not available to this process \
                         (available: {list})"
                    )));
                }
            }
            Ok((a, b))
        }
    }
}

/// Finds `prog` (a path, or a name looked up on the PATH).
fn find_program(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| exec(p))
}

/// The row of a (transport, mode, size, loan) measured `--repeat` times:
/// every figure the median of its rounds', and the rounds kept.
fn median_row(first: &Row, rounds: Vec<Round>) -> Row {
    let med = |f: &dyn Fn(&Round) -> f64| {
        let v: Vec<f64> = rounds.iter().map(f).collect();
        Spread::of(&v).map_or(0.0, |s| s.median)
    };
    let ns = |f: &dyn Fn(&Latency) -> u64| med(&|r: &Round| f(&r.lat) as f64).round() as u64;
    let curve = first
        .lat
        .curve
        .iter()
        .enumerate()
        .map(|(i, &(p, _))| (p, ns(&|l: &Latency| l.curve.get(i).map_or(0, |c| c.1))))
        .collect();
    let lat = Latency {
        p50: ns(&|l: &Latency| l.p50),
        p99: ns(&|l: &Latency| l.p99),
        p999: ns(&|l: &Latency| l.p999),
        max: ns(&|l: &Latency| l.max),
        count: ns(&|l: &Latency| l.count),
        curve,
    };
    Row {
        transport: first.transport.clone(),
        mode: first.mode,
        size: first.size,
        loan: first.loan,
        lat,
        msgs_per_s: med(&|r: &Round| r.msgs_per_s),
        rounds,
    }
}

/// `shmring bench`.
pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if let Some(list) = &args.scaling {
        // Its own grid, its own CPUs (this process stays unpinned: the
        // participants inherit its affinity when they are not pinned).
        return scale::run(&args, list);
    }
    let cpus = choose_cpus(args.cpus)?;
    let cfg = Config {
        cpus,
        quick: args.quick,
        iterations: args.iterations,
        timeout: args.timeout,
        wake_mode: if args.strict {
            shmring::WakeMode::Strict
        } else {
            shmring::WakeMode::Fast
        },
    };

    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut targets = args.transports.clone();
    if !targets.contains(&Target::Floor) {
        targets.push(Target::Floor);
    }
    targets.sort();
    targets.dedup();
    let mut modes = args.modes.clone();
    modes.sort();
    modes.dedup();
    // The copy references come with the shm rows they are compared with
    // (spin mode, sizes of 64 bytes and up).
    if modes.contains(&Mode::Spin)
        && sizes.iter().any(|&s| s >= copy::MIN_SIZE)
        && targets
            .iter()
            .any(|t| matches!(t, Target::Link(k) if k.is_shm()))
        && !targets.contains(&Target::Copy)
    {
        targets.push(Target::Copy);
        targets.sort();
    }

    let mut notes = Vec::new();
    notes.push(if args.strict {
        "shm rows: WakeMode::Strict, the builders' default (a fence per message)".to_string()
    } else {
        "shm rows: WakeMode::Fast, opt-in (no fence per message; --strict measures the default)"
            .to_string()
    });
    let python = find_program(&args.python);
    let wants_python = targets
        .iter()
        .any(|t| matches!(t, Target::PythonQueue | Target::PythonPipe));
    if wants_python && python.is_none() {
        let where_ = if args.python.contains('/') {
            "not found or not executable"
        } else {
            "not found on the PATH"
        };
        notes.push(format!(
            "{} {where_}: the python-queue and python-pipe rows are skipped",
            args.python
        ));
        targets.retain(|t| !matches!(t, Target::PythonQueue | Target::PythonPipe));
    }
    // The python-shmring-* rows' interpreter (found, or made by
    // scripts/python-env) before this process is pinned to one CPU.
    let mut shmring_python = None;
    if targets.iter().any(|t| t.is_python_shmring()) {
        let explicit = args.shmring_python.as_deref().map(|p| (p, find_program(p)));
        match python::shmring_python(explicit, python.as_deref(), !args.no_python_setup) {
            Ok((p, how)) => {
                notes.push(format!("python-shmring-* rows: {} ({how})", p.display()));
                shmring_python = Some(p);
            }
            Err(why) => {
                notes.push(format!(
                    "python-shmring-queue and python-shmring-pipe: skipped: {why}"
                ));
                targets.retain(|t| !t.is_python_shmring());
            }
        }
    }
    // The rabbitmq row: its broker must answer (probed now, while this
    // process is still single-threaded and unpinned).
    let mut amqp_url = None;
    let amqp_rows = [Target::Rabbitmq, Target::RabbitmqBridge];
    if args.amqp.is_some() {
        for t in amqp_rows {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    if targets.iter().any(|t| amqp_rows.contains(t)) {
        let url = args
            .amqp
            .clone()
            .or_else(|| std::env::var("SHMRING_AMQP_URL").ok())
            .unwrap_or_else(|| amqp::DEFAULT_URL.to_string());
        match amqp::probe(&url) {
            Ok(()) => {
                notes.push(format!(
                    "rabbitmq: the broker at {url} (transient messages, no confirms, no acks); \
                     rabbitmq-bridge: local queues, shmring bridge processes (confirms, acks)"
                ));
                amqp_url = Some(url);
            }
            Err(why) => {
                notes.push(format!(
                    "rabbitmq rows: skipped: {why} (scripts/rabbitmq start runs a local broker)"
                ));
                targets.retain(|t| !amqp_rows.contains(t));
            }
        }
    }
    if !modes.contains(&Mode::Block)
        && targets.iter().any(|t| {
            !matches!(
                t,
                Target::Floor
                    | Target::Copy
                    | Target::Link(TransportKind::ShmSpsc | TransportKind::ShmMpmc)
                    | Target::PythonShmringQueue
                    | Target::PythonShmringPipe
            )
        })
    {
        notes.push(
            "the kernel transports and multiprocessing run in mode block only: none measured \
             with --modes spin"
                .into(),
        );
    }

    if args.json {
        for n in notes.drain(..) {
            eprintln!("note: {n}");
        }
    }

    let jobs = plan::plan(&targets, &modes, &sizes, args.repeat);
    let floor_final = |mode: Mode| {
        !jobs
            .iter()
            .any(|j| j.target == Target::Floor && j.again && j.mode == mode)
    };

    sys::pin(cpus.0).map_err(|e| Failure::Run(format!("pinning to CPU {}: {e}", cpus.0)))?;
    sys::install_watchdog().map_err(|e| Failure::Run(format!("installing the watchdog: {e}")))?;

    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        // No steady tick: that would start a thread, and children are forked.
        let b =
            ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix("shmring bench");
        b
    };

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    // Under --repeat: each (transport, mode, size, loan)'s first row and
    // rounds, in the order first measured.
    let mut repeated: Vec<(Row, Vec<Round>)> = Vec::new();
    let stdout = std::io::stdout();
    for job in &jobs {
        let label = job.label();
        bar.set_message(label.clone());
        sys::set_label(&label);
        sys::alarm(cfg.timeout);
        let got = match job.target {
            Target::Floor => floor::measure(&cfg, job.mode).map(|r| vec![r]),
            Target::Copy => copy::measure(&cfg, job.size),
            Target::Link(kind) => link::measure(&cfg, kind, job.mode, job.size),
            t if t.is_python() => {
                let py = if t.is_python_shmring() {
                    shmring_python.as_deref().expect("found before the plan")
                } else {
                    python.as_deref().expect("python3 found")
                };
                // The Python run has its own deadline (it kills the
                // interpreter's process group): disarm the alarm.
                sys::alarm(0);
                python::measure(&cfg, py, t, job.mode, job.size).map(|r| vec![r])
            }
            Target::Rabbitmq => {
                let url = amqp_url.as_deref().expect("probed before the plan");
                amqp::measure(&cfg, url, job.size)
            }
            Target::RabbitmqBridge => {
                let url = amqp_url.as_deref().expect("probed before the plan");
                amqp::measure_bridge(&cfg, url, job.size)
            }
            _ => unreachable!("every target is measured above"),
        };
        sys::alarm(0);
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        if let Some((group, index)) = job.round {
            for r in got {
                let round = Round {
                    group,
                    index,
                    lat: r.lat.clone(),
                    msgs_per_s: r.msgs_per_s,
                };
                match repeated.iter_mut().find(|(f, _)| {
                    (&f.transport, f.mode, f.size, f.loan) == (&r.transport, r.mode, r.size, r.loan)
                }) {
                    Some((_, v)) => v.push(round),
                    None => repeated.push((r, vec![round])),
                }
            }
            bar.inc(1);
            continue;
        }
        let mut got = got;
        if job.again {
            // Keep the lower floor; say so if the two differ much.
            let new = got.remove(0);
            if let Some(old) = rows
                .iter_mut()
                .find(|r| r.transport == "floor" && r.mode == job.mode)
            {
                let (a, b) = (old.lat.p50 as f64, new.lat.p50 as f64);
                if a.max(b) > 1.25 * a.min(b) {
                    notes.push(format!(
                        "the floor ({}) moved during the run: p50 {} at the start, {} at the \
                         end; the lower is used. The machine's state changed (other load, \
                         vCPU placement): ratios from this run are less certain",
                        job.mode.name(),
                        report::human_ns(old.lat.p50),
                        report::human_ns(new.lat.p50)
                    ));
                }
                if b < a {
                    *old = new;
                }
                got.push(old.clone());
            }
        } else if job.target == Target::Floor && !floor_final(job.mode) {
            // Printed (JSON) once measured again.
            rows.extend(got);
            bar.inc(1);
            continue;
        }
        if args.json {
            let mut out = stdout.lock();
            for r in got.iter().filter(|r| !r.loan) {
                let _ = writeln!(out, "{}", report::json_line(r));
            }
            let _ = out.flush();
        }
        if !job.again {
            rows.extend(got);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    if !repeated.is_empty() {
        let first = rows.len();
        rows.extend(repeated.into_iter().map(|(r, v)| median_row(&r, v)));
        if args.json {
            let mut out = stdout.lock();
            for r in report::sorted(&rows[first..]).iter().filter(|r| !r.loan) {
                let _ = writeln!(out, "{}", report::json_line_with_rounds(r, &rows));
            }
            let _ = out.flush();
        }
    }
    if args.json {
        for n in &notes {
            eprintln!("note: {n}");
        }
    }

    if !args.json {
        let table = report::table(&rows);
        println!("{table}");
        println!("{}", report::verdicts(&rows));
        for n in &notes {
            println!("note: {n}");
        }
        println!(
            "{} measurements in {:.1} s; parent on CPU {}, child on CPU {}{}",
            jobs.len(),
            wall.as_secs_f64(),
            cpus.0,
            cpus.1,
            if args.quick { " (--quick)" } else { "" }
        );
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &report::sorted(&rows), &sizes)
            .map_err(|e| Failure::Run(format!("drawing {}: {e}", path.display())))?;
        if !args.json {
            println!("plot written to {}", path.display());
        }
    }
    Ok(())
}
