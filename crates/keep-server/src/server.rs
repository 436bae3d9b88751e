//! Running the server: storage, unseal, the mTLS listener wired to the router; and the offline
//! operations `init` and `rotate`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use keep_store::seal::{self, RootKeySource};
use keep_store::{Barrier, BarrierError, SqliteStore, Store, StoreError};
use keep_tls::budget::IdleTracker;
use keep_tls::events::{JsonLinesSink, SharedSink};
use keep_tls::listener::{self, ConnInfo, ShutdownSignal};
use keep_tls::reload::ReloadableTls;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::SecretString;
use tower::ServiceExt;

use crate::api;
use crate::config::{SealSource, ServerConfig};
use crate::state::{AppState, Caller, PeerAddr};

/// Why the server cannot start or an offline operation failed. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The storage cannot be opened.
    #[error("cannot open the storage {path}: {source}")]
    Storage {
        /// The database file.
        path: String,
        /// The cause.
        source: StoreError,
    },
    /// Unsealing or initializing failed (wrong key, bad key file mode, …).
    #[error("{0}")]
    Seal(#[from] BarrierError),
    /// The passphrase could not be read.
    #[error("cannot read the unseal passphrase: {0}")]
    Passphrase(String),
    /// The TLS material is unusable.
    #[error("{0}")]
    Tls(#[from] keep_tls::server::TlsConfigError),
    /// The listen address cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; fix: pick a free port in listener.address, or stop the other process"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The audit log cannot be opened (fail closed: the server does not start without it).
    #[error(
        "cannot open the audit log: {0}; fix: check `audit.file` and that its directory is writable"
    )]
    Audit(String),
    /// The `alerts` section cannot be set up (the webhook's CA file, say).
    #[error("{0}")]
    Alerts(#[from] crate::alerts::AlertsError),
    /// The PKI mount's issuer cannot be used (the message names the `pki.` field).
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    /// Storage already initialized (for `init`).
    #[error(
        "{path} is already initialized; nothing was changed (to start over, move the database and the unseal material away)"
    )]
    AlreadyInitialized {
        /// The database file.
        path: String,
    },
    /// Storage not initialized (for `rotate`).
    #[error("{path} is not initialized; run `keep server init --config …` first")]
    NotInitialized {
        /// The database file.
        path: String,
    },
}

/// Opens the configured SQLite storage.
pub fn open_storage(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    SqliteStore::open(&config.sqlite_path)
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|source| ServerError::Storage {
            path: config.sqlite_path.display().to_string(),
            source,
        })
}

/// Reads a passphrase file, without its trailing newline.
fn passphrase_from_file(path: &Path) -> Result<SecretString, ServerError> {
    keep_pki::key::read_password_file(path)
        .map_err(|e| ServerError::Passphrase(format!("{}: {e}", path.display())))
}

/// How the root key is obtained; `prompt` asks on the terminal (only for `PassphrasePrompt`).
fn key_source(
    config: &ServerConfig,
    prompt: &dyn Fn(&str) -> Result<SecretString, String>,
) -> Result<RootKeySource, ServerError> {
    Ok(match &config.seal {
        SealSource::KeyFile(p) => RootKeySource::KeyFile(p.clone()),
        SealSource::PassphraseFile(p) => RootKeySource::Passphrase(passphrase_from_file(p)?),
        SealSource::PassphrasePrompt => RootKeySource::Passphrase(
            prompt("Unseal passphrase: ").map_err(ServerError::Passphrase)?,
        ),
    })
}

/// `keep server init`: creates the storage and the unseal material (a new 0600 key file, or a
/// passphrase-derived key). Refuses an initialized storage and never overwrites a key file.
pub fn init(
    config: &ServerConfig,
    prompt: &dyn Fn(&str) -> Result<SecretString, String>,
) -> Result<(), ServerError> {
    let store = open_storage(config)?;
    if Barrier::is_initialized(&store).map_err(|source| ServerError::Storage {
        path: config.sqlite_path.display().to_string(),
        source,
    })? {
        return Err(ServerError::AlreadyInitialized {
            path: config.sqlite_path.display().to_string(),
        });
    }
    key_source(config, prompt)?.initialize(store)?;
    Ok(())
}

