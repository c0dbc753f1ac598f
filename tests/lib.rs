//! Shared helpers live in `suite/`; this library is intentionally empty.
