//! The README's walk-through runs as written: its shell block (between the
//! `walkthrough:start` and `walkthrough:end` markers) is run by `sh -e` in
//! an empty folder, with the `deferred-audit` this test builds first on the
//! `PATH`. The one line not run is `cargo install --path audit-cli`, whose
//! only effect is to put that same binary on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_deferred-audit");

/// The walk-through's commands, one per line, comments kept.
fn walkthrough() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md is readable");
    let start = text
        .find("<!-- walkthrough:start -->")
        .expect("README.md marks the walk-through's start");
    let end = text
        .find("<!-- walkthrough:end -->")
        .expect("README.md marks the walk-through's end");
    let block = &text[start..end];
    let body = block
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the walk-through is one ```sh block");
    body.lines().map(str::to_owned).collect()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let lines = walkthrough();
    let (install, script): (Vec<String>, Vec<String>) = lines
        .into_iter()
        .partition(|line| line.starts_with("cargo install --path audit-cli"));
    assert_eq!(install.len(), 1, "the walk-through installs the tool first");
    assert!(
        script
            .iter()
            .any(|line| line.starts_with("deferred-audit verify-proof")),
        "the walk-through ends with a proof checked offline"
    );
    let dir = tempfile::tempdir().unwrap();
    let bin_dir: PathBuf = Path::new(BIN).parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(script.join("\n"))
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walk-through failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // What each step promises, in its output and its files.
    assert!(dir.path().join("keys/audit-key.pem").exists());
    assert!(
        stdout.contains("20000"),
        "the demo reports its 20,000 events:\n{stdout}"
    );
    assert!(stdout.contains("OK"), "verify says OK:\n{stdout}");
    let proof = std::fs::read_to_string(dir.path().join("r42.tlog-proof")).unwrap();
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\n"), "{proof}");
    assert!(
        proof.contains("index 41\n"),
        "record 42 is leaf 41:\n{proof}"
    );
}
