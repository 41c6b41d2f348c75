//! `crdgen`: prints the `ReportRequest` CustomResourceDefinition as YAML.
//!
//! The chart ships its output (`charts/quire/crds/reportrequests.quire.dev.yaml`); a test
//! fails when the two drift. Regenerate with:
//! `cargo run -q -p quire-controller --bin crdgen > charts/quire/crds/reportrequests.quire.dev.yaml`

use kube::CustomResourceExt;

fn main() {
    print!("{}", crd_yaml());
}

fn crd_yaml() -> String {
    serde_yaml_ng::to_string(&quire_crds::ReportRequest::crd())
        .expect("a CRD always serialises to YAML")
}
