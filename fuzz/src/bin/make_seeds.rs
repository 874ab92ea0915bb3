//! Writes the fuzz targets' seed corpora: `make_seeds OUT_DIR` makes `OUT_DIR/<target>/`.

// Instrumented code calls libFuzzer's coverage callbacks: link its runtime (not its main).
use libfuzzer_sys as _;

fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: make_seeds OUT_DIR");
        std::process::exit(2);
    };
    match mnc_fuzz::seeds::write_all(std::path::Path::new(&out)) {
        Ok(n) => println!("make_seeds: {n} seed files in {}", out.to_string_lossy()),
        Err(e) => {
            eprintln!("make_seeds: {e}");
            std::process::exit(1);
        }
    }
}
