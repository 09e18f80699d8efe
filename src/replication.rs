//! One replication: its options, its connection and stream (opened on first use, re-opened after
//! a failure), its pull cursor and its live feed. This is the API the N-API layer forwards to.

use crate::attachments::{self, DocumentToEncode};
use crate::batch::{BatchBuilder, DocumentShape, HandedBatch, Modified, ReportedOnce};
use crate::connection::{self, Connection};
use crate::error::{ErrorCode, ReplicationError, Result};
use crate::layout::Layout;
use crate::live::{self, FeedSource, LiveEvent, LiveFeed};
use crate::objects::{CleanupReport, Encoded, Fetched, Objects, WantedObject};
use crate::options::ReplicationOptions;
use crate::pull::{self, PullCursor, Reads, RemovalWatch};
use crate::push::{self, CurrentState, ReadMode, Write, WriteOutcome};
use crate::schema::FieldRules;
use crate::stats::{Counters, Stats};
use crate::stream::{self, Opened};
use futures::TryStreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// How many skipped messages are remembered so each is reported once.
const REPORTED_CAPACITY: usize = 10_000;

/// What became of one pushed document.
#[derive(Debug)]
pub enum Pushed {
    /// Stored at this stream sequence.
    Written(u64),
    /// Another state is on the server (a valid document): RxDB resolves against it.
    Conflict(CurrentState),
    /// Cannot be written at all (reported; the others went on).
    Rejected(ReplicationError),
}

/// Which modified documents to hand to RxDB, and what to report.
#[derive(Debug, serde::Serialize)]
pub struct Screened {
    /// One per document: whether it passed.
    pub keep: Vec<bool>,
    /// Reports of the documents skipped, each message reported once.
    pub skipped: Vec<ReplicationError>,
}

/// Connection and stream of a replication once opened.
struct Link {
    conn: Arc<Connection>,
    stream: Option<Opened>,
    /// The connection's reconnect count when this replication took it.
    reconnects_before: u64,
}

pub struct Replication {
    options: ReplicationOptions,
    shape: DocumentShape,
    /// Wait between retries of the live feed (RxDB's `retryTime`).
    retry_time: Duration,
    link: Mutex<Option<Link>>,
    cursor: Mutex<PullCursor>,
    reported: std::sync::Mutex<ReportedOnce>,
    live: std::sync::Mutex<Option<LiveFeed>>,
    closed: AtomicBool,
    /// Set by `close()`: ends a connect attempt in flight.
    closing: watch::Sender<bool>,
    counters: Counters,
    /// The attachments bucket, once opened.
    objects: Objects,
    /// The checkpoint of the last pull that reached the stream's end: where a live feed
    /// starting now continues without a gap and without replaying what RxDB pulled.
    caught_up: watch::Sender<u64>,
    /// `NATS_HISTORY_REMOVED` was reported (it is reported once).
    history_removed_reported: AtomicBool,
}

impl Replication {
    pub fn new(options: ReplicationOptions, retry_time: Duration) -> Self {
        let shape = DocumentShape {
            layout: Layout::of(&options),
            primary_path: options.primary_path.clone(),
            rules: options
                .collection_schema
                .as_ref()
                .map(FieldRules::from_schema)
                .unwrap_or_default(),
            max_bytes: options.max_document_bytes,
            schema_after_modifier: options.pull_modifier,
        };
        Replication {
            options,
            shape,
            retry_time,
            link: Mutex::new(None),
            cursor: Mutex::new(PullCursor::default()),
            reported: std::sync::Mutex::new(ReportedOnce::new(REPORTED_CAPACITY)),
            live: std::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            closing: watch::Sender::new(false),
            counters: Counters::default(),
            objects: Objects::default(),
            caught_up: watch::Sender::new(0),
            history_removed_reported: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(ReplicationError::new(
                ErrorCode::Closed,
                "the replication was cancelled; create a new one with replicateNats()",
            ))
        } else {
            Ok(())
        }
    }

    /// The connection and the checked stream, opening them on first use. `close()` ends an
    /// attempt in flight (a silent server can keep a connect or a request waiting for long).
    pub async fn connected(&self) -> Result<(Arc<Connection>, Opened)> {
        self.check_open()?;
        self.unless_closed(self.open()).await
    }

