//! Nothing: this crate only holds the browser tests (`tests/`).
