//! A loom-visible stand-in for the futex: wait checks the word and sleeps
//! atomically with respect to wake, exactly what FUTEX_WAIT promises, and
//! wake hands out at most `n` wake-ups and says how many it handed out,
//! as FUTEX_WAKE does.

use crate::loom::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};
use std::collections::{BTreeSet, VecDeque};

#[derive(Debug, Default)]
struct State {
    /// Ids for sleepers.
    next_id: u64,
    /// Sleepers not yet handed a wake-up, oldest first.
    asleep: VecDeque<u64>,
    /// Sleepers handed a wake-up that have not yet run. Wake-ups are
    /// addressed: a sleeper that arrives later cannot take an earlier
    /// sleeper's, as with FUTEX_WAKE.
    woken_ids: BTreeSet<u64>,
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
        let id = st.next_id;
        st.next_id += 1;
        st.asleep.push_back(id);
        while !st.woken_ids.remove(&id) {
            st = self.cond.wait(st).unwrap();
        }
    }

    /// Wakes up to `n` sleepers; returns how many.
    pub(crate) fn wake(&self, n: usize) -> usize {
        let mut st = self.state.lock().unwrap();
        let k = n.min(st.asleep.len());
        for _ in 0..k {
            let id = st.asleep.pop_front().expect("k <= asleep.len()");
            st.woken_ids.insert(id);
        }
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
