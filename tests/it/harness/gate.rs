//! Lets a test have the machine to itself. Every [`Exporter`](super::Exporter) holds the
//! gate shared; the soak, which measures latencies and probe ages under load, takes it
//! exclusively, so no other exporter runs beside it (as when it was its own test binary).
//! Shared holders never wait for a waiting exclusive one (nested exporters in one test
//! cannot deadlock); the exclusive holder waits until no exporter is running.

use std::sync::{Condvar, Mutex, MutexGuard};

struct State {
    shared: usize,
    exclusive: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    shared: 0,
    exclusive: false,
});
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held by every running exporter.
pub struct Shared {
    counted: bool,
}

/// Held by a test that must run alone.
pub struct Exclusive(());

pub fn shared() -> Shared {
    let mut s = state();
    while s.exclusive {
        s = CHANGED.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    s.shared += 1;
    Shared { counted: true }
}

pub fn exclusive() -> Exclusive {
    let mut s = state();
    while s.exclusive || s.shared > 0 {
        s = CHANGED.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    s.exclusive = true;
    Exclusive(())
}

impl Exclusive {
    /// The exclusive holder's own exporters.
    pub fn shared(&self) -> Shared {
        Shared { counted: false }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.counted {
            state().shared -= 1;
            CHANGED.notify_all();
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        state().exclusive = false;
        CHANGED.notify_all();
    }
}
