//! `fetch`: a test op that makes outgoing HTTP requests through
//! `wasi:http/outgoing-handler`, as a real Rust op would. Driven by config:
//!
//! - `url`: the URL; `{key}` is replaced by the step's innermost key.
//! - `method` (`GET`/`POST`), `body` (sent with POST), `requests` (how many
//!   times to send it, default 1), `follow` (follow one redirect),
//! - `auth_env`: send `authorization: <value of that env variable>`,
//! - `print_env`: print that env variable's value to stdout.
//!
//! Returns `{"status", "bytes", "body"}` of the last response (body cut at
//! 200 bytes), or the error as the op's error.

// The first WIT version, like `trivial`: the bench's bare wasmtime-wasi-http
// host calls it with the same 0.1.0 bindings.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "dynamic-op" });

use exports::dynhost::op::op::{Context, Guest, Input};
use serde_json::{Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct Fetch;

struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

fn send(
    method: &str,
    url: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> Result<Response, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url has no scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    if let Some(body) = body {
        headers
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|e| format!("header: {e:?}"))?;
    }
    if let Some(auth) = auth {
        headers
            .append("authorization", auth.as_bytes())
            .map_err(|e| format!("header: {e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&if method == "POST" {
            Method::Post
        } else {
            Method::Get
        })
        .map_err(|()| "method")?;
    request
        .set_scheme(Some(&match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.into()),
        }))
        .map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let outgoing = request.body().map_err(|()| "body")?;
    if let Some(body) = body {
        let stream = outgoing.write().map_err(|()| "body stream")?;
        for chunk in body.as_bytes().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("write: {e:?}"))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("finish: {e:?}"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let incoming = response.consume().map_err(|()| "consume")?;
    let stream = incoming.stream().map_err(|()| "stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("read: {e:?}")),
        }
    }
    Ok(Response {
        status,
        location,
        body: bytes,
    })
}

impl Guest for Fetch {
    fn run(ctx: Context, _inputs: Vec<Input>) -> Result<Vec<u8>, String> {
        let config: Value = serde_json::from_str(&ctx.config).map_err(|e| e.to_string())?;
        let key = ctx.keys.last().cloned().unwrap_or_default();
        let url = config["url"]
            .as_str()
            .ok_or("config.url is required")?
            .replace("{key}", &key);
        if let Some(name) = config["print_env"].as_str() {
            println!("{name}={}", std::env::var(name).unwrap_or_default());
        }
        let auth = config["auth_env"]
            .as_str()
            .map(|name| std::env::var(name).unwrap_or_default());
        let method = config["method"].as_str().unwrap_or("GET");
        let body = config["body"].as_str();
        let mut last = None;
        for _ in 0..config["requests"].as_u64().unwrap_or(1) {
            let mut response = send(method, &url, body, auth.as_deref())?;
            if config["follow"].as_bool() == Some(true)
                && (300..400).contains(&response.status)
                && let Some(location) = response.location.clone()
            {
                response = send("GET", &location, None, auth.as_deref())?;
            }
            last = Some(response);
        }
        let last = last.ok_or("no request made")?;
        let text = String::from_utf8_lossy(&last.body[..last.body.len().min(200)]).into_owned();
        serde_json::to_vec(
            &json!({ "status": last.status, "bytes": last.body.len(), "body": text }),
        )
        .map_err(|e| e.to_string())
    }
}

export!(Fetch);
