//! Group commit without a resident task. Callers queue a job; the first caller that finds
//! no leader starts one (a spawned task, so a caller that goes away cannot strand the
//! queue), which takes everything queued, commits it as one batch, and repeats until the
//! queue is empty, then steps down. Under load one commit serves many requests; alone, a
//! request pays for exactly one commit, as before.

use std::sync::Mutex;

pub struct Batcher<J> {
    state: Mutex<State<J>>,
}

struct State<J> {
    queue: Vec<J>,
    leading: bool,
}

impl<J> Default for Batcher<J> {
    fn default() -> Self {
        Batcher {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
            }),
        }
    }
}

impl<J> Batcher<J> {
    /// Queues `job`; true when the caller must start a leader (none is running).
    pub fn push(&self, job: J) -> bool {
        let mut s = self.lock();
        s.queue.push(job);
        !std::mem::replace(&mut s.leading, true)
    }

    /// Up to `max` queued jobs, oldest first. Empty means the queue ran dry and the leader
    /// has stepped down: the next `push` starts a new one.
    pub fn take(&self, max: usize) -> Vec<J> {
        let mut s = self.lock();
        if s.queue.is_empty() {
            s.leading = false;
            return Vec::new();
        }
        let n = s.queue.len().min(max);
        s.queue.drain(..n).collect()
    }

    /// The leader died (a panic): drop what is queued, so its callers hear the failure
    /// instead of waiting forever, and let the next `push` lead.
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.queue.clear();
        s.leading = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<J>> {
        // A poisoned lock only means a panic elsewhere; the queue itself is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets other ready tasks run a few times, so that requests arriving together join the
/// batch about to be taken.
pub async fn gather() {
    for _ in 0..2 {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_until_the_queue_runs_dry() {
        let b = Batcher::default();
        assert!(b.push(1), "the first caller leads");
        assert!(!b.push(2), "a leader is running");
        assert_eq!(b.take(1), vec![1]);
        assert!(!b.push(3));
        assert_eq!(b.take(10), vec![2, 3]);
        assert!(b.take(10).is_empty(), "dry: the leader steps down");
        assert!(b.push(4), "the next caller leads again");
    }

    #[test]
    fn abandon_frees_leadership_and_drops_the_queue() {
        let b = Batcher::default();
        assert!(b.push(1));
        b.abandon();
        assert!(b.push(2));
        assert_eq!(b.take(10), vec![2]);
    }
}
