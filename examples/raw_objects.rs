//! The raw Object Store limit for the attachment benchmark: N objects of SIZE bytes put with
//! async-nats alone (four at a time, as the replication uploads), then read back (four at a
//! time). Prints one JSON line: {"put_ms":..,"get_ms":..,"bytes":..}.
//!
//! Usage: raw_objects <nats url> <bucket> <count> <size>

use async_nats::jetstream::{self, object_store};
use futures::StreamExt;
use std::time::Instant;
use tokio::io::AsyncReadExt;

const AT_ONCE: usize = 4;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, bucket, count, size] = &args[..] else {
        return Err("usage: raw_objects <url> <bucket> <count> <size>".into());
    };
    let (count, size): (usize, usize) = (count.parse()?, size.parse()?);
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let store = js
        .create_object_store(object_store::Config {
            bucket: bucket.clone(),
            ..Default::default()
        })
        .await?;
    // Different content per object, as the benchmark's attachments have.
    let objects: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let mut x = (i as u32 + 1).wrapping_mul(2_654_435_761);
            let data = (0..size)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 24) as u8
                })
                .collect();
            (format!("object-{i}"), data)
        })
        .collect();

    let started = Instant::now();
    let puts = futures::stream::iter(objects.iter().map(|(name, data)| {
        let store = store.clone();
        async move {
            store
                .put(name.as_str(), &mut data.as_slice())
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    for put in puts {
        put?;
    }
    let put_ms = started.elapsed().as_secs_f64() * 1000.0;

    let started = Instant::now();
    let gets = futures::stream::iter(objects.iter().map(|(name, _)| {
        let store = store.clone();
        async move {
            let mut object = store.get(name.as_str()).await?;
            let mut data = Vec::with_capacity(size);
            object.read_to_end(&mut data).await?;
            Ok::<usize, async_nats::Error>(data.len())
        }
    }))
    .buffer_unordered(AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    let mut bytes = 0;
    for get in gets {
        bytes += get?;
    }
    let get_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({ "put_ms": put_ms, "get_ms": get_ms, "bytes": bytes })
    );
    Ok(())
}
