//! A loom-visible stand-in for the futex: wait checks the word and sleeps
//! atomically with respect to wake, exactly what FUTEX_WAIT promises, and
//! wake hands out at most `n` wake-ups and says how many it handed out,
//! as FUTEX_WAKE does.

use crate::loom::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Sleepers not yet handed a wake-up.
    asleep: usize,
    /// Wake-ups handed out and not yet taken by a sleeper.
    tokens: usize,
    /// Calls to `wake`, and the wake-ups they handed out (for the models).
    calls: usize,
    woken: usize,
}

#[derive(Debug)]
pub(crate) struct Backend {
    state: Mutex<State>,
    cond: Condvar,
}

impl Backend {
    pub(crate) fn new() -> Self {
        Backend {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32) {
        let mut st = self.state.lock().unwrap();
        // Relaxed: the mutex orders this check against `wake`, as the futex
        // hash-bucket lock does in the kernel.
        if word.load(Ordering::Relaxed) != expected {
            return;
        }
        st.asleep += 1;
        // Sleepers are interchangeable: whichever runs first takes a token.
        while st.tokens == 0 {
            st = self.cond.wait(st).unwrap();
        }
        st.tokens -= 1;
    }

    /// Wakes up to `n` sleepers; returns how many.
    pub(crate) fn wake(&self, n: usize) -> usize {
        let mut st = self.state.lock().unwrap();
        let k = n.min(st.asleep);
        st.asleep -= k;
        st.tokens += k;
        st.calls += 1;
        st.woken += k;
        if k > 0 {
            self.cond.notify_all();
        }
        k
    }

    /// (calls to `wake`, sleepers they woke).
    pub(crate) fn stats(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.calls, st.woken)
    }
}
