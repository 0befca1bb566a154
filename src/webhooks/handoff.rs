//! The hand-off from publish to this process's delivery loops. When a loop has a free
//! slot, publish inserts the delivery already leased to this process and, once committed,
//! hands it straight to the loop: the first attempt needs no claim statement (a row
//! update and a read of the event body per delivery, and a round trip per batch). What
//! finds no free slot is inserted unleased and claimed from the table as before, by any
//! instance; so are retries, and everything a crash leaves leased (when its lease runs
//! out).
//!
//! Room is counted against slots, so a handed delivery starts at once; one that waited
//! longer than [`STALE`] anyway (every slot taken by slow receivers) is not started: its
//! lease could run out mid-attempt and another worker send it too. It is claimed from the
//! table when its lease ends.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::queue::Claimed;

/// The longest a handed delivery may wait for a slot, counted from when its lease began
/// (before the commit). Leases last the send timeout plus five seconds; starting within
/// this leaves every attempt two seconds of lease spare.
pub const STALE: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Handoff {
    state: Mutex<State>,
    /// Rung when deliveries are handed over.
    pub ready: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Slots of the running delivery loops.
    slots: usize,
    /// Attempts in flight in those loops.
    busy: usize,
    /// Promised to publishes that are committing, not handed yet.
    reserved: usize,
    queue: VecDeque<(Instant, Claimed)>,
    totals: Totals,
}

/// Counters since start, for `/metrics`.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Attempts started on handed deliveries (no claim needed).
    pub handed: u64,
    /// Attempts started on deliveries claimed from the table.
    pub claimed: u64,
    /// Handed deliveries left to their leases because they waited past [`STALE`].
    pub stale: u64,
}

impl Handoff {
    /// A delivery loop with `slots` slots starts (`true`) or stops (`false`).
    pub fn register(&self, slots: usize, running: bool) {
        let mut s = self.lock();
        if running {
            s.slots += slots;
        } else {
            s.slots = s.slots.saturating_sub(slots);
        }
    }

    /// Reserves room for up to `wanted` deliveries; how many were granted (0 when no loop
    /// runs in this process, or every slot is spoken for).
    pub fn reserve(&self, wanted: usize) -> usize {
        let mut s = self.lock();
        let taken = s.busy + s.reserved + s.queue.len();
        let granted = s.slots.saturating_sub(taken).min(wanted);
        s.reserved += granted;
        granted
    }

    /// Gives back room reserved with [`Handoff::reserve`] and not used.
    pub fn give_back(&self, reserved: usize) {
        let mut s = self.lock();
        s.reserved = s.reserved.saturating_sub(reserved);
    }

    /// Hands over committed deliveries whose leases began at `leased_at` (at most what was
    /// reserved), and returns the reservation (`reserved`, what [`Handoff::reserve`]
    /// granted). Staleness counts from `leased_at`, so a slow commit eats into the wait
    /// allowed, not into the attempt's lease.
    pub fn hand(&self, reserved: usize, deliveries: Vec<Claimed>, leased_at: Instant) {
        let mut s = self.lock();
        s.reserved = s.reserved.saturating_sub(reserved);
        if deliveries.is_empty() {
            return;
        }
        s.queue
            .extend(deliveries.into_iter().map(|d| (leased_at, d)));
        drop(s);
        self.ready.notify_waiters();
    }

    /// Up to `n` handed deliveries for a loop's free slots, oldest first, counted busy;
    /// and how many were dropped because they waited past [`STALE`].
    pub fn take(&self, n: usize) -> (Vec<Claimed>, usize) {
        let mut s = self.lock();
        let mut stale = 0;
        while s.queue.front().is_some_and(|(at, _)| at.elapsed() > STALE) {
            s.queue.pop_front();
            stale += 1;
        }
        let n = n.min(s.queue.len());
        let taken: Vec<Claimed> = s.queue.drain(..n).map(|(_, d)| d).collect();
        s.busy += taken.len();
        s.totals.handed += taken.len() as u64;
        s.totals.stale += stale as u64;
        (taken, stale)
    }

    /// Attempts started outside [`Handoff::take`] (claimed from the table).
    pub fn started(&self, n: usize) {
        let mut s = self.lock();
        s.busy += n;
        s.totals.claimed += n as u64;
    }

    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    /// Attempts that finished.
    pub fn finished(&self, n: usize) {
        let mut s = self.lock();
        s.busy = s.busy.saturating_sub(n);
    }

    /// Everything still waiting (at shutdown, to release the leases).
    pub fn drain(&self) -> Vec<Claimed> {
        self.lock().queue.drain(..).map(|(_, d)| d).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters and a queue; a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Claimed {
        Claimed {
            id: id.into(),
            attempts: 0,
            event_id: "e".into(),
            webhook_id: "w".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn room_is_free_slots_minus_everything_promised() {
        let h = Handoff::default();
        assert_eq!(h.reserve(5), 0, "no loop runs: nothing is pre-leased");
        h.register(4, true);
        assert_eq!(h.reserve(3), 3);
        assert_eq!(h.reserve(3), 1, "one slot left");
        h.hand(3, vec![delivery("a"), delivery("b")], Instant::now());
        h.give_back(1);
        assert_eq!(h.reserve(9), 2, "two queued, nothing reserved");
        h.give_back(2);
        let (taken, stale) = h.take(1);
        assert_eq!((taken[0].id.as_str(), stale), ("a", 0));
        assert_eq!(h.reserve(9), 2, "one busy, one queued");
        h.give_back(2);
        h.finished(1);
        h.started(2);
        assert_eq!(h.reserve(9), 1, "two busy from the table, one queued");
        h.give_back(1);
        h.register(4, false);
        assert_eq!(h.reserve(9), 0, "the loop stopped");
        assert_eq!(h.drain().len(), 1);
    }

    #[test]
    fn a_delivery_that_waited_past_stale_is_not_started() {
        let h = Handoff::default();
        h.register(2, true);
        let granted = h.reserve(2);
        h.hand(
            1,
            vec![delivery("old")],
            Instant::now() - STALE - Duration::from_millis(1),
        );
        h.hand(granted - 1, vec![delivery("new")], Instant::now());
        let (taken, stale) = h.take(2);
        assert_eq!(stale, 1);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, "new");
        h.started(3);
        assert_eq!(
            h.totals(),
            Totals {
                handed: 1,
                claimed: 3,
                stale: 1
            }
        );
    }
}
