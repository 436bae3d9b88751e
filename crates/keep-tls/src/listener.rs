//! The TLS accept loop.
//!
//! [`serve`] accepts TCP connections and, for each one, in its own task:
//! 1. admits the connection into the [`budget`](crate::budget): a slot of
//!    [`ListenerOptions::max_connections`], and, until its handshake finishes, one of
//!    [`ListenerOptions::max_handshaking`] and of its source address's
//!    [`ListenerOptions::per_source_handshaking`];
//! 2. peeks at the first bytes: nothing then EOF is a load-balancer probe (`eof_before_hello`,
//!    counted and logged at debug only); plain HTTP gets a short `400` telling the user to use
//!    https, and is classified `plain_http`;
//! 3. reads the ClientHello, picks the *current* config from [`ReloadableTls`] (so a reload
//!    applies to the next handshake), and completes the handshake, all within
//!    [`ListenerOptions::handshake_timeout`] (the ClientHello within the shorter
//!    [`ListenerOptions::pre_handshake_timeout`]);
//! 4. on failure: classifies it ([`crate::classify`]), increments
//!    `keep_tls_handshake_failures_total{reason}`, and emits a `tls_handshake_failure` event
//!    naming the certificate the client presented, if any;
//! 5. on success: derives the [`PeerIdentity`] from the path webpki verifies against the same
//!    config's trust anchors (`ClientTrust::identify`: never from the chain as presented) and calls the handler
//!    with the TLS stream and a [`ConnInfo`].
//!    The connection leaves the handshaking pools and counts against its certificate's
//!    [`ListenerOptions::per_identity_connections`].
//!
//! The handshake runs inside the spawned task, never in the accept loop, so a slow or silent
//! client cannot hold up anyone else's accept.
//!
//! **Connection budget.** When a pool is full, a new connection is closed at once, before any
//! TLS, and counted in `keep_tls_connections_rejected_total{reason}` with the pool's name
//! (`limit`, `handshaking`, `per_source`; `per_identity` right after the handshake) — not as a
//! handshake failure: nothing about the client was wrong. A connection over its certificate's
//! bound has a verified TLS session, so [`serve_refusing`] can answer it (keep sends HTTP 429)
//! before closing it. Closing fast tells clients to back off and
//! retry, where leaving them in the kernel backlog would let them time out slowly while holding
//! file descriptors.
//!
//! **Shutdown.** When the [`ShutdownSignal`] fires, the loop stops accepting and drops the
//! listening socket; connections in progress continue. Handlers get the same signal in
//! [`ConnInfo::shutdown`] and should finish their current request and close (hyper:
//! `graceful_shutdown`). After [`ListenerOptions::drain_timeout`], remaining connection tasks
//! are aborted and `serve` returns.
//!
//! # Plugging in hyper/axum
//!
//! ```ignore
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//!
//! let events: SharedSink = Arc::new(JsonLinesSink::append_to_file(&events_path)?);
//! let tls = ReloadableTls::new(settings, events.clone())?; // blocking: decrypts the key
//! let _watcher = tls.watch_files(keep_tls::reload::DEFAULT_WATCH_INTERVAL);
//! let _hup = tls.reload_on_sighup()?;
//! keep_tls::counters::describe(); // after installing the Prometheus recorder
//! let (trigger, signal) = listener::shutdown_channel();
//! let tcp = tokio::net::TcpListener::bind(addr).await?;
//! listener::serve(tcp, tls, ListenerOptions::default(), events, signal, move |stream, info| {
//!     let app = app.clone(); // axum::Router
//!     async move {
//!         let identity = info.identity.clone(); // Option<Arc<PeerIdentity>>
//!         let peer = info.peer_addr;
//!         let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
//!             req.extensions_mut().insert(identity.clone());
//!             req.extensions_mut().insert(peer);
//!             tower::ServiceExt::oneshot(app.clone(), req)
//!         });
//!         let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), svc);
//!         tokio::pin!(conn);
//!         tokio::select! {
//!             _ = conn.as_mut() => {}
//!             () = info.shutdown.triggered() => {
//!                 conn.as_mut().graceful_shutdown();
//!                 let _ = conn.await;
//!             }
//!         }
//!     }
//! })
//! .await;
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::UnixTime;
use rustls::server::Acceptor;
use rustls::{CipherSuite, ProtocolVersion};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::budget::{Admission, Budget, Rejection};
use crate::capture::PRESENTED;
use crate::classify::{
    Classified, HandshakeContext, HelloSummary, Reason, classify_first_bytes, classify_io_error,
    client_hello_version, sni_matches,
};
use crate::counters;
use crate::events::{EventKind, HandshakeFailure, SecurityEvent, SharedSink};
use crate::identity::{IdentityError, PeerIdentity};
use crate::reload::ReloadableTls;
use crate::server::Material;
use crate::suites;

