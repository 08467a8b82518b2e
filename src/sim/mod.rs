//! The provider simulator: a real HTTP server on loopback that behaves as API.md
//! says (and assumes), plus fault injection for tests and the demo.
//!
//! State lives in [`SimState`] behind a mutex. Time-based changes (a snapshot
//! completing, a server finishing a stop) are computed when the state is read, so the
//! simulator has no background tasks. Tests change and inspect the state either
//! in-process through [`SimHandle`] or over HTTP under `/_sim/`.

mod api;
mod faults;
mod listener;
mod model;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use faults::{Fault, FaultAction};
pub use model::{RequestRecord, SimServer, SimSnapshot, SimState};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub token: String,
    /// Snapshots per page of `GET /snapshots/`.
    pub page_size: usize,
    /// How long a snapshot stays `in_progress`.
    pub create_time: Duration,
    /// How long a server takes to stop or start.
    pub transition_time: Duration,
    /// How long a restore takes.
    pub restore_time: Duration,
    /// Added to every answer.
    pub latency: Duration,
    pub cap: usize,
    /// Requests per second the simulated provider accepts; past it, 429 with
    /// `Retry-After: 1` (the request is not applied).
    pub rate_limit: Option<f64>,
    /// The rate limit's bucket: requests accepted at once after a quiet spell (default:
    /// one second's worth).
    pub rate_burst: Option<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            token: "sim-token".into(),
            page_size: 100,
            create_time: Duration::from_secs(2),
            transition_time: Duration::from_millis(500),
            restore_time: Duration::from_secs(5),
            latency: Duration::ZERO,
            cap: 5,
            rate_limit: None,
            rate_burst: None,
        }
    }
}

impl SimOptions {
    /// The rate limit's bucket size.
    pub fn burst(&self) -> f64 {
        self.rate_burst
            .unwrap_or_else(|| self.rate_limit.unwrap_or(0.0).max(1.0))
            .max(1.0)
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

pub(crate) struct Shared {
    pub state: Mutex<SimState>,
    pub options: SimOptions,
    pub base_url: String,
    pub doomed: listener::Doomed,
    /// The rate limit's bucket, when there is a limit.
    pub limiter: Option<Mutex<crate::bucket::TokenBucket>>,
}

impl SimHandle {
    /// Binds `listen` (port 0 picks a free one) and serves until the process ends or
    /// the runtime shuts down.
    pub async fn start(listen: SocketAddr, options: SimOptions) -> std::io::Result<SimHandle> {
        let tcp = tokio::net::TcpListener::bind(listen).await?;
        let addr = tcp.local_addr()?;
        let doomed = listener::Doomed::default();
        let limiter = options
            .rate_limit
            .map(|rate| Mutex::new(crate::bucket::TokenBucket::new(rate, options.burst())));
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState::default()),
            options,
            base_url: format!("http://{addr}/api/v1"),
            doomed: doomed.clone(),
            limiter,
        });
        let app = api::router(shared.clone());
        let listener = listener::SimListener::new(tcp, doomed);
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<listener::Peer>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!("simulator stopped: {e}");
            }
        });
        Ok(SimHandle { shared, addr })
    }

    /// The base URL to put in `[api] base_url`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn token(&self) -> &str {
        &self.shared.options.token
    }

    /// The state, for a test to read or change. Time-based changes are applied first.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        let mut guard = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        guard.advance();
        guard
    }

    pub fn add_server(&self, id: u64, name: &str) {
        self.state().add_server(id, name);
    }

    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }
}
