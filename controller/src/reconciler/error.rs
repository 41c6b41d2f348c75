//! Why a reconciliation failed, and the `error` label each failure counts under in
//! `quire_controller_reconcile_failures_total`.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Quire(#[from] quire_core::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the ReportRequest has no namespace")]
    MissingNamespace,
    #[error("serialising the status: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// The `error` label of `quire_controller_reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kubernetes",
            Self::Quire(quire_core::Error::Queue { .. }) => "queue",
            Self::Quire(quire_core::Error::Storage { .. }) => "storage",
            Self::Quire(_) => "database",
            Self::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Self::MissingNamespace | Self::Serialize(_) => "invalid_object",
        }
    }
}
