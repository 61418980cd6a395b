//! The one source of truth for everything that crosses a boundary in specmirror: the wire frames
//! between source and target, the rollback-log descriptor and completion rings shared with the
//! device, and the device register map. The host core, the HDL and the simulator all take their
//! layouts from here; nothing in this crate does I/O or allocates on a decode path.

pub mod frame;
pub mod golden;
pub mod hello;
pub mod le;
pub mod regs;
pub mod ring;
pub mod rx_ring;

pub use frame::{
    data_piece, data_piece_arg, decode, decode_parts, encode, encode_into, frame_len, tail_len,
    Flags, FrameError, FrameType, Header, RejectReason, HEADER_LEN, MAGIC, MAX_PAYLOAD,
    TRAILER_LEN, VERSION,
};
pub use hello::{
    Hello, HelloError, HelloStatus, CAP_BIDIRECTIONAL, CAP_NO_IMPLICIT_LOCK, CAP_WINDOW_SHIFT,
    CAP_WRITE_LIMIT_SHIFT, HELLO_LEN,
};
