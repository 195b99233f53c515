//! Pickles of simple objects, written and read without `pickle`.
//!
//! `None`, `bool`, `int` (within 64 bits), `float`, `str` and `bytes` (the
//! exact types) are most small messages. `pickle.dumps` and `pickle.loads`
//! cost more than the rest of a put/get for them: a pickler or unpickler
//! object each time, with a 4 KiB output buffer whose allocation makes
//! glibc consolidate its free lists. So these objects are written here as
//! the pickle opcodes protocol 5 uses for them (`PROTO 5`, one opcode and
//! its argument, `STOP`, without the optional `FRAME` and `MEMOIZE`): a
//! valid pickle that `pickle.loads` reads back to an equal object, so a
//! pipe's `recv_bytes` of a `send` is still a pickle. On receipt, a message
//! of exactly that shape is read here; anything else (another type, a
//! pickle made by `pickle.dumps`, a longer or shorter message) goes to
//! `pickle.loads`, which also reports what is malformed.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';

/// The pickle of `obj` if it is a simple object (see the module docs).
pub(crate) fn encode(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&[PROTO, 5]);
    if obj.is_none() {
        out.push(NONE);
    } else if obj.is_exact_instance_of::<PyBool>() {
        out.push(if obj.is_truthy()? { NEWTRUE } else { NEWFALSE });
    } else if obj.is_exact_instance_of::<PyInt>() {
        let Ok(v) = obj.extract::<i64>() else {
            return Ok(None);
        };
        int(&mut out, v);
    } else if obj.is_exact_instance_of::<PyFloat>() {
        out.push(BINFLOAT);
        out.extend_from_slice(&obj.extract::<f64>()?.to_be_bytes());
    } else if obj.is_exact_instance_of::<PyString>() {
        // A string with lone surrogates has no UTF-8: pickle it.
        let Ok(s) = obj.cast::<PyString>()?.to_cow() else {
            return Ok(None);
        };
        if !sized(&mut out, SHORT_BINUNICODE, BINUNICODE, s.as_bytes()) {
            return Ok(None);
        }
    } else if obj.is_exact_instance_of::<PyBytes>() {
        let data = obj.cast::<PyBytes>()?.as_bytes();
        if !sized(&mut out, SHORT_BINBYTES, BINBYTES, data) {
            return Ok(None);
        }
    } else {
        return Ok(None);
    }
    out.push(STOP);
    Ok(Some(out))
}

fn int(out: &mut Vec<u8>, v: i64) {
    if let Ok(b) = u8::try_from(v) {
        out.extend_from_slice(&[BININT1, b]);
    } else if let Ok(h) = u16::try_from(v) {
        out.push(BININT2);
        out.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(w) = i32::try_from(v) {
        out.push(BININT);
        out.extend_from_slice(&w.to_le_bytes());
    } else {
        // Two's complement, little-endian, as few bytes as keep the sign.
        let bytes = v.to_le_bytes();
        let mut n = 8;
        while n > 1 {
            let (last, prev) = (bytes[n - 1], bytes[n - 2]);
            let redundant = (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0);
            if !redundant {
                break;
            }
            n -= 1;
        }
        out.extend_from_slice(&[LONG1, n as u8]);
        out.extend_from_slice(&bytes[..n]);
    }
}

/// A length-prefixed argument: the short opcode (1-byte length) or the
/// long one (4-byte length). `false` (nothing written) for 4 GiB or more,
/// which `pickle` writes with its 8-byte-length opcodes.
#[must_use]
fn sized(out: &mut Vec<u8>, short: u8, long: u8, data: &[u8]) -> bool {
    if let Ok(n) = u8::try_from(data.len()) {
        out.extend_from_slice(&[short, n]);
    } else if let Ok(n) = u32::try_from(data.len()) {
        out.push(long);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        return false;
    }
    out.reserve(data.len() + 1);
    out.extend_from_slice(data);
    true
}

/// The object of a message of exactly the shape [`encode`] writes, or
/// `None` (hand it to `pickle.loads`).
pub(crate) fn decode<'py>(py: Python<'py>, msg: &[u8]) -> Option<Bound<'py, PyAny>> {
    let body = msg.strip_prefix(&[PROTO, 5])?.strip_suffix(&[STOP])?;
    let (&op, arg) = body.split_first()?;
    let fixed = |n: usize| -> Option<&[u8]> { (arg.len() == n).then_some(arg) };
    let obj = match op {
        NONE if arg.is_empty() => py.None().into_bound(py),
        NEWTRUE if arg.is_empty() => PyBool::new(py, true).to_owned().into_any(),
        NEWFALSE if arg.is_empty() => PyBool::new(py, false).to_owned().into_any(),
        BININT1 => fixed(1)?[0].into_pyobject(py).ok()?.into_any(),
        BININT2 => {
            let v = u16::from_le_bytes(fixed(2)?.try_into().ok()?);
            v.into_pyobject(py).ok()?.into_any()
        }
        BININT => {
            let v = i32::from_le_bytes(fixed(4)?.try_into().ok()?);
            v.into_pyobject(py).ok()?.into_any()
        }
        LONG1 => {
            let (&n, digits) = arg.split_first()?;
            let n = usize::from(n);
            if n == 0 || n > 8 || digits.len() != n {
                return None;
            }
            let fill = if digits[n - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut b = [fill; 8];
            b[..n].copy_from_slice(digits);
            i64::from_le_bytes(b).into_pyobject(py).ok()?.into_any()
        }
        BINFLOAT => {
            let v = f64::from_be_bytes(fixed(8)?.try_into().ok()?);
            PyFloat::new(py, v).into_any()
        }
        SHORT_BINUNICODE | BINUNICODE | SHORT_BINBYTES | BINBYTES => {
            let (len, data) = match op {
                SHORT_BINUNICODE | SHORT_BINBYTES => {
                    let (&n, rest) = arg.split_first()?;
                    (usize::from(n), rest)
                }
                _ => {
                    let (n, rest) = arg.split_first_chunk::<4>()?;
                    (u32::from_le_bytes(*n) as usize, rest)
                }
            };
            if data.len() != len {
                return None;
            }
            if matches!(op, SHORT_BINBYTES | BINBYTES) {
                PyBytes::new(py, data).into_any()
            } else {
                // Not UTF-8: `pickle.loads` says how.
                let s = std::str::from_utf8(data).ok()?;
                PyString::new(py, s).into_any()
            }
        }
        _ => return None,
    };
    Some(obj)
}
