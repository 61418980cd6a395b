pub mod auth;
pub mod logfile;
pub mod nbd;
pub mod nbd_client;
pub mod source;
pub mod target;
pub mod volume;
pub mod wire;
