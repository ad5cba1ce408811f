//! Graceful shutdown: one [`ShutdownTrigger`], any number of [`Shutdown`] handles.
//!
//! Every long-running task holds a [`Shutdown`] and selects on [`Shutdown::wait`]; `main`
//! triggers it on SIGINT or SIGTERM.

use tokio::sync::watch;

/// Starts the shutdown of every task holding a [`Shutdown`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A task's view of the shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and a first handle.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Signal shutdown to every handle. Idempotent.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A new handle.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether shutdown has been signalled.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Wait until shutdown is signalled (or the trigger is dropped, which counts as a
    /// signal).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone: nobody can signal any more, so stop too.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Wait for SIGINT or SIGTERM; returns the signal's name.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_every_handle() {
        let (trigger, a) = channel();
        let b = trigger.subscribe();
        let c = a.clone();
        assert!(!a.is_triggered());
        let waiters = tokio::spawn(async move {
            a.wait().await;
            b.wait().await;
            c.is_triggered()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiters.is_finished());
        trigger.trigger();
        trigger.trigger();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiters)
                .await
                .unwrap()
                .unwrap()
        );
        // A handle made after the trigger sees it at once.
        let late = trigger.subscribe();
        assert!(late.is_triggered());
        late.wait().await;
    }

    #[tokio::test]
    async fn dropped_trigger_counts_as_shutdown() {
        let (trigger, handle) = channel();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(5), handle.wait())
            .await
            .unwrap();
    }
}
