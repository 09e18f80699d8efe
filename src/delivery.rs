//! Consumers that push into the replication's own inbox, for a tenant (option `tenant`, users
//! with `tenantPermissions()`). A pull consumer serves whoever knows its name (its
//! `MSG.NEXT` API, and `+NXT` on its ack subjects), and names cannot be bound to a tenant by
//! permissions; a push consumer sends only to its deliver subject, in the tenant's inbox, which
//! no other tenant may subscribe to. No acks (an ack subject is a door into the consumer):
//! flow control bounds what is in flight, and a delivery lost on the way shows as a gap in
//! consumer sequences, after which the reader is opened again.

use crate::connection::Connection;
use crate::consumer::{consumer_name, deliver_policy, Start};
use crate::error::{self, error_chain, ErrorCode, ReplicationError};
use async_nats::jetstream::consumer::{push, AckPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::{StatusCode, Subscriber};
use futures::{FutureExt, StreamExt};
use std::time::Duration;

/// How often a quiet consumer sends a heartbeat; two missed ones mean it is gone.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A consumer whose inbox nobody listens to any more is removed after this (a tenant may not
/// delete consumers: deleting works on any name).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The header of a heartbeat that says the server waits for a flow control answer.
const CONSUMER_STALLED: &str = "Nats-Consumer-Stalled";

/// One push consumer and the subscription to its deliver subject.
pub struct Delivery {
    name: String,
    filter: String,
    subscription: Subscriber,
    client: async_nats::Client,
    context: async_nats::jetstream::Context,
    /// Messages on the filter after the last one taken, as the server last said.
    pending: u64,
    /// The consumer sequence of the last delivery taken.
    delivered: u64,
}

/// A reader's failure: the consumer must be opened again after the last message taken.
pub type Broken = Box<dyn std::error::Error + Send + Sync>;

impl Delivery {
    /// Subscribes to a new deliver subject in the connection's inbox, then creates a consumer
    /// of `filter` from `start` that pushes there (`headers_only`: bodies left out).
    pub async fn open<I>(
        conn: &Connection,
        stream: &Stream<I>,
        start: Start,
        filter: &str,
        headers_only: bool,
    ) -> error::Result<Delivery> {
        let deliver_subject = conn.client.new_inbox();
        let name = consumer_name();
        let config = push::Config {
            name: Some(name.clone()),
            deliver_subject: deliver_subject.clone(),
            filter_subject: filter.to_string(),
            deliver_policy: deliver_policy(start),
            ack_policy: AckPolicy::None,
            flow_control: true,
            idle_heartbeat: HEARTBEAT,
            headers_only,
            inactive_threshold: IDLE_TIMEOUT,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        // A denied subscription or request is only reported on the side: watch for it.
        let concerns = |text: &str| {
            text.contains(&deliver_subject) || text.contains("$JS.API.CONSUMER.CREATE.")
        };
        let opened = conn
            .unless_denied_where(concerns, async {
                let subscription = conn.client.subscribe(deliver_subject.clone()).await?;
                let consumer = stream.create_consumer(config).await?;
                Ok::<_, Broken>((subscription, consumer))
            })
            .await
            .map_err(|text| denied(filter, &text))?;
        let (subscription, consumer) = opened.map_err(|e| failed(filter, &*e))?;
        Ok(Delivery {
            name,
            filter: filter.to_string(),
            subscription,
            client: conn.client.clone(),
            context: conn.jetstream.clone(),
            pending: consumer.cached_info().num_pending,
            delivered: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the server has more matching messages than were taken.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Up to `want` messages: waits up to `wait` for each while the server has more pending,
    /// and takes only what has arrived once it has none.
    pub async fn fetch(
        &mut self,
        want: usize,
        wait: Duration,
    ) -> Result<Vec<async_nats::jetstream::Message>, Broken> {
        let mut out = Vec::with_capacity(want.min(1024));
        while out.len() < want {
            let next = if self.pending == 0 {
                match self.subscription.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            } else {
                tokio::time::timeout(wait, self.subscription.next())
                    .await
                    .map_err(|_| format!("no message within {} ms", wait.as_millis()))?
            };
            let message = next.ok_or("the subscription ended")?;
            if let Some(message) = self.take(message).await? {
                out.push(message);
            }
        }
        Ok(out)
    }

    /// The next message; `Err` when the consumer broke or went silent past two heartbeats.
    pub async fn next(&mut self) -> Result<async_nats::jetstream::Message, Broken> {
        loop {
            let next =
                tokio::time::timeout(2 * HEARTBEAT + HEARTBEAT / 2, self.subscription.next())
                    .await
                    .map_err(|_| "the consumer sent no heartbeat")?;
            let message = next.ok_or("the subscription ended")?;
            if let Some(message) = self.take(message).await? {
                return Ok(message);
            }
        }
    }

    /// A delivery, or `None` for a heartbeat, a flow control request (answered) or a message
    /// of another consumer or subject (someone else's consumer may push into this inbox).
    async fn take(
        &mut self,
        message: async_nats::Message,
    ) -> Result<Option<async_nats::jetstream::Message>, Broken> {
        if let Some(status) = message.status {
            if status != StatusCode::IDLE_HEARTBEAT {
                return Err(format!(
                    "the consumer stopped: {status} {}",
                    message.description.unwrap_or_default()
                )
                .into());
            }
            // A flow control request has a reply subject; a heartbeat may say the server waits
            // for one that was lost.
            let answer = message.reply.map(|r| r.to_string()).or_else(|| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(CONSUMER_STALLED))
                    .map(|v| v.to_string())
            });
            if let Some(subject) = answer {
                self.client.publish(subject, bytes::Bytes::new()).await?;
            }
            return Ok(None);
        }
        let message = async_nats::jetstream::Message {
            message,
            context: self.context.clone(),
        };
        let Ok(info) = message.info() else {
            return Ok(None);
        };
        // Another tenant may create a consumer of its own subjects that delivers here.
        let ours = info.consumer == self.name
            && crate::subject::pattern_covers(&self.filter, message.subject.as_str());
        if !ours {
            return Ok(None);
        }
        if info.consumer_sequence != self.delivered + 1 {
            return Err(format!(
                "delivery {} of consumer {} was lost on the way",
                self.delivered + 1,
                self.name
            )
            .into());
        }
        self.delivered = info.consumer_sequence;
        self.pending = info.pending;
        Ok(Some(message))
    }
}

/// The prefix of a tenant's filter (`app.acme.*` -> `app.acme`).
fn prefix_of(filter: &str) -> &str {
    filter.trim_end_matches(".*").trim_end_matches(".>")
}

fn denied(filter: &str, text: &str) -> ReplicationError {
    let prefix = prefix_of(filter);
    ReplicationError::new(
        ErrorCode::PermissionDenied,
        format!(
            "the server refused to let this user read subjectPrefix {prefix:?} ({text}): a \
             tenant's user reads only the prefix its tenantPermissions() were made for. Use that \
             subjectPrefix, or give the user tenantPermissions({{ streamName, subjectPrefix: \
             {prefix:?} }})"
        ),
    )
}

fn failed(filter: &str, err: &(dyn std::error::Error + 'static)) -> ReplicationError {
    let missing = std::iter::successors(Some(err), |e| e.source()).any(|e| {
        e.downcast_ref::<async_nats::jetstream::stream::ConsumerError>()
            .is_some_and(|c| {
                matches!(c.kind(), async_nats::jetstream::stream::ConsumerErrorKind::JetStream(js)
                    if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
            })
    });
    if missing {
        return ReplicationError::new(
            ErrorCode::StreamMismatch,
            format!(
                "the stream for subjectPrefix {:?} does not exist ({}): a tenant does not create \
                 it; an administrator creates it beforehand with subjects that cover {filter:?} \
                 (e.g. \"{}.>\")",
                prefix_of(filter),
                error_chain(err),
                filter.split('.').next().unwrap_or_default()
            ),
        );
    }
    ReplicationError::unavailable(
        &format!("reading {filter:?} through the tenant's inbox"),
        err,
    )
}

/// The newest message's subject of each document on `filter`, and the highest stream sequence
/// among them (bodies are not read).
pub async fn newest_subjects<I>(
    conn: &Connection,
    stream: &Stream<I>,
    filter: &str,
) -> error::Result<(std::collections::HashSet<String>, u64)> {
    let mut delivery = Delivery::open(conn, stream, Start::NewestOf, filter, true).await?;
    let mut subjects = std::collections::HashSet::new();
    let mut last = 0;
    loop {
        let batch = delivery
            .fetch(1000, READ_WAIT)
            .await
            .map_err(|e| failed(filter, &*e))?;
        if batch.is_empty() {
            return Ok((subjects, last));
        }
        for message in batch {
            if let Ok(info) = message.info() {
                last = last.max(info.stream_sequence);
            }
            subjects.insert(message.subject.to_string());
        }
    }
}

/// How long a read waits for each message the server said it has.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// The newest message on `subject` (one document's), read through the tenant's inbox;
/// `None` when there is none.
pub async fn newest_on<I>(
    conn: &Connection,
    stream: &Stream<I>,
    subject: &str,
) -> error::Result<Option<async_nats::jetstream::Message>> {
    let mut delivery = Delivery::open(conn, stream, Start::Newest, subject, false).await?;
    if delivery.pending() == 0 {
        return Ok(None);
    }
    let mut got = delivery
        .fetch(1, READ_WAIT)
        .await
        .map_err(|e| failed(subject, &*e))?;
    Ok(got.pop())
}
