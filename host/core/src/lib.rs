//! The speculative mirroring protocol as sans-IO state machines.
//!
//! [`source::Source`] is the mirror control module with its [`rollback_log::RollbackLog`];
//! [`target::Target`] is the target controller with its lock table and lock-retry logic. Each takes
//! an event and the current time and returns the actions its driver must carry out, in order:
//! frames to send, volume writes, log records to persist, client acknowledgements. Neither owns a
//! clock, a socket or a thread, so the tokio engine, the simulated device and the deterministic
//! simulator drive exactly the same code.

pub mod errno;
pub mod frame;
pub mod node;
pub mod region;
pub mod rollback_log;
pub mod source;
pub mod target;

pub use frame::Frame;
pub use region::Regions;

/// Time in nanoseconds, on whatever clock the driver uses (virtual in the simulator).
pub type Nanos = u64;

/// Nanoseconds in a microsecond and a millisecond, for readable configuration.
pub const US: Nanos = 1_000;
pub const MS: Nanos = 1_000_000;
