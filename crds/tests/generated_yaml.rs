//! The CRDs checked in under `crds/yaml/` are what the Rust types generate.
//! Regenerate them with `WEIR_BLESS=1 cargo test -p weir-crds --test generated_yaml`.

use std::{fs, path::Path};

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut expected_files = Vec::new();
    for crd in weir_crds::crds() {
        let name = weir_crds::crd_file_name(&crd);
        let generated = weir_crds::crd_yaml(&crd).unwrap();
        let path = dir.join(&name);
        if bless {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, &generated).unwrap();
        }
        let checked_in = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "crds/yaml/{name} is stale; run: WEIR_BLESS=1 cargo test -p weir-crds --test generated_yaml"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/yaml/ holds a file no CRD generates"
    );
}
