//! A loom-visible stand-in for the futex: wait checks the word and sleeps
//! atomically with respect to wake, exactly what FUTEX_WAIT promises.

use crate::loom::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};

#[derive(Debug)]
pub(crate) struct Backend {
    lock: Mutex<()>,
    cond: Condvar,
}

impl Backend {
    pub(crate) fn new() -> Self {
        Backend {
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32) {
        let guard = self.lock.lock().unwrap();
        // Relaxed: the mutex orders this check against `wake`, as the futex
        // hash-bucket lock does in the kernel.
        if word.load(Ordering::Relaxed) != expected {
            return;
        }
        drop(self.cond.wait(guard).unwrap());
    }

    pub(crate) fn wake(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}
