//! A global allocator for tests (around [`std::alloc::System`]) that can tell whether
//! memory went back to the allocator still holding a secret.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: alloc_probe::Probe = alloc_probe::Probe;
//!
//! let freed = alloc_probe::watch(b"canary", || drop(value));
//! assert_eq!(freed.holding_needle, 0);
//! ```
//!
//! Only the thread inside [`watch`] is watched, and only while it is: every block that
//! thread frees meanwhile is searched for the needle just before it is handed to the
//! system allocator, when it is still allocated and readable. Other threads, and the
//! watching thread outside `watch`, pay one thread-local read per free. The needle and
//! the counters live in constant-initialised thread-locals, so the allocator itself
//! never allocates.
//!
//! Use it around code whose freed blocks are fully initialised (a `String`'s buffer is:
//! its capacity is its length when built from a `&str`, and a wipe writes the whole
//! capacity); reading bytes that were never written is undefined behaviour.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Longest needle [`watch`] accepts.
pub const MAX_NEEDLE: usize = 64;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static NEEDLE: Cell<([u8; MAX_NEEDLE], usize)> = const { Cell::new(([0; MAX_NEEDLE], 0)) };
    static FREED: Cell<usize> = const { Cell::new(0) };
    static HOLDING: Cell<usize> = const { Cell::new(0) };
}

/// What the watched thread freed during [`watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// Blocks freed.
    pub blocks: usize,
    /// Of those, blocks that still contained the needle.
    pub holding_needle: usize,
}

/// Runs `f`, watching what this thread frees meanwhile for `needle`.
///
/// Panics if `needle` is empty or longer than [`MAX_NEEDLE`], or if called inside another
/// `watch` on the same thread.
pub fn watch(needle: &[u8], f: impl FnOnce()) -> Freed {
    assert!(
        !needle.is_empty() && needle.len() <= MAX_NEEDLE,
        "needle of {} bytes (1..={MAX_NEEDLE})",
        needle.len()
    );
    assert!(!WATCHING.get(), "watch() is not reentrant");
    let mut stored = [0u8; MAX_NEEDLE];
    stored[..needle.len()].copy_from_slice(needle);
    NEEDLE.set((stored, needle.len()));
    FREED.set(0);
    HOLDING.set(0);
    WATCHING.set(true);
    f();
    WATCHING.set(false);
    Freed {
        blocks: FREED.get(),
        holding_needle: HOLDING.get(),
    }
}

/// Called for every block this thread frees while watching.
fn inspect(block: &[u8]) {
    FREED.set(FREED.get() + 1);
    let (needle, len) = NEEDLE.get();
    let needle = &needle[..len];
    if block.windows(len).any(|w| w == needle) {
        HOLDING.set(HOLDING.get() + 1);
    }
}

/// The allocator: [`System`], plus the inspection of freed blocks on a watching thread.
pub struct Probe;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// only addition reads a block that is still allocated (before it is freed).
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // `try_with`: never panic inside the allocator, even while the thread ends.
        if WATCHING.try_with(Cell::get).unwrap_or(false) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes allocated by this
            // allocator (the caller's contract for `dealloc`); it is read before it is
            // freed. `watch` documents that watched blocks must be initialised.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            inspect(block);
        }
        // SAFETY: the caller's contract for `dealloc` is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