/// Unseals the storage with the configured source, with the read cache (`storage.cache`)
/// between the barrier and `store`.
pub fn unseal(
    config: &ServerConfig,
    store: Arc<dyn Store>,
    prompt: &dyn Fn(&str) -> Result<SecretString, String>,
) -> Result<Arc<dyn Store>, ServerError> {
    let barrier = key_source(config, prompt)?.unseal(with_cache(config, store))?;
    Ok(Arc::new(barrier))
}

/// `store` behind the read cache, or `store` itself with `storage.cache: false`. Only the
/// barrier reads through it (it caches ciphertext); seal status polls the store directly.
fn with_cache(config: &ServerConfig, store: Arc<dyn Store>) -> Arc<dyn Store> {
    match config.storage_cache {
        Some(limits) => Arc::new(keep_store::CachedStore::with_limits(store, limits)),
        None => store,
    }
}

/// `keep server rotate`: adds a new barrier key term; new writes use it, old entries stay
/// readable. Returns the new term.
pub fn rotate(
    config: &ServerConfig,
    prompt: &dyn Fn(&str) -> Result<SecretString, String>,
) -> Result<u32, ServerError> {
    let store = open_storage(config)?;
    let status = seal::status(&store)?;
    if !status.initialized {
        return Err(ServerError::NotInitialized {
            path: config.sqlite_path.display().to_string(),
        });
    }
    let barrier = key_source(config, prompt)?.unseal(store)?;
    Ok(barrier.rotate()?)
}

/// The process-wide Prometheus recorder (the `metrics` facade allows one per process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            // Registers every handshake-failure reason at 0, so rate() alerts see the first one.
            keep_tls::counters::describe();
            crate::alerts::describe_metrics();
            crate::pki::metrics::describe();
            crate::api::limits::describe_metrics();
            crate::auth::tidy::describe_metrics();
            keep_store::cache::describe_metrics();
            handle
        })
        .clone()
}

/// A server ready to serve: TLS loaded, storage opened (and unsealed if initialized).
pub struct Prepared {
    /// Shared state.
    pub state: Arc<AppState>,
    /// The TLS config, reloadable.
    pub tls: ReloadableTls,
    /// Where security events go.
    pub events: SharedSink,
    store: Arc<dyn Store>,
}

/// Loads everything that can fail before binding, so a broken config fails fast with a clear
/// message and a non-zero exit.
pub fn prepare(
    config: &ServerConfig,
    prompt: &dyn Fn(&str) -> Result<SecretString, String>,
) -> Result<Prepared, ServerError> {
    // Alerts are written to the plain sink; the listener's sink also feeds the detectors.
    let stderr: SharedSink = Arc::new(JsonLinesSink::stderr());
    let alerts = crate::alerts::Alerts::new(&config.alerts, stderr.clone())?;
    let events: SharedSink = Arc::new(crate::alerts::AlertingSink::new(stderr, alerts.clone()));
    let tls = ReloadableTls::new(config.tls.clone(), events.clone())?;
    // Every write below the barrier is recorded, so a storage fault shows in sys/health.
    let (store, storage_health) = keep_store::Tracked::new(open_storage(config)?);
    let store: Arc<dyn Store> = Arc::new(store);
    let status = seal::status(&store)?;
    let mut state = if status.initialized {
        let barrier = unseal(config, store.clone(), prompt)?;
        AppState::unsealed(
            barrier,
            config.admins.clone(),
            config.limits.clone(),
            "sqlite",
        )
    } else {
        tracing::warn!(
            db = %config.sqlite_path.display(),
            "storage is not initialized: serving health only; run `keep server init --config …`"
        );
        AppState::without_store(
            false,
            config.admins.clone(),
            config.limits.clone(),
            "sqlite",
        )
    };
    state.metrics = metrics_handle();
    state.alerts = alerts;
    state.storage_health = Some(storage_health);
    state.auth.login_limiter = crate::auth::login_rate::LoginLimiter::new(config.auth.login_rate);
    state.auth.metrics = config.metrics_access.clone();
    state.audit_file = config.audit_file.clone();
    state
        .open_audit()
        .map_err(|e| ServerError::Audit(e.to_string()))?;
    if let Some(pki_config) = &config.pki {
        state.pki = Some(start_pki(config, pki_config, &state, &tls)?);
    }
    state.tls = Some(tls.clone());
    Ok(Prepared {
        state: Arc::new(state),
        tls,
        events,
        store,
    })
}

