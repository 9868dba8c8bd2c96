//! Replays every committed corpus file (seeds, and inputs that once failed)
//! through its target, without libFuzzer: a regression test of the
//! parsers, run with the other tests.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in sluice_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a corpus entry").path();
            let data = std::fs::read(&path).expect("a corpus file");
            let replay = std::panic::catch_unwind(|| target(&data));
            assert!(replay.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{name} has no corpus in {}", dir.display());
    }
}

/// The libFuzzer binaries are built with the tests (cargo builds a
/// package's binaries for its integration tests), and each one runs its
/// corpus.
#[test]
fn every_fuzz_binary_runs_its_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let binaries = [
        ("manifest", env!("CARGO_BIN_EXE_manifest")),
        ("deploy_body", env!("CARGO_BIN_EXE_deploy_body")),
        ("jwt", env!("CARGO_BIN_EXE_jwt")),
        ("json_body", env!("CARGO_BIN_EXE_json_body")),
        ("range", env!("CARGO_BIN_EXE_range")),
        ("guest_response", env!("CARGO_BIN_EXE_guest_response")),
    ];
    assert_eq!(binaries.len(), sluice_fuzz::TARGETS.len());
    for (name, exe) in binaries {
        let out = std::process::Command::new(exe)
            .arg("-runs=0")
            .arg(root.join(name))
            .output()
            .expect("the fuzz binary runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
