//! `controller`: the Kubernetes operator that reconciles `ReportRequest` resources.
//!
//! The operator is being built in its own issue; until it lands this binary only says so,
//! and Quire dispatches work with its built-in dispatcher (`QUIRE_ORCHESTRATOR=builtin`).

fn main() -> std::process::ExitCode {
    eprintln!(
        "controller: the Kubernetes operator is not part of this build yet; \
         run api-server and worker (or `quire dev`), which dispatch work without Kubernetes"
    );
    std::process::ExitCode::from(2)
}
