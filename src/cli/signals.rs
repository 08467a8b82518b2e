//! Signals: the only place snaprotd installs handlers. The daemon is handed them as a
//! stream of [`Control`]s; `once` turns the first SIGINT or SIGTERM into its
//! [`Interrupt`].

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use super::CliError;
use super::output::errln;
use crate::daemon::Control;
use crate::interrupt::Interrupt;

/// A signal that stops a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Int,
    Term,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Int => "SIGINT",
            StopSignal::Term => "SIGTERM",
        }
    }

    /// The signal's number.
    pub fn number(self) -> u8 {
        match self {
            StopSignal::Int => 2,
            StopSignal::Term => 15,
        }
    }
}

fn catch(kind: SignalKind, name: &'static str) -> Result<Signal, CliError> {
    signal(kind).map_err(|source| CliError::Signal {
        signal: name,
        source,
    })
}

/// SIGHUP as [`Control::Reload`], SIGTERM and SIGINT as [`Control::Stop`], for the
/// daemon.
pub fn daemon_controls() -> Result<mpsc::UnboundedReceiver<Control>, CliError> {
    let mut hup = catch(SignalKind::hangup(), "SIGHUP")?;
    let mut term = catch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = catch(SignalKind::interrupt(), "SIGINT")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = hup.recv() => Control::Reload("SIGHUP"),
                _ = term.recv() => Control::Stop("SIGTERM"),
                _ = int.recv() => Control::Stop("SIGINT"),
            };
            if tx.send(control).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// On Ctrl-C or SIGTERM: no new job starts, and every server a job stopped is started
/// again by its guard after its snapshot — waiting at most `grace` for the snapshot.
/// Later signals only say that this is under way. Returns the first signal.
pub async fn interrupt_on_signal(interrupt: Interrupt, grace: Duration) -> StopSignal {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    let first = tokio::select! {
        _ = int.recv() => StopSignal::Int,
        _ = term.recv() => StopSignal::Term,
    };
    interrupt.set(grace);
    errln!(
        "snaprotd: interrupted by {}: no new job starts; a server snaprotd stopped is started again \
         once its snapshot is done (waiting at most {}), then snaprotd exits",
        first.name(),
        humantime::format_duration(grace)
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            errln!("snaprotd: still starting the servers it stopped again; it exits when they run");
        }
    });
    first
}

/// Waits for SIGTERM or Ctrl-C (the simulator's end).
pub async fn stop_signal() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
