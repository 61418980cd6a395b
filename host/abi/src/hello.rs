//! The HELLO / HELLO_ACK payload: what both ends of a volume pair must agree on before any lock
//! or data moves. The header's `generation` names the session the handshake opens.

use crate::le::{get_u16, get_u32, get_u64};

/// Bytes in a HELLO or HELLO_ACK payload.
pub const HELLO_LEN: usize = 48;

/// Byte offsets inside the payload.
pub mod field {
    pub const VOLUME_SIZE: usize = 0;
    pub const REGION_SIZE: usize = 8;
    pub const PAIR_ID: usize = 16;
    pub const NODE_ID: usize = 32;
    pub const MIN_VERSION: usize = 36;
    pub const MAX_VERSION: usize = 38;
    pub const STATUS: usize = 40;
    pub const CAPABILITIES: usize = 44;
}

/// Outcome carried in HELLO_ACK (zero in HELLO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum HelloStatus {
    Ok = 0,
    VolumeSizeMismatch = 1,
    RegionSizeMismatch = 2,
    PairIdMismatch = 3,
    /// The target holds no session with this generation: the source must handshake again.
    UnknownSession = 4,
    /// The HELLO's generation is older than the target's current session.
    StaleGeneration = 5,
    VersionUnsupported = 6,
    /// The two ends do not fit together: a bidirectional node met a one-way source or target, or
    /// the other node has the same node id.
    RoleMismatch = 7,
}

/// Capability bit: the sender is a node of a bidirectional pair.
pub const CAP_BIDIRECTIONAL: u32 = 1 << 0;
/// Capability bit of a target: it takes no implicit locks (a DATA frame with `IMPLICIT_LOCK`), so
/// a source in implicit mode sends each write's LOCK frame all the same.
pub const CAP_NO_IMPLICIT_LOCK: u32 = 1 << 1;
/// Capability bits 8..16 of a target: log2 of the largest write it takes under one lock, which it
/// takes as one DATA frame and never in pieces (a hardware target's buffer slot); 0 when it takes
/// any write up to `MAX_PAYLOAD`, in pieces if need be. A source splits longer writes.
pub const CAP_WRITE_LIMIT_SHIFT: u32 = 8;
const CAP_WRITE_LIMIT_MASK: u32 = 0xff << CAP_WRITE_LIMIT_SHIFT;
/// Capability bits 16..24 of a target: the most writes it holds at once (locks with their data
/// waiting or being written); 0 when it holds as many as the source sends. A source keeps no
/// more writes than that in flight, and sends waiting ones in sequence order as others finish: a
/// target with a few data slots would otherwise drop the data of a burst and make the source
/// retransmit it again and again.
pub const CAP_WINDOW_SHIFT: u32 = 16;
const CAP_WINDOW_MASK: u32 = 0xff << CAP_WINDOW_SHIFT;
/// The smallest and largest write limits a target may announce (512 bytes, `MAX_PAYLOAD`).
const WRITE_LIMIT_LOG2: std::ops::RangeInclusive<u32> = 9..=22;
const _: () = assert!(1 << *WRITE_LIMIT_LOG2.end() == crate::frame::MAX_PAYLOAD);

impl HelloStatus {
    pub fn from_u32(v: u32) -> Option<HelloStatus> {
        Some(match v {
            0 => HelloStatus::Ok,
            1 => HelloStatus::VolumeSizeMismatch,
            2 => HelloStatus::RegionSizeMismatch,
            3 => HelloStatus::PairIdMismatch,
            4 => HelloStatus::UnknownSession,
            5 => HelloStatus::StaleGeneration,
            6 => HelloStatus::VersionUnsupported,
            7 => HelloStatus::RoleMismatch,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("HELLO payload is {0} bytes, expected {HELLO_LEN}")]
    Length(usize),
    #[error("unknown HELLO status {0}")]
    Status(u32),
    #[error("region size {0} is not a power of two of at least 512 bytes")]
    RegionSize(u64),
    #[error("volume size {0} is not a multiple of 512 bytes")]
    VolumeSize(u64),
    #[error("write limit 2^{0} bytes is outside 512 bytes to 4 MiB")]
    WriteLimit(u32),
    #[error("a window of {0} writes is outside 1 to 255")]
    Window(u32),
}

/// What a HELLO announces about the volume pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub volume_size: u64,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub node_id: u32,
    pub min_version: u16,
    pub max_version: u16,
    pub status: HelloStatus,
    pub capabilities: u32,
}

impl Hello {
    /// What this build announces for a volume pair: this protocol version, no capabilities.
    pub fn for_pair(
        volume_size: u64,
        region_size: u64,
        pair_id: [u8; 16],
        node_id: u32,
        status: HelloStatus,
    ) -> Hello {
        Hello {
            volume_size,
            region_size,
            pair_id,
            node_id,
            min_version: crate::VERSION as u16,
            max_version: crate::VERSION as u16,
            status,
            capabilities: 0,
        }
    }

