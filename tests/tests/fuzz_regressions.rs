//! Replays every committed fuzz input through the fuzz targets' own code
//! (`fuzz/src/harness.rs`, compiled in here): the minimized corpora `fuzz/corpus/<target>/`
//! and the inputs of past findings `fuzz/crashes/<target>/` (each also has a focused test
//! next to its fix). Each input must be handled without a panic or a hang; the fuzzers
//! themselves run from `scripts/fuzz.sh`.

#[path = "../../fuzz/src/harness.rs"]
mod harness;

fn inputs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p: &std::path::PathBuf| p.is_file());
    v.sort();
    v
}

#[test]
fn committed_fuzz_inputs_are_handled() {
    let root = mnc_tests::repo_root().join("fuzz");
    let mut total = 0;
    for (name, run) in harness::TARGETS {
        for kind in ["corpus", "crashes"] {
            for p in inputs(&root.join(kind).join(name)) {
                eprintln!("{name}: {}", p.display());
                run(&std::fs::read(&p).unwrap());
                total += 1;
            }
        }
    }
    eprintln!("fuzz_regressions: {total} inputs replayed");
    assert!(
        total > 0,
        "no committed fuzz inputs under {}",
        root.display()
    );
}
