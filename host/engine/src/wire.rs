//! Frames over a byte stream (TCP or a Unix socket): read one frame at a time, refusing a bad
//! header before reading or allocating its payload.

use std::time::Duration;

use bytes::BufMut;
use specmirror_abi::{
    frame_len, tail_len, FrameError, FrameType, Header, Hello, HelloError, HEADER_LEN,
};
use specmirror_core::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a probe handshake got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer to the handshake within {0:?}")]
    Timeout(Duration),
    #[error("closed during the handshake")]
    Closed,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("malformed HELLO_ACK: {0}")]
    Malformed(#[from] HelloError),
}

/// `hello` as a probe: generation 0, which opens no session.
pub fn probe_frame(hello: &Hello) -> Frame {
    Frame::new(Header::new(FrameType::Hello), hello.to_bytes().to_vec())
}

/// The peer's answer to a probe, if `f` is one (a HELLO_ACK of generation 0).
pub fn probe_answer(f: &Frame) -> Option<Result<Hello, ProbeError>> {
    (f.header.ty == FrameType::HelloAck && f.header.generation == 0)
        .then(|| Ok(Hello::decode(&f.payload)?))
}

/// Sends `hello` as a probe and returns the HELLO_ACK that answers it. Other frames the peer
/// sends first (a node's own handshake) are skipped.
pub async fn probe_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    hello: &Hello,
    timeout: Duration,
) -> Result<Hello, ProbeError> {
    s.write_all(&probe_frame(hello).encode())
        .await
        .map_err(WireError::Io)?;
    let mut buf = Vec::new();
    loop {
        let f = tokio::time::timeout(timeout, read_frame(s, &mut buf))
            .await
            .map_err(|_| ProbeError::Timeout(timeout))??
            .ok_or(ProbeError::Closed)?;
        if let Some(ack) = probe_answer(&f) {
            return ack;
        }
    }
}

/// How much a link's reader takes from the socket at once: frames that arrive together (a LOCK
/// and its DATA, a burst of answers) are read in one call instead of two per frame.
const READ_BUFFER: usize = 256 << 10;

/// Most frames [`read_frames`] hands over as one batch.
pub const BATCH_FRAMES: usize = 64;

/// A link's receiving half, buffered for [`read_frame`].
pub fn frame_reader<R: AsyncRead>(r: R) -> tokio::io::BufReader<R> {
    tokio::io::BufReader::with_capacity(READ_BUFFER, r)
}

/// Reads the next frame; `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, WireError> {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        got += n;
    }
    let h = Header::decode(buf)?;
    let truncated = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
        _ => WireError::Io(e),
    };
    // The payload goes straight into the buffer the frame keeps, unzeroed and not copied again.
    let payload = read_owned(r, h.payload_len as usize)
        .await
        .map_err(truncated)?;
    let mut tail = [0u8; 16];
    let tail = &mut tail[..tail_len(h.payload_len)];
    r.read_exact(tail).await.map_err(truncated)?;
    Ok(Some(Frame::from_parts(buf, payload, tail)?))
}

/// Reads exactly `len` bytes into a buffer of their own, without zeroing it first.
pub(crate) async fn read_owned<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let want = len - data.len();
        if r.read_buf(&mut (&mut data).limit(want)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(data)
}

