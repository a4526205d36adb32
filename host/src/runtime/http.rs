//! Outgoing HTTP for ops (`wasi:http/outgoing-handler`, served by
//! wasmtime-wasi-http): every request is checked against the op's
//! `allowed_outbound_hosts` and `max_http_requests` before it leaves the
//! host, and its bytes are counted both ways for the step's accounting.
//!
//! A refused request fails inside the op with `HTTP-request-denied` (so the
//! op's own HTTP client reports it) and a line in the step's log names the
//! destination and the setting. Redirects are not followed by the host: a
//! client that follows one makes a new request, checked like the first.
//! In-flight requests are tasks owned by the step's store, so a step stopped
//! at its time limit drops (cancels) them.

use super::outbound::{self, OutboundHost};
use super::sandbox::Capture;
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Body bytes a step's requests moved, shared with the body wrappers (which
/// run as tasks of the step's reactor).
#[derive(Debug, Default)]
pub(crate) struct ByteCounters {
    /// Request body bytes sent.
    pub sent: AtomicU64,
    /// Response body bytes received.
    pub received: AtomicU64,
}

/// The per-step hooks: the allowlist, the cap, and the counters. Made for
/// every step, so nothing here allocates until the step sends a request.
pub(crate) struct HttpHooks {
    op: Arc<str>,
    /// `None` when the op may reach no host: most ops, and then a step
    /// takes no count on the list every worker shares.
    allowed: Option<Arc<[OutboundHost]>>,
    max_requests: Option<u64>,
    log: Capture,
    /// Requests sent (allowed ones only).
    pub requests: u64,
    /// Requests refused for going past `max_http_requests`.
    pub over_limit: u64,
    /// Created on the first allowed request.
    pub bytes: Option<Arc<ByteCounters>>,
}

impl HttpHooks {
    pub fn new(
        op: &Arc<str>,
        allowed: &Arc<[OutboundHost]>,
        max_requests: Option<u64>,
        log: &Capture,
    ) -> Self {
        Self {
            op: op.clone(),
            allowed: (!allowed.is_empty()).then(|| allowed.clone()),
            max_requests,
            log: log.clone(),
            requests: 0,
            over_limit: 0,
            bytes: None,
        }
    }

    /// (requests, body bytes sent, body bytes received) so far.
    pub fn totals(&self) -> (u64, u64, u64) {
        let bytes = |f: fn(&ByteCounters) -> &AtomicU64| {
            self.bytes
                .as_deref()
                .map_or(0, |b| f(b).load(Ordering::Relaxed))
        };
        (self.requests, bytes(|b| &b.sent), bytes(|b| &b.received))
    }

    fn refuse(&self, line: String) -> Box<dyn Future<Output = ResponseResult> + Send> {
        self.log.push(format!("{line}\n").as_bytes());
        tracing::debug!(op = %self.op, "{line}");
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type ResponseResult = Result<(http::Response<WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = ResponseResult> + Send> {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let list = self.allowed.as_deref().unwrap_or_default();
        if !outbound::allowed(list, &scheme, &host, port) {
            let allowed = if list.is_empty() {
                "none".to_owned()
            } else {
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return self.refuse(format!(
                "dynhost: HTTP request to {scheme}://{host}:{port} denied: not in `allowed_outbound_hosts` of op `{}` (allowed: {allowed}); add it there to allow it",
                self.op
            ));
        }
        if let Some(max) = self.max_requests
            && self.requests >= max
        {
            self.over_limit += 1;
            return self.refuse(format!(
                "dynhost: HTTP request to {scheme}://{host}:{port} refused: the step already made max_http_requests = {max}"
            ));
        }
        self.requests += 1;
        let counters = self.bytes.get_or_insert_with(Arc::default).clone();
        let sent = counters.clone();
        let request = request.map(move |body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    sent.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                frame
            })
            .boxed_unsync()
        });
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let response = response.map(move |body| {
                body.map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        counters
                            .received
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                })
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as IoFuture))
        })
    }
}
