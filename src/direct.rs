//! Batch direct get (`multi_last`, nats-server >= 2.11, streams with `allow_direct`): the last
//! message of up to 1,024 subjects in one request. async-nats has no API for it, so this sends
//! the raw request to `$JS.API.DIRECT.GET.<stream>` and reads replies until end-of-batch.

use async_nats::header::{NATS_SEQUENCE, NATS_SUBJECT};
use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// Subjects per request; the server's limit.
pub const MAX_SUBJECTS: usize = 1024;
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a batch read gave: the last message per subject, or that the server cannot do it.
#[derive(Debug)]
pub enum BatchRead {
    /// Subject -> (sequence, headers, body); subjects without messages are absent.
    Found(HashMap<String, (u64, Option<HeaderMap>, Bytes)>),
    /// The server or the stream does not support it: use single reads.
    Unsupported,
}

/// Whether a `nats-server` version string is at least 2.11.
pub fn server_supports_batch_get(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 11)
}

/// Reads the last message of each subject (at most `MAX_SUBJECTS`).
pub async fn last_messages(
    client: &Client,
    stream: &str,
    subjects: &[String],
) -> Result<BatchRead, async_nats::Error> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    let request = serde_json::to_vec(&serde_json::json!({
        "multi_last": subjects,
        "batch": subjects.len(),
    }))?;
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            request.into(),
        )
        .await?;
    let mut found = HashMap::with_capacity(subjects.len());
    loop {
        let message = tokio::time::timeout(REPLY_TIMEOUT, replies.next())
            .await
            .map_err(|_| "batch direct get timed out")?
            .ok_or("batch direct get subscription closed")?;
        match message.status.map(|s| s.as_u16()) {
            // 204 "EOB": end of batch. 404: none of the subjects has a message.
            Some(204) | Some(404) => break,
            None | Some(200) => {
                let headers = message
                    .headers
                    .as_ref()
                    .ok_or("direct get reply has no headers")?;
                let subject = headers
                    .get(NATS_SUBJECT)
                    .ok_or("direct get reply has no Nats-Subject")?
                    .to_string();
                let sequence: u64 = headers
                    .get(NATS_SEQUENCE)
                    .ok_or("direct get reply has no Nats-Sequence")?
                    .as_str()
                    .parse()?;
                found.insert(subject, (sequence, message.headers, message.payload));
            }
            // 408 "Bad Request" (servers before 2.11, or a stream without allow_direct).
            Some(code) if code == StatusCode::TIMEOUT.as_u16() || code == 400 => {
                return Ok(BatchRead::Unsupported)
            }
            Some(code) => {
                return Err(format!(
                    "batch direct get answered {code} {}",
                    message.description.unwrap_or_default()
                )
                .into())
            }
        }
    }
    Ok(BatchRead::Found(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::start_server;

    #[test]
    fn version_gate() {
        assert!(server_supports_batch_get("2.11.0"));
        assert!(server_supports_batch_get("2.15.1"));
        assert!(server_supports_batch_get("v2.12.0-beta.1"));
        assert!(!server_supports_batch_get("2.10.22"));
        assert!(!server_supports_batch_get("2.9.10"));
        assert!(!server_supports_batch_get("garbage"));
    }

    #[tokio::test]
    async fn one_request_reads_the_last_message_of_many_subjects() {
        let server = start_server();
        let client = async_nats::connect(&server.url).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        for (name, allow_direct) in [("DIRECT", true), ("PLAIN", false)] {
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![format!("{}.*", name.to_lowercase())],
                allow_direct,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        for i in 0..1500 {
            js.publish(format!("direct.d{i}"), format!("v1-{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        js.publish("direct.d7", "v2-7".into())
            .await
            .unwrap()
            .await
            .unwrap();
        if !server_supports_batch_get(&client.server_info().version) {
            // Servers before 2.11 must be told apart, so the push reads one document at a time.
            let answer = last_messages(&client, "DIRECT", &["direct.d1".to_string()]).await;
            assert!(matches!(answer, Ok(BatchRead::Unsupported)), "{answer:?}");
            return;
        }

        let subjects: Vec<String> = (0..1024)
            .map(|i| format!("direct.d{i}"))
            .chain(["direct.missing".into()])
            .take(1024)
            .collect();
        let BatchRead::Found(found) = last_messages(&client, "DIRECT", &subjects).await.unwrap()
        else {
            panic!("nats-server 2.15 with allow_direct must answer a batch direct get");
        };
        assert_eq!(found.len(), 1024);
        let (seq, _, body) = &found["direct.d7"];
        assert_eq!(&body[..], b"v2-7");
        assert_eq!(*seq, 1501);
        assert_eq!(&found["direct.d1000"].2[..], b"v1-1000");

        let some: Vec<String> = vec!["direct.d1".into(), "direct.none".into()];
        let BatchRead::Found(found) = last_messages(&client, "DIRECT", &some).await.unwrap() else {
            panic!("expected an answer");
        };
        assert_eq!(found.keys().collect::<Vec<_>>(), vec!["direct.d1"]);

        let none: Vec<String> = vec!["direct.none".into()];
        match last_messages(&client, "DIRECT", &none).await.unwrap() {
            BatchRead::Found(found) => assert!(found.is_empty()),
            BatchRead::Unsupported => panic!("a miss is not 'unsupported'"),
        }

        // Without allow_direct nobody answers the direct get subject: no answer to use.
        let plain: Vec<String> = vec!["plain.a".into()];
        let answer = last_messages(&client, "PLAIN", &plain).await;
        assert!(!matches!(answer, Ok(BatchRead::Found(_))));
    }
}
