//! Shared by the tests that drive the engine's worker: waiting for its events, so that a worker
//! that hangs fails the test instead of hanging it.
// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use latent_studio::engine::{Event, WorkerHandle};

/// How long any one wait may take before the test fails.
const LIMIT: Duration = Duration::from_secs(120);

/// Collects events until `done` says so; `what` names the wait in the failure.
pub fn wait_for(
    worker: &WorkerHandle,
    what: &str,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + LIMIT;
    let mut events = Vec::new();
    while Instant::now() < deadline {
        if let Some(event) = worker.recv_timeout(Duration::from_millis(100)) {
            let stop = done(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
    }
    panic!("timed out waiting for {what} after {} events", events.len());
}

/// Collects events until `done` says so.
pub fn collect_until(worker: &WorkerHandle, done: impl FnMut(&Event) -> bool) -> Vec<Event> {
    wait_for(worker, "the awaited event", done)
}
