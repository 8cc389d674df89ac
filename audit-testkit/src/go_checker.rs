//! An implementation of FORMAT.md section 8 that is not ours, for tests:
//! Go's reference packages `golang.org/x/mod/sumdb/note` and `sumdb/tlog`,
//! driven by the program `go/checker.go` of this crate (see its header for
//! the files it reads from a folder and what it checks). It runs in GOPATH
//! mode, offline, against the Debian packages `golang-go` and
//! `golang-golang-x-mod-dev` that `scripts/install-go.sh` installs; a
//! missing toolchain panics with what to install, never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the Debian package puts the Go sources of golang.org/x/mod.
pub const GOPATH: &str = "/usr/share/gocode";

/// What to install when the toolchain or the sources are missing.
pub const INSTALL: &str = "install them with scripts/install-go.sh \
     (apt-get install -y --no-install-recommends golang-go golang-golang-x-mod-dev)";

/// The `go` command, after checking that x/mod's sources are installed.
pub fn go() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("go"))
            .find(|path| path.is_file())
    });
    let go = found.unwrap_or_else(|| {
        panic!("the Go toolchain (`go`) is not on PATH; this test needs it: {INSTALL}")
    });
    let sources = Path::new(GOPATH).join("src/golang.org/x/mod/sumdb/tlog");
    assert!(
        sources.is_dir(),
        "Go's golang.org/x/mod sources are missing at {}; this test needs them: {INSTALL}",
        sources.display()
    );
    go
}

/// Runs the checker over the artefacts in `artefacts`, with its build
/// cache in `cache`; returns its output (stdout says what it checked).
pub fn check(artefacts: &Path, cache: &Path) -> Output {
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/checker.go");
    Command::new(go())
        .arg("run")
        .arg(&checker)
        .arg(artefacts)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", cache)
        .env_remove("GOFLAGS")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|error| panic!("running the Go checker: {error}"))
}
