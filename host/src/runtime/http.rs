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

/// What a step's requests did, shared with the body wrappers (which run as
/// tasks of the step's reactor).
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Requests sent (allowed ones only).
    pub requests: AtomicU64,
    /// Request body bytes sent.
    pub sent: AtomicU64,
    /// Response body bytes received.
    pub received: AtomicU64,
    /// Requests refused for going past `max_http_requests`.
    pub over_limit: AtomicU64,
}

/// The per-step hooks: the allowlist, the cap, and the counters.
pub(crate) struct HttpHooks {
    op: Arc<str>,
    allowed: Vec<OutboundHost>,
    max_requests: Option<u64>,
    log: Capture,
    pub counters: Arc<HttpCounters>,
}

impl HttpHooks {
    pub fn new(
        op: &Arc<str>,
        allowed: &[OutboundHost],
        max_requests: Option<u64>,
        log: &Capture,
    ) -> Self {
        Self {
            op: op.clone(),
            allowed: allowed.to_vec(),
            max_requests,
            log: log.clone(),
            counters: Arc::default(),
        }
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
        if !outbound::allowed(&self.allowed, &scheme, &host, port) {
            let allowed = if self.allowed.is_empty() {
                "none".to_owned()
            } else {
                self.allowed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return self.refuse(format!(
                "dynhost: HTTP request to {scheme}://{host}:{port} denied: not in `allowed_outbound_hosts` of op `{}` (allowed: {allowed}); add it there to allow it",
                self.op
            ));
        }
        let made = self.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(max) = self.max_requests
            && made > max
        {
            self.counters.requests.fetch_sub(1, Ordering::Relaxed);
            self.counters.over_limit.fetch_add(1, Ordering::Relaxed);
            return self.refuse(format!(
                "dynhost: HTTP request to {scheme}://{host}:{port} refused: the step already made max_http_requests = {max}"
            ));
        }
        let counters = self.counters.clone();
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