    /// The largest write the sender takes under one lock, as one DATA frame; `None` when it
    /// takes any write (see [`CAP_WRITE_LIMIT_SHIFT`]).
    pub fn write_limit(&self) -> Option<u64> {
        match (self.capabilities & CAP_WRITE_LIMIT_MASK) >> CAP_WRITE_LIMIT_SHIFT {
            0 => None,
            log2 => Some(1 << log2),
        }
    }

    /// Announces the largest write taken under one lock: a power of two from 512 bytes to
    /// `MAX_PAYLOAD`.
    pub fn set_write_limit(&mut self, bytes: u64) -> Result<(), HelloError> {
        let log2 = bytes.trailing_zeros();
        if !bytes.is_power_of_two() || !WRITE_LIMIT_LOG2.contains(&log2) {
            return Err(HelloError::WriteLimit(log2));
        }
        self.capabilities =
            (self.capabilities & !CAP_WRITE_LIMIT_MASK) | (log2 << CAP_WRITE_LIMIT_SHIFT);
        Ok(())
    }

    /// The most writes the sender holds at once; `None` when it does not limit them (see
    /// [`CAP_WINDOW_SHIFT`]).
    pub fn window(&self) -> Option<u32> {
        match (self.capabilities & CAP_WINDOW_MASK) >> CAP_WINDOW_SHIFT {
            0 => None,
            n => Some(n),
        }
    }

    /// Announces the most writes held at once: 1 to 255.
    pub fn set_window(&mut self, writes: u32) -> Result<(), HelloError> {
        if !(1..=255).contains(&writes) {
            return Err(HelloError::Window(writes));
        }
        self.capabilities = (self.capabilities & !CAP_WINDOW_MASK) | (writes << CAP_WINDOW_SHIFT);
        Ok(())
    }

    /// Whether the sender takes implicit locks (see [`CAP_NO_IMPLICIT_LOCK`]).
    pub fn takes_implicit_locks(&self) -> bool {
        self.capabilities & CAP_NO_IMPLICIT_LOCK == 0
    }

    pub fn to_bytes(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[field::VOLUME_SIZE..][..8].copy_from_slice(&self.volume_size.to_le_bytes());
        b[field::REGION_SIZE..][..8].copy_from_slice(&self.region_size.to_le_bytes());
        b[field::PAIR_ID..][..16].copy_from_slice(&self.pair_id);
        b[field::NODE_ID..][..4].copy_from_slice(&self.node_id.to_le_bytes());
        b[field::MIN_VERSION..][..2].copy_from_slice(&self.min_version.to_le_bytes());
        b[field::MAX_VERSION..][..2].copy_from_slice(&self.max_version.to_le_bytes());
        b[field::STATUS..][..4].copy_from_slice(&(self.status as u32).to_le_bytes());
        b[field::CAPABILITIES..][..4].copy_from_slice(&self.capabilities.to_le_bytes());
        b
    }

