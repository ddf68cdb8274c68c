//! `oscarbox check-config`: what an operator reads, snapshotted; exit 64 on any error.

use std::process::Command;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(OSCARBOX)
        .arg("check-config")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("run oscarbox");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_configs_are_valid_and_print_their_effective_values() {
    for file in ["config/dev.toml", "config/box.toml"] {
        let (code, stdout, stderr) = check(&[file]);
        assert_eq!(code, Some(0), "{file}: {stderr}");
        assert!(stdout.starts_with(&format!("# {file}: valid.")), "{stdout}");
        insta::assert_snapshot!(file.replace(['/', '.'], "_"), stdout);
    }
    let (code, stdout, _) = check(&[]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("# <embedded config/dev.toml>: valid."));
}

#[test]
fn broken_configs_name_file_line_key_and_fix() {
    for fixture in ["unknown-key", "bad-port", "faults-on-appliance"] {
        let path = format!("crates/oscarbox/tests/fixtures/{fixture}.toml");
        let (code, stdout, stderr) = check(&[&path]);
        assert_eq!(code, Some(64), "{fixture}");
        assert!(stdout.is_empty(), "{fixture}: nothing on stdout");
        insta::assert_snapshot!(fixture, stderr);
    }
    let (code, _, stderr) = check(&["config/missing.toml"]);
    assert_eq!(code, Some(64));
    insta::assert_snapshot!("missing-file", stderr);
}

#[test]
fn bad_arguments_exit_64() {
    let out = Command::new(OSCARBOX)
        .arg("check-confg")
        .output()
        .expect("run oscarbox");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'check-confg'"));
}
