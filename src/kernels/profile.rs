//! Where a model step spends its time, by kind of layer, for `latent-studio bench --profile`.
//! While switched on, each measured call waits for the device before and after itself, so the
//! totals are wall time per kind (GPU work included) and the step runs somewhat slower than
//! unmeasured; off (the default) a measured call costs one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::{Device, Result};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Vec<(&'static str, Duration, usize)>> = Mutex::new(Vec::new());

/// Starts (clearing earlier totals) or stops measuring.
pub fn set_enabled(enabled: bool) {
    if enabled {
        TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Runs `run`, adding its time to `kind`'s total when measuring. Calls must not nest.
pub fn measure<R>(
    kind: &'static str,
    device: &Device,
    run: impl FnOnce() -> Result<R>,
) -> Result<R> {
    if !ENABLED.load(Ordering::Relaxed) {
        return run();
    }
    device.synchronize()?;
    let started = Instant::now();
    let out = run()?;
    device.synchronize()?;
    let elapsed = started.elapsed();
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|(k, _, _)| *k == kind) {
        Some((_, total, calls)) => {
            *total += elapsed;
            *calls += 1;
        }
        None => totals.push((kind, elapsed, 1)),
    }
    Ok(out)
}

/// The totals since measuring started: kind, time, calls; longest first.
pub fn totals() -> Vec<(&'static str, Duration, usize)> {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    totals.sort_by_key(|total| std::cmp::Reverse(total.1));
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_kind_only_while_enabled() {
        let device = Device::Cpu;
        measure("ignored", &device, || Ok(())).unwrap();
        set_enabled(true);
        for _ in 0..3 {
            measure("sleep", &device, || {
                std::thread::sleep(Duration::from_millis(2));
                Ok(())
            })
            .unwrap();
        }
        measure("other", &device, || Ok(())).unwrap();
        set_enabled(false);
        measure("sleep", &device, || Ok(())).unwrap();
        // The totals are process-wide: layers of tests running alongside may add kinds of
        // their own while this one measures, so only this test's kinds are checked.
        let totals = totals();
        let find = |kind: &str| totals.iter().find(|(k, _, _)| *k == kind).copied();
        let (_, slept, calls) = find("sleep").expect("measured while enabled");
        assert_eq!(calls, 3);
        assert!(slept >= Duration::from_millis(6));
        assert_eq!(find("other").map(|(_, _, calls)| calls), Some(1));
        assert!(find("ignored").is_none());
        let position = |kind: &str| totals.iter().position(|(k, _, _)| *k == kind);
        assert!(position("sleep") < position("other"), "longest first");
    }
}
