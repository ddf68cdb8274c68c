//! Repository hygiene that reviewers should not have to check by eye.

use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut rs = Vec::new();
    files(&Path::new(ROOT).join("crates"), "rs", &mut rs);
    assert!(rs.len() > 20, "found the sources");
    let missing: Vec<String> = rs
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "start these files with a `//!` line saying what they are:\n{}",
        missing.join("\n")
    );
}

#[test]
fn served_wsdls_are_the_reference_captures() {
    let reference = Path::new(ROOT).join("../shared/reference/wsdl-oscar19");
    let served = Path::new(ROOT).join("crates/emr-server/wsdl");
    let mut ours = Vec::new();
    files(&served, "wsdl", &mut ours);
    assert!(!ours.is_empty());
    for path in ours {
        let name = path.file_name().expect("a file name");
        let original = std::fs::read_to_string(reference.join(name)).unwrap_or_else(|e| {
            panic!(
                "read the reference {} (shared/ must sit beside the repository): {e}",
                name.to_string_lossy()
            )
        });
        assert_eq!(
            std::fs::read_to_string(&path).expect("read our copy"),
            original,
            "{} differs from the WSDL OSCAR 19 served; the contract is the reference",
            path.display()
        );
    }
}
