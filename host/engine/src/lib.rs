pub mod auth;
pub mod logfile;
pub mod volume;
pub mod wire;
