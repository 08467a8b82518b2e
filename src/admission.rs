//! How many started jobs are at work rather than waiting for the provider.
//!
//! A job waiting for its snapshot to complete (in a poll round) costs the rate budget
//! nothing of its own, and may wait for minutes; a job at work (listing, stopping,
//! creating, deleting) waits for the budget. The dispatcher starts a job only while
//! the jobs at work are few enough for the budget to serve soon (`dispatch.rs`), so
//! thousands of jobs firing together wait as small records, not as started tasks
//! holding their requests, and a job back from its wait never queues behind new ones.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use futures_util::FutureExt;
use tokio::sync::Notify;

/// The count of jobs at work, shared by a dispatcher and its jobs.
#[derive(Default)]
pub struct Admission {
    /// Signed: a job dropped while away may leave before it comes back.
    at_work: AtomicIsize,
    /// A job went to wait for the provider (or ended): another may start.
    room: Notify,
}

tokio::task_local! {
    static ADMISSION: Arc<Admission>;
}

impl Admission {
    pub fn at_work(&self) -> usize {
        self.at_work.load(Ordering::Relaxed).max(0) as usize
    }

    /// Waits until a job at work went to wait for the provider.
    pub async fn room(&self) {
        self.room.notified().await
    }

    /// Runs `job`, a job starting now: counted at work from this call (before its
    /// task first runs), except while it waits for the provider ([`away`]), and no
    /// more once it ends or is dropped.
    pub fn run<F: Future>(self: &Arc<Self>, job: F) -> impl Future<Output = F::Output> + use<F> {
        self.at_work.fetch_add(1, Ordering::Relaxed);
        let working = Working(self.clone());
        // A combinator, not an `async` block, which would hold `job` twice.
        ADMISSION.scope(self.clone(), job).map(move |out| {
            drop(working);
            out
        })
    }

    fn leave(&self) {
        self.at_work.fetch_sub(1, Ordering::Relaxed);
        self.room.notify_one();
    }
}

/// A started job at work: counted until dropped.
struct Working(Arc<Admission>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// While held, the job of this task waits for the provider and does not count as at
/// work. Outside a dispatched job (a command's own call), nothing is counted.
pub struct Away(Option<Arc<Admission>>);

pub fn away() -> Away {
    Away(
        ADMISSION
            .try_with(|a| a.clone())
            .ok()
            .inspect(|a| a.leave()),
    )
}

impl Drop for Away {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            a.at_work.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_counts_at_work_except_while_away_and_not_after_it_ends() {
        let admission = Arc::new(Admission::default());
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (back_tx, back_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let job = admission.run(async move {
            let away = away();
            seen_tx.send(()).unwrap();
            go_rx.await.unwrap();
            drop(away);
            seen_tx.send(()).unwrap();
            back_rx.await.unwrap();
        });
        assert_eq!(admission.at_work(), 1, "counted from the start");
        let task = tokio::spawn(job);
        seen_rx.recv().await.unwrap();
        assert_eq!(admission.at_work(), 0, "not while waiting for the provider");
        admission.room().await;
        go_tx.send(()).unwrap();
        seen_rx.recv().await.unwrap();
        assert_eq!(admission.at_work(), 1, "back at work");
        back_tx.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(admission.at_work(), 0, "not once ended");
        // Outside a job, nothing is counted.
        drop(away());
        assert_eq!(admission.at_work(), 0);
    }

    #[tokio::test]
    async fn a_job_dropped_while_away_counts_no_more() {
        let admission = Arc::new(Admission::default());
        let job = admission.run(async {
            let _away = away();
            std::future::pending::<()>().await
        });
        let task = tokio::spawn(job);
        tokio::task::yield_now().await;
        task.abort();
        let _ = task.await;
        assert_eq!(admission.at_work(), 0);
    }
}