/// Loads the PKI mount's issuer, wires it to the listener's TLS config (so every new CRL is
/// in the handshake) and, when storage is unsealed, publishes a fresh CRL before the listener
/// accepts anything.
fn start_pki(
    config: &ServerConfig,
    pki_config: &crate::config::PkiConfig,
    state: &AppState,
    tls: &ReloadableTls,
) -> Result<Arc<crate::pki::Pki>, ServerError> {
    let pki = Arc::new(crate::pki::Pki::load(pki_config)?.with_admins(&config.admins));
    pki.attach_tls(tls.clone());
    if let Ok(pem) = std::fs::read(&config.tls.cert_file)
        && let Ok(blocks) = keep_pki::pem::read_certificates(
            &pem,
            &keep_pki::Source::File(config.tls.cert_file.clone()),
        )
        && let Some(leaf) = blocks.first()
    {
        pki.record_server_cert(&leaf.der);
    }
    if let Some(store) = state.store() {
        pki.start(&*store, time::OffsetDateTime::now_utc())?;
    }
    tracing::info!(issuer = %pki.issuer_subject(), "PKI mount pki/ enabled");
    Ok(pki)
}

/// Serves until `shutdown` fires.
pub async fn serve(
    config: &ServerConfig,
    prepared: Prepared,
    listener: tokio::net::TcpListener,
    shutdown: ShutdownSignal,
) {
    let Prepared {
        state,
        tls,
        events,
        store,
    } = prepared;
    let _watcher = tls.watch_files(keep_tls::reload::DEFAULT_WATCH_INTERVAL);
    let _sighup = tls.reload_on_sighup().ok();
    state.alerts.start_webhook();
    // CRL publishing (and serving-certificate renewal) until the listener stops.
    let pki_task = state.pki.clone().map(|pki| {
        let state = state.clone();
        tokio::spawn(crate::pki::run_background(
            pki,
            move || state.store(),
            config.tls_auto_renew,
        ))
    });
    if state.seal_state() == crate::state::SealState::Uninitialized {
        tokio::spawn(wait_for_init(config.clone(), state.clone(), store));
    }
    let tidy_task = tokio::spawn(crate::auth::tidy::run_background(
        {
            let state = state.clone();
            move || state.store()
        },
        state.auth.tidy_lease.clone(),
        config.auth.token_tidy_interval,
    ));
    run_listener(config, listener, tls, events, shutdown, state).await;
    tidy_task.abort();
    if let Some(task) = pki_task {
        task.abort();
    }
}

/// An uninitialized server serves health (501) and waits for `keep server init`; once the
/// storage is initialized it unseals itself from the configured key file or passphrase file.
async fn wait_for_init(config: ServerConfig, state: Arc<AppState>, store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = store.clone();
        let initialized =
            tokio::task::spawn_blocking(move || seal::status(&s).map(|st| st.initialized))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false);
        if !initialized {
            continue;
        }
        let s = store.clone();
        let c = config.clone();
        match tokio::task::spawn_blocking(move || {
            unseal(&c, s, &|_| Err("no terminal to prompt on".into()))
        })
        .await
        {
            Ok(Ok(barrier)) => {
                state.install_store(barrier);
                let st = state.clone();
                match tokio::task::spawn_blocking(move || st.open_audit()).await {
                    Ok(Ok(())) => {
                        tracing::info!("storage initialized by `keep server init`; unsealed")
                    }
                    other => {
                        // Fail closed: without the audit log nothing may be served.
                        state.seal();
                        tracing::error!(result = ?other.map(|r| r.map_err(|e| e.to_string())), "unsealed, but the audit log cannot be opened; sealed again");
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storage was initialized but unsealing failed; restart the server")
            }
            Err(e) => tracing::error!(error = %e, "unseal task failed"),
        }
        return;
    }
}