/// Limits of the listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerOptions {
    /// How long a client may take from TCP accept to a finished handshake (ClientHello
    /// included). Default 10 s.
    pub handshake_timeout: Duration,
    /// How long a client may take from TCP accept to a complete ClientHello: a silent or
    /// trickling client gives its slot back this soon. Default 5 s (at most
    /// `handshake_timeout`).
    pub pre_handshake_timeout: Duration,
    /// How many connections (handshaking or established) may be open at once. Default 1024.
    pub max_connections: usize,
    /// How many connections may be handshaking (not yet verified) at once, so unauthenticated
    /// clients cannot take the whole `max_connections`. Default 256.
    pub max_handshaking: usize,
    /// How many connections one source address (IPv4 address, IPv6 /64) may have handshaking
    /// at once. Default 32.
    pub per_source_handshaking: usize,
    /// How many verified connections one client certificate may hold open at once.
    /// Default 128.
    pub per_identity_connections: usize,
    /// How long connections may take to finish after shutdown before they are aborted.
    /// Default 30 s.
    pub drain_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            handshake_timeout: Duration::from_secs(10),
            pre_handshake_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_handshaking: 256,
            per_source_handshaking: 32,
            per_identity_connections: 128,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What the handler learns about a verified connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The local address the client connected to.
    pub local_addr: Option<SocketAddr>,
    /// The client's identity, from the chain rustls verified. Always `Some` when client
    /// certificates are required (the default); `None` only for a client without a certificate
    /// when `require_client_cert` is false. In an `Arc` so handlers can attach it to every
    /// request cheaply.
    pub identity: Option<Arc<PeerIdentity>>,
    /// The negotiated TLS version.
    pub protocol: Option<ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<CipherSuite>,
    /// The negotiated ALPN protocol (`h2` or `http/1.1`), if the client offered ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// Fires when the server shuts down: finish the current request and close.
    pub shutdown: ShutdownSignal,
}

/// Creates a shutdown trigger and the signal it fires.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, ShutdownSignal { rx })
}

/// Fires the [`ShutdownSignal`]s of one [`shutdown_channel`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// A signal that fires once, when shutdown starts. Cloneable; dropping the trigger without
/// firing it means the signal never fires.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// A signal that never fires.
    pub fn never() -> Self {
        shutdown_channel().1
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown starts (at once if it already has). Cancel-safe.
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|fired| *fired).await.is_err() {
            // The trigger is gone without firing: it never will.
            std::future::pending::<()>().await;
        }
    }
}

/// Everything a connection task needs, shared by all of them.
struct Shared<H, R> {
    tls: ReloadableTls,
    opts: ListenerOptions,
    events: SharedSink,
    shutdown: ShutdownSignal,
    handler: H,
    refuse: R,
    /// Refusals being answered at once, at most [`MAX_REFUSALS_ANSWERED`].
    refusing: Arc<tokio::sync::Semaphore>,
}

/// How many refused connections [`serve_refusing`] answers at once; past it they are closed at
/// once, so one certificate over its bound cannot hold many slots while being answered.
pub const MAX_REFUSALS_ANSWERED: usize = 16;

/// A verified connection refused by its certificate's bound
/// ([`ListenerOptions::per_identity_connections`]), for [`serve_refusing`]'s `refuse` handler.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The bound that refused it.
    pub reason: Rejection,
    /// That bound's configured value.
    pub limit: usize,
    /// The negotiated ALPN protocol (`h2` or `http/1.1`), if the client offered ALPN.
    pub alpn: Option<Vec<u8>>,
}

