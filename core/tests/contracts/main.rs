//! Contract suites for the seams in `quire-core`: each case is written once against the
//! trait and run against every implementation, each on a fresh database.
//!
//! Postgres cases need `DATABASE_URL` (see `quire_testing::database_url`).

mod record_store;
mod work_queue;

/// Emits, for every case `f`, a `#[tokio::test] fn f` in `mod postgres` and in `mod sqlite`
/// that builds the backend with `$postgres` / `$sqlite` (each an async block, evaluated in
/// the suite module's scope, yielding the value to test and a guard kept alive until the
/// case ends) and runs `super::f(value)`.
macro_rules! contract_suite {
    (
        postgres: $postgres:expr,
        sqlite: $sqlite:expr,
        cases: [$($case:ident),+ $(,)?] $(,)?
    ) => {
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (subject, _guard) = $postgres.await;
                    super::$case(subject).await.expect("the case returned an error");
                }
            )+
        }

        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (subject, _guard) = $sqlite.await;
                    super::$case(subject).await.expect("the case returned an error");
                }
            )+
        }
    };
}

pub(crate) use contract_suite;