async fn run_listener(
    config: &ServerConfig,
    listener: tokio::net::TcpListener,
    tls: ReloadableTls,
    events: SharedSink,
    shutdown: ShutdownSignal,
    state: Arc<AppState>,
) {
    let opts = config.limits.listener_options();
    let limits = config.limits.clone();
    let router = api::router(state);
    // Short: a refused client gets its answer at once or not at all.
    let refuse_timeout = limits.header_timeout.min(Duration::from_secs(2));
    let refuse = move |stream, refusal: listener::Refusal| {
        refuse_connection(stream, refusal, refuse_timeout)
    };
    listener::serve_refusing(listener, tls, opts, events, shutdown, move |stream, info: ConnInfo| {
        let router = router.clone();
        let limits = limits.clone();
        async move {
            let caller = info.identity.clone().map(Caller);
            let peer_addr = PeerAddr(info.peer_addr);
            // Idle = no request in flight: before the first one, between keep-alive requests,
            // an HTTP/2 connection with no open stream.
            let idle = IdleTracker::new();
            let tracker = idle.clone();
            let drain_timeout = limits.body_read_timeout;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_flight = tracker.request();
                if let Some(c) = &caller {
                    req.extensions_mut().insert(c.clone());
                }
                req.extensions_mut().insert(peer_addr);
                let router = router.clone();
                // Over HTTP/2, an answer given before the body is read must still reach the
                // client (api::limits, "the answer before the reset").
                let req = if req.version() == hyper::Version::HTTP_2 {
                    api::limits::DrainOnDrop::wrap(req, drain_timeout)
                        .map(axum::body::Body::new)
                } else {
                    req.map(axum::body::Body::new)
                };
                async move {
                    let response = router.oneshot(req).await;
                    drop(in_flight);
                    response
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let shutdown = info.shutdown.clone();
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %info.peer_addr, error = %e, "connection ended with an error");
                    }
                }
                () = idle.idle_for(limits.idle_timeout) => {
                    // HTTP/2 gets a GOAWAY, HTTP/1.1 a close; a peer that does not let go
                    // within the header timeout is dropped.
                    keep_tls::counters::connection_closed_idle();
                    tracing::debug!(peer = %info.peer_addr, timeout = ?limits.idle_timeout, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.header_timeout, conn).await;
                }
                () = shutdown.triggered() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    }, refuse)
    .await;
}

/// A verified connection over `per_identity_connections`: its first request gets 429 with
/// Vault's error body and `Retry-After`, then the connection closes (HTTP/1.1 without
/// keep-alive, HTTP/2 with GOAWAY); the whole exchange within `timeout` (the header timeout,
/// at most 2 s).
async fn refuse_connection(
    stream: keep_tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    refusal: listener::Refusal,
    timeout: Duration,
) {
    let answered = Arc::new(tokio::sync::Notify::new());
    let notify = answered.clone();
    let message = format!(
        "too many connections for this client certificate: the limit is {} (listener.limits.{}); reuse a connection, or retry after closing one",
        refusal.limit,
        refusal.reason.option()
    );
    let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
        notify.notify_one();
        let mut response = api::reply::early(api::error::ApiError::client(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            message.clone(),
        ));
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let exchange = async {
        tokio::select! {
            _ = conn.as_mut() => {}
            () = answered.notified() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
    };
    if tokio::time::timeout(timeout, exchange).await.is_err() {
        tracing::debug!(peer = %refusal.peer_addr, "a refused connection sent no request in time; closed");
    }
}

/// Binds the configured address.
pub async fn bind(config: &ServerConfig) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.address.to_string(),
            source,
        })
}
