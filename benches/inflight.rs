//! The in-flight tracker's cost per request: one `enter` plus the guard's
//! drop, uncontended and with the other core doing the same.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use gremlins_api::InFlight;

fn enter_and_exit(c: &mut Criterion) {
    let tracker = InFlight::new();
    c.bench_function("inflight enter+exit, uncontended", |b| {
        b.iter(|| drop(black_box(tracker.enter())));
    });

    // A second thread hammers the same counter, as another worker would.
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let tracker = Arc::clone(&tracker);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                drop(black_box(tracker.enter()));
            }
        })
    };
    c.bench_function("inflight enter+exit, contended by one thread", |b| {
        b.iter(|| drop(black_box(tracker.enter())));
    });
    stop.store(true, Ordering::Relaxed);
    rival.join().expect("rival thread");
}

criterion_group!(benches, enter_and_exit);
criterion_main!(benches);
