//! Every kernel the CUDA target generates for every committed fixture and every zoo model
//! (small resolution), exact f32 and TF32, is assembled by NVIDIA's `ptxas` for sm_80 and
//! sm_90, with no error.
//! No GPU is needed. ptxas comes from `scripts/install-ptxas.sh` (folder `.ptxas/`); when it
//! is missing the test prints a SKIPPED line, or panics with `MNC_REQUIRE_PTXAS=1` (CI).

mod cuda_util;

use cuda_util::*;
use mnc_runtime::cuda::{codegen, CudaArch, CudaOptions};
use std::path::Path;
use std::process::Command;

/// Merges many PTX modules into one, keeping each distinct kernel once (kernels identical
/// up to their name are assembled once), so that one ptxas invocation per arch does it all.
/// Returns the module text and the number of distinct kernels.
fn merge(arch: CudaArch, modules: &[(String, String)]) -> (String, usize) {
    let mut out = format!(
        ".version {}\n.target {}\n.address_size 64\n",
        codegen::PTX_VERSION,
        arch.sm()
    );
    let mut seen = std::collections::HashSet::new();
    for (name, ptx) in modules {
        let body = ptx
            .split_once(".address_size 64\n")
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("{name}: PTX without header"));
        // every kernel (its shared arrays, then its .entry) is one blank-line separated chunk
        for chunk in body.split("\n\n").filter(|c| c.contains(".entry")) {
            let kname = chunk
                .split(".visible .entry ")
                .nth(1)
                .and_then(|r| r.split('(').next())
                .unwrap_or_else(|| panic!("{name}: kernel without a name"));
            let normalized = chunk.replace(kname, "@KERNEL@");
            if seen.insert(normalized.clone()) {
                out.push('\n');
                out.push_str(&normalized.replace("@KERNEL@", &format!("u{}", seen.len())));
                out.push('\n');
            }
        }
    }
    (out, seen.len())
}

fn assemble(ptxas: &Path, arch: CudaArch, file: &Path) {
    let out = Command::new(ptxas)
        .arg(format!("-arch={}", arch.sm()))
        .arg("-o")
        .arg(file.with_extension(format!("{}.cubin", arch.sm())))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ptxas -arch={} failed on {}:\n{}",
        arch.sm(),
        file.display(),
        stderr.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !stderr.contains("error"),
        "ptxas reported errors:\n{stderr}"
    );
}

#[test]
fn every_kernel_assembles_with_ptxas() {
    let Some(ptxas) = ptxas() else {
        if std::env::var("MNC_REQUIRE_PTXAS").as_deref() == Ok("1") {
            panic!("MNC_REQUIRE_PTXAS=1 but no ptxas under .ptxas/ (run scripts/install-ptxas.sh)");
        }
        eprintln!("SKIPPED every_kernel_assembles_with_ptxas: no ptxas under .ptxas/ (run scripts/install-ptxas.sh)");
        return;
    };
    let mut graphs = Vec::new();
    for (name, g) in fixture_models() {
        graphs.push((format!("{name}-raw"), g.clone()));
        graphs.push((format!("{name}-opt"), optimized(&g)));
    }
    for (name, g) in zoo_models(64, 2) {
        graphs.push((format!("{name}-opt"), optimized(&g)));
    }
    // LRN (no committed fixture or zoo model has it): every form of its power.
    for (size, beta) in [(5, 0.75f32), (4, 0.5), (1, 1.0), (3, 0.6)] {
        let mut g = mnc_ir::Graph::new("lrn");
        let x = g.add_input("x", mnc_ir::TensorType::f32(vec![2, 6, 3, 3]));
        let l = mnc_ir::Lrn {
            size,
            alpha: 1e-4,
            beta,
            bias: 1.0,
        };
        let y = g
            .add_node_inferred("lrn", mnc_ir::Op::Lrn(l), &[x])
            .unwrap();
        g.add_output("y", y);
        graphs.push((format!("lrn-{size}-{beta}-raw"), g));
    }
    let dir = std::env::temp_dir().join(format!("mnc-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut handles = Vec::new();
    let mut total = 0;
    let mut unique = 0;
    for arch in CudaArch::ALL {
        let mut modules = Vec::new();
        for (name, g) in &graphs {
            // exact f32 everywhere; the TF32 tensor-core GEMMs on the optimized graphs too
            let tf32_too = name.ends_with("-opt");
            for allow_tf32 in [false, true] {
                if allow_tf32 && !tf32_too {
                    continue;
                }
                let p = codegen::compile(g, arch, &CudaOptions { allow_tf32 })
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(p.ptx.contains(&format!(".target {}", arch.sm())));
                total += p.kernels.len();
                let label = if allow_tf32 {
                    format!("{name}-tf32")
                } else {
                    name.clone()
                };
                modules.push((label, p.ptx));
            }
        }
        let file = dir.join(format!("all_{}.ptx", arch.sm()));
        let (text, distinct) = merge(arch, &modules);
        assert!(distinct > 0);
        unique += distinct;
        std::fs::write(&file, text).unwrap();
        let ptxas = ptxas.clone();
        handles.push(std::thread::spawn(move || assemble(&ptxas, arch, &file)));
    }
    for h in handles {
        h.join().expect("ptxas thread");
    }
    eprintln!(
        "ptxas: assembled {total} kernels ({unique} distinct) of {} graphs for sm_80 and sm_90",
        graphs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
