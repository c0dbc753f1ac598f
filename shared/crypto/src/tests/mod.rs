//! The crate's tests, through its public API (kept as unit tests: the
//! project builds one integration-test binary, `tests/suite`).

mod envelope;
mod master_key;
