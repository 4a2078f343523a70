//! The process-wide pool of keep-alive connections to S3 servers: one ureq
//! agent per kind of connection (plain or TLS, with or without a proxy),
//! shared by every store, row, statement and connection of the database
//! server.
//!
//! A new TCP (and TLS) connection costs one or more round trips before a
//! request can even be sent; at 20 ms a round trip that alone halves the
//! rate of single-row puts. ureq keeps the idle connections, per endpoint
//! (scheme, host and port), bounded in number and age, and checks that one
//! is still open before reusing it; it starts no thread to do so. Timeouts
//! are set per request, so stores with different timeouts share
//! connections, and credentials are not part of a connection (every request
//! is presigned), so a config change takes effect with the next request.
//! A store whose endpoint changes simply talks to another endpoint; the old
//! endpoint's idle connections age out.

use super::client::root_certs;
use std::sync::Mutex;
use std::time::Duration;
use ureq::tls::TlsConfig;
use ureq::Agent;

/// Idle connections kept per endpoint: enough for 16 database connections
/// (or two batch calls) at once to find one.
pub const IDLE_PER_ENDPOINT: usize = 16;
/// Idle connections kept in all, over every endpoint of one kind.
pub const IDLE_TOTAL: usize = 64;
/// How long an idle connection is kept: below the idle timeouts of common
/// S3 servers and proxies, so that the server rarely closes one first.
pub const IDLE_FOR: Duration = Duration::from_secs(15);
/// Kinds of connection remembered at once (a handful in any real config).
const MOST_AGENTS: usize = 8;

/// What a connection is, besides its endpoint (which ureq keys its pool by).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Kind {
    pub secure: bool,
    /// The proxy URL, already checked by the config.
    pub proxy: Option<String>,
}

struct Entry {
    kind: Kind,
    /// Tells a renewed agent from the one a failed request used.
    generation: u64,
    agent: Agent,
}

struct Agents {
    entries: Vec<Entry>,
    generations: u64,
}

static AGENTS: Mutex<Agents> = Mutex::new(Agents { entries: Vec::new(), generations: 0 });

fn build(kind: &Kind) -> Result<Agent, ()> {
    let proxy = match &kind.proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|_| ())?),
        None => None,
    };
    // No global, per-call or resolve timeout here or on any request: with
    // any of them ureq resolves host names on a spawned thread, which could
    // outlive the call. Name lookups are bounded by the system resolver.
    let mut config = Agent::config_builder();
    if kind.secure {
        config = config.tls_config(TlsConfig::builder().root_certs(root_certs()).build());
    }
    let config = config
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(proxy)
        .user_agent(concat!("dj_udf/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(IDLE_TOTAL)
        .max_idle_connections_per_host(IDLE_PER_ENDPOINT)
        .max_idle_age(IDLE_FOR)
        .build();
    Ok(Agent::new_with_config(config))
}

/// The shared agent for connections of `kind`, and its generation;
/// `Err` when the proxy URL is not usable.
pub fn agent(kind: &Kind) -> Result<(u64, Agent), ()> {
    let mut agents = AGENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = agents.entries.iter().position(|e| &e.kind == kind) {
        // Most recently used last, so the oldest goes first when full.
        let e = agents.entries.remove(i);
        let found = (e.generation, e.agent.clone());
        agents.entries.push(e);
        return Ok(found);
    }
    let agent = build(kind)?;
    agents.generations += 1;
    let generation = agents.generations;
    if agents.entries.len() >= MOST_AGENTS {
        agents.entries.remove(0);
    }
    agents.entries.push(Entry { kind: kind.clone(), generation, agent: agent.clone() });
    Ok((generation, agent))
}

/// Drops every idle connection of `kind` after a request found one of
/// `generation` dead (the server restarted or closed it): the others are
/// likely dead too. A newer generation, renewed by another thread, stays.
pub fn renew(kind: &Kind, generation: u64) {
    let mut agents = AGENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = agents.entries.iter().position(|e| &e.kind == kind && e.generation == generation) {
        agents.entries.remove(i);
    }
}
