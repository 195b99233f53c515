//! Python's `Manager().dict()` and `Manager().list()`, without the manager's
//! server process: the seed's program, whose child writes a dict and
//! reverses a list that its parent then prints.
//!
//! ```text
//! cargo run --example manager_dict_list --features serde
//! ```
//!
//! prints exactly what the Python original prints:
//!
//! ```text
//! MainProcess dict: {}
//! MainProcess list: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
//! MainProcess dict: {1: '1', '2': 2, 0.25: None}
//! MainProcess list: [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```
//!
//! The Python original:
//!
//! ```python
//! from multiprocessing import Process, Manager, current_process
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         print(f"{current_process().name} dict: {d}")
//!         print(f"{current_process().name} list: {l}")
//!         p = Process(target=f, args=(d, l)); p.start(); p.join()
//!         print(f"{current_process().name} dict: {d}")
//!         print(f"{current_process().name} list: {l}")
//! ```
//!
//! The child is a real separate process: this program, started again with
//! the argument `child <prefix>`, which opens the containers by name — the
//! way separately started programs meet. The parent creates every name
//! with `persist(false)`, so dropping its handles removes them: nothing is
//! left in `/dev/shm` (unless the parent itself is killed).
//!
//! Keys and values of several types live in one map through a small serde
//! enum, [`Py`], printed as Python's `repr` prints them.

use serde::{Deserialize, Serialize};
use shmring::{ContainerError, TypedList, TypedMap, Value};
use std::error::Error;
use std::fmt;
use std::io::Write;

/// A Python value of the kinds the seed uses: a key or a value of the dict,
/// an item of the list.
///
/// Keys are equal when their encodings are (see `TypedMap`): `Int(1)` and
/// `Float(1.0)` are two keys here, where Python's `1` and `1.0` are one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Py {
    /// `int` (within `i64`).
    Int(i64),
    /// `str`.
    Str(String),
    /// `float`.
    Float(f64),
    /// `None`.
    None,
}

impl fmt::Display for Py {
    /// Python's `repr`: `1`, `'1'`, `0.25`, `None`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Int(i) => write!(f, "{i}"),
            Py::Str(s) => f.write_str(&str_repr(s)),
            Py::Float(x) => f.write_str(&float_repr(*x)),
            Py::None => f.write_str("None"),
        }
    }
}

/// Python's `repr` of a `str`: single quotes, or double quotes when the
/// text has a single quote and no double one; backslash escapes for the
/// quote, the backslash and control characters.
pub fn str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Python's `repr` of a `float`: the shortest text that reads back as the
/// same number, exponent notation below 1e-4 and from 1e16 (Rust's `{:?}`
/// makes the same choices; Python writes the exponent's sign and at least
/// two digits: `1e+16`, `1e-05`).
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{x:?}");
    match s.split_once('e') {
        None => s,
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
    }
}

/// What the map stores for a key: its value, and when the key was first
/// inserted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slot {
    /// The insertion ticket of the key (kept when its value is replaced).
    pub order: u64,
    /// The value.
    pub value: Py,
}

/// A Python `dict` in shared memory: a `TypedMap<Py, Slot>` plus a ticket
/// counter, so that it prints in insertion order as Python's does.
///
/// A `SharedMap`'s iteration order is unspecified (a hash table), so the
/// insertion order is kept explicitly, inside the entries themselves: each
/// [`set`](Self::set) takes a ticket from a shared counter (`fetch_add`,
/// one atomic step) and stores it with the value in one atomic `update`,
/// which keeps the old ticket when the key was already there (Python keeps
/// a replaced key's position too). Printing sorts one consistent snapshot
/// of the entries by ticket, so every key printed has its order with it,
/// whatever other processes do meanwhile. The two steps are not one
/// transaction: when two processes insert new keys at once, the order is
/// that of their tickets, which is one of the orders the inserts could
/// have had; a process killed between the two steps only wastes a ticket.
pub struct PyDict {
    map: TypedMap<Py, Slot>,
    tickets: Value<u64>,
}

impl PyDict {
    fn names(prefix: &str) -> (String, String) {
        (format!("{prefix}-dict"), format!("{prefix}-dict-order"))
    }

    /// Creates an empty dict under `prefix`; its names go when this handle
    /// is dropped (`persist(false)`).
    pub fn create(prefix: &str) -> Result<PyDict, Box<dyn Error>> {
        let (map, tickets) = Self::names(prefix);
        Ok(PyDict {
            map: TypedMap::builder().persist(false).create(&map)?,
            tickets: Value::builder().persist(false).create(&tickets, 0)?,
        })
    }

