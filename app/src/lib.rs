//! cartd's application crate: configuration, the HTTP adapter, background
//! tasks and the composition root. The binary in `main.rs` only wires these.
#![forbid(unsafe_code)]

pub mod background;
pub mod catalog;
pub mod clock;
pub mod http;
pub mod live;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod testing;

pub use settings::Settings;
pub use startup::Application;
