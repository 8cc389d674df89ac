//! Shared by the fault tests: a small tmpfs for real disk-full errors.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a few pages mounted on a temporary directory, unmounted on
/// drop. Needs root (or CAP_SYS_ADMIN); the tests run as root here.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (a multiple of 4 KiB).
    pub fn mount(size: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|error| panic!("this test needs `mount` for a small tmpfs: {error}"));
        assert!(
            output.status.success(),
            "this test needs to mount a small tmpfs (run it as root or with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system until `ENOSPC`; returns the filler file.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let chunk = [0x5au8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(28), "filling the tmpfs: {error}");
                    break;
                }
            }
        }
        // Fill the last partial page too, byte by byte.
        while file.write(&[0x5a]).is_ok_and(|written| written == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
