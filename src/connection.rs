//! NATS connections: built from our options, shared by replications with equal options,
//! closed when the last of them is cancelled.

use crate::error::{error_chain, ErrorCode, ReplicationError, Result};
use crate::options::ConnectionOptions;
use async_nats::{jetstream, Client, ConnectErrorKind, ConnectOptions, Event};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Mutex};

/// What replications on a connection need to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Disconnected,
    /// Connected again after a disconnect: server-side state may have moved on.
    Reconnected,
    /// A reconnect attempt was refused for its credentials (sent once per disconnect; the
    /// attempts go on every `reconnectTimeWait`).
    CredentialsRefused,
}

/// One live NATS connection and its JetStream context.
pub struct Connection {
    pub client: Client,
    pub jetstream: jetstream::Context,
    events: broadcast::Sender<ConnectionEvent>,
    /// The servers as given, for messages (never holds credentials: see `describe_servers`).
    pub servers: String,
    /// The last "Permissions Violation" the server sent: the only sign of a denied request,
    /// which otherwise just times out.
    permission_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Every "Permissions Violation" as it arrives, for requests waiting on an answer.
    violations: broadcast::Sender<String>,
    /// Set while reconnects are refused for their credentials.
    credentials_refused: Arc<AtomicBool>,
    /// Set when the server refused a batch direct get: single reads from then on.
    pub batch_get_unsupported: AtomicBool,
    /// Times the connection came back after a disconnect.
    reconnects: Arc<AtomicU64>,
    /// Set when `maxReconnectAttempts` ran out: the client is closed for good.
    gave_up: Arc<AtomicBool>,
    /// How long the link may be silent before the client drops it (`pingInterval` × `maxPingOut`).
    silent_link_after: Duration,
    /// Counts lost links: a write waiting for its acknowledgement gives up when this moves.
    losses: watch::Sender<u64>,
}

impl Connection {
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// Takes the permission violation reported since the last call, if any.
    pub fn take_permission_error(&self) -> Option<String> {
        self.permission_error.lock().ok().and_then(|mut p| p.take())
    }

    /// A request that failed while reconnects are refused for their credentials failed for
    /// that reason: say so, instead of "timed out".
    pub fn explain(&self, err: ReplicationError) -> ReplicationError {
        if err.code == ErrorCode::Unavailable && self.credentials_refused.load(Ordering::SeqCst) {
            self.refused_on_reconnect()
        } else {
            err
        }
    }

    /// The error for credentials refused on a reconnect.
    pub fn refused_on_reconnect(&self) -> ReplicationError {
        ReplicationError::new(
            ErrorCode::AuthFailed,
            format!(
                "the NATS server at {} refused the credentials when reconnecting (changed or \
                 revoked on the server?): check connection.user/pass, token, nkeySeed or \
                 credsFile; reconnecting every reconnectTimeWait",
                self.servers
            ),
        )
    }

    /// How long the link may be silent before the client drops it.
    pub fn silent_link_after(&self) -> Duration {
        self.silent_link_after
    }

    /// Changes each time the link is lost (for writes awaiting acknowledgements).
    pub fn losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    /// The error for a lost link: reported once per loss, so a partition, which closes no
    /// socket, is seen on `error$` and not only as requests that time out.
    pub fn lost(&self) -> ReplicationError {
        ReplicationError::new(
            ErrorCode::Unavailable,
            format!(
                "lost the connection to the NATS server at {}: the socket closed, or no byte came \
                 back for {} ms (connection.pingInterval × maxPingOut; a network partition looks \
                 like that). Reconnecting every reconnectTimeWait; writes wait and are retried",
                self.servers,
                self.silent_link_after.as_millis()
            ),
        )
    }

    /// Awaits `request`, or gives the server's "Permissions Violation" text as soon as one names
    /// `subject`: the server drops a denied publish, so its request would only time out.
    pub async fn unless_denied<F: Future>(
        &self,
        subject: &str,
        request: F,
    ) -> std::result::Result<F::Output, String> {
        let quoted = format!("\"{subject}\"");
        self.unless_denied_where(|text| text.contains(&quoted), request)
            .await
    }

    /// Like `unless_denied`, for a request that uses several subjects (an Object Store read or
    /// write): any violation whose text `concerns` the request counts.
    pub async fn unless_denied_where<F: Future>(
        &self,
        concerns: impl Fn(&str) -> bool,
        request: F,
    ) -> std::result::Result<F::Output, String> {
        let mut violations = self.violations.subscribe();
        tokio::pin!(request);
        loop {
            tokio::select! {
                out = &mut request => return Ok(out),
                text = violations.recv() => match text {
                    Ok(text) if concerns(&text) => {
                        // Reported here: later failures must not be blamed on it.
                        if let Ok(mut last) = self.permission_error.lock() {
                            if last.as_deref() == Some(text.as_str()) {
                                *last = None;
                            }
                        }
                        return Err(text);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(request.await),
                },
            }
        }
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Whether the client stopped reconnecting (`maxReconnectAttempts` ran out); such a
    /// connection is replaced at the next `acquire`.
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::SeqCst)
    }

