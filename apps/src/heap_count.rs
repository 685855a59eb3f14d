//! Heap allocations counted process-wide, for measuring what a run allocates per sample
//! (`scripts/bench-e2e`). Built only with the `count-allocations` feature: the binary then
//! installs [`CountingAllocator`] and exports the count on `/metrics` as
//! [`HEAP_ALLOCATIONS_TOTAL`]. Memory that C libraries (librdkafka, libpq) take with `malloc` is
//! not counted: only Rust's heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counter: heap allocations and reallocations made by the process's Rust code so far.
pub const HEAP_ALLOCATIONS_TOTAL: &str = "anomaly_heap_allocations_total";

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation and reallocation.
pub struct CountingAllocator;

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Publishes the count (called before each `/metrics` render).
pub fn publish() {
    metrics::counter!(HEAP_ALLOCATIONS_TOTAL).absolute(allocations());
}
