//! Noticing that the wall clock was set — NTP correcting a bad RTC, an operator's
//! `date -s`, a resume from suspend — so the timetable, whose fire times are wall-clock
//! instants, is computed again from the new clock (`Daemon::check_clock`).
//!
//! Two ways, neither of which wakes the daemon while nothing happens:
//! - the kernel tells: a `CLOCK_REALTIME` timerfd armed with `TFD_TIMER_CANCEL_ON_SET`
//!   turns readable when the clock is set ([`watch_clock_sets`]);
//! - every look the daemon takes anyway — the watchdog check, each alarm, each notice
//!   of the kernel — compares how far the wall clock moved with how far the monotonic
//!   clock did ([`ClockWatch`]). This also covers a kernel without such timerfds and a
//!   wall clock faked for the process alone.

use std::io;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::sync::mpsc;

/// The least step of the wall clock against the monotonic clock that counts as a jump.
const JUMP: Duration = Duration::from_secs(1);

/// How fast the wall clock may drift from the monotonic one without a jump, in parts
/// per million: NTP slews by at most 500 ppm, so a slew never counts as a jump.
const DRIFT_PPM: u32 = 1_000;

/// Compares the wall clock with the monotonic clock between two looks.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl ClockWatch {
    /// Starts watching from the readings `wall` and `mono`, taken together.
    pub fn new(wall: DateTime<Utc>, mono: Instant) -> ClockWatch {
        ClockWatch { wall, mono }
    }

    /// How far the wall clock jumped since the last look (forward when positive), if
    /// it moved by more than the monotonic clock allows; the readings become the new
    /// reference. A suspend shows as a forward jump: the monotonic clock stands still.
    pub fn look(&mut self, wall: DateTime<Utc>, mono: Instant) -> Option<TimeDelta> {
        let mono_elapsed = mono.saturating_duration_since(self.mono);
        let wall_elapsed = wall - self.wall;
        self.wall = wall;
        self.mono = mono;
        let drift = wall_elapsed - TimeDelta::from_std(mono_elapsed).unwrap_or(TimeDelta::MAX);
        let allowed = JUMP + mono_elapsed / 1_000_000 * DRIFT_PPM;
        let allowed = TimeDelta::from_std(allowed).unwrap_or(TimeDelta::MAX);
        (drift.abs() > allowed).then_some(drift)
    }
}

/// The wall-clock instant far beyond any fire at which the watching timer is set: it
/// is there to be cancelled by a clock set, not to expire.
const NEVER: i64 = 7_258_118_400; // 2200-01-01T00:00:00Z

/// Sends a notice on `notices` each time the kernel says the wall clock was set, until
/// `notices` is closed. An error means this kernel cannot tell (the daemon then sees a
/// jump at its next look).
pub fn watch_clock_sets(notices: mpsc::UnboundedSender<()>) -> io::Result<()> {
    watch_timer(TimeSpec::new(NEVER, 0), notices)
}

/// Arms a `CLOCK_REALTIME` timer for the wall-clock instant `at`, cancelled when the
/// clock is set, and sends a notice each time a read of it returns: cancelled (the
/// clock was set) or expired (only in tests, which set `at` close).
///
/// The reads block, in a thread of their own that sleeps in the kernel until the clock
/// is set and ends with the process: registering the descriptor with tokio's reactor
/// takes `unsafe` (`AsyncFd::register`), which this crate forbids.
fn watch_timer(at: TimeSpec, notices: mpsc::UnboundedSender<()>) -> io::Result<()> {
    let timer = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_CLOEXEC)?;
    timer.set(
        Expiration::OneShot(at),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
    )?;
    std::thread::Builder::new()
        .name("clock-sets".into())
        .spawn(move || {
            // nix's `wait` returns Ok both after a clock set (ECANCELED) and at expiry.
            loop {
                if let Err(e) = timer.wait() {
                    tracing::warn!(
                        "cannot read the clock-change timer ({e}); a clock set is noticed at the next watchdog check or fire"
                    );
                    return;
                }
                if notices.send(()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_steady_clock_is_no_jump() {
        let mono = Instant::now();
        let mut w = ClockWatch::new(at("2026-11-24T12:00:00Z"), mono);
        let later = mono + Duration::from_secs(3600);
        assert_eq!(w.look(at("2026-11-24T13:00:00.3Z"), later), None);
    }

    #[test]
    fn an_ntp_slew_is_no_jump_but_a_step_is() {
        let mono = Instant::now();
        let mut w = ClockWatch::new(at("2026-11-24T12:00:00Z"), mono);
        // A day of slewing at 500 ppm: 43.2 s.
        let day = mono + Duration::from_secs(86_400);
        assert_eq!(w.look(at("2026-11-25T12:00:43.2Z"), day), None);
        // Then a step of two seconds back, a second later.
        let next = day + Duration::from_secs(1);
        assert_eq!(
            w.look(at("2026-11-25T12:00:42.2Z"), next),
            Some(TimeDelta::seconds(-2))
        );
    }

    #[test]
    fn a_clock_set_back_or_a_suspend_is_a_jump_measured_from_the_last_look() {
        let mono = Instant::now();
        let mut w = ClockWatch::new(at("2026-11-24T12:30:00Z"), mono);
        let t1 = mono + Duration::from_secs(60);
        assert_eq!(
            w.look(at("2026-11-24T09:31:00Z"), t1),
            Some(TimeDelta::hours(-3))
        );
        // The new clock is the reference from now on.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(w.look(at("2026-11-24T09:32:00Z"), t2), None);
        // Suspended for two hours: the monotonic clock stood still.
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(
            w.look(at("2026-11-24T11:32:01Z"), t3),
            Some(TimeDelta::hours(2))
        );
    }

    #[tokio::test]
    async fn the_clock_timer_arms_and_reports_each_time_it_turns_readable() {
        // A clock set cannot be made in a test without setting the machine's clock; an
        // expiry turns the timer readable the same way.
        let soon = Utc::now() + TimeDelta::milliseconds(100);
        let at = TimeSpec::new(soon.timestamp(), soon.timestamp_subsec_nanos().into());
        let (tx, mut rx) = mpsc::unbounded_channel();
        watch_timer(at, tx).expect("a CLOCK_REALTIME timerfd with cancel-on-set");
        let notice = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(notice, Ok(Some(())));
        // Read once: no second notice, no busy loop.
        let again = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(again.is_err(), "{again:?}");

        let (tx, _rx) = mpsc::unbounded_channel();
        watch_clock_sets(tx).expect("the watching timer");
    }
}