    /// Decodes and sanity-checks a payload; a peer that announces an impossible geometry is
    /// refused here rather than trusted later.
    pub fn decode(b: &[u8]) -> Result<Hello, HelloError> {
        if b.len() != HELLO_LEN {
            return Err(HelloError::Length(b.len()));
        }
        let status = get_u32(b, field::STATUS);
        let h = Hello {
            volume_size: get_u64(b, field::VOLUME_SIZE),
            region_size: get_u64(b, field::REGION_SIZE),
            pair_id: b[field::PAIR_ID..field::PAIR_ID + 16]
                .try_into()
                .expect("16 bytes"),
            node_id: get_u32(b, field::NODE_ID),
            min_version: get_u16(b, field::MIN_VERSION),
            max_version: get_u16(b, field::MAX_VERSION),
            status: HelloStatus::from_u32(status).ok_or(HelloError::Status(status))?,
            capabilities: get_u32(b, field::CAPABILITIES),
        };
        if !h.region_size.is_power_of_two() || h.region_size < 512 {
            return Err(HelloError::RegionSize(h.region_size));
        }
        if !h.volume_size.is_multiple_of(512) {
            return Err(HelloError::VolumeSize(h.volume_size));
        }
        let limit = (h.capabilities & CAP_WRITE_LIMIT_MASK) >> CAP_WRITE_LIMIT_SHIFT;
        if limit != 0 && !WRITE_LIMIT_LOG2.contains(&limit) {
            return Err(HelloError::WriteLimit(limit));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hello {
        Hello {
            volume_size: 1 << 30,
            region_size: 1 << 20,
            pair_id: *b"0123456789abcdef",
            node_id: 2,
            min_version: 1,
            max_version: 1,
            status: HelloStatus::UnknownSession,
            capabilities: 0b101,
        }
    }

    #[test]
    fn round_trip_and_offsets() {
        let b = sample().to_bytes();
        assert_eq!(Hello::decode(&b).unwrap(), sample());
        assert_eq!(get_u64(&b, 0), 1 << 30);
        assert_eq!(&b[16..32], b"0123456789abcdef");
        assert_eq!(get_u32(&b, 40), 4);
    }

    #[test]
    fn rejects_bad_geometry_status_and_length() {
        let mut h = sample();
        h.region_size = 3000;
        assert_eq!(
            Hello::decode(&h.to_bytes()),
            Err(HelloError::RegionSize(3000))
        );
        let mut h = sample();
        h.volume_size = 1000;
        assert_eq!(
            Hello::decode(&h.to_bytes()),
            Err(HelloError::VolumeSize(1000))
        );
        let mut b = sample().to_bytes();
        b[40] = 77;
        assert_eq!(Hello::decode(&b), Err(HelloError::Status(77)));
        assert_eq!(Hello::decode(&b[..47]), Err(HelloError::Length(47)));
        let mut b = sample().to_bytes();
        b[field::CAPABILITIES + 1] = 30;
        assert_eq!(Hello::decode(&b), Err(HelloError::WriteLimit(30)));
        b[field::CAPABILITIES + 1] = 8;
        assert_eq!(Hello::decode(&b), Err(HelloError::WriteLimit(8)));
    }

    #[test]
    fn write_limit_and_implicit_locks_round_trip() {
        let mut h = sample();
        assert_eq!(h.write_limit(), None);
        assert!(h.takes_implicit_locks());
        h.set_write_limit(4096).unwrap();
        h.capabilities |= CAP_NO_IMPLICIT_LOCK;
        let back = Hello::decode(&h.to_bytes()).unwrap();
        assert_eq!(back.write_limit(), Some(4096));
        assert!(!back.takes_implicit_locks());
        // The other capability bits are left as they were.
        assert_eq!(back.capabilities & CAP_BIDIRECTIONAL, CAP_BIDIRECTIONAL);
        assert_eq!(h.set_write_limit(3000), Err(HelloError::WriteLimit(3)));
        assert_eq!(h.set_write_limit(256), Err(HelloError::WriteLimit(8)));
        assert_eq!(h.set_write_limit(8 << 20), Err(HelloError::WriteLimit(23)));
        h.set_write_limit(4 << 20).unwrap();
        assert_eq!(h.write_limit(), Some(4 << 20));
        assert_eq!(h.window(), None);
        h.set_window(3).unwrap();
        let back = Hello::decode(&h.to_bytes()).unwrap();
        assert_eq!(
            (back.window(), back.write_limit()),
            (Some(3), Some(4 << 20))
        );
        assert_eq!(h.set_window(0), Err(HelloError::Window(0)));
        assert_eq!(h.set_window(256), Err(HelloError::Window(256)));
    }
}
