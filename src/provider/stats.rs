//! Requests sent and errors seen, by kind, for the metrics file.

/// Requests sent and errors seen, by kind, for the metrics file.
#[derive(Default)]
pub struct ApiStats {
    counts: std::sync::Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
}

impl ApiStats {
    pub(super) fn add(&self, what: &'static str, kind: &str) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((what, kind.to_string())).or_default() += 1;
    }

    /// ("request" | "error", kind) → count.
    pub fn snapshot(&self) -> Vec<(&'static str, String, u64)> {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.iter().map(|((w, k), n)| (*w, k.clone(), *n)).collect()
    }
}
