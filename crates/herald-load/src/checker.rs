//! Per-stream delivery checker: every message exactly once and in order.
//!
//! Each topic's publisher numbers its messages 1, 2, 3, ... The subscriber feeds each received
//! sequence number to a [`SeqChecker`], which classifies it as in order, late (it fills a gap left
//! earlier: out of order), or a duplicate. Gaps are kept as ranges, so a burst of loss costs a few
//! bytes rather than one entry per missing message. How many messages were lost is only known once
//! the publisher says how many it sent: [`SeqChecker::lost`].

/// How one received sequence number was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next expected message.
    InOrder,
    /// Came after a later message, filling a gap.
    Late,
    /// Ahead of the next expected message: the ones in between are missing for now.
    Skipped {
        /// How many messages were jumped over.
        missing: u64,
    },
    /// Already received (or numbered 0, which no publisher sends).
    Duplicate,
}

/// Tracks one stream of sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqChecker {
    /// Highest sequence number received so far (0 before the first).
    highest: u64,
    /// Sorted, disjoint, inclusive ranges of numbers below `highest` not received yet.
    gaps: Vec<(u64, u64)>,
    /// Distinct sequence numbers received.
    unique: u64,
}

impl SeqChecker {
    /// A checker expecting sequence number 1 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest sequence number received so far.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Distinct sequence numbers received so far.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Records one received sequence number.
    pub fn observe(&mut self, seq: u64) -> Verdict {
        if seq == 0 {
            return Verdict::Duplicate;
        }
        if seq == self.highest + 1 {
            self.highest = seq;
            self.unique += 1;
            return Verdict::InOrder;
        }
        if seq > self.highest {
            let missing = seq - self.highest - 1;
            self.gaps.push((self.highest + 1, seq - 1));
            self.highest = seq;
            self.unique += 1;
            return Verdict::Skipped { missing };
        }
        // seq < highest: either it fills a gap or we have seen it.
        let idx = self.gaps.partition_point(|&(_, hi)| hi < seq);
        match self.gaps.get(idx).copied() {
            Some((lo, hi)) if lo <= seq => {
                match (seq == lo, seq == hi) {
                    (true, true) => {
                        self.gaps.remove(idx);
                    }
                    (true, false) => self.gaps[idx].0 = seq + 1,
                    (false, true) => self.gaps[idx].1 = seq - 1,
                    (false, false) => {
                        self.gaps[idx].1 = seq - 1;
                        self.gaps.insert(idx + 1, (seq + 1, hi));
                    }
                }
                self.unique += 1;
                Verdict::Late
            }
            _ => Verdict::Duplicate,
        }
    }

    /// Whether `seq` has been received.
    pub fn received(&self, seq: u64) -> bool {
        if seq == 0 || seq > self.highest {
            return false;
        }
        let idx = self.gaps.partition_point(|&(_, hi)| hi < seq);
        self.gaps.get(idx).is_none_or(|&(lo, _)| lo > seq)
    }

    /// Messages among `1..=sent` never received, not counting `excused` ones (publishes that were
    /// refused, so never promised; sorted or not).
    pub fn lost_except(&self, sent: u64, excused: &[u64]) -> u64 {
        let excused_missing = excused.iter().filter(|&&s| s <= sent && !self.received(s)).count() as u64;
        self.lost(sent) - excused_missing
    }

    /// Messages among `1..=sent` never received.
    pub fn lost(&self, sent: u64) -> u64 {
        let in_gaps: u64 = self
            .gaps
            .iter()
            .filter(|&&(lo, _)| lo <= sent)
            .map(|&(lo, hi)| hi.min(sent) - lo + 1)
            .sum();
        in_gaps + sent.saturating_sub(self.highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_loss() {
        let mut c = SeqChecker::new();
        for s in 1..=100 {
            assert_eq!(c.observe(s), Verdict::InOrder);
        }
        assert_eq!(c.unique(), 100);
        assert_eq!(c.lost(100), 0);
        assert_eq!(c.lost(103), 3, "messages sent but not yet received are lost");
    }

    #[test]
    fn duplicates_are_detected() {
        let mut c = SeqChecker::new();
        c.observe(1);
        c.observe(2);
        assert_eq!(c.observe(2), Verdict::Duplicate);
        assert_eq!(c.observe(1), Verdict::Duplicate);
        assert_eq!(c.observe(0), Verdict::Duplicate);
        assert_eq!(c.unique(), 2);
    }

    #[test]
    fn gap_then_late_fill_is_out_of_order_not_loss() {
        let mut c = SeqChecker::new();
        c.observe(1);
        assert_eq!(c.observe(5), Verdict::Skipped { missing: 3 });
        assert_eq!(c.lost(5), 3);
        assert_eq!(c.observe(3), Verdict::Late);
        assert_eq!(c.observe(3), Verdict::Duplicate);
        assert_eq!(c.observe(2), Verdict::Late);
        assert_eq!(c.observe(4), Verdict::Late);
        assert_eq!(c.lost(5), 0);
        assert_eq!(c.unique(), 5);
        assert_eq!(c.observe(6), Verdict::InOrder);
    }

    #[test]
    fn refused_publishes_are_not_counted_as_lost() {
        let mut c = SeqChecker::new();
        for s in [1, 2, 4, 6] {
            c.observe(s);
        }
        assert!(c.received(4) && !c.received(3) && !c.received(5) && !c.received(7));
        assert_eq!(c.lost(7), 3);
        // 3 and 7 were refused; 5 was accepted and is lost. 4 was refused but delivered anyway.
        assert_eq!(c.lost_except(7, &[7, 3, 4]), 1);
        assert_eq!(c.lost_except(6, &[7, 3, 5]), 0);
    }

    #[test]
    fn loss_counts_only_what_was_sent() {
        let mut c = SeqChecker::new();
        c.observe(2);
        c.observe(10);
        // Missing: 1, 3..=9 below 10.
        assert_eq!(c.lost(10), 8);
        // If only 5 were confirmed sent, 1, 3, 4 and 5 are missing.
        assert_eq!(c.lost(5), 4);
    }
}
