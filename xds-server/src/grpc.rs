//! The ADS gRPC service, framed by hand on the response side.
//!
//! tonic's generated server encodes responses into one buffer per stream that grows to the
//! largest response and keeps that allocation for the life of the stream. With thousands
//! of idle proxies that buffer is most of the memory a stream costs. Here each response is
//! encoded into its own exactly sized buffer, handed to HTTP/2 as one DATA frame and freed
//! once written, so an idle stream holds no response bytes. Requests are decoded by tonic's
//! `Streaming` with a small initial buffer (requests are ACKs of a few hundred bytes).
//!
//! The framing is gRPC's: a one-byte compression flag (always 0: Weir does not compress),
//! a four-byte big-endian length, the message; the stream ends with trailers carrying
//! `grpc-status` (and `grpc-message` on error).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::Message;
use tokio::sync::mpsc;
use tonic::{
    Status, Streaming,
    codec::{BufferSettings, CompressionEncoding},
};
use tonic_prost::ProstDecoder;

/// The gRPC service name of ADS.
pub const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
pub(crate) const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
pub(crate) const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The largest request accepted (Envoy's first request carries its node, with extensions).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// The decode buffer a stream starts with; it grows when a request needs more.
const REQUEST_BUFFER_BYTES: usize = 1024;
/// Responses queued per stream before the stream's task waits for HTTP/2 to take them.
const OUTBOX_DEPTH: usize = 4;
const HEADER_BYTES: usize = 5;

/// What a stream task hands to its response body.
#[derive(Debug)]
enum Outgoing {
    /// One gRPC message, framed.
    Message(Bytes),
    /// The stream ends with this status.
    End(Box<Status>),
}

/// The sending half of a stream's responses.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
}

/// The proxy is gone: its response stream was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl Outbox {
    /// A connected outbox and the response body that drains it.
    pub(crate) fn new() -> (Outbox, ResponseBody) {
        let (tx, rx) = mpsc::channel(OUTBOX_DEPTH);
        (Outbox { tx }, ResponseBody { rx: Some(rx) })
    }

    /// Frames `message` into a buffer of exactly its size and queues it.
    pub(crate) async fn send(&self, message: &impl Message) -> Result<(), Closed> {
        self.tx
            .send(Outgoing::Message(frame(message)))
            .await
            .map_err(|_| Closed)
    }

    /// Ends the stream with `status` (an error; a clean end is the outbox being dropped).
    pub(crate) async fn end(&self, status: Status) {
        let _ = self.tx.send(Outgoing::End(Box::new(status))).await;
    }
}

/// One message in gRPC's length-prefixed framing.
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER_BYTES + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with room for the whole message cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// A response body fed by an [`Outbox`]: DATA frames, then trailers.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    rx: Option<mpsc::Receiver<Outgoing>>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let status = match std::task::ready!(rx.poll_recv(cx)) {
            Some(Outgoing::Message(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Outgoing::End(status)) => *status,
            None => Status::ok(""),
        };
        self.rx = None;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
    }
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("13"));
    }
    headers
}

/// A request stream, decoded with a small initial buffer (see the module docs).
pub(crate) fn decode<M: Message + Default + Send + 'static>(
    body: tonic::body::Body,
) -> Streaming<M> {
    let no_compression: Option<CompressionEncoding> = None;
    Streaming::new_request(
        ProstDecoder::<M>::new(BufferSettings::new(REQUEST_BUFFER_BYTES, 32 << 10)),
        body,
        no_compression,
        Some(MAX_REQUEST_BYTES),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use http_body_util::BodyExt;

    #[test]
    fn frames_are_length_prefixed_and_exactly_sized() {
        let message = DiscoveryResponse {
            version_info: "v1".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        let bytes = frame(&message);
        assert_eq!(bytes[0], 0, "not compressed");
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, message.encoded_len());
        assert_eq!(bytes.len(), HEADER_BYTES + len);
        assert_eq!(
            DiscoveryResponse::decode(&bytes[HEADER_BYTES..]).unwrap(),
            message
        );
    }

    #[tokio::test]
    async fn body_yields_messages_then_trailers() {
        let (outbox, body) = Outbox::new();
        let message = DiscoveryResponse {
            nonce: "1".into(),
            ..Default::default()
        };
        let sender = tokio::spawn(async move {
            outbox.send(&message).await.unwrap();
            outbox.end(Status::invalid_argument("bad node")).await;
        });
        let collected = body.collect().await.unwrap();
        sender.await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "3");
        assert_eq!(trailers["grpc-message"], "bad%20node");
        assert_eq!(collected.to_bytes().len(), HEADER_BYTES + 3);
    }

    #[tokio::test]
    async fn dropped_outbox_ends_with_ok() {
        let (outbox, body) = Outbox::new();
        drop(outbox);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    }
}
