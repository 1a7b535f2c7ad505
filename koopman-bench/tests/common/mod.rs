//! Helpers of the command-line tests: a scratch folder and the `koopman` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An empty folder for test `name` under the temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("koopman-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `koopman` binary of this package with `args`.
pub fn koopman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_koopman"))
        .args(args)
        .output()
        .expect("the koopman binary runs")
}

/// A path as a `&str` (the test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
