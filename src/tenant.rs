//! `tenantPermissions()`: the NATS user permissions that let a replication with option
//! `tenant` replicate one tenant's documents and nothing else. Why each grant is safe is in the
//! README's "Tenants"; in short, for a prefix `P` on a shared stream `S`:
//!
//! - publish `P.*`: its own documents (JetStream publishes; acks come to its inbox);
//! - publish `$JS.API.CONSUMER.CREATE.S.*.P.*`: consumers whose filter, named in the subject,
//!   the server checks against the config (no other filter, none, or several);
//! - publish `$JS.FC.S.>`: flow control answers of its push consumers;
//! - subscribe `<inbox>.>`: replies and deliveries, in an inbox no other tenant's lies under.
//!
//! With `attachments: { bucket }`, the tenant's own Object Store bucket, whole.
//!
//! Not granted, as each would cross tenants: stream info (lists every subject), stream and
//! direct gets (any sequence; a direct get's reply subject can be an API request executed with
//! the account's rights), `MSG.NEXT` and ack subjects (they serve any consumer by name),
//! consumer info, list and delete, and any subscription outside its inbox.

use crate::error::{ErrorCode, ReplicationError, Result};
use crate::options::{is_bucket_name, tenant_inbox};
use crate::subject;
use serde::{Deserialize, Serialize};

/// What `tenantPermissions()` takes: a prefix on a shared stream, or a KV bucket of its own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantOf {
    pub stream_name: Option<String>,
    pub subject_prefix: Option<String>,
    pub kv: Option<TenantBucket>,
    /// The tenant's own attachments bucket (option `attachments.bucket`).
    pub attachments: Option<TenantBucket>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBucket {
    pub bucket: String,
}

/// Allowed subjects of one direction.
#[derive(Debug, Serialize, PartialEq)]
pub struct Allowed {
    pub allow: Vec<String>,
}

/// A `permissions` block of a nats-server user.
#[derive(Debug, Serialize, PartialEq)]
pub struct Permissions {
    pub publish: Allowed,
    pub subscribe: Allowed,
}

fn invalid(message: String) -> ReplicationError {
    ReplicationError::new(ErrorCode::InvalidOption, message)
}

/// The permissions of a tenant.
pub fn permissions(of: &TenantOf) -> Result<Permissions> {
    match (&of.kv, &of.stream_name, &of.subject_prefix) {
        (Some(kv), None, None) if of.attachments.is_none() => bucket_permissions(&kv.bucket),
        (None, Some(stream), Some(prefix)) => {
            let mut permissions = prefix_permissions(stream, prefix)?;
            if let Some(attachments) = &of.attachments {
                let objects = object_store_grants(&attachments.bucket)?;
                permissions.publish.allow.extend(objects);
            }
            Ok(permissions)
        }
        _ => Err(invalid(
            "tenantPermissions() takes { streamName, subjectPrefix } (a tenant's prefix on a \
             shared stream) or { kv: { bucket } } (a tenant's own KV bucket)"
                .to_string(),
        )),
    }
}

fn prefix_permissions(stream: &str, prefix: &str) -> Result<Permissions> {
    let name_ok = !stream.is_empty()
        && !stream.contains(|c: char| ".*> \t\r\n/\\".contains(c) || c.is_control());
    if !name_ok {
        return Err(invalid(format!(
            "tenantPermissions(): streamName {stream:?} is not a stream name"
        )));
    }
    if !subject::is_valid_prefix(prefix) || !prefix.contains('.') {
        return Err(invalid(format!(
            "tenantPermissions(): subjectPrefix {prefix:?} must be two or more subject tokens \
             without wildcards, such as \"app.acme\": the tenant's documents are on \
             <subjectPrefix>.<id> of a stream shared with other tenants"
        )));
    }
    Ok(Permissions {
        publish: Allowed {
            allow: vec![
                format!("{prefix}.*"),
                format!("$JS.API.CONSUMER.CREATE.{stream}.*.{prefix}.*"),
                format!("$JS.FC.{stream}.>"),
            ],
        },
        subscribe: Allowed {
            allow: vec![format!("{}.>", tenant_inbox(prefix))],
        },
    })
}

fn valid_bucket(bucket: &str, option: &str) -> Result<()> {
    if is_bucket_name(bucket) {
        return Ok(());
    }
    Err(invalid(format!(
        "tenantPermissions(): {option} {bucket:?} is not a bucket name: use letters, digits, \
         '-' and '_'"
    )))
}