/// Serves TLS on `listener` until `shutdown` fires and connections have drained (see the module
/// docs). `handler` is called once per verified connection with the TLS stream and its
/// [`ConnInfo`]; it owns the connection until its future completes.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: ReloadableTls,
    opts: ListenerOptions,
    events: SharedSink,
    shutdown: ShutdownSignal,
    handler: H,
) where
    H: Fn(TlsStream<TcpStream>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let close = |_: TlsStream<TcpStream>, _: Refusal| std::future::ready(());
    serve_refusing(listener, tls, opts, events, shutdown, handler, close).await;
}

/// [`serve`], where a verified connection over its certificate's bound is handed to `refuse`
/// (to answer the client why, e.g. an HTTP 429) instead of being closed at once. The refused
/// connection keeps its `max_connections` slot meanwhile, at most [`MAX_REFUSALS_ANSWERED`]
/// are answered at once (more are closed), and `refuse` gets at most
/// [`ListenerOptions::handshake_timeout`] before the connection is closed.
pub async fn serve_refusing<H, F, R, G>(
    listener: TcpListener,
    tls: ReloadableTls,
    opts: ListenerOptions,
    events: SharedSink,
    shutdown: ShutdownSignal,
    handler: H,
    refuse: R,
) where
    H: Fn(TlsStream<TcpStream>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(TlsStream<TcpStream>, Refusal) -> G + Send + Sync + 'static,
    G: Future<Output = ()> + Send + 'static,
{
    let budget = Budget::new(
        opts.max_connections,
        opts.max_handshaking,
        opts.per_source_handshaking,
        opts.per_identity_connections,
    );
    let shared = Arc::new(Shared {
        tls,
        opts,
        events,
        shutdown: shutdown.clone(),
        handler,
        refuse,
        refusing: Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_ANSWERED)),
    });
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => log_task_end(done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let admission = match budget.admit(peer.ip()) {
                        Ok(admission) => admission,
                        Err(rejection) => {
                            counters::connection_rejected(rejection);
                            tracing::debug!(%peer, pool = rejection.option(), "connection pool full; closing the new connection");
                            drop(tcp);
                            continue;
                        }
                    };
                    let shared = Arc::clone(&shared);
                    tasks.spawn(async move {
                        connection(tcp, peer, &shared, admission).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            log_task_end(done)
        }
    };
    if tokio::time::timeout(shared.opts.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tasks.len(),
            "connections still open after the drain timeout; closing them"
        );
        tasks.abort_all();
    }
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

/// What is known about a handshake in progress, for classifying its failure.
#[derive(Default)]
struct Progress {
    /// The client sent at least one byte that may be TLS.
    sent_bytes: bool,
    /// The ClientHello's version (from the peeked bytes) and summary, as far as known.
    context: HandshakeContext,
}

/// A failed handshake, before reporting.
enum Failure {
    /// Classified already (first bytes, timeout).
    Classified(Classified),
    /// An error from tokio-rustls, to classify with what the ClientHello said.
    Io(std::io::Error),
}

