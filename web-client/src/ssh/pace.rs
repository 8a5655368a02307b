//! The SSH channel window this client grants (RFC 4254 §5.2), following how
//! fast the front end takes output: about [`RENDER_BUDGET_MS`] of it, so
//! that what is already on its way when the person presses Ctrl-C is what
//! the page shows in a quarter of a second, whether it renders text (fast)
//! or binary garbage (ten times slower) on a fast or a slow machine.
//!
//! The rate is measured only while the front end holds the session back
//! (its `drained()` was pending): then what it took between two such
//! releases, over the time between them, is its speed. While it keeps up,
//! nothing is measured and the window grows back (doubling each
//! [`RENDER_BUDGET_MS`] that output flows, a window's worth at least,
//! without the front end holding back) up to [`MAX_WINDOW`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Milliseconds of the front end's output the window holds.
pub const RENDER_BUDGET_MS: f64 = 250.0;
/// Smallest window granted, in bytes: two packets of
/// [`super::SHELL_MAX_PACKET`], so the server always has one to send while
/// the grant for the other is on its way. Binary garbage on a page with its
/// CPU throttled six times renders at about 20 KB/s: a quarter of a second
/// of that is less than this.
pub const MIN_WINDOW: u32 = 8 * 1024;
/// Largest window granted, in bytes, and the first one: what `seq 1 200000`
/// needs in the browser at full speed (less made it slower, 128 KiB: about
/// 20 %, since throughput is at most a window per round trip).
pub const MAX_WINDOW: u32 = 256 * 1024;
/// Shortest span a rate is measured over: shorter ones are mostly the
/// clock's and the event loop's jitter.
pub const MIN_SAMPLE_MS: f64 = 50.0;
/// A gap in output longer than this (ms) means the front end may have had
/// nothing to do: a span that contains one says nothing about its speed.
pub const IDLE_GAP_MS: f64 = 100.0;

/// The window target the shell loop sets and the session's handler
/// answers russh's `adjust_window` with.
#[derive(Debug, Clone)]
pub struct Window(Arc<AtomicU32>);

impl Default for Window {
    fn default() -> Self {
        Window(Arc::new(AtomicU32::new(MAX_WINDOW)))
    }
}

impl Window {
    /// The current target, in bytes.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, bytes: u32) {
        self.0.store(bytes, Ordering::Relaxed)
    }
}

/// Measures the front end's speed from the shell loop's point of view and
/// sets [`Window`] from it.
#[derive(Debug)]
pub struct Pace {
    window: Window,
    /// Bytes handed to the front end so far.
    handed: u64,
    /// When the last output was handed (ms on the front end's clock).
    last_output: Option<f64>,
    /// Start of the current measurement: the time and `handed` when the
    /// front end last released a hold.
    mark: Option<(f64, u64)>,
    /// Since when (ms, and `handed` then) output has flowed without the
    /// front end holding back: the window, not the front end, limits it.
    kept_up: Option<(f64, u64)>,
}

impl Pace {
    pub fn new(window: Window) -> Self {
        Pace {
            window,
            handed: 0,
            last_output: None,
            mark: None,
            kept_up: None,
        }
    }

    /// `len` bytes were handed to the front end at `now` (ms), and it did
    /// (`held`) or did not hold the session back after them.
    pub fn output(&mut self, now: f64, len: usize, held: bool) {
        if self
            .last_output
            .is_some_and(|last| now - last > IDLE_GAP_MS)
        {
            self.mark = None;
            self.kept_up = None;
        }
        self.last_output = Some(now);
        if held {
            self.handed += len as u64;
            self.kept_up = None;
            return;
        }
        let (since, from) = *self.kept_up.get_or_insert((now, self.handed));
        self.handed += len as u64;
        let window = self.window.get();
        if now - since >= RENDER_BUDGET_MS
            && self.handed - from >= u64::from(window)
            && window < MAX_WINDOW
        {
            self.kept_up = Some((now, self.handed));
            self.window.set(window.saturating_mul(2).min(MAX_WINDOW));
        }
    }

    /// The front end released a hold at `now` (ms).
    pub fn released(&mut self, now: f64) {
        self.last_output = Some(now);
        let Some((since, handed)) = self.mark else {
            self.mark = Some((now, self.handed));
            return;
        };
        let ms = now - since;
        if ms < MIN_SAMPLE_MS {
            return;
        }
        let rate = (self.handed - handed) as f64 / ms;
        let budget = (rate * RENDER_BUDGET_MS).clamp(f64::from(MIN_WINDOW), f64::from(MAX_WINDOW));
        // Smoothed, as the page's own queue mark is: one slow write (a
        // garbage collection) does not close the window.
        let mut next = 0.5 * f64::from(self.window.get()) + 0.5 * budget;
        if (next - budget).abs() < 1024.0 {
            next = budget;
        }
        self.window.set(next as u32);
        self.mark = Some((now, self.handed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A front end taking `rate` bytes/ms in packets of `packet` bytes,
    /// holding the session back after every `hold`-th, until `until` (ms);
    /// the clock goes on from the last output.
    fn drive(pace: &mut Pace, rate: f64, packet: usize, hold: usize, until: f64) {
        let mut now = pace.last_output.unwrap_or(0.0);
        let mut n = 0;
        while now < until {
            n += 1;
            pace.output(now, packet, n % hold == 0);
            now += packet as f64 / rate;
            if n % hold == 0 {
                pace.released(now);
            }
        }
    }

    #[test]
    fn a_slow_front_end_gets_a_quarter_second_of_window() {
        let window = Window::default();
        let mut pace = Pace::new(window.clone());
        // 200 KB/s: 50 KB in 250 ms.
        drive(&mut pace, 200.0, 4096, 4, 5_000.0);
        let w = window.get();
        assert!((45_000..=56_000).contains(&w), "{w}");
    }

    #[test]
    fn the_window_stays_within_its_bounds() {
        let window = Window::default();
        let mut pace = Pace::new(window.clone());
        drive(&mut pace, 2.0, 128, 2, 10_000.0);
        assert_eq!(window.get(), MIN_WINDOW);
        drive(&mut pace, 100_000.0, 32 * 1024, 2, 20_000.0);
        assert_eq!(window.get(), MAX_WINDOW);
    }

    #[test]
    fn a_front_end_that_keeps_up_gets_the_window_back() {
        let window = Window::default();
        let mut pace = Pace::new(window.clone());
        drive(&mut pace, 2.0, 128, 2, 10_000.0);
        assert_eq!(window.get(), MIN_WINDOW);
        let mut now = 10_050.0;
        for _ in 0..200 {
            pace.output(now, 16 * 1024, false);
            now += 10.0;
        }
        assert_eq!(window.get(), MAX_WINDOW);
    }

    #[test]
    fn idle_time_is_not_taken_for_slowness() {
        let window = Window::default();
        let mut pace = Pace::new(window.clone());
        pace.output(0.0, 64 * 1024, true);
        pace.released(10.0);
        // The person reads for a minute, then output resumes.
        pace.output(60_000.0, 64 * 1024, true);
        pace.released(60_010.0);
        assert_eq!(window.get(), MAX_WINDOW);
    }
}
