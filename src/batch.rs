//! Group commit without a resident task. Callers queue a job; a caller that finds fewer
//! leaders running than allowed starts one (a spawned task, so a caller that goes away
//! cannot strand the queue), which takes everything queued, commits it as one batch, and
//! repeats until the queue is empty, then steps down. Under load one commit serves many
//! requests, and with two leaders one batch fills while the other commits; alone, a
//! request pays for exactly one commit, as before.

use std::sync::Mutex;

pub struct Batcher<J> {
    state: Mutex<State<J>>,
    max_leaders: usize,
}

struct State<J> {
    queue: Vec<J>,
    leaders: usize,
}

impl<J> Batcher<J> {
    /// At most `max_leaders` batches in flight at once (1 where writers serialise anyway,
    /// as on SQLite).
    pub fn new(max_leaders: usize) -> Self {
        Batcher {
            state: Mutex::new(State {
                queue: Vec::new(),
                leaders: 0,
            }),
            max_leaders: max_leaders.max(1),
        }
    }

    /// Queues `job`; true when the caller must start a leader.
    pub fn push(&self, job: J) -> bool {
        let mut s = self.lock();
        s.queue.push(job);
        if s.leaders < self.max_leaders {
            s.leaders += 1;
            true
        } else {
            false
        }
    }

    /// Up to `max` queued jobs, oldest first. Empty means the queue ran dry and this
    /// leader has stepped down.
    pub fn take(&self, max: usize) -> Vec<J> {
        let mut s = self.lock();
        if s.queue.is_empty() {
            s.leaders = s.leaders.saturating_sub(1);
            return Vec::new();
        }
        let n = s.queue.len().min(max);
        s.queue.drain(..n).collect()
    }

    /// A leader died (a panic). If it was the last, drop what is queued, so its callers
    /// hear the failure instead of waiting forever; the next `push` leads again.
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.leaders = s.leaders.saturating_sub(1);
        if s.leaders == 0 {
            s.queue.clear();
        }
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
        let b = Batcher::new(1);
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
        let b = Batcher::new(1);
        assert!(b.push(1));
        b.abandon();
        assert!(b.push(2));
        assert_eq!(b.take(10), vec![2]);
    }

    #[test]
    fn a_second_leader_starts_while_the_first_commits() {
        let b = Batcher::new(2);
        assert!(b.push(1));
        assert_eq!(b.take(10), vec![1], "leader one is committing");
        assert!(b.push(2), "a second leader takes what arrives meanwhile");
        assert!(!b.push(3), "no third");
        assert_eq!(b.take(10), vec![2, 3]);
        assert!(b.take(10).is_empty());
        assert!(b.take(10).is_empty());
        assert!(b.push(4), "both stepped down");
    }
}