async fn connection<H, F, R, G>(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared<H, R>,
    admission: Admission,
) where
    H: Fn(TlsStream<TcpStream>, ConnInfo) -> F,
    F: Future<Output = ()>,
    R: Fn(TlsStream<TcpStream>, Refusal) -> G,
    G: Future<Output = ()>,
{
    let _ = tcp.set_nodelay(true);
    let local_addr = tcp.local_addr().ok();
    let deadline = Instant::now() + shared.opts.handshake_timeout;
    let hello_deadline = Instant::now() + shared.opts.pre_handshake_timeout;
    let mut progress = Progress::default();
    // The task-local slot where the verifier records the presented client certificate; it
    // lives exactly as long as this connection's handshake (see `capture`).
    let (result, presented) = PRESENTED
        .scope(RefCell::new(None), async {
            let result = tokio::time::timeout_at(
                deadline,
                handshake(tcp, &shared.tls, hello_deadline, &mut progress),
            )
            .await;
            (result, PRESENTED.with(|slot| slot.borrow_mut().take()))
        })
        .await;

    let failure = match result {
        Ok(Ok((stream, material))) => {
            // Leave the handshaking pools; count against the certificate's own bound.
            let fingerprint = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| keep_pki::inspect::fingerprint_sha256(leaf.as_ref()));
            match admission.verified(fingerprint) {
                Ok(_established) => {
                    return verified(stream, &material, peer, local_addr, shared).await;
                }
                Err(refused) => {
                    let rejection = refused.reason();
                    counters::connection_rejected(rejection);
                    tracing::debug!(%peer, pool = rejection.option(), "connection pool full for this client certificate; refusing the connection");
                    let Ok(_answering) = Arc::clone(&shared.refusing).try_acquire_owned() else {
                        return;
                    };
                    let refusal = Refusal {
                        peer_addr: peer,
                        reason: rejection,
                        limit: shared.opts.per_identity_connections,
                        alpn: stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
                    };
                    let answer = (shared.refuse)(stream, refusal);
                    let _ = tokio::time::timeout(shared.opts.handshake_timeout, answer).await;
                    drop(refused);
                    return;
                }
            }
        }
        Ok(Err(Failure::Classified(c))) => c,
        Ok(Err(Failure::Io(e))) => classify_io_error(&e, &progress.context),
        Err(_elapsed) => Classified {
            reason: Reason::Other,
            detail: format!(
                "the handshake did not finish within {:?} ({})",
                shared.opts.handshake_timeout,
                match (&progress.context.hello, progress.sent_bytes) {
                    (Some(_), _) => "stalled after the ClientHello",
                    (None, true) => "the ClientHello never completed",
                    (None, false) => "the client sent nothing",
                }
            ),
        },
    };
    report_failure(
        &shared.events,
        peer,
        failure,
        progress.context.hello.as_ref(),
        presented,
    );
}

/// Peek, ClientHello (by `hello_deadline`), handshake (module docs, steps 2–3).
async fn handshake(
    tcp: TcpStream,
    tls: &ReloadableTls,
    hello_deadline: Instant,
    progress: &mut Progress,
) -> Result<(TlsStream<TcpStream>, Arc<Material>), Failure> {
    let start = match tokio::time::timeout_at(hello_deadline, client_hello(tcp, progress)).await {
        Ok(start) => start?,
        Err(_elapsed) => {
            counters::connection_closed_pre_handshake();
            return Err(Failure::Classified(Classified {
                reason: Reason::Other,
                detail: format!(
                    "no complete ClientHello within the pre-handshake timeout ({})",
                    if progress.sent_bytes {
                        "the ClientHello never completed"
                    } else {
                        "the client sent nothing"
                    }
                ),
            }));
        }
    };
    finish_handshake(start, tls, progress).await
}

/// Peeks at the first bytes (probe, plain HTTP) and reads the ClientHello.
async fn client_hello(
    mut tcp: TcpStream,
    progress: &mut Progress,
) -> Result<tokio_rustls::StartHandshake<TcpStream>, Failure> {
    let mut first = [0u8; 16];
    let n = match tcp.peek(&mut first).await {
        Ok(n) => n,
        Err(e) => {
            return Err(Failure::Classified(Classified {
                reason: Reason::EofBeforeHello,
                detail: format!("the connection failed before the client sent anything ({e})"),
            }));
        }
    };
    if let Some(c) = classify_first_bytes(&first[..n]) {
        if c.reason == Reason::PlainHttp {
            answer_plain_http(&mut tcp).await;
        }
        return Err(Failure::Classified(c));
    }
    progress.sent_bytes = true;
    progress.context.client_version = client_hello_version(&first[..n]);
    LazyConfigAcceptor::new(Acceptor::default(), tcp)
        .await
        .map_err(Failure::Io)
}

