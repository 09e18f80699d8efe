//! The raw limit of live latency for the benchmark: async-nats alone publishes single documents
//! (with the expected-subject-sequence header the replication uses, awaiting each ack) on one
//! connection and a pull consumer on a second connection receives them, one write at a time;
//! the writer's connection has a consumer too (a replication pulls live as well as pushing).
//! Prints one JSON line: {"p50_ms":..,"p95_ms":..,"max_ms":..,"ack_p50_ms":..,"count":..}.
//!
//! Usage: raw_latency <nats url> <stream> <subject prefix> <writes> <pause ms between writes>

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// The messages stored after now, read by a pull consumer as the live feed reads them.
async fn new_messages(
    stream: &jetstream::stream::Stream,
) -> Result<consumer::pull::Stream, async_nats::Error> {
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(100)
        .messages()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, stream_name, prefix, writes, pause] = &args[..] else {
        return Err("usage: raw_latency <url> <stream> <prefix> <writes> <pause ms>".into());
    };
    let writes: usize = writes.parse()?;
    let pause = Duration::from_millis(pause.parse()?);
    let writer = jetstream::new(async_nats::connect(url).await?);
    let stream = writer
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.*")],
            ..Default::default()
        })
        .await?;
    // The reader: its own connection and a pull consumer from the stream's end, as the live
    // feed reads.
    let reader = jetstream::new(async_nats::connect(url).await?);
    let mut messages = new_messages(&reader.get_stream(stream_name).await?).await?;
    // The writer reads the stream too, as a replication that pulls live does: each write comes
    // back to it as well.
    let mut echoes = new_messages(&stream).await?;
    tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });

    let (mut seen, mut acked) = (Vec::with_capacity(writes), Vec::with_capacity(writes));
    for i in 0..writes {
        let id = format!("doc-{i:07}");
        let body = serde_json::json!({
            "id": id, "name": format!("Person number {i} with a longer name"), "age": i % 100,
            "tags": ["alpha", "beta", "gamma"], "_deleted": false,
        });
        let started = Instant::now();
        let message = PublishMessage::build()
            .payload(serde_json::to_vec(&body)?.into())
            .expected_last_subject_sequence(0);
        let ack = writer
            .send_publish(format!("{prefix}.{id}"), message)
            .await?;
        let (ack, delivered) = tokio::join!(
            async {
                let ack = ack.await;
                (ack, started.elapsed())
            },
            messages.next()
        );
        ack.0?;
        delivered.ok_or("the consumer ended")??;
        seen.push(started.elapsed().as_secs_f64() * 1000.0);
        acked.push(ack.1.as_secs_f64() * 1000.0);
        tokio::time::sleep(pause).await;
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    println!(
        "{}",
        serde_json::json!({
            "p50_ms": pct(&mut seen, 0.5), "p95_ms": pct(&mut seen, 0.95), "max_ms": pct(&mut seen, 1.0),
            "ack_p50_ms": pct(&mut acked, 0.5), "count": writes,
        })
    );
    Ok(())
}
