//! What every consumer of a replication is, whichever kind: its name and where it starts.

use async_nats::jetstream::consumer::DeliverPolicy;

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this stream sequence (1-based), every message from there.
    At(u64),
    /// The newest message of each subject, in stream order, then every new message: a fresh
    /// client reads each document once, not its whole history.
    NewestOf,
    /// The newest message of all those on the filter (for one document's subject: its state).
    Newest,
}

/// A name for a consumer of ours. Named consumers are created on
/// `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, a subject that permissions can bind to
/// a filter (see `tenantPermissions()` in the README).
pub fn consumer_name() -> String {
    format!("rxn_{}", nuid::next())
}

/// The deliver policy of a consumer that starts at `start`.
pub fn deliver_policy(start: Start) -> DeliverPolicy {
    match start {
        Start::At(seq) if seq <= 1 => DeliverPolicy::All,
        Start::At(seq) => DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        },
        Start::NewestOf => DeliverPolicy::LastPerSubject,
        Start::Newest => DeliverPolicy::Last,
    }
}