/// A tenant's own Object Store bucket, whole: its stream `OBJ_<bucket>` has nothing of other
/// tenants. No direct gets (see the module comment); a bucket this library creates for a
/// tenant does not allow them, so the Object Store reads with stream gets.
fn object_store_grants(bucket: &str) -> Result<Vec<String>> {
    valid_bucket(bucket, "attachments.bucket")?;
    let api = |what: &str| format!("$JS.API.{what}.OBJ_{bucket}");
    Ok(vec![
        format!("$O.{bucket}.>"),
        api("STREAM.INFO"),
        api("STREAM.CREATE"),
        api("STREAM.MSG.GET"),
        api("STREAM.PURGE"),
        api("CONSUMER.CREATE"),
        format!("{}.>", api("CONSUMER.CREATE")),
        format!("{}.*", api("CONSUMER.MSG.NEXT")),
        format!("{}.*", api("CONSUMER.DELETE")),
        format!("$JS.FC.OBJ_{bucket}.>"),
    ])
}

fn bucket_permissions(bucket: &str) -> Result<Permissions> {
    valid_bucket(bucket, "kv.bucket")?;
    let stream = format!("KV_{bucket}");
    let api = |what: &str| format!("$JS.API.{what}.{stream}");
    Ok(Permissions {
        publish: Allowed {
            allow: vec![
                format!("$KV.{bucket}.>"),
                api("STREAM.INFO"),
                api("STREAM.CREATE"),
                api("STREAM.MSG.GET"),
                format!("{}.>", api("CONSUMER.CREATE")),
                format!("{}.*", api("CONSUMER.MSG.NEXT")),
                format!("{}.*", api("CONSUMER.DELETE")),
            ],
        },
        subscribe: Allowed {
            allow: vec![format!("{}.>", tenant_inbox(&format!("$KV.{bucket}")))],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> Result<Permissions> {
        permissions(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn a_prefix_gets_its_subjects_filtered_consumers_and_its_inbox() {
        let p = of(r#"{"streamName":"app","subjectPrefix":"app.acme"}"#).unwrap();
        assert_eq!(
            p.publish.allow,
            [
                "app.acme.*",
                "$JS.API.CONSUMER.CREATE.app.*.app.acme.*",
                "$JS.FC.app.>"
            ]
        );
        assert_eq!(p.subscribe.allow, ["_RXNATS.2.app.acme.>"]);
    }

    #[test]
    fn no_tenants_inbox_lies_under_another_tenants() {
        let acme = of(r#"{"streamName":"app","subjectPrefix":"app.acme"}"#).unwrap();
        let nested = of(r#"{"streamName":"app","subjectPrefix":"app.acme.sub"}"#).unwrap();
        let inbox = |p: &Permissions| p.subscribe.allow[0].trim_end_matches(".>").to_string();
        let (a, n) = (inbox(&acme), inbox(&nested));
        assert!(!n.starts_with(&format!("{a}.")) && !a.starts_with(&format!("{n}.")));
    }

    #[test]
    fn a_bucket_gets_its_own_stream_without_direct_gets() {
        let p = of(r#"{"kv":{"bucket":"acme"}}"#).unwrap();
        assert!(p.publish.allow.contains(&"$KV.acme.>".to_string()));
        assert!(p
            .publish
            .allow
            .iter()
            .all(|s| !s.contains("DIRECT") && (s.contains("KV_acme") || s == "$KV.acme.>")));
        assert_eq!(p.subscribe.allow, ["_RXNATS.2.$KV.acme.>"]);
    }

    #[test]
    fn an_attachments_bucket_adds_its_own_object_store() {
        let p = of(r#"{"streamName":"app","subjectPrefix":"app.acme","attachments":{"bucket":"acme_files"}}"#)
            .unwrap();
        let objects: Vec<&String> = p.publish.allow.iter().skip(3).collect();
        assert!(objects.contains(&&"$O.acme_files.>".to_string()));
        assert!(objects
            .iter()
            .all(|s| s.contains("acme_files") && !s.contains("DIRECT")));
        assert_eq!(p.subscribe.allow, ["_RXNATS.2.app.acme.>"]);
    }

    #[test]
    fn bad_input_is_an_invalid_option() {
        for bad in [
            r#"{"streamName":"app"}"#,
            r#"{"streamName":"app","subjectPrefix":"acme"}"#,
            r#"{"streamName":"app","subjectPrefix":"app.*"}"#,
            r#"{"streamName":"a.b","subjectPrefix":"app.acme"}"#,
            r#"{"kv":{"bucket":"a.b"}}"#,
            r#"{"kv":{"bucket":"a"},"streamName":"app"}"#,
            r#"{"kv":{"bucket":"a"},"attachments":{"bucket":"b"}}"#,
            r#"{"streamName":"app","subjectPrefix":"app.a","attachments":{"bucket":"b.c"}}"#,
        ] {
            assert_eq!(of(bad).unwrap_err().code, ErrorCode::InvalidOption, "{bad}");
        }
    }
}
