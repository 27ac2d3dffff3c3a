//! cartd's application crate: configuration, the HTTP adapter, background
//! tasks and the composition root. The binary in `main.rs` only wires these.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod clock;
pub mod compose;
pub mod http;
pub mod live;
pub mod metrics;
pub mod quotas;
pub mod reconcile;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod testing;

pub use compose::Application;
pub use settings::Settings;
