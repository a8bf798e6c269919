//! Finding the `cairn-store` executable under test.
//!
//! `CARGO_BIN_EXE_cairn-store` exists only inside the cairn-store package, so this suite looks
//! for the binary next to its own test executable: `target/<profile>/deps/<test>` →
//! `target/<profile>/cairn-store`. A plain `cargo nextest run` (every default member) always
//! builds it first, because cairn-store's own integration tests need it. When the binary is
//! missing, the suite runs `cargo build -p cairn-store --bin cairn-store` for the same profile
//! and target dir. It never rebuilds an existing binary: during a whole-workspace run other
//! suites are executing that very file. After changing cairn-store, run this package alone
//! with `cargo build -p cairn-store && cargo nextest run -p cairn-fault` (a binary older than
//! the test executable is reported). `CAIRN_STORE_BIN` overrides all of this.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The path of an up-to-date `cairn-store` binary; panics with instructions if none can be had.
pub fn cairn_store() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate).clone()
}

fn locate() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_STORE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<exe>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("cairn-store");
    match (modified(&bin), modified(&exe)) {
        (None, _) => build(&profile_dir),
        (Some(b), Some(e)) if b < e => eprintln!(
            "cairn-fault: note: {} is older than this test executable; \
             run `cargo build -p cairn-store` if cairn-store changed",
            bin.display()
        ),
        _ => {}
    }
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p cairn-store` (or set CAIRN_STORE_BIN)",
        bin.display()
    );
    bin
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn build(profile_dir: &Path) {
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "cairn-store", "--bin", "cairn-store"])
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("cairn-fault: building cairn-store: {cmd:?}");
    let status = cmd.status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "`cargo build -p cairn-store` failed ({status:?}); build it by hand or set CAIRN_STORE_BIN"
    );
}
