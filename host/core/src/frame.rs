//! An owned frame, as the state machines produce and consume it. Encoding and validation live in
//! the ABI crate; drivers decode bytes into a [`Frame`] and encode a [`Frame`] into bytes.

use bytes::Bytes;
use specmirror_abi::{FrameError, FrameType, Header};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    /// Shared, not copied, with the rollback log's record it was sent from.
    pub payload: Bytes,
}

impl Frame {
    pub fn new(header: Header, payload: impl Into<Bytes>) -> Frame {
        let payload = payload.into();
        let mut header = header;
        header.payload_len = payload.len() as u32;
        Frame { header, payload }
    }

    pub fn control(header: Header) -> Frame {
        Frame::new(header, Bytes::new())
    }

    pub fn ty(&self) -> FrameType {
        self.header.ty
    }

    pub fn encode(&self) -> Vec<u8> {
        specmirror_abi::encode(&self.header, &self.payload)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        specmirror_abi::encode_into(&self.header, &self.payload, out)
    }

    /// A frame read in three parts (see [`specmirror_abi::decode_parts`]), validated; the payload
    /// is kept as it is, not copied.
    pub fn from_parts(header: &[u8], payload: Vec<u8>, tail: &[u8]) -> Result<Frame, FrameError> {
        let header = specmirror_abi::decode_parts(header, &payload, tail)?;
        Ok(Frame {
            header,
            payload: payload.into(),
        })
    }

    /// Decodes one whole frame; returns it and the bytes it used.
    pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
        let (header, payload, used) = specmirror_abi::decode(bytes)?;
        Ok((
            Frame {
                header,
                payload: Bytes::copy_from_slice(payload),
            },
            used,
        ))
    }
}

impl core::fmt::Display for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let h = &self.header;
        write!(f, "{} g{}", h.ty.name(), h.generation)?;
        match h.ty {
            FrameType::Lock => write!(
                f,
                " seq={} lock={} regions={}+{}",
                h.seq, h.lock_id, h.offset, h.arg
            ),
            FrameType::Data => write!(
                f,
                " seq={} lock={} off={} len={}{}",
                h.seq,
                h.lock_id,
                h.offset,
                h.payload_len,
                if h.flags.contains(specmirror_abi::Flags::IMPLICIT_LOCK) {
                    " implicit"
                } else {
                    ""
                }
            ),
            FrameType::LockRejected | FrameType::WriteFailed => {
                write!(f, " seq={} lock={} arg={}", h.seq, h.lock_id, h.arg)
            }
            FrameType::Flush | FrameType::FlushDone => write!(f, " flush={}", h.seq),
            FrameType::Hello | FrameType::HelloAck | FrameType::Heartbeat => Ok(()),
            _ => write!(f, " seq={} lock={}", h.seq, h.lock_id),
        }
    }
}