    /// `work`, unless close() comes first: a request held by a silent link would otherwise keep
    /// the process alive until its timeout after cancel() (what it did is left to the next run,
    /// which reads the server state again).
    async fn unless_closed<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut closing = self.closing.subscribe();
        tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => Err(cancelled()),
            done = work => done,
        }
    }

    async fn open(&self) -> Result<(Arc<Connection>, Opened)> {
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|l| l.conn.gave_up()) {
            // maxReconnectAttempts ran out: give the closed connection back, take a new one.
            link.take();
            self.release_spawned();
        }
        if link.is_none() {
            let conn = connection::acquire(&self.options.connection).await?;
            let reconnects_before = conn.reconnects();
            *link = Some(Link {
                conn,
                stream: None,
                reconnects_before,
            });
            // From here close() gives the connection back, unless it already ran: then here.
            if self.closed.load(Ordering::SeqCst) {
                link.take();
                self.release_spawned();
                return Err(cancelled());
            }
        }
        let current = link.as_mut().expect("link was just set");
        if current.stream.is_none() {
            current.stream =
                Some(stream::open(&current.conn, &self.shape.layout, &self.options).await?);
        }
        Ok((
            current.conn.clone(),
            current.stream.clone().expect("stream was just set"),
        ))
    }

    /// Gives the connection back in a task of its own, so it completes even if the caller, an
    /// attempt `close()` may end, is dropped.
    fn release_spawned(&self) {
        let options = self.options.connection.clone();
        tokio::spawn(async move { connection::release(&options).await });
    }

    /// After a failed call, look the stream up again next time (it may have been recreated).
    async fn forget_stream(&self) {
        if let Some(link) = self.link.lock().await.as_mut() {
            link.stream = None;
        }
    }

    async fn on_failure<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.code == ErrorCode::Unavailable {
                self.forget_stream().await;
            }
        }
        match result {
            Err(e) => Err(self.explain(e).await),
            ok => ok,
        }
    }

    /// Names the cause of a failure the connection knows better (credentials refused on a
    /// reconnect).
    pub async fn explain(&self, err: ReplicationError) -> ReplicationError {
        match self.link.lock().await.as_ref() {
            Some(link) => link.conn.explain(err),
            None => err,
        }
    }

    /// Keeps only the skipped messages not reported before.
    pub fn first_reports(&self, skipped: Vec<ReplicationError>) -> Vec<ReplicationError> {
        let new = match self.reported.lock() {
            Ok(mut reported) => reported.filter_new(skipped),
            Err(_) => skipped,
        };
        self.counters.skipped(new.len());
        new
    }

    /// Counts a batch handed to RxDB and turns it into what RxDB gets. With a `pull.modifier`,
    /// the documents count once they passed `screen_modified`.
    fn hand_over(&self, batch: BatchBuilder) -> HandedBatch {
        self.counters.reached(batch.checkpoint);
        if !self.shape.schema_after_modifier {
            self.counters.pulled(batch.len(), batch.document_bytes());
        }
        self.counters
            .attachment_pulled(batch.bodies().map(|b| attachments::inline_bytes(b)).sum());
        HandedBatch {
            documents_json: batch.documents_json(),
            sequences: batch.sequences(),
            checkpoint: batch.checkpoint,
            skipped: self.first_reports(batch.skipped),
            removed: false,
        }
    }

    /// Checks pulled documents as `pull.modifier` made them (`(id, sequence, output)` each):
    /// which to keep, and the reports of those skipped that were not reported before.
    pub fn screen_modified(&self, documents: &[(String, u64, Modified<'_>)]) -> Screened {
        let mut keep = Vec::with_capacity(documents.len());
        let mut skipped = Vec::new();
        let (mut kept, mut bytes) = (0, 0);
        for (id, sequence, modified) in documents {
            match self.shape.check_modified(id, *sequence, *modified) {
                Ok(()) => {
                    kept += 1;
                    if let Modified::Document(raw) = modified {
                        bytes += raw.get().len();
                    }
                    keep.push(true);
                }
                Err(err) => {
                    skipped.push(err);
                    keep.push(false);
                }
            }
        }
        self.counters.pulled(kept, bytes);
        Screened {
            keep,
            skipped: self.first_reports(skipped),
        }
    }

    /// Up to `batch_size` documents after `checkpoint`.
    pub async fn pull(&self, checkpoint: u64, batch_size: usize) -> Result<HandedBatch> {
        let (conn, stream) = self.connected().await?;
        let layout = &self.shape.layout;
        let watch =
            pull::RemovalWatch::of(stream.subjects(), &layout.filter(), layout.tombstone_ttl());
        let reads = if stream.confined {
            Reads::Push(&conn)
        } else {
            Reads::Pull
        };
        // A read held by a silent link would hold the cursor, and so close(), until it timed
        // out: close() ends it (the cursor is closed next, whatever state the read left it in).
        let result = self
            .unless_closed(async {
                let mut cursor = self.cursor.lock().await;
                pull::pull_batch(
                    &stream.handle,
                    reads,
                    &mut cursor,
                    &self.shape,
                    watch,
                    checkpoint,
                    batch_size.max(1),
                )
                .await
            })
            .await;
        let pulled = self.on_failure(result).await?;
        self.counters.resumed_at(checkpoint);
        let mut answer = self.hand_over(pulled.batch);
        if let Some(removed) = pulled.removed {
            answer.removed = true;
            if let Some(report) = self.history_removed(removed) {
                answer.skipped.push(report);
            }
        }
        if pulled.caught_up {
            self.caught_up.send_replace(answer.checkpoint);
        }
        Ok(answer)
    }

    /// The report, once per replication, that the stream's own limits removed messages this
    /// replication had not read yet (its first sequence moved past the checkpoint).
    fn history_removed(&self, removed: pull::Removed) -> Option<ReplicationError> {
        let by_limits = removed.limited && removed.first_sequence > removed.after + 1;
        if !by_limits || self.history_removed_reported.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(ReplicationError::new(
            ErrorCode::HistoryRemoved,
            format!(
                "stream {:?} removed messages {} to {} by its limits (max_age, max_msgs or \
                 max_bytes) before this replication read them: it compares its documents with \
                 the stream and deletes those the stream no longer has (stats().resyncs), \
                 instead of skipping them. Raise the stream's limits if clients stay away longer \
                 than they allow",
                self.shape.layout.stream_name(),
                removed.after + 1,
                removed.first_sequence - 1
            ),
        ))
    }

    /// Which of `ids` the stream holds no message of (their tombstones expired, were compacted
    /// or purged, or limits removed them), and the stream's last sequence before it looked: a
    /// write that lands later has a higher sequence. Called to reconcile after a pull saw
    /// removed messages; counted as a resync.
    pub async fn missing_on_stream(&self, ids: &[String]) -> Result<(Vec<String>, u64)> {
        let (conn, stream) = self.connected().await?;
        let listed = async {
            let failed = |e: &dyn std::error::Error| {
                ReplicationError::unavailable("listing the subjects of the stream", e)
            };
            if stream.confined {
                let filter = self.shape.layout.filter();
                let (present, last) =
                    crate::delivery::newest_subjects(&conn, &stream.handle, &filter).await?;
                let missing = ids
                    .iter()
                    .filter(|id| !present.contains(&self.shape.layout.subject_for(id)))
                    .cloned()
                    .collect();
                return Ok((missing, last));
            }
            let stream = &stream.handle;
            let last = stream
                .get_info()
                .await
                .map_err(|e| failed(&e))?
                .state
                .last_sequence;
            let present: HashSet<String> = stream
                .info_with_subjects(self.shape.layout.filter())
                .await
                .map_err(|e| failed(&e))?
                .map_ok(|(subject, _)| subject)
                .try_collect()
                .await
                .map_err(|e| failed(&e))?;
            let missing = ids
                .iter()
                .filter(|id| !present.contains(&self.shape.layout.subject_for(id)))
                .cloned()
                .collect();
            Ok((missing, last))
        };
        let result = self.unless_closed(listed).await;
        let answer = self.on_failure(result).await?;
        self.counters.resynced();
        Ok(answer)
    }

    /// The server state of each document.
    pub async fn read_current(&self, ids: &[String]) -> Result<Vec<Option<CurrentState>>> {
        let (conn, stream) = self.connected().await?;
        let read = push::read_current(&conn, &stream, &self.shape, ids, ReadMode::Batched);
        let result = self.unless_closed(read).await;
        self.on_failure(result).await
    }

    /// Writes the documents; `conflicts_found` conflicts of this batch were decided before
    /// writing (they are counted with those the server reports). A write that meets a message
    /// that is not a valid document (another writer's garbage) is written once more, expecting
    /// that message's sequence; so is, in the KV layout, a create that meets a delete marker
    /// (as KV's own `create` may reuse a deleted key). A conflict whose server state cannot be
    /// read fails the call: RxDB retries the batch.
    pub async fn publish(&self, writes: Vec<Write>, conflicts_found: usize) -> Result<Vec<Pushed>> {
        self.publish_messages(
            writes.into_iter().map(|w| self.message_of(w)).collect(),
            conflicts_found,
        )
        .await
    }

    /// A write of a JSON document (the server's format) as the layout stores it.
    fn message_of(&self, write: Write) -> Write {
        Write {
            body: self.shape.layout.payload_of(&write.body),
            ..write
        }
    }

    /// Whether a deleted document on the server holds only its id: the JS glue compares RxDB's
    /// states of it as that.
    pub fn tombstones_hold_only_the_id(&self) -> bool {
        self.shape.layout.tombstones_hold_only_the_id()
    }

    async fn publish_messages(
        &self,
        writes: Vec<Write>,
        conflicts_found: usize,
    ) -> Result<Vec<Pushed>> {
        let mut outcomes = self.publish_once(&writes).await?;
        let again: Vec<usize> = (0..writes.len())
            .filter(|&i| match &outcomes[i] {
                (WriteOutcome::Conflict, Some(state)) => {
                    state.body.is_none() || (state.marker && writes[i].expected_sequence == 0)
                }
                _ => false,
            })
            .collect();
        if !again.is_empty() {
            let retry: Vec<Write> = again
                .iter()
                .map(|&i| Write {
                    expected_sequence: outcomes[i].1.as_ref().map_or(0, |s| s.sequence),
                    ..writes[i].clone()
                })
                .collect();
            for (i, outcome) in again.into_iter().zip(self.publish_once(&retry).await?) {
                outcomes[i] = outcome;
            }
        }
        let mut conflicts = conflicts_found;
        let pushed = writes
            .iter()
            .zip(outcomes)
            .map(|(write, outcome)| match outcome {
                (WriteOutcome::Written(seq), _) => Ok(Pushed::Written(seq)),
                (WriteOutcome::Rejected(err), _) => Ok(Pushed::Rejected(err)),
                (WriteOutcome::Conflict, Some(state)) if state.body.is_some() => {
                    conflicts += 1;
                    Ok(Pushed::Conflict(state))
                }
                (WriteOutcome::Conflict, _) => Err(ReplicationError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "document {:?} conflicted but its server state could not be read; the \
                         push is retried",
                        write.id
                    ),
                )
                .with_document(&write.id)),
            })
            .collect::<Result<Vec<_>>>()?;
        self.counters.conflicts(conflicts);
        Ok(pushed)
    }

    /// One round of writes; for each conflict, also the server state now.
    async fn publish_once(
        &self,
        writes: &[Write],
    ) -> Result<Vec<(WriteOutcome, Option<CurrentState>)>> {
        let (conn, stream) = self.connected().await?;
        // Documents over maxDocumentBytes would be skipped by every reader: never write them.
        let (allowed, refused): (Vec<&Write>, Vec<&Write>) = writes
            .iter()
            .partition(|w| self.shape.max_bytes.is_none_or(|max| w.body.len() <= max));
        let outcomes = if refused.is_empty() {
            let result = self
                .unless_closed(push::publish_all(&conn, &self.shape, writes))
                .await;
            self.on_failure(result).await?
        } else {
            let allowed: Vec<Write> = allowed.into_iter().cloned().collect();
            let result = self
                .unless_closed(push::publish_all(&conn, &self.shape, &allowed))
                .await;
            let mut written = self.on_failure(result).await?.into_iter();
            writes
                .iter()
                .map(|w| match self.shape.max_bytes {
                    Some(max) if w.body.len() > max => WriteOutcome::Rejected(over_limit(w, max)),
                    _ => written.next().expect("one outcome per allowed write"),
                })
                .collect()
        };
        tracing::debug!(
            documents = writes.len(),
            written = outcomes
                .iter()
                .filter(|o| matches!(o, WriteOutcome::Written(_)))
                .count(),
            conflicts = outcomes
                .iter()
                .filter(|o| **o == WriteOutcome::Conflict)
                .count(),
            "pushed a batch"
        );
        for (write, outcome) in writes.iter().zip(&outcomes) {
            match outcome {
                WriteOutcome::Written(_) => {
                    self.counters.pushed(write.body.len());
                    self.counters
                        .attachment_pushed(attachments::inline_bytes(&write.body));
                }
                WriteOutcome::Rejected(_) => self.counters.rejected(),
                WriteOutcome::Conflict => {}
            }
        }
        let conflicted: Vec<String> = writes
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == WriteOutcome::Conflict)
            .map(|(w, _)| w.id.clone())
            .collect();
        let mut states = if conflicted.is_empty() {
            Vec::new()
        } else {
            // The state RxDB resolves against must be current: ask the leader.
            let read =
                push::read_current(&conn, &stream, &self.shape, &conflicted, ReadMode::Fresh);
            let result = self.unless_closed(read).await;
            self.on_failure(result).await?
        }
        .into_iter();
        Ok(outcomes
            .into_iter()
            .map(|o| {
                let state = if o == WriteOutcome::Conflict {
                    states.next().flatten()
                } else {
                    None
                };
                (o, state)
            })
            .collect())
    }

    /// Places the attachments of documents to push (message or Object Store, uploading what
    /// goes there) and returns the bodies to publish.
    pub async fn encode_attachments(
        &self,
        documents: Vec<DocumentToEncode>,
        buffers: &[&[u8]],
    ) -> Result<Vec<Encoded>> {
        let (conn, _) = self.connected().await?;
        let encoded = self
            .objects
            .encode(&conn, &self.options, &self.counters, documents, buffers);
        let result = self.unless_closed(encoded).await;
        self.on_failure(result).await
    }

    /// Fetches (and checks) the objects that pulled documents reference.
    pub async fn fetch_attachments(&self, wanted: &[WantedObject]) -> Result<Vec<Fetched>> {
        let (conn, stream) = self.connected().await?;
        let fetched = self
            .objects
            .fetch(&conn, &stream, &self.options, &self.counters, wanted);
        let result = self.unless_closed(fetched).await;
        self.on_failure(result).await
    }

    /// Removes the objects no document's newest revision references, older than `older_than`.
    pub async fn remove_unreferenced_attachments(
        &self,
        older_than: Duration,
    ) -> Result<CleanupReport> {
        let (conn, stream) = self.connected().await?;
        let removed = self
            .objects
            .remove_unreferenced(&conn, &stream, &self.options, older_than);
        let result = self.unless_closed(removed).await;
        self.on_failure(result).await
    }

    /// Starts the live feed unless it runs already.
    pub fn start_live(self: &Arc<Self>, batch_size: usize) {
        if self.check_open().is_err() {
            return;
        }
        if let Ok(mut live) = self.live.lock() {
            if live.as_ref().map(|f| !f.is_finished()).unwrap_or(false) {
                return;
            }
            *live = Some(live::start(self.clone(), batch_size.max(1)));
        }
    }

    /// Stops the live feed (its consumer is deleted); `next_live` then returns `None`.
    pub fn stop_live(&self) {
        if let Ok(mut live) = self.live.lock() {
            if let Some(feed) = live.take() {
                feed.stop();
            }
        }
    }

    /// The next live event, or `None` once the feed is stopped.
    pub async fn next_live(&self) -> Option<LiveEvent> {
        let events = self.live.lock().ok()?.as_ref()?.events();
        let mut events = events.lock().await;
        events.recv().await
    }

    /// The counters, the reconnects of its connection and the lag behind the stream. Never
    /// waits long: without a server answer within two seconds the lag is `None`.
    pub async fn stats(&self) -> Stats {
        let link = match tokio::time::timeout(Duration::from_millis(500), self.link.lock()).await {
            Ok(link) => link
                .as_ref()
                .map(|l| (l.conn.clone(), l.stream.clone(), l.reconnects_before)),
            Err(_) => None, // a connect attempt holds it
        };
        let Some((conn, stream, before)) = link else {
            return self.counters.snapshot(0, None);
        };
        let open = stream.filter(|_| !self.closed.load(Ordering::SeqCst));
        let info = match open.as_ref().filter(|s| !s.confined) {
            Some(stream) => tokio::time::timeout(Duration::from_secs(2), stream.handle.get_info())
                .await
                .ok()
                .and_then(|info| info.ok()),
            None => None,
        };
        let mut stats = self.counters.snapshot(
            conn.reconnects().saturating_sub(before),
            info.as_ref().map(|info| info.state.last_sequence),
        );
        let filter = self.shape.layout.filter();
        // A stream shared with other subjects: count only this replication's messages (a
        // stream whose info did not come keeps lag None, without a second wait).
        let shared = match (&open, &info) {
            (Some(stream), _) if stream.confined => true,
            (_, Some(info)) => matches!(
                RemovalWatch::of(Some(&info.config.subjects), &filter, None),
                RemovalWatch::Anchor { .. }
            ),
            _ => false,
        };
        if let (Some(stream), true) = (open, shared) {
            let pending = pending_after(&conn, &stream, &filter, stats.checkpoint);
            stats.lag = tokio::time::timeout(Duration::from_secs(2), pending)
                .await
                .ok()
                .flatten();
        }
        if !self.options.pulls {
            stats.lag = None;
        }
        stats.max_msgs_per_subject = info
            .map(|info| info.config.max_messages_per_subject)
            .filter(|n| *n > 0)
            .map(|n| n as u64);
        stats
    }

    /// Stops everything, deletes this replication's consumers and gives back the connection.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.send_replace(true);
        self.stop_live();
        let mut link = self.link.lock().await;
        let stream = link.as_ref().and_then(|l| l.stream.clone());
        let pull_consumers = stream.as_ref().filter(|s| !s.confined);
        self.cursor
            .lock()
            .await
            .close(pull_consumers.map(|s| &s.handle))
            .await;
        if link.take().is_some() {
            connection::release(&self.options.connection).await;
        }
    }
}

