//! The CRD the chart installs is the CRD the code defines.

use std::process::Command;

#[test]
fn the_committed_crd_matches_the_code() {
    let generated = Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .expect("run crdgen");
    assert!(generated.status.success(), "crdgen failed: {:?}", generated);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/quire/crds/reportrequests.quire.dev.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("the chart's CRD file");
    assert!(
        committed == String::from_utf8_lossy(&generated.stdout),
        "charts/quire/crds/reportrequests.quire.dev.yaml is out of date; regenerate it with\n  \
         cargo run -q -p quire-controller --bin crdgen > charts/quire/crds/reportrequests.quire.dev.yaml"
    );
}
