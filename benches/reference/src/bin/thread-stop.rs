//! The floor under a fixed pool's stop, without any server around it.
//!
//! `thread-stop [THREADS] [RUNS]`: starts THREADS (default 16, the
//! default worker count of gremlins-api) threads blocked on one bounded
//! crossbeam channel, as idle workers are, lets them settle for 20 ms,
//! then sends one stop message per thread (each wakes exactly one, as
//! gremlins-api's exit jobs do) and joins them all, timing that; RUNS
//! (default 41) times, one line of JSON with the median, min and max in
//! microseconds.

use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the threads get to block on the channel before the stop.
const SETTLE: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut number = |default: usize| match args.next().map(|arg| arg.parse::<usize>()) {
        None => Some(default),
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => None,
    };
    let (Some(threads), Some(runs)) = (number(16), number(41)) else {
        eprintln!("usage: thread-stop [THREADS] [RUNS], both positive integers");
        return ExitCode::from(2);
    };
    let mut micros: Vec<u128> = (0..runs).map(|_| stop_once(threads)).collect();
    micros.sort_unstable();
    println!(
        "{{\"threads\":{threads},\"runs\":{runs},\"median_us\":{},\"min_us\":{},\"max_us\":{}}}",
        micros[runs / 2],
        micros[0],
        micros[runs - 1]
    );
    ExitCode::SUCCESS
}

/// Starts `threads` blocked threads; returns how long stopping and joining
/// them took, in microseconds.
fn stop_once(threads: usize) -> u128 {
    let (stop, stops) = crossbeam_channel::bounded::<()>(threads);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let stops = stops.clone();
            std::thread::spawn(move || {
                let _ = stops.recv();
            })
        })
        .collect();
    std::thread::sleep(SETTLE);
    let started = Instant::now();
    for _ in 0..threads {
        let _ = stop.send(());
    }
    for handle in handles {
        let _ = handle.join();
    }
    started.elapsed().as_micros()
}
