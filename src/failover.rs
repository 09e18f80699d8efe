//! Which server a connect or reconnect tries next. async-nats shuffles the pool and sorts it by
//! failed attempts, so right after a partition the silent server it just lost (0 failures, it
//! had connected) is as likely as any other and costs a whole connect timeout when picked.
//! Here, on reconnects, the server this client was last on goes last among equals: a failover
//! reaches a server that answers first, and a silent one is tried again only once the others
//! failed too. The first connect keeps async-nats' order (it tries every server in one go).

use async_nats::{Server, ServerAddr};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// The choice over a connection's life: remembers the server it last picked.
#[derive(Default)]
pub struct ServerChoice {
    last: Mutex<Option<ServerAddr>>,
}

impl ServerChoice {
    /// The server to try now for a reconnect, from the client's pool (`None`: an empty pool).
    /// The server lost is the one picked last; before any pick (the first connect is async-nats'
    /// own, trying every server), the one server the client has connected to.
    pub fn next(&self, pool: &[Server]) -> Option<ServerAddr> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let lost = last.clone().or_else(|| only_connected(pool));
        let picked = choose(pool, lost.as_ref(), random)?;
        *last = Some(picked.clone());
        Some(picked)
    }
}

/// The server with the fewest failed attempts in a row, `last` after the others with as many,
/// ties broken by `pick(n)` (an index below `n`) so clients spread over a cluster.
pub fn choose(
    pool: &[Server],
    last: Option<&ServerAddr>,
    pick: impl FnOnce(usize) -> usize,
) -> Option<ServerAddr> {
    let rank = |s: &Server| (s.failed_attempts, Some(&s.addr) == last);
    let best = pool.iter().map(rank).min()?;
    let candidates: Vec<&Server> = pool.iter().filter(|s| rank(s) == best).collect();
    Some(
        candidates[pick(candidates.len()) % candidates.len()]
            .addr
            .clone(),
    )
}

/// The server of the pool the client has connected to, if there is exactly one.
fn only_connected(pool: &[Server]) -> Option<ServerAddr> {
    let mut connected = pool.iter().filter(|s| s.did_connect);
    match (connected.next(), connected.next()) {
        (Some(one), None) => Some(one.addr.clone()),
        _ => None,
    }
}

/// An index below `n`, different from run to run (no RNG crate for this one use).
fn random(n: usize) -> usize {
    (RandomState::new().hash_one(std::time::Instant::now()) % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str, failed_attempts: usize) -> Server {
        Server {
            addr: url.parse().unwrap(),
            failed_attempts,
            did_connect: false,
            is_discovered: false,
            last_error: None,
        }
    }

    fn url(addr: &ServerAddr) -> String {
        addr.as_url_str().to_string()
    }

    #[test]
    fn the_server_just_lost_goes_after_the_others() {
        let pool = [
            server("nats://127.0.0.1:1", 0),
            server("nats://127.0.0.1:2", 0),
            server("nats://127.0.0.1:3", 0),
        ];
        let lost: ServerAddr = "nats://127.0.0.1:2".parse().unwrap();
        for i in 0..3 {
            let picked = choose(&pool, Some(&lost), |n| i % n).unwrap();
            assert_ne!(url(&picked), url(&lost), "pick {i}");
        }
    }

    #[test]
    fn fewer_failures_win_and_the_lost_server_comes_back_once_others_fail() {
        let pool = [
            server("nats://127.0.0.1:1", 2),
            server("nats://127.0.0.1:2", 0),
            server("nats://127.0.0.1:3", 1),
        ];
        let lost: ServerAddr = "nats://127.0.0.1:2".parse().unwrap();
        let picked = choose(&pool, Some(&lost), |_| 0).unwrap();
        assert_eq!(url(&picked), "nats://127.0.0.1:2");
        let picked = choose(&pool, None, |_| 0).unwrap();
        assert_eq!(url(&picked), "nats://127.0.0.1:2");
        assert!(choose(&[], None, |_| 0).is_none());
    }

    #[test]
    fn the_first_reconnect_avoids_the_server_of_the_first_connect_and_later_ones_the_last_pick() {
        let mut pool = [
            server("nats://127.0.0.1:1", 0),
            server("nats://127.0.0.1:2", 0),
            server("nats://127.0.0.1:3", 0),
        ];
        pool[1].did_connect = true;
        for _ in 0..10 {
            let choice = ServerChoice::default();
            let first = choice.next(&pool).unwrap();
            assert_ne!(url(&first), "nats://127.0.0.1:2");
            let second = choice.next(&pool).unwrap();
            assert_ne!(url(&second), url(&first));
        }
    }
}
