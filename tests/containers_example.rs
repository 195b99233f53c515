//! The `manager_dict_list` example (the seed's `Manager().dict()` /
//! `Manager().list()` program): the parent prints exactly the seed's four
//! lines, the child that writes the dict and reverses the list being a
//! separate process, and nothing is left in `/dev/shm`.
//!
//! Tests cannot rely on example binaries, so the example's file is
//! included here as a module (as `tests/pipe_sessions.rs` does with
//! `request_response`) and its child runs as this test binary re-executed
//! (`tests/common`).
#![cfg(not(loom))]

mod common;

#[allow(dead_code)]
#[path = "../examples/manager_dict_list.rs"]
mod manager_dict_list;

use common::{child_main, run, spawn_child, wait_ok, Args};
use manager_dict_list::{float_repr, str_repr, Py};

/// Child: the example's `child` (`args` = `child`, prefix).
#[test]
#[ignore = "child process entry point"]
fn child_manager_dict_list() {
    child_main("child_manager_dict_list", |a: Args| {
        assert_eq!(a.str(0), "child");
        manager_dict_list::child(a.str(1)).unwrap();
    });
}

#[test]
fn prints_the_seeds_four_lines_with_a_separate_child() {
    run("mdl_seed", |ctx| {
        let prefix = ctx.removed_name("m");
        let run_child = |args: &[&str]| -> Result<(), String> {
            let mut c = spawn_child("child_manager_dict_list", args);
            wait_ok(&mut c);
            Ok(())
        };
        let mut out = Vec::new();
        manager_dict_list::parent(prefix.as_str(), &run_child, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "MainProcess dict: {}\n\
             MainProcess list: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n\
             MainProcess dict: {1: '1', '2': 2, 0.25: None}\n\
             MainProcess list: [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
        );
        // `run` also checks that no name with this test's prefix is left.
    });
}

#[test]
fn a_replaced_key_keeps_its_place_as_in_python() {
    run("mdl_order", |ctx| {
        let prefix = ctx.removed_name("m");
        let d = manager_dict_list::PyDict::create(prefix.as_str()).unwrap();
        d.set(Py::Str("b".into()), Py::Int(1)).unwrap();
        d.set(Py::Str("a".into()), Py::Int(2)).unwrap();
        d.set(Py::Str("b".into()), Py::Int(3)).unwrap();
        // Python: {'b': 3, 'a': 2}
        assert_eq!(d.repr().unwrap(), "{'b': 3, 'a': 2}");
        assert_eq!(d.get(&Py::Str("b".into())).unwrap(), Some(Py::Int(3)));
    });
}

#[test]
fn reprs_match_python() {
    // repr() of these values in CPython 3.
    let floats = [
        (0.25, "0.25"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1.5e300, "1.5e+300"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.2345678901234568e17, "1.2345678901234568e+17"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
    ];
    for (x, want) in floats {
        assert_eq!(float_repr(x), want, "repr({x:?})");
    }
    let strs = [
        ("1", "'1'"),
        ("it's", "\"it's\""),
        ("say \"hi\"", "'say \"hi\"'"),
        ("both ' and \"", "'both \\' and \"'"),
        ("a\\b\n", "'a\\\\b\\n'"),
        ("\x01", "'\\x01'"),
        ("é", "'é'"),
    ];
    for (s, want) in strs {
        assert_eq!(str_repr(s), want, "repr({s:?})");
    }
    assert_eq!(Py::None.to_string(), "None");
    assert_eq!(Py::Int(-3).to_string(), "-3");
}