    /// The server's `max_payload` in bytes.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }
}

/// One shared connection and its number of users, behind its own lock: a connect attempt holds
/// only the slot of its options, so replications with other options never wait for it.
type Slot = Arc<Mutex<Option<(Arc<Connection>, usize)>>>;
/// Slots by sharing key. Emptied slots stay: one small entry per set of options ever used.
type Pool = std::sync::Mutex<HashMap<String, Slot>>;

fn slot(options: &ConnectionOptions) -> Slot {
    static POOL: OnceLock<Pool> = OnceLock::new();
    let pool = POOL.get_or_init(|| std::sync::Mutex::new(HashMap::new()));
    let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    pool.entry(options.sharing_key()).or_default().clone()
}

/// Returns the shared connection for these options, connecting if there is none yet.
/// Every successful `acquire` must be matched by one `release`.
pub async fn acquire(options: &ConnectionOptions) -> Result<Arc<Connection>> {
    let slot = slot(options);
    let mut shared = slot.lock().await;
    let users = match shared.as_mut() {
        Some((conn, users)) if !conn.gave_up() => {
            *users += 1;
            tracing::debug!(servers = %conn.servers, users = *users, "sharing the connection");
            return Ok(conn.clone());
        }
        // Those still holding the closed one count on: each gives it back and takes this one.
        Some((_, users)) => *users,
        None => 0,
    };
    let conn = Arc::new(connect(options).await?);
    *shared = Some((conn.clone(), users + 1));
    Ok(conn)
}

/// Gives back a connection taken with `acquire`; the last user closes it.
pub async fn release(options: &ConnectionOptions) {
    let slot = slot(options);
    let closing = {
        let mut shared = slot.lock().await;
        match shared.as_mut() {
            Some((_, users)) if *users > 1 => {
                *users -= 1;
                None
            }
            Some(_) => shared.take().map(|(conn, _)| conn),
            None => None,
        }
    };
    if let Some(conn) = closing {
        tracing::info!(servers = %conn.servers, "closing the connection: its last replication ended");
        // drain() flushes what is queued, then closes; bounded so a dead server cannot hang us.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.client.drain()).await;
    }
}

