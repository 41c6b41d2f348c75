//! Contract suites for the seams in `quire-core`: each case is written once against the
//! trait and run against every implementation, each on a fresh database.
//!
//! Postgres cases need `DATABASE_URL` (see `quire_testing::database_url`).

mod dispatcher;
mod output_storage;
mod record_store;
mod work_queue;

/// Emits, for every backend `b` and every case `f`, a `#[tokio::test] fn f` in `mod b`
/// that builds the subject with the backend's async block (evaluated in the suite module's
/// scope, yielding the value to test and a guard kept alive until the case ends) and runs
/// `super::f(subject)`.
///
/// ```ignore
/// contract_suite! {
///     backends: { postgres: async { .. }, sqlite: async { .. } },
///     cases: [case_one, case_two],
/// }
/// ```
macro_rules! contract_suite {
    (
        backends: { $($backend:ident: $make:expr),+ $(,)? },
        cases: $cases:tt $(,)?
    ) => {
        $( $crate::contract_suite!(@backend $backend, $make, $cases); )+
    };
    (@backend $backend:ident, $make:expr, [$($case:ident),+ $(,)?]) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (subject, _guard) = $make.await;
                    super::$case(subject).await.expect("the case returned an error");
                }
            )+
        }
    };
}

pub(crate) use contract_suite;
