//! The errno values the protocol reports to clients and carries in WRITE_FAILED.

/// I/O error: the write could not be mirrored and was rolled back.
pub const EIO: i32 = 5;
/// Invalid argument: zero-length, misaligned buffers, or a write larger than a frame.
pub const EINVAL: i32 = 22;
/// The write lies past the end of the volume.
pub const ENOSPC: i32 = 28;
/// The target was unreachable for longer than the write timeout.
pub const ETIMEDOUT: i32 = 110;