/// Servers as a comma-separated list with any `user:pass@` part removed.
pub fn describe_servers(servers: &[String]) -> String {
    servers
        .iter()
        .map(|s| match (s.find("://"), s.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &s[..scheme + 3], &s[at + 1..])
            }
            (None, Some(at)) => s[at + 1..].to_string(),
            _ => s.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn connect(options: &ConnectionOptions) -> Result<Connection> {
    crate::log::register_secrets(options);
    let servers = options.server_list();
    let described = describe_servers(&servers);
    tracing::info!(servers = %described, name = ?options.name, "connecting");
    let (events, _) = broadcast::channel(16);
    let permission_error = Arc::new(std::sync::Mutex::new(None));
    let reconnects = Arc::new(AtomicU64::new(0));
    let (violations, _) = broadcast::channel(16);
    let credentials_refused = Arc::new(AtomicBool::new(false));
    let gave_up = Arc::new(AtomicBool::new(false));
    let (losses, _) = watch::channel(0u64);
    let signals = Signals {
        events: events.clone(),
        losses: losses.clone(),
        permission_errors: permission_error.clone(),
        reconnects: reconnects.clone(),
        violations: violations.clone(),
        refused: credentials_refused.clone(),
        gave_up: gave_up.clone(),
    };
    let builder = build_connect_options(options, signals).await?;
    let addrs: Vec<async_nats::ServerAddr> = servers
        .iter()
        .map(|s| s.parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e: std::io::Error| {
            ReplicationError::new(
                ErrorCode::InvalidOption,
                format!(
                    "option connection.servers holds an address that is not a NATS URL ({}): {e}",
                    described
                ),
            )
        })?;
    // waitOnFirstConnect: attempts go on here, every reconnectTimeWait, until one succeeds or
    // fails for a reason that does not pass (credentials, TLS). Not async-nats'
    // `retry_on_initial_connect`: its attempts run in a task of their own that nothing can stop,
    // so a cancelled replication would go on connecting to a silent server for ever. This future
    // is dropped by `close()`, and with it the attempt.
    let wait_for_first = options.wait_on_first_connect == Some(true);
    let retry_wait = Duration::from_millis(options.reconnect_time_wait.unwrap_or(2000));
    let client = loop {
        match builder.clone().connect(addrs.clone()).await {
            Ok(client) => break client,
            Err(e) => {
                let err = connect_error(&described, &e);
                if wait_for_first && err.code == ErrorCode::ConnectFailed {
                    tracing::debug!(servers = %described, "first connect failed, trying again (waitOnFirstConnect): {}", err.message);
                    tokio::time::sleep(retry_wait).await;
                    continue;
                }
                tracing::warn!(servers = %described, code = err.code.as_str(), "connect failed: {}", err.message);
                return Err(err);
            }
        }
    };
    let info = client.server_info();
    tracing::info!(servers = %described, server = %info.server_name, version = %info.version, max_payload = info.max_payload, "connected");
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(options.timeout().min(Duration::from_secs(10)))
        // Wait for an ack slot instead of failing when many pushes share a connection.
        .backpressure_on_inflight(true)
        .build(client.clone());
    Ok(Connection {
        client,
        jetstream,
        events,
        servers: described,
        permission_error,
        violations,
        credentials_refused,
        batch_get_unsupported: AtomicBool::new(false),
        reconnects,
        gave_up,
        silent_link_after: options.silent_link_after(),
        losses,
    })
}

/// What the client's event callback updates, shared with the `Connection`.
struct Signals {
    events: broadcast::Sender<ConnectionEvent>,
    losses: watch::Sender<u64>,
    permission_errors: Arc<std::sync::Mutex<Option<String>>>,
    reconnects: Arc<AtomicU64>,
    violations: broadcast::Sender<String>,
    refused: Arc<AtomicBool>,
    gave_up: Arc<AtomicBool>,
}

async fn build_connect_options(o: &ConnectionOptions, signals: Signals) -> Result<ConnectOptions> {
    let Signals {
        events,
        losses,
        permission_errors,
        reconnects,
        violations,
        refused,
        gave_up,
    } = signals;
    // A creds file is read at every connect, so a rotated one counts at the next reconnect.
    let mut b = match &o.creds_file {
        Some(path) => {
            let file = crate::creds::CredsFile::open(path)?;
            ConnectOptions::with_auth_callback(move |nonce| {
                let signed = file.sign(&nonce);
                async move {
                    let (jwt, signature) = signed.map_err(async_nats::AuthError::new)?;
                    let mut auth = async_nats::Auth::new();
                    auth.jwt = Some(jwt);
                    auth.signature = Some(signature);
                    Ok(auth)
                }
            })
        }
        None => ConnectOptions::new(),
    };
    if let Some(seed) = &o.nkey_seed {
        b = b.nkey(seed.0.clone());
    }
    if let Some(user) = &o.user {
        let pass = o.pass.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        b = b.user_and_password(user.clone(), pass);
    }
    if let Some(token) = &o.token {
        b = b.token(token.0.clone());
    }
    if let Some(name) = &o.name {
        b = b.name(name);
    }
    if let Some(prefix) = &o.inbox_prefix {
        b = b.custom_inbox_prefix(prefix);
    }
    b = b.connection_timeout(o.timeout());
    b = b.max_reconnects(match o.max_reconnect_attempts {
        None | Some(-1) => None,
        Some(n) => Some(n as usize),
    });
    // nats.js waits reconnectTimeWait (2 s by default) between attempts. async-nats' own
    // default backoff did not reconnect after a one-minute outage in our tests.
    let wait = Duration::from_millis(o.reconnect_time_wait.unwrap_or(2000));
    b = b.reconnect_delay_callback(
        move |attempts| {
            if attempts <= 1 {
                Duration::ZERO
            } else {
                wait
            }
        },
    );
    b = b.ping_interval(o.client_ping_period());
    // After a loss, servers that answer before the one just lost (see failover.rs). The first
    // connect (no server has answered yet) keeps async-nats' own order, which tries every server.
    let choice = Arc::new(crate::failover::ServerChoice::default());
    b = b.reconnect_to_server_callback(move |pool, info| {
        let picked = (!info.server_id.is_empty())
            .then(|| choice.next(&pool))
            .flatten();
        async move { picked.map(|addr| async_nats::ReconnectToServer { addr, delay: None }) }
    });
    if let Some(tls) = &o.tls {
        b = b.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            b = b.add_root_certificates(ca.into());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            b = b.add_client_certificate(cert.into(), key.into());
        }
    }
    let was_disconnected = Arc::new(AtomicBool::new(false));
    b = b.event_callback(move |event| {
        let events = events.clone();
        let send = match event {
            Event::Disconnected => {
                tracing::warn!("disconnected; reconnecting");
                was_disconnected.store(true, Ordering::SeqCst);
                losses.send_modify(|n| *n += 1);
                Some(ConnectionEvent::Disconnected)
            }
            Event::Connected => {
                refused.store(false, Ordering::SeqCst);
                if was_disconnected.load(Ordering::SeqCst) {
                    let count = reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::info!(reconnects = count, "connected again");
                    Some(ConnectionEvent::Reconnected)
                } else {
                    None
                }
            }
            // async-nats reports a failed reconnect by the Display of its ConnectErrorKind.
            Event::ClientError(async_nats::ClientError::Other(text))
                if text == ConnectErrorKind::AuthorizationViolation.to_string()
                    || text == ConnectErrorKind::Authentication.to_string() =>
            {
                let first = !refused.swap(true, Ordering::SeqCst);
                if first {
                    tracing::warn!("a reconnect was refused for its credentials; retrying");
                }
                first.then_some(ConnectionEvent::CredentialsRefused)
            }
            Event::ClientError(async_nats::ClientError::MaxReconnects) => {
                tracing::warn!("maxReconnectAttempts ran out: the connection is closed for good and is replaced at the next retry");
                gave_up.store(true, Ordering::SeqCst);
                None
            }
            Event::ServerError(async_nats::ServerError::Other(text))
                if text.to_ascii_lowercase().contains("permissions violation") =>
            {
                tracing::warn!(error = %text, "the server refused a request");
                if let Ok(mut last) = permission_errors.lock() {
                    *last = Some(text.clone());
                }
                let _ = violations.send(text);
                None
            }
            _ => None,
        };
        async move {
            if let Some(ev) = send {
                let _ = events.send(ev);
            }
        }
    });
    Ok(b)
}

