//! Outbound HTTP for federation: Workers `fetch()` for HTTPS on port 443, and TCP
//! sockets (`connect()`) speaking HTTP/1.1 for any other port (on Workers a `fetch()`
//! to another port silently goes to 443). Every exchange is bounded in time and size.

use futures_util::future::{select, Either};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::core::http1::{self, Response};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("bad response: {0}")]
    Response(String),
}

/// One outbound request.
pub struct Outbound<'a> {
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Largest response body accepted.
    pub limit: usize,
    pub timeout_ms: u64,
}

async fn with_timeout<T>(
    timeout_ms: u64,
    work: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    let delay = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    match select(Box::pin(work), delay).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(NetError::Timeout),
    }
}

/// `https://{authority}{target}` through `fetch()` (redirects not followed).
pub async fn https_fetch(authority: &str, req: &Outbound<'_>) -> Result<Response, NetError> {
    with_timeout(req.timeout_ms, async {
        let headers = worker::Headers::new();
        for (name, value) in req.headers {
            headers
                .set(name, value)
                .map_err(|e| NetError::Connect(e.to_string()))?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(req.method.to_owned()))
            .with_headers(headers)
            .with_redirect(worker::RequestRedirect::Manual);
        if !req.body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(req.body).into()));
        }
        let url = format!("https://{authority}{}", req.target);
        let request =
            worker::Request::new_with_init(&url, &init).map_err(|e| NetError::Connect(e.to_string()))?;
        let mut response = worker::Fetch::Request(request)
            .send()
            .await
            .map_err(|e| NetError::Connect(e.to_string()))?;
        let declared = response
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > req.limit) {
            return Err(NetError::Response(format!("larger than {} bytes", req.limit)));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| NetError::Response(e.to_string()))?;
        if body.len() > req.limit {
            return Err(NetError::Response(format!("larger than {} bytes", req.limit)));
        }
        Ok(Response {
            status: response.status_code(),
            headers: response
                .headers()
                .entries()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        })
    })
    .await
}

/// One HTTP/1.1 exchange over a TCP socket to `host:port`, with TLS or (local
/// development) without. `host_header` is the `Host` sent.
pub async fn tcp_exchange(
    host: &str,
    port: u16,
    tls: bool,
    host_header: &str,
    req: &Outbound<'_>,
) -> Result<Response, NetError> {
    with_timeout(req.timeout_ms, async {
        let transport = if tls {
            worker::SecureTransport::On
        } else {
            worker::SecureTransport::Off
        };
        let mut socket = worker::Socket::builder()
            .secure_transport(transport)
            .connect(host, port)
            .map_err(|e| NetError::Connect(e.to_string()))?;
        let bytes = http1::encode_request(req.method, req.target, host_header, req.headers, req.body);
        socket
            .write_all(&bytes)
            .await
            .map_err(|e| NetError::Connect(e.to_string()))?;
        socket
            .flush()
            .await
            .map_err(|e| NetError::Connect(e.to_string()))?;
        // Head room for the status line and headers.
        let cap = req.limit + 64 * 1024;
        let mut data = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = socket
                .read(&mut buf)
                .await
                .map_err(|e| NetError::Response(e.to_string()))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            if data.len() > cap {
                let _ = socket.close().await;
                return Err(NetError::Response(format!("larger than {} bytes", req.limit)));
            }
            if http1::is_complete(&data) {
                break;
            }
        }
        let _ = socket.close().await;
        http1::parse_response(&data, req.limit).map_err(|e| NetError::Response(e.to_string()))
    })
    .await
}
