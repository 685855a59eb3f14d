//! Decoding a fleet's samples allocates nothing once each host has been seen: a short host name
//! lies in place, a long one is shared from the decoding thread's table, and a host's values lie
//! inline. Counted by a global allocator, so this file holds one test (its own process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use anomaly_core::Sample;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
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

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_samples_of_known_hosts_allocates_nothing() {
    let hosts = [
        "web-1".to_string(),
        "db-eu-3.example.com".to_string(),
        "a-rather-long-host-name.eu-west-1.compute.internal".to_string(),
    ];
    let encoded: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let host = &hosts[i % hosts.len()];
            let values = vec![i as f64; 7];
            postcard::to_stdvec(&Sample::new(host.as_str(), i as i64, values)).unwrap()
        })
        .collect();
    // Each host seen once: a long name enters the thread's table.
    for bytes in &encoded[..hosts.len()] {
        let _: Sample = postcard::from_bytes(bytes).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut total = 0.0;
    for bytes in &encoded {
        let sample: Sample = postcard::from_bytes(bytes).unwrap();
        total += sample.values[0];
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "decoding {} samples", encoded.len());
    assert!(total > 0.0);

    // A sample of a wider schema (SMD's 38 metrics) still decodes, its values on the heap.
    let wide = Sample::new("web-1", 0, vec![1.0; 38]);
    let back: Sample = postcard::from_bytes(&postcard::to_stdvec(&wide).unwrap()).unwrap();
    assert_eq!(back, wide);
}
