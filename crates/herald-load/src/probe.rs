//! A one-shot HTTP GET of a JSON document (Herald's `/process_stats`), for the soak run's samples.
//!
//! The load tool already speaks raw HTTP/1.1; one request a minute does not justify an HTTP
//! client crate.

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::HttpUrl;
use crate::wire::chunked::ChunkedDecoder;
use crate::wire::head;

/// GETs `url` (with `Connection: close`) and parses its body as JSON.
pub async fn get_json(url: &HttpUrl) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(url.addr)
        .await
        .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        url.path, url.host, url.port
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let head = head::read(&mut stream, &mut buf).await?;
    anyhow::ensure!(head.status == 200, "GET {} answered {}", url.path, head.status);
    stream.read_to_end(&mut buf).await?;
    let raw = &buf[head.len..];
    let body = if head.chunked {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        decoder
            .decode(raw, &mut body)
            .map_err(|e| anyhow::anyhow!("bad chunked body: {e}"))?;
        body
    } else {
        raw[..head.content_length.unwrap_or(raw.len()).min(raw.len())].to_vec()
    };
    serde_json::from_slice(&body).context("the body is not JSON")
}