/// Reads the next frame, and with it every further frame already whole in `r`'s buffer (up to
/// `max` in all): frames that arrived together are handled together, and their answers leave
/// together. `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frames<R: AsyncRead + Unpin>(
    r: &mut tokio::io::BufReader<R>,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<Vec<Frame>>, WireError> {
    let Some(first) = read_frame(r, buf).await? else {
        return Ok(None);
    };
    let mut frames = vec![first];
    while frames.len() < max && whole_frame(r.buffer()) {
        match read_frame(r, buf).await? {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    Ok(Some(frames))
}

/// Whether `b` begins with a whole frame (a malformed header counts: reading it fails at once).
fn whole_frame(b: &[u8]) -> bool {
    if b.len() < HEADER_LEN {
        return false;
    }
    match Header::decode(&b[..HEADER_LEN]) {
        Ok(h) => frame_len(h.payload_len) <= b.len(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use specmirror_abi::FrameType;

    #[tokio::test]
    async fn reads_back_to_back_frames_and_stops_cleanly() {
        let mut h = Header::new(FrameType::Data);
        h.seq = 5;
        let mut bytes = Frame::new(h, b"hello".to_vec()).encode();
        bytes.extend(Frame::control(Header::new(FrameType::Heartbeat)).encode());
        let mut r = &bytes[..];
        let mut buf = Vec::new();
        let a = read_frame(&mut r, &mut buf).await.unwrap().unwrap();
        assert_eq!(&a.payload[..], b"hello");
        let b = read_frame(&mut r, &mut buf).await.unwrap().unwrap();
        assert_eq!(b.ty(), FrameType::Heartbeat);
        assert!(read_frame(&mut r, &mut buf).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn frames_that_arrived_together_are_read_together() {
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let mut r = frame_reader(r);
        let mut buf = Vec::new();
        let mut bytes = Vec::new();
        for seq in 0..5u64 {
            let mut h = Header::new(FrameType::Data);
            h.seq = seq;
            bytes.extend(Frame::new(h, vec![seq as u8; 100]).encode());
        }
        let whole = bytes.len();
        // Four whole frames and half of the fifth.
        w.write_all(&bytes[..whole - 60]).await.unwrap();
        let got = read_frames(&mut r, &mut buf, 3).await.unwrap().unwrap();
        assert_eq!(
            got.iter().map(|f| f.header.seq).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // The fourth is whole in the buffer; the half frame is not waited for.
        let got = tokio::time::timeout(Duration::from_secs(5), read_frames(&mut r, &mut buf, 64))
            .await
            .expect("a whole frame was buffered")
            .unwrap()
            .unwrap();
        assert_eq!(got.iter().map(|f| f.header.seq).collect::<Vec<_>>(), [3]);
        w.write_all(&bytes[whole - 60..]).await.unwrap();
        drop(w);
        let got = read_frames(&mut r, &mut buf, 64).await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header.seq, 4);
        assert_eq!(got[0].payload, vec![4u8; 100]);
        assert!(read_frames(&mut r, &mut buf, 64).await.unwrap().is_none());
    }

    /// A payload that trickles in, a byte at a time, is read whole into the frame's own buffer.
    #[tokio::test]
    async fn a_payload_in_pieces_is_read_whole() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut r = frame_reader(r);
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let bytes = Frame::new(Header::new(FrameType::Data), payload.clone()).encode();
        let writer = tokio::spawn(async move {
            for b in bytes.chunks(1) {
                w.write_all(b).await.unwrap();
            }
        });
        let mut buf = Vec::new();
        let f = read_frame(&mut r, &mut buf).await.unwrap().unwrap();
        writer.await.unwrap();
        assert!(f.payload == payload);
        assert!(read_frame(&mut r, &mut buf).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_garbage_oversize_and_truncation() {
        let mut buf = Vec::new();
        let garbage = [0x41u8; 100];
        let e = read_frame(&mut &garbage[..], &mut buf).await.unwrap_err();
        assert!(
            matches!(e, WireError::Frame(FrameError::BadMagic(_))),
            "{e}"
        );
        let mut hdr = Header::new(FrameType::Data).to_bytes();
        hdr[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = read_frame(&mut &hdr[..], &mut buf).await.unwrap_err();
        assert!(matches!(e, WireError::Frame(FrameError::Oversized(_))));
        assert!(
            buf.capacity() < 1 << 20,
            "nothing allocated for the claimed length"
        );
        let whole = Frame::new(Header::new(FrameType::Data), vec![1; 100]).encode();
        let e = read_frame(&mut &whole[..90], &mut buf).await.unwrap_err();
        assert!(matches!(e, WireError::Truncated));
        let mut bad = whole.clone();
        bad[70] ^= 1;
        let e = read_frame(&mut &bad[..], &mut buf).await.unwrap_err();
        assert!(matches!(e, WireError::Frame(FrameError::BadCrc { .. })));
        // Cut in the trailer; the padding not zero (its CRC made good).
        let e = read_frame(&mut &whole[..whole.len() - 3], &mut buf)
            .await
            .unwrap_err();
        assert!(matches!(e, WireError::Truncated), "{e}");
        let mut padded = whole.clone();
        let pad_at = HEADER_LEN + 100;
        padded[pad_at] = 1;
        let crc = crc32c::crc32c(&padded[..whole.len() - 8]);
        padded[whole.len() - 8..whole.len() - 4].copy_from_slice(&crc.to_le_bytes());
        let e = read_frame(&mut &padded[..], &mut buf).await.unwrap_err();
        assert!(matches!(e, WireError::Frame(FrameError::BadPadding)), "{e}");
    }
}
