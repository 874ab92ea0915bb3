//! The thread pool's stall handling (`mnc_targets::cpu::par`, module docs "Stalls"), in a
//! process of its own: the crate's unit tests run with it off, and a serial period here
//! would otherwise reach every other test of the process.

use mnc_targets::cpu::par::{for_each, serial_left, stalls};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Whatever task a pool thread runs sleeps 5 ms (a pool thread descheduled in the middle of
/// a task, as the dispatcher sees it) while the caller's take microseconds: each such job is
/// a long wait, and the third within 50 ms starts a serial period, in which jobs run on
/// their caller alone. Once it is over, pool threads take tasks again.
#[test]
fn stalled_pool_threads_send_the_next_jobs_to_the_caller() {
    let me = std::thread::current().id();
    let stalling = |_: usize| {
        if std::thread::current().id() != me {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            spin_for(Duration::from_micros(10));
        }
    };
    let before = stalls();
    // A retry budget, not a timing assertion: a pool thread takes one of the two tasks
    // unless the caller claims both first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while serial_left().is_none() && Instant::now() < deadline {
        for_each(2, 2, &stalling);
    }
    assert!(stalls() >= before + 3, "{} stalls", stalls() - before);
    let left = serial_left().expect("no serial period after the stalls");
    // The first period: 20 ms, or 8 times the stalled job (here at least 5 ms) if longer.
    assert!(left <= Duration::from_secs(1), "{left:?}");
    let who = Mutex::new(HashSet::new());
    for_each(2, 16, &|_| {
        who.lock().unwrap().insert(std::thread::current().id());
    });
    if serial_left().is_some() {
        // Still inside the period after the job: it ran on this thread alone.
        assert_eq!(who.into_inner().unwrap(), HashSet::from([me]));
    }
    // After the period, pool threads take tasks again (8 tasks of 5 ms give a parked one time
    // to wake up).
    std::thread::sleep(serial_left().unwrap_or_default() + Duration::from_millis(60));
    assert!(serial_left().is_none());
    let who = Mutex::new(HashSet::new());
    for_each(2, 8, &|_| {
        who.lock().unwrap().insert(std::thread::current().id());
        spin_for(Duration::from_millis(5));
    });
    assert_eq!(
        who.into_inner().unwrap().len(),
        2,
        "no pool thread ran a task"
    );
}