    /// Opens the dict that [`create`](Self::create) made under `prefix`.
    pub fn open(prefix: &str) -> Result<PyDict, Box<dyn Error>> {
        let (map, tickets) = Self::names(prefix);
        Ok(PyDict {
            map: TypedMap::open(&map)?,
            tickets: Value::open(&tickets)?,
        })
    }

    /// `d[key] = value`.
    pub fn set(&self, key: Py, value: Py) -> Result<(), ContainerError> {
        let ticket = self.tickets.fetch_add(1);
        self.map.update(&key, |old| {
            Some(Slot {
                order: old.map_or(ticket, |s| s.order),
                value,
            })
        })?;
        Ok(())
    }

    /// `d.get(key)`.
    pub fn get(&self, key: &Py) -> Result<Option<Py>, ContainerError> {
        Ok(self.map.get(key)?.map(|s| s.value))
    }

    /// The items in insertion order (one consistent snapshot).
    pub fn items(&self) -> Result<Vec<(Py, Py)>, ContainerError> {
        let mut entries = self.map.entries()?;
        entries.sort_by_key(|(_, s)| s.order);
        Ok(entries.into_iter().map(|(k, s)| (k, s.value)).collect())
    }

    /// `repr(d)`: `{1: '1', '2': 2}`.
    pub fn repr(&self) -> Result<String, ContainerError> {
        let items: Vec<String> = self
            .items()?
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        Ok(format!("{{{}}}", items.join(", ")))
    }
}

/// A Python `list` in shared memory: a `TypedList<Py>`.
pub struct PyList {
    list: TypedList<Py>,
}

impl PyList {
    fn name(prefix: &str) -> String {
        format!("{prefix}-list")
    }

    /// Creates a list under `prefix` holding `items`; its name goes when
    /// this handle is dropped (`persist(false)`).
    pub fn create(
        prefix: &str,
        items: impl IntoIterator<Item = Py>,
    ) -> Result<PyList, Box<dyn Error>> {
        let list = TypedList::builder()
            .persist(false)
            .create(&Self::name(prefix))?;
        list.extend(items)?;
        Ok(PyList { list })
    }

    /// Opens the list that [`create`](Self::create) made under `prefix`.
    pub fn open(prefix: &str) -> Result<PyList, Box<dyn Error>> {
        Ok(PyList {
            list: TypedList::open(&Self::name(prefix))?,
        })
    }

    /// `l.reverse()` (one atomic step).
    pub fn reverse(&self) -> Result<(), ContainerError> {
        self.list.reverse()
    }

    /// `repr(l)`: `[0, 1, 2]`.
    pub fn repr(&self) -> Result<String, ContainerError> {
        let items: Vec<String> = self.list.to_vec()?.iter().map(Py::to_string).collect();
        Ok(format!("[{}]", items.join(", ")))
    }
}

/// The child: the seed's `f(d, l)`, on the containers the parent made under
/// `prefix`.
pub fn child(prefix: &str) -> Result<(), Box<dyn Error>> {
    let d = PyDict::open(prefix)?;
    let l = PyList::open(prefix)?;
    d.set(Py::Int(1), Py::Str("1".into()))?;
    d.set(Py::Str("2".into()), Py::Int(2))?;
    d.set(Py::Float(0.25), Py::None)?;
    l.reverse()?;
    Ok(())
}

/// The parent: the seed's main, creating the containers under `prefix`,
/// printing to `out`, and running the child with `run_child(args)`, which
/// starts this program (or a test's entry point) with `args` as a separate
/// process and waits for it to succeed.
pub fn parent(
    prefix: &str,
    run_child: &dyn Fn(&[&str]) -> Result<(), String>,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    // Python's current_process().name in the parent.
    let me = "MainProcess";
    let d = PyDict::create(prefix)?;
    let l = PyList::create(prefix, (0..10).map(Py::Int))?;
    writeln!(out, "{me} dict: {}", d.repr()?)?;
    writeln!(out, "{me} list: {}", l.repr()?)?;
    run_child(&["child", prefix])?;
    writeln!(out, "{me} dict: {}", d.repr()?)?;
    writeln!(out, "{me} list: {}", l.repr()?)?;
    Ok(())
    // `d` and `l` drop here: their names leave /dev/shm.
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["child", prefix] => child(prefix),
        [] => {
            let prefix = format!("shmring-manager-{}", std::process::id());
            let run_child = |args: &[&str]| -> Result<(), String> {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let status = std::process::Command::new(exe)
                    .args(args)
                    .status()
                    .map_err(|e| format!("starting the child: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("the child failed: {status}"))
                }
            };
            parent(&prefix, &run_child, &mut std::io::stdout().lock())
        }
        _ => Err("usage: manager_dict_list [child <prefix>]".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
