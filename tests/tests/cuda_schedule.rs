//! GPU tiles chosen by the scheduling pass: shown in the IR dump on CUDA targets (and only
//! there), and the ones the CUDA code generator actually uses. No GPU is needed.

mod cuda_util;

use cuda_util::*;
use mnc_ir::schedule::GpuTile;
use mnc_ir::{Graph, Op};
use mnc_passes::{optimize, samples, PipelineOptions, TargetFacts};
use mnc_runtime::cuda::codegen::{self, tiles, CudaArch, CudaError, CudaOptions};

fn scheduled(g: &Graph, target: TargetFacts) -> (Graph, String) {
    let mut h = g.clone();
    let opts = PipelineOptions {
        target,
        verify: true,
        ..Default::default()
    };
    let report = optimize(&mut h, &opts).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    let dump = mnc_passes::dump(&h, &report).unwrap();
    (h, dump)
}

/// (pointwise convs, convs whose schedule carries a GPU tile).
fn count_tiles(g: &Graph) -> (usize, usize) {
    let mut pw = 0;
    let mut tiled = 0;
    for id in g.node_ids() {
        if let Op::Conv(c) = &g.node(id).op {
            let s = c.schedule.as_ref().expect("every conv is scheduled");
            pw += (s.class == mnc_ir::schedule::ConvClass::Pointwise) as usize;
            tiled += s.gpu.is_some() as usize;
        }
    }
    (pw, tiled)
}

fn set_gpu_tiles(g: &mut Graph, tile: Option<GpuTile>) -> usize {
    let mut n = 0;
    for id in g.node_ids() {
        if let Op::Conv(c) = &mut g.node_mut(id).op {
            if let Some(s) = c.schedule.as_mut().filter(|s| s.gpu.is_some()) {
                s.gpu = tile;
                n += 1;
            }
        }
    }
    n
}

#[test]
fn ir_dump_shows_gpu_tiles_on_cuda_targets_only() {
    let g = samples::mobilenet_v2_block(7).unwrap();
    let (cpu, cpu_dump) = scheduled(&g, mnc_targets::Target::X86_64Avx2.pass_facts());
    assert!(!cpu_dump.contains("gpu["), "{cpu_dump}");
    assert_eq!(count_tiles(&cpu).1, 0);
    for (facts, arch) in [
        (TargetFacts::cuda_sm80(), CudaArch::Sm80),
        (TargetFacts::cuda_sm90(), CudaArch::Sm90),
    ] {
        let (h, dump) = scheduled(&g, facts);
        let (pw, tiled) = count_tiles(&h);
        assert!(pw >= 2, "the block has an expansion and a projection 1x1");
        assert_eq!(
            tiled, pw,
            "every pointwise conv and nothing else gets a tile"
        );
        assert_eq!(dump.matches("gpu[block ").count(), pw, "{dump}");
        assert!(
            dump.contains(&format!("target: {}", arch.target_name())),
            "{dump}"
        );
        // A small block: the smallest candidate, printed with its warp tile.
        assert!(
            dump.contains("gpu[block 32x32x16 warp 4x32 thread 2x2]"),
            "{dump}"
        );
    }
}

#[test]
fn codegen_uses_the_scheduled_tile() {
    let g = samples::mobilenet_v2_block(8).unwrap();
    let (mut h, _) = scheduled(&g, TargetFacts::cuda_sm90());
    let opts = CudaOptions::default();
    let with_schedule = codegen::compile(&h, CudaArch::Sm90, &opts).unwrap();
    // Another supported tile on every pointwise conv changes the PTX...
    let n = set_gpu_tiles(&mut h, Some(tiles::GEMM_TILES[0]));
    assert!(n >= 2);
    let forced = codegen::compile(&h, CudaArch::Sm90, &opts).unwrap();
    assert_ne!(forced.ptx, with_schedule.ptx);
    // ...a tile the kernel does not support is refused, naming the node...
    let bad = GpuTile {
        bm: 48,
        bn: 32,
        bk: 16,
        tm: 3,
        tn: 2,
    };
    set_gpu_tiles(&mut h, Some(bad));
    match codegen::compile(&h, CudaArch::Sm90, &opts) {
        Err(e @ CudaError::Unsupported { .. }) => {
            assert!(e.to_string().contains("48x32x16"), "{e}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.ptx.len())),
    }
    // ...and without tiles the code generator falls back to the same choice.
    set_gpu_tiles(&mut h, None);
    let fallback = codegen::compile(&h, CudaArch::Sm90, &opts).unwrap();
    assert_eq!(fallback.ptx, with_schedule.ptx);
}

/// Same tiles, same PTX: every fixture and zoo model scheduled for a CUDA target compiles to
/// exactly the PTX of the same graph with its GPU tiles removed (the code generator's own
/// choice), on both architectures.
#[test]
fn scheduled_tiles_match_the_code_generators_choice() {
    let mut models = fixture_models();
    models.extend(zoo_models(64, 2));
    let mut tiled_total = 0;
    for (name, g) in models {
        for arch in CudaArch::ALL {
            let (mut h, _) = scheduled(&g, arch.target_facts());
            let opts = CudaOptions::default();
            let p = codegen::compile(&h, arch, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            tiled_total += set_gpu_tiles(&mut h, None);
            let q = codegen::compile(&h, arch, &opts).unwrap();
            assert_eq!(p.ptx, q.ptx, "{name} on {arch}");
        }
    }
    assert!(tiled_total > 0);
}