/// The rustls error behind a failed connect, if TLS is what failed: async-nats reports a failed
/// handshake as an I/O error, with the rustls error inside the `io::Error`.
fn tls_error(err: &async_nats::ConnectError) -> Option<&async_nats::rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<async_nats::rustls::Error>() {
            return Some(tls);
        }
        // io::Error::source() skips the error it wraps, so look inside it first.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        {
            return Some(inner);
        }
        next = e.source();
    }
    None
}

/// What to do about a failed TLS handshake.
fn tls_advice(err: Option<&async_nats::rustls::Error>) -> &'static str {
    use async_nats::rustls::{AlertDescription, Error};
    match err {
        Some(Error::InvalidCertificate(_)) => {
            "the server's certificate is not trusted: set connection.tls.caFile to the PEM file \
             of the CA that signed it (and connect by the name or IP address the certificate is for)"
        }
        Some(Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied,
        )) => {
            "the server requires a client certificate it trusts (mutual TLS): set \
             connection.tls.certFile and keyFile to a certificate signed by a CA in the \
             server's tls ca_file"
        }
        _ => {
            "check connection.tls (caFile must sign the server certificate; certFile/keyFile \
             for mutual TLS) and that the server has TLS enabled"
        }
    }
}

fn connect_error(servers: &str, err: &async_nats::ConnectError) -> ReplicationError {
    let detail = error_chain(err);
    let tls = tls_error(err);
    if tls.is_some() || err.kind() == ConnectErrorKind::Tls {
        return ReplicationError::new(
            ErrorCode::TlsFailed,
            format!(
                "TLS with the NATS server at {servers} failed ({detail}): {}",
                tls_advice(tls)
            ),
        );
    }
    match err.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ReplicationError::new(
                ErrorCode::AuthFailed,
                format!(
                    "the NATS server at {servers} refused the credentials ({detail}): check \
                     connection.user/pass, token, nkeySeed or credsFile"
                ),
            )
        }
        ConnectErrorKind::ServerParse | ConnectErrorKind::Dns => ReplicationError::new(
            ErrorCode::InvalidOption,
            format!("option connection.servers ({servers}) cannot be resolved: {detail}"),
        ),
        _ => ReplicationError::new(
            ErrorCode::ConnectFailed,
            format!(
                "cannot connect to the NATS server at {servers} ({detail}): check that it runs \
                 and connection.servers is right; the replication retries by itself"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_servers_hide_credentials() {
        let s = describe_servers(&[
            "nats://user:secret@127.0.0.1:4222".to_string(),
            "tok@host:1".to_string(),
            "nats://127.0.0.1:5".to_string(),
        ]);
        assert_eq!(s, "nats://127.0.0.1:4222, host:1, nats://127.0.0.1:5");
    }
}
