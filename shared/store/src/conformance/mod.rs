//! The one test suite of the [`DocumentStore`] contract, run by every backend.
//!
//! Each case is a public async function taking a fresh, **empty** store (a new
//! database, a new KV mount, or a backend rooted at a new unique prefix: the
//! listing cases expect nothing else under the root) and answering
//! `Err(Failure)` naming the first broken promise. Cases assert exact
//! outcomes: versions, error variants with their fields, bodies, listings.
//!
//! A backend crate generates one `#[tokio::test]` per case with
//! [`conformance_tests!`](crate::conformance_tests) (it needs `tokio` with the
//! `macros` and `rt-multi-thread` features among its dev-dependencies):
//!
//! ```ignore
//! locksmith_store::conformance_tests!(|| async {
//!     EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap()
//! });
//! ```
//!
//! or runs them all at once with [`run_all`].
//!
//! Nothing here depends on a backend's clock: cases compare timestamps with
//! each other, never with the test's own time, so a remote server's clock
//! does not matter.

mod cases;
#[cfg(test)]
mod embedded_tests;
mod listing;

use std::{fmt, future::Future};

pub use cases::{
    concurrent_cas_writers_one_wins, create_only_twice_conflicts,
    delete_all_then_create_starts_at_one, deletes_are_idempotent, invalid_arguments_are_refused,
    ping_answers, soft_delete_undelete_and_destroy, stale_cas_conflicts_and_writes_nothing,
    version_numbers_are_never_reused, write_then_read_latest_and_given_version,
};
pub use listing::{
    keys_at_the_edge_of_the_grammar_round_trip, keys_outside_the_grammar_are_refused,
    list_children_and_folders, list_pages_cover_everything_once,
};

use crate::{DocumentStore, Key, StoreError};

/// Every case, by name, in the order [`run_all`] runs them; the callback
/// macro receives `$($args)* ; case, case, …`. One list, so the generated
/// tests and `run_all` cannot drift apart.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_with_cases {
    ($($callback:ident)::+ ! ($($args:tt)*)) => {
        $($callback)::+ ! {
            $($args)* ;
            create_only_twice_conflicts,
            stale_cas_conflicts_and_writes_nothing,
            write_then_read_latest_and_given_version,
            version_numbers_are_never_reused,
            soft_delete_undelete_and_destroy,
            deletes_are_idempotent,
            delete_all_then_create_starts_at_one,
            list_children_and_folders,
            list_pages_cover_everything_once,
            concurrent_cas_writers_one_wins,
            keys_outside_the_grammar_are_refused,
            keys_at_the_edge_of_the_grammar_round_trip,
            invalid_arguments_are_refused,
            ping_answers
        }
    };
}

/// Generates one `#[tokio::test]` per conformance case. The argument is a
/// closure (or function) answering a future of a fresh, empty store; each test
/// calls it once. The tests run on a two-thread runtime, so the concurrency
/// case really races.
#[macro_export]
macro_rules! conformance_tests {
    ($make_store:expr) => {
        $crate::__store_conformance_with_cases!($crate::__store_conformance_tests!($make_store));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    ($make_store:expr ; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> ::std::result::Result<(), $crate::conformance::Failure> {
                let make_store = $make_store;
                $crate::conformance::$case(make_store().await).await
            }
        )*
    };
}

/// Runs every case, each on a store from `make_store`, and answers all the
/// failures (not just the first).
pub async fn run_all<S, F, Fut>(mut make_store: F) -> Result<(), Vec<Failure>>
where
    S: DocumentStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failures = Vec::new();
    macro_rules! run_cases {
        (; $($case:ident),* $(,)?) => {
            $(
                if let Err(failure) = $case(make_store().await).await {
                    failures.push(failure);
                }
            )*
        };
    }
    crate::__store_conformance_with_cases!(run_cases!());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// A broken promise: which case, and what was expected against what came.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{case}: {detail}")]
pub struct Failure {
    /// The case's function name.
    pub case: &'static str,
    /// What went wrong.
    pub detail: String,
}

// A test returning `Err` prints its error with `Debug`: make that readable.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The outcome of one case.
pub type Outcome = Result<(), Failure>;

/// Helpers binding a case's name into its failures.
#[derive(Clone, Copy)]
struct Case(&'static str);

impl Case {
    fn fail(self, detail: impl Into<String>) -> Failure {
        Failure {
            case: self.0,
            detail: detail.into(),
        }
    }

    /// `got` must equal `want`.
    fn eq<T: PartialEq + fmt::Debug>(self, what: &str, got: T, want: T) -> Outcome {
        if got == want {
            Ok(())
        } else {
            Err(self.fail(format!("{what}: got {got:?}, want {want:?}")))
        }
    }

    /// `cond` must hold.
    fn check(self, what: &str, cond: bool) -> Outcome {
        if cond { Ok(()) } else { Err(self.fail(what)) }
    }

    /// A call that must succeed.
    fn ok<T>(self, what: &str, r: Result<T, StoreError>) -> Result<T, Failure> {
        r.map_err(|e| self.fail(format!("{what}: unexpected error {e:?}")))
    }

    /// A call that must fail with exactly `want`.
    fn err<T: fmt::Debug>(self, what: &str, r: Result<T, StoreError>, want: StoreError) -> Outcome {
        match r {
            Err(e) if e == want => Ok(()),
            other => Err(self.fail(format!("{what}: got {other:?}, want Err({want:?})"))),
        }
    }

    /// A call that must fail with [`StoreError::Invalid`], whatever its text.
    fn invalid<T: fmt::Debug>(self, what: &str, r: Result<T, StoreError>) -> Outcome {
        match r {
            Err(StoreError::Invalid(_)) => Ok(()),
            other => Err(self.fail(format!("{what}: got {other:?}, want Err(Invalid(_))"))),
        }
    }

    fn key(self, s: &str) -> Result<Key, Failure> {
        Key::parse(s).map_err(|e| self.fail(format!("key {s:?} refused: {e}")))
    }
}
