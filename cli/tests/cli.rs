//! The `shmring` binary: `bench` argument checking and JSON output, and the
//! lifecycle commands `ls`, `inspect`, `rm`, `gc` on real segments.

// The helpers every shmring integration test uses (segment names, the
// watchdog), from the library's tests.
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "tool/mod.rs"]
mod tool;

use common::*;
use shmring::{Flavor, Queue};
use tool::{shmring, text};

#[test]
fn bench_refuses_bad_arguments_with_exit_2() {
    for (args, needle) in [
        (
            &["bench", "--transports", "shm-spsc,carrier-pigeon"][..],
            "carrier-pigeon",
        ),
        (&["bench", "--sizes", "0"][..], "0"),
        (&["bench", "--sizes", "64G"][..], "64G"),
        (&["bench", "--cpus", "0"][..], "cpus"),
        (&["bench", "--cpus", "0,0"][..], "cpus"),
        (&["bench", "--modes", "sideways"][..], "sideways"),
        (&["bench", "--iterations", "0"][..], "iterations"),
        (&["bench", "--repeat", "0"][..], "repeat"),
        (&["bench", "--scaling", "0"][..], "scaling"),
        (&["bench", "--scaling", "1,32"][..], "scaling"),
        (&["bench", "--scaling", "two"][..], "scaling"),
    ] {
        let o = shmring(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn bench_json_lines_have_exactly_the_documented_keys() {
    run("cli_bench_json", |_| {
        let o = shmring(&[
            "bench",
            "--quick",
            "--json",
            "--transports",
            "shm-spsc,pipe",
            "--sizes",
            "8",
            "--iterations",
            "200",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let mut transports = Vec::new();
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "bytes_per_s",
                    "mode",
                    "msgs_per_s",
                    "rtt_max_ns",
                    "rtt_p50_ns",
                    "rtt_p999_ns",
                    "rtt_p99_ns",
                    "size",
                    "transport"
                ],
                "{line}"
            );
            let p50 = obj["rtt_p50_ns"].as_f64().unwrap();
            let p99 = obj["rtt_p99_ns"].as_f64().unwrap();
            let max = obj["rtt_max_ns"].as_f64().unwrap();
            assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{line}");
            transports.push(obj["transport"].as_str().unwrap().to_string());
        }
        for t in ["floor", "shm-spsc", "pipe"] {
            assert!(transports.iter().any(|x| x == t), "{t} missing: {stdout}");
        }
    });
}

#[test]
fn bench_python_shmring_rows_are_skipped_with_a_note_without_shmring() {
    // No interpreter (a path that is not there), and one that cannot import
    // shmring: the rows are skipped, the run succeeds, and a note says how
    // to enable them; with --json the note goes to stderr, stdout has rows.
    for python in ["/nonexistent/python3", "/bin/false"] {
        for json in [false, true] {
            let mut args = vec![
                "bench",
                "--quick",
                "--transports",
                "python-shmring-queue,python-shmring-pipe",
                "--sizes",
                "8",
                "--iterations",
                "50",
                "--shmring-python",
                python,
            ];
            if json {
                args.push("--json");
            }
            let o = shmring(&args);
            assert!(o.status.success(), "{args:?}: {}", text(&o));
            let out = String::from_utf8_lossy(&o.stdout);
            let err = String::from_utf8_lossy(&o.stderr);
            let notes = if json { &err } else { &out };
            assert!(
                notes.contains("python-shmring-queue and python-shmring-pipe: skipped")
                    && notes.contains(python)
                    && notes.contains("scripts/python-env")
                    && notes.contains("--shmring-python PATH"),
                "{args:?}: {}",
                text(&o)
            );
            assert!(
                !out.lines()
                    .any(|l| l.starts_with("python-shmring") || l.contains("\"python-shmring")),
                "{args:?}: {}",
                text(&o)
            );
        }
    }
}

#[test]
fn bench_python_shmring_rows_in_both_modes_when_an_interpreter_has_shmring() {
    // Runs where this checkout's target/python-venv imports shmring (made
    // by scripts/python-env, as scripts/test-all and CI do); elsewhere the
    // rows are skipped and the test says so, without building anything.
    let o = shmring(&[
        "bench",
        "--quick",
        "--json",
        "--no-python-setup",
        "--transports",
        "python-shmring-queue,python-shmring-pipe",
        "--sizes",
        "8",
        "--iterations",
        "100",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("python-shmring-pipe: skipped") {
        eprintln!("no interpreter imports shmring here (run scripts/python-env): not measured");
        return;
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        let t = v["transport"].as_str().unwrap();
        if t.starts_with("python-shmring") {
            assert_eq!(v.as_object().unwrap().len(), 9, "{line}");
            assert_eq!(v["size"].as_u64(), Some(8), "{line}");
            assert!(v["rtt_p50_ns"].as_u64().unwrap() > 0, "{line}");
            assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{line}");
            seen.push(format!("{t} {}", v["mode"].as_str().unwrap()));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "python-shmring-pipe block",
            "python-shmring-pipe spin",
            "python-shmring-queue block",
            "python-shmring-queue spin"
        ],
        "{stdout}"
    );
}

#[test]
fn bench_repeat_reports_rounds_and_their_spread() {
    run("cli_bench_repeat", |_| {
        let o = shmring(&[
            "bench", "-t", "shm-spsc", "-m", "spin", "-s", "8", "-n", "200", "--repeat", "3",
            "--json",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let mut seen = Vec::new();
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            let t = v["transport"].as_str().unwrap().to_string();
            let rounds = v["rounds"].as_array().expect(line);
            assert_eq!(rounds.len(), 3, "{line}");
            for (i, r) in rounds.iter().enumerate() {
                assert_eq!(r["round"], i as u64, "{line}");
                assert!(r["rtt_p50_ns"].as_f64().unwrap() > 0.0, "{line}");
                if t != "floor" {
                    assert!(r["p50_over_floor"].as_f64().unwrap() > 0.0, "{line}");
                }
            }
            let spread = v["spread"].as_object().expect(line);
            let mut keys = vec!["rtt_p50_ns", "msgs_per_s"];
            if t != "floor" {
                keys.extend(["p50_over_floor", "msgs_over_floor"]);
            }
            for k in keys {
                let s = &spread[k];
                let (min, med, max) = (
                    s["min"].as_f64().expect(line),
                    s["median"].as_f64().expect(line),
                    s["max"].as_f64().expect(line),
                );
                assert!(min <= med && med <= max, "{k}: {line}");
            }
            // The row's p50 is the median of its rounds'.
            assert_eq!(
                v["rtt_p50_ns"].as_f64().unwrap(),
                spread["rtt_p50_ns"]["median"].as_f64().unwrap().round(),
                "{line}"
            );
            seen.push(t);
        }
        seen.sort();
        assert_eq!(seen, ["floor", "shm-spsc"], "{stdout}");
    });
}

/// Parses `12.3 M/s`, `456 k/s`, `7 /s` into messages per second.
fn rate(cell: &str) -> f64 {
    let (num, unit) = cell.split_once(' ').expect(cell);
    let mult = match unit {
        "/s" => 1.0,
        "k/s" => 1e3,
        "M/s" => 1e6,
        "G/s" => 1e9,
        _ => panic!("not a rate: {cell:?}"),
    };
    num.parse::<f64>().expect(cell) * mult
}

#[test]
fn bench_scaling_table_has_every_cell_of_the_grid_checked_exactly_once() {
    run("cli_bench_scaling", |_| {
        let o = shmring(&["bench", "--scaling", "2,1", "-n", "3000"]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let header = stdout
            .lines()
            .find(|l| l.starts_with("P "))
            .unwrap_or_else(|| panic!("no header: {stdout}"));
        for col in [
            "shm-mpmc",
            "arrayqueue",
            "shm ÷ arrayqueue",
            "shm-mpmc-threads",
        ] {
            assert!(header.contains(col), "{col}: {header}");
        }
        let mut cells = Vec::new();
        for line in stdout.lines() {
            // P, C, pinned, then `rate unit` cells and ratios, two spaces
            // or more apart.
            let cols: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let (Some(p), Some(c)) = (
                cols.first().and_then(|x| x.parse::<u32>().ok()),
                cols.get(1).and_then(|x| x.parse::<u32>().ok()),
            ) else {
                continue;
            };
            assert_eq!(cols.len(), 8, "{line}");
            assert!(["yes", "no"].contains(&cols[2]), "{line}");
            for i in [3, 4, 6] {
                assert!(rate(cols[i]) > 0.0, "{line}");
            }
            for i in [5, 7] {
                assert!(cols[i].parse::<f64>().expect(line) > 0.0, "{line}");
            }
            cells.push((p, c));
        }
        assert_eq!(cells, [(1, 1), (1, 2), (2, 1), (2, 2)], "{stdout}");
        assert!(
            stdout.contains("exactly-once: every run's 3000 messages"),
            "{stdout}"
        );
    });
}

#[test]
fn bench_scaling_8_by_8_finishes_exactly_once_on_however_many_cpus() {
    // 16 busy-polling participants: on a 2-CPU machine most of them are
    // off the CPU at any moment, often holding a claimed slot. The docs
    // promise that more participants than CPUs still finish, every message
    // taken once (the yield after failed polls makes it quick; preemption
    // alone would get there too, slowly).
    run("cli_bench_scaling_8x8", |_| {
        let o = shmring(&["bench", "--scaling", "8", "-n", "20000", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let v = &lines[0];
        assert_eq!(v["producers"], 8, "{stdout}");
        assert_eq!(v["consumers"], 8, "{stdout}");
        assert_eq!(v["messages"], 20000, "{stdout}");
        assert_eq!(v["exactly_once"], true, "{stdout}");
    });
}

#[test]
fn bench_scaling_json_lines_carry_rounds_and_the_exactly_once_check() {
    run("cli_bench_scaling_json", |_| {
        let o = shmring(&[
            "bench",
            "--scaling",
            "1,2",
            "-n",
            "2000",
            "--repeat",
            "2",
            "--json",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let mut cells = Vec::new();
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            assert_eq!(v["exactly_once"], true, "{line}");
            assert_eq!(v["messages"], 2000, "{line}");
            for k in [
                "shm_mpmc_msgs_per_s",
                "arrayqueue_msgs_per_s",
                "shm_mpmc_threads_msgs_per_s",
                "shm_over_arrayqueue",
                "threads_over_arrayqueue",
            ] {
                assert!(v[k].as_f64().expect(k) > 0.0, "{k}: {line}");
                let s = &v["spread"][k];
                let (min, med, max) = (
                    s["min"].as_f64().expect(line),
                    s["median"].as_f64().expect(line),
                    s["max"].as_f64().expect(line),
                );
                assert!(min <= med && med <= max, "{k}: {line}");
            }
            assert_eq!(v["rounds"].as_array().expect(line).len(), 2, "{line}");
            let (p, c) = (
                v["producers"].as_u64().unwrap(),
                v["consumers"].as_u64().unwrap(),
            );
            cells.push((p, c));
        }
        assert_eq!(cells, [(1, 1), (1, 2), (2, 1), (2, 2)], "{stdout}");
    });
}

#[test]
fn bench_copy_references_come_with_the_shm_rows_in_spin_mode_from_64_bytes() {
    run("cli_bench_copy", |_| {
        // JSON: memcpy and xcopy at 1 KiB in spin mode, nowhere else.
        let o = shmring(&[
            "bench",
            "--quick",
            "--json",
            "-t",
            "shm-spsc",
            "-m",
            "spin,block",
            "-s",
            "8,1K",
            "-n",
            "200",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        let mut copies = Vec::new();
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            let t = v["transport"].as_str().unwrap();
            if t == "memcpy" || t == "xcopy" {
                assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{line}");
                assert!(v["rtt_p50_ns"].as_f64().unwrap() > 0.0, "{line}");
                copies.push((
                    t.to_string(),
                    v["mode"].as_str().unwrap().to_string(),
                    v["size"].as_u64().unwrap(),
                ));
            }
        }
        copies.sort();
        assert_eq!(
            copies,
            [
                ("memcpy".to_string(), "spin".to_string(), 1024),
                ("xcopy".to_string(), "spin".to_string(), 1024)
            ],
            "{stdout}"
        );

        // The table checks the copy targets against them, per round.
        let o = shmring(&[
            "bench", "--quick", "-t", "shm-spsc", "-m", "spin", "-s", "1K,64K", "-n", "200",
            "--repeat", "2",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        for size in ["1 KiB", "64 KiB"] {
            let what = format!("shm-spsc spin {size} streaming ≥ 0.5× memcpy's rate");
            let line = out
                .lines()
                .find(|l| l.contains(&what))
                .unwrap_or_else(|| panic!("no {what}: {out}"));
            assert!(
                (line.contains("[PASS]") || line.contains("[FAIL]")) && line.contains('–'),
                "not checked per round: {line}"
            );
            assert!(
                out.lines()
                    .any(|l| l.contains(&format!("({size}: shm-spsc streaming"))
                        && l.contains("xcopy itself")),
                "{out}"
            );
        }

        // Block mode alone, or 8-byte messages alone: no copy rows.
        for args in [
            &["-m", "block", "-s", "1K"][..],
            &["-m", "spin", "-s", "8"][..],
        ] {
            let mut a = vec!["bench", "--quick", "--json", "-t", "shm-spsc", "-n", "200"];
            a.extend_from_slice(args);
            let o = shmring(&a);
            assert!(o.status.success(), "{}", text(&o));
            let stdout = String::from_utf8(o.stdout).unwrap();
            assert!(!stdout.contains("copy\""), "{args:?}: {stdout}");
        }
    });
}

#[test]
fn ls_inspect_rm_gc_on_real_segments() {
    run("cli_lifecycle", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 16).unwrap();
        let (tx, _rx) = (q.sender().unwrap(), q.receiver().unwrap());
        tx.send(1).unwrap();
        tx.send(2).unwrap();

        let o = shmring(&["ls"]);
        assert!(o.status.success(), "{}", text(&o));
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{} not listed: {}", name.as_str(), text(&o)));
        assert!(line.contains("mpmc") && line.contains("2/0"), "{line}");

        let o = shmring(&["ls", "--json"]);
        let mine: serde_json::Value = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["name"] == name.as_str())
            .unwrap();
        assert_eq!(mine["occupancy"], 2);
        assert_eq!(mine["endpoints_alive"], 2);
        assert_eq!(mine["lost"], 0);

        let o = shmring(&["inspect", name.as_str(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["header"]["capacity"], 16);
        assert_eq!(v["in_use"], true);

        // In use (this process maps it and holds endpoints): rm refuses.
        let o = shmring(&["rm", name.as_str()]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("in use"), "{}", text(&o));
        assert!(name.exists());

        // gc keeps it too.
        let o = shmring(&["gc"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(name.exists());

        // Persisted and dropped: gc still keeps it while its creator (this
        // process) lives; rm removes it (issue 10: gc removes only what it
        // can prove unused).
        q.persist();
        drop((tx, _rx, q));
        let o = shmring(&["gc", "--json", "--ignore-unreadable"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(name.exists(), "{}", text(&o));
        let o = shmring(&["rm", name.as_str()]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(!name.exists(), "{}", text(&o));

        // rm of a missing name, and of a foreign file, fails and removes nothing.
        let o = shmring(&["rm", name.as_str()]);
        assert_eq!(o.status.code(), Some(1));
        let foreign = ctx.name("foreign");
        std::fs::write(foreign.path(), b"someone else's data").unwrap();
        let o = shmring(&["rm", foreign.as_str()]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(foreign.exists());
        let o = shmring(&["ls"]);
        assert!(!String::from_utf8_lossy(&o.stdout).contains(foreign.as_str()));
        std::fs::remove_file(foreign.path()).unwrap();
    });
}
