//! The raw limit for the benchmark: N documents published by async-nats alone (pipelined, with
//! the expected-subject-sequence header the replication uses) in windows of `window` documents,
//! each window's acks awaited before the next (as the push handler does per batch), then read
//! back by one ordered consumer. Prints one JSON line:
//! {"publish_ms":..,"publish_after_first_ms":..,"read_ms":..,"count":..}; publish_after_first_ms
//! leaves out the first window, as the bench leaves out the push handler's first call (which
//! connects).
//!
//! Usage: raw_limit <nats url> <stream> <subject prefix> <count> [window, default 1000]

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures::StreamExt;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().collect();
    let (url, stream_name, prefix, count, window) = match &args[..] {
        [_, url, stream, prefix, count] => (url, stream, prefix, count, 1000),
        [_, url, stream, prefix, count, window] => (url, stream, prefix, count, window.parse()?),
        _ => return Err("usage: raw_limit <url> <stream> <prefix> <count> [window]".into()),
    };
    let count: usize = count.parse()?;
    let client = async_nats::connect(url).await?;
    let js = jetstream::ContextBuilder::new()
        .backpressure_on_inflight(true)
        .build(client);
    let stream = js
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.*")],
            ..Default::default()
        })
        .await?;

    // The same ~200-byte documents the benchmark replicates.
    let bodies: Vec<(String, bytes::Bytes)> = (0..count)
        .map(|i| {
            let id = format!("doc-{i:07}");
            let body = serde_json::json!({
                "id": id, "name": format!("Person number {i} with a longer name"), "age": i % 100,
                "tags": ["alpha", "beta", "gamma"], "_deleted": false,
            });
            (id, serde_json::to_vec(&body).unwrap().into())
        })
        .collect();

    let started = Instant::now();
    let mut first_window_ms = None;
    let mut acks = Vec::with_capacity(window);
    for (i, (id, body)) in bodies.into_iter().enumerate() {
        let message = PublishMessage::build()
            .payload(body)
            .expected_last_subject_sequence(0);
        acks.push(js.send_publish(format!("{prefix}.{id}"), message).await?);
        if acks.len() == window || i + 1 == count {
            for ack in
                futures::future::join_all(acks.drain(..).map(std::future::IntoFuture::into_future))
                    .await
            {
                ack?;
            }
            first_window_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let publish_ms = started.elapsed().as_secs_f64() * 1000.0;

    let started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < count {
        match messages.next().await {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "publish_ms": publish_ms,
            "publish_after_first_ms": publish_ms - first_window_ms.unwrap_or(0.0),
            "read_ms": read_ms,
            "count": read,
        })
    );
    Ok(())
}
