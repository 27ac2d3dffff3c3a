//! The inside of cartd's hexagon: validated value types, carts and holds, the
//! expiry policy, the ports (traits) the adapters implement, and the use cases
//! written against those ports.
//!
//! Nothing in this crate performs I/O or reads a clock: time comes in through the
//! [`ports::Clock`] port and every policy takes `now` as an argument, so the same
//! code runs against Redis + PostgreSQL, against the in-memory adapters, and
//! under a paused test clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cart;
pub mod error;
pub mod hold;
pub mod idempotency;
pub mod ids;
pub mod merge;
pub mod policy;
pub mod ports;
pub mod quantity;
pub mod quota;
pub mod service;
pub mod time;

pub use cart::{Cart, Line, Order, StockLevel};
pub use error::{CartError, error_chain};
pub use ids::{CartId, IdError, InventoryId, OrderId, ProductId};
pub use policy::{ExpiryMode, ExpiryPolicy, Limits, PolicyError, SessionTtl};
pub use quantity::{Quantity, QuantityError, StockCount};
pub use quota::{ClientKey, LimitKind, QuotaPolicy};
pub use service::{CartService, CheckoutResult, LineAdded, MergeResult, Once, Replayed, SetLineResult, Target};
pub use time::Timestamp;
