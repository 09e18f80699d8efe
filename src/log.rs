//! Opt-in diagnostics: `RXDB_NATS_LOG` (a level such as `debug`, or tracing directives such as
//! `rxdb_nats_native=trace,async_nats=info`) turns on `tracing` output to stderr, ours and
//! async-nats'. Off by default. Every credential a replication was given is masked in it:
//! async-nats prints server addresses as given, `user:pass@` included.

use crate::options::ConnectionOptions;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The environment variable that turns logging on.
pub const ENV_VAR: &str = "RXDB_NATS_LOG";

/// Shortest text treated as a secret: masking shorter ones would garble the log.
const MIN_SECRET_CHARS: usize = 4;
const MASK: &str = "***";

/// Credentials seen so far, longest first (so a secret containing another is masked whole).
fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Starts logging to stderr when `RXDB_NATS_LOG` asks for it; a value that is not a level or
/// directive list is reported once on stderr and logging stays off.
pub fn init_from_env() {
    let Ok(value) = std::env::var(ENV_VAR) else {
        return;
    };
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return;
    }
    let filter = match Targets::from_str(value) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "rxdb-nats-native: {ENV_VAR}={value:?} is not a log level (error, warn, info, \
                 debug, trace) or a list of target=level directives ({e}); logging stays off"
            );
            return;
        }
    };
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(MaskedStderr);
    // Another tracing subscriber in the process (another addon) wins; ours then stays silent.
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .try_init();
}

/// Remembers the credentials of a set of connection options, so the log never shows them.
pub fn register_secrets(options: &ConnectionOptions) {
    let mut found: Vec<String> = Vec::new();
    found.extend(options.pass.iter().map(|s| s.0.clone()));
    found.extend(options.token.iter().map(|s| s.0.clone()));
    found.extend(options.nkey_seed.iter().map(|s| s.0.clone()));
    if let Some(tls) = &options.tls {
        found.extend(tls.key.iter().map(|s| s.0.clone()));
    }
    // The user-info part of each URL: a password or a token.
    for server in options.server_list() {
        let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
        if let Some((info, _)) = rest.rsplit_once('@') {
            // `user:password` or a token; a user name is no secret.
            found.push(
                info.split_once(':')
                    .map_or(info, |(_, pass)| pass)
                    .to_string(),
            );
        }
    }
    // A creds file is registered by creds.rs each time it is read (at every connect).
    remember(found);
}

/// Registers what a `.creds` file holds, read again at a reconnect (it may have been rotated).
pub fn register_creds_secrets(content: &str) {
    remember(creds_lines(content));
}

/// A .creds file holds a JWT and a seed, one per line between markers.
fn creds_lines(content: &str) -> Vec<String> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("---") && !l.starts_with('*'))
        .map(str::to_string)
        .collect()
}

fn remember(mut found: Vec<String>) {
    found.retain(|s| s.chars().count() >= MIN_SECRET_CHARS);
    if found.is_empty() {
        return;
    }
    let mut known = secrets().lock().unwrap_or_else(|p| p.into_inner());
    for secret in found {
        if !known.contains(&secret) {
            known.push(secret);
        }
    }
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by `***`.
fn masked(text: &str) -> String {
    let known = secrets().lock().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// Stderr, with secrets masked. The fmt layer writes each event as one buffer, so a secret is
/// never split across two writes.
struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedWriter
    }
}

struct MaskedWriter;

impl Write for MaskedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(masked(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Secret, Servers};

    #[test]
    fn every_kind_of_credential_is_masked() {
        let options = ConnectionOptions {
            servers: Some(Servers::Many(vec![
                "nats://app:url-pass-1234@127.0.0.1:4222".into(),
                "nats://url-token-5678@127.0.0.1:4223".into(),
            ])),
            pass: Some(Secret("pass-abcd".into())),
            token: Some(Secret("token-efgh".into())),
            nkey_seed: Some(Secret("SUAKSEED".into())),
            ..Default::default()
        };
        register_secrets(&options);
        let line = "connecting to nats://app:url-pass-1234@127.0.0.1:4222 and \
                    nats://url-token-5678@127.0.0.1:4223 with pass-abcd token-efgh SUAKSEED";
        let out = masked(line);
        for secret in [
            "url-pass-1234",
            "url-token-5678",
            "pass-abcd",
            "token-efgh",
            "SUAKSEED",
        ] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("127.0.0.1:4222"), "{out}");
    }
}