/// Continues the handshake after the ClientHello with the current config.
async fn finish_handshake(
    start: tokio_rustls::StartHandshake<TcpStream>,
    tls: &ReloadableTls,
    progress: &mut Progress,
) -> Result<(TlsStream<TcpStream>, Arc<Material>), Failure> {
    // The config is chosen after the ClientHello, so a reload applies from the next handshake.
    let material = tls.material();
    let hello = start.client_hello();
    progress.context.hello = Some(HelloSummary {
        server_name: hello.server_name().map(str::to_owned),
        server_name_matches: hello
            .server_name()
            .is_none_or(|name| sni_matches(name, &material.server_names)),
        offered_suites: hello
            .cipher_suites()
            .iter()
            .map(|s| suites::suite_name(*s))
            .collect(),
    });
    let stream = start
        .into_stream(Arc::clone(&material.config))
        .await
        .map_err(Failure::Io)?;
    Ok((stream, material))
}

/// Tells a plain-HTTP client what went wrong, as Go's and nginx's servers do. The request is
/// drained first (what has arrived of it), because closing a socket with unread input sends a
/// reset that can destroy the response before the client reads it.
async fn answer_plain_http(tcp: &mut TcpStream) {
    const BODY: &str =
        "This port speaks TLS with client certificates: use https:// and a client certificate.\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut discard = [0u8; 4096];
    let _ = tcp.try_read(&mut discard);
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn verified<H, F, R>(
    stream: TlsStream<TcpStream>,
    material: &Material,
    peer: SocketAddr,
    local_addr: Option<SocketAddr>,
    shared: &Shared<H, R>,
) where
    H: Fn(TlsStream<TcpStream>, ConnInfo) -> F,
    F: Future<Output = ()>,
{
    let (_, conn) = stream.get_ref();
    let identity = match conn.peer_certificates() {
        // The identity comes from the path webpki verifies against this config's anchors, never
        // from the chain as presented (see `ClientTrust`). This also re-checks validity: a
        // resumed session skips rustls' verification, so a certificate that expired since the
        // full handshake is caught here.
        Some(chain) if !chain.is_empty() => {
            match material.client_trust.identify(chain, UnixTime::now()) {
                Ok(id) => Some(Arc::new(id)),
                Err(e) => {
                    let reason = match e {
                        IdentityError::Expired => Reason::Expired,
                        IdentityError::BadEku => Reason::BadEku,
                        _ => Reason::Other,
                    };
                    report_failure(
                        &shared.events,
                        peer,
                        Classified {
                            reason,
                            detail: format!(
                                "the client certificate was accepted by the handshake (or a resumed session) but its chain does not verify now: {e}; fix: renew or reissue it"
                            ),
                        },
                        None,
                        chain.first().map(|c| c.as_ref().to_vec()),
                    );
                    return;
                }
            }
        }
        _ => None,
    };
    let info = ConnInfo {
        peer_addr: peer,
        local_addr,
        identity,
        protocol: conn.protocol_version(),
        cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        server_name: conn.server_name().map(str::to_owned),
        shutdown: shared.shutdown.clone(),
    };
    (shared.handler)(stream, info).await;
}

/// Counts, logs and (except for probes) emits the event for a failed handshake.
fn report_failure(
    events: &SharedSink,
    peer: SocketAddr,
    failure: Classified,
    hello: Option<&HelloSummary>,
    presented: Option<Vec<u8>>,
) {
    counters::handshake_failure(failure.reason);
    tracing::debug!(%peer, reason = %failure.reason, detail = %failure.detail, "TLS handshake failed");
    if failure.reason == Reason::EofBeforeHello {
        // Load balancers probe every few seconds: a warning-level event for each would drown
        // the real ones (the Go "TLS handshake error … EOF" log spam STYLE.md warns about).
        return;
    }
    let (subject, serial, fingerprint) = match presented {
        Some(der) => {
            let fingerprint = keep_pki::inspect::fingerprint_sha256(&der);
            match keep_pki::inspect::inspect(&der) {
                Ok(info) => (Some(info.subject), Some(info.serial), Some(fingerprint)),
                Err(_) => (None, None, Some(fingerprint)),
            }
        }
        None => (None, None, None),
    };
    events.emit(&SecurityEvent::now(EventKind::TlsHandshakeFailure(
        HandshakeFailure {
            peer,
            reason: failure.reason,
            detail: failure.detail,
            server_name: hello.and_then(|h| h.server_name.clone()),
            subject,
            serial,
            fingerprint,
        },
    )));
}