/// How many messages on `filter` follow `checkpoint` (what a consumer starting after it has
/// pending); `None` when the server could not be asked.
async fn pending_after(
    conn: &Connection,
    stream: &Opened,
    filter: &str,
    checkpoint: u64,
) -> Option<u64> {
    let start = pull::Start::At(checkpoint + 1);
    if stream.confined {
        // Its inbox is dropped at once: the server removes the consumer by itself.
        let delivery =
            crate::delivery::Delivery::open(conn, &stream.handle, start, filter, true).await;
        return delivery.ok().map(|d| d.pending());
    }
    let consumer = pull::create_consumer(&stream.handle, start, filter)
        .await
        .ok()?;
    let info = consumer.cached_info();
    let deleted = stream.handle.delete_consumer(&info.name);
    let _ = tokio::time::timeout(Duration::from_secs(2), deleted).await;
    Some(info.num_pending)
}

fn cancelled() -> ReplicationError {
    ReplicationError::new(ErrorCode::Closed, "the replication was cancelled")
}

fn over_limit(write: &Write, max: usize) -> ReplicationError {
    ReplicationError::new(
        ErrorCode::DocumentTooLarge,
        format!(
            "document {:?} was not pushed: it is {} bytes, over maxDocumentBytes ({max}), so \
             other replications would skip it. Make it smaller or raise maxDocumentBytes on \
             every replication of this stream; the other documents were pushed",
            write.id,
            write.body.len()
        ),
    )
    .with_document(&write.id)
}

/// The live feed sees only what it needs of its replication.
impl FeedSource for Replication {
    async fn connected(&self) -> Result<(Arc<Connection>, Opened)> {
        Replication::connected(self).await
    }

    async fn explain(&self, err: ReplicationError) -> ReplicationError {
        Replication::explain(self, err).await
    }

    fn shape(&self) -> &DocumentShape {
        &self.shape
    }

    fn hand_over(&self, batch: BatchBuilder) -> HandedBatch {
        Replication::hand_over(self, batch)
    }

    fn retry_time(&self) -> Duration {
        self.retry_time
    }

    fn caught_up_pulls(&self) -> watch::Receiver<u64> {
        // A new receiver has seen the current value: only later pulls count as changes.
        self.caught_up.subscribe()
    }
}
