//! What one replication has moved so far, for `stats()`: counters that the pull, push and live
//! paths bump without locks, and the snapshot handed to JavaScript.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals of one replication.
#[derive(Debug, Default)]
pub struct Counters {
    documents_pulled: AtomicU64,
    bytes_pulled: AtomicU64,
    documents_pushed: AtomicU64,
    bytes_pushed: AtomicU64,
    documents_rejected: AtomicU64,
    conflicts: AtomicU64,
    malformed_skipped: AtomicU64,
    attachment_bytes_pulled: AtomicU64,
    attachment_bytes_pushed: AtomicU64,
    /// The highest stream sequence handed to RxDB (pull or live).
    checkpoint: AtomicU64,
    resyncs: AtomicU64,
}

/// A snapshot of the counters, as `stats()` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub documents_pulled: u64,
    /// Bytes of document JSON handed to RxDB.
    pub bytes_pulled: u64,
    pub documents_pushed: u64,
    /// Bytes of document JSON written to the stream.
    pub bytes_pushed: u64,
    /// Pushed documents that met another server state and went to the conflict handler.
    pub conflicts: u64,
    /// Local documents the server would not take (too large, ...), each reported on `error$`.
    pub documents_rejected: u64,
    /// Messages on the stream that are not valid documents, each skipped and reported once.
    pub malformed_skipped: u64,
    /// Attachment content read: inline in the messages handed to RxDB, and objects fetched.
    pub attachment_bytes_pulled: u64,
    /// Attachment content written: inline in the messages written, and objects uploaded.
    pub attachment_bytes_pushed: u64,
    /// Times the connection came back after a disconnect since the replication connected.
    pub reconnects: u64,
    /// Times a pull found messages after its checkpoint removed unread (expired or compacted
    /// tombstones, purges, stream limits) and the replication reconciled its documents.
    pub resyncs: u64,
    /// The highest stream sequence handed to RxDB.
    pub checkpoint: u64,
    /// The stream's last sequence when asked; `None` when the server could not be asked.
    pub stream_last_sequence: Option<u64>,
    /// Stream sequences after `checkpoint` (`None` when the server could not be asked).
    pub lag: Option<u64>,
    /// Revisions of each document the stream keeps (its `max_msgs_per_subject`); `None` when
    /// unlimited or when the server could not be asked.
    pub max_msgs_per_subject: Option<u64>,
}

impl Counters {
    /// Documents handed to RxDB, and their JSON size.
    pub fn pulled(&self, documents: usize, bytes: usize) {
        self.documents_pulled
            .fetch_add(documents as u64, Ordering::Relaxed);
        self.bytes_pulled.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A batch handed to RxDB ends at stream sequence `checkpoint`.
    pub fn reached(&self, checkpoint: u64) {
        self.checkpoint.fetch_max(checkpoint, Ordering::Relaxed);
    }

    /// A pull that started at `checkpoint` (RxDB's stored checkpoint after a restart).
    pub fn resumed_at(&self, checkpoint: u64) {
        self.checkpoint.fetch_max(checkpoint, Ordering::Relaxed);
    }

    pub fn pushed(&self, bytes: usize) {
        self.documents_pushed.fetch_add(1, Ordering::Relaxed);
        self.bytes_pushed.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Pushed documents that met another server state.
    pub fn conflicts(&self, documents: usize) {
        self.conflicts
            .fetch_add(documents as u64, Ordering::Relaxed);
    }

    /// A reconciliation after removed messages (see `Stats::resyncs`).
    pub fn resynced(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self) {
        self.documents_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn skipped(&self, messages: usize) {
        self.malformed_skipped
            .fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// Bytes of attachment content read (inline or from the Object Store).
    pub fn attachment_pulled(&self, bytes: u64) {
        self.attachment_bytes_pulled
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of attachment content written (inline or to the Object Store).
    pub fn attachment_pushed(&self, bytes: u64) {
        self.attachment_bytes_pushed
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now, with the connection's reconnects and the stream's last sequence.
    pub fn snapshot(&self, reconnects: u64, stream_last_sequence: Option<u64>) -> Stats {
        let checkpoint = self.checkpoint.load(Ordering::Relaxed);
        Stats {
            documents_pulled: self.documents_pulled.load(Ordering::Relaxed),
            bytes_pulled: self.bytes_pulled.load(Ordering::Relaxed),
            documents_pushed: self.documents_pushed.load(Ordering::Relaxed),
            bytes_pushed: self.bytes_pushed.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            documents_rejected: self.documents_rejected.load(Ordering::Relaxed),
            malformed_skipped: self.malformed_skipped.load(Ordering::Relaxed),
            attachment_bytes_pulled: self.attachment_bytes_pulled.load(Ordering::Relaxed),
            attachment_bytes_pushed: self.attachment_bytes_pushed.load(Ordering::Relaxed),
            reconnects,
            resyncs: self.resyncs.load(Ordering::Relaxed),
            checkpoint,
            stream_last_sequence,
            lag: stream_last_sequence.map(|last| last.saturating_sub(checkpoint)),
            max_msgs_per_subject: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_what_the_stream_holds_after_the_checkpoint() {
        let c = Counters::default();
        c.pulled(3, 30);
        c.reached(7);
        c.pulled(1, 10);
        c.reached(5); // an older batch never moves the checkpoint back
        let s = c.snapshot(0, Some(12));
        assert_eq!(
            (s.documents_pulled, s.bytes_pulled, s.checkpoint),
            (4, 40, 7)
        );
        assert_eq!(s.lag, Some(5));
        assert_eq!(c.snapshot(0, None).lag, None);
        // A stream that was purged below the checkpoint is not negative lag.
        assert_eq!(c.snapshot(0, Some(2)).lag, Some(0));
    }

    #[test]
    fn counts_pushes_rejections_and_skips() {
        let c = Counters::default();
        c.pushed(100);
        c.pushed(20);
        c.rejected();
        c.skipped(2);
        c.attachment_pushed(5);
        c.attachment_pulled(7);
        c.resumed_at(40);
        let s = c.snapshot(3, Some(40));
        assert_eq!((s.documents_pushed, s.bytes_pushed), (2, 120));
        assert_eq!(
            (s.documents_rejected, s.malformed_skipped, s.reconnects),
            (1, 2, 3)
        );
        assert_eq!(
            (s.attachment_bytes_pushed, s.attachment_bytes_pulled),
            (5, 7)
        );
        assert_eq!(s.lag, Some(0));
    }
}
