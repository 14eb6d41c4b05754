//! The realtime thread calls `notify`: in the steady state the fake must not allocate there
//! (nor in `pending`/`unmask`). A counting allocator (this test binary only) checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use xen_access::fake::FakeXen;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: thread-local storage may already be gone while a thread exits.
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

#[test]
fn notify_pending_and_unmask_do_not_allocate() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let ports: Vec<_> = (0..4).map(|_| fe.bind_unbound(0).unwrap()).collect();
    let peers: Vec<_> = ports
        .iter()
        .map(|p| be.bind_interdomain(5, *p).unwrap())
        .collect();
    let mut delivered = 0;
    let n = allocations(|| {
        for _ in 0..100 {
            for p in &ports {
                fe.notify(*p).unwrap();
                fe.notify(*p).unwrap(); // remembered while masked, delivered at unmask
            }
            while let Some(p) = be.pending().unwrap() {
                delivered += 1;
                be.unmask(p).unwrap();
            }
        }
    });
    assert_eq!(delivered, 800);
    assert_eq!(n, 0, "{n} allocations in the steady state");
    // The counter works: an allocation is seen.
    assert!(allocations(|| drop(vec![1u8; 16])) > 0);
    assert_eq!(peers.len(), 4);
}
