//! Hostile conv/pool geometry, at the IR and at the CPU backend: shape inference refuses
//! strides past the padded input, pads that reach the window, padded extents past 2^32 and
//! absurd pooling windows (naming the node); the backend computes every scratch size with
//! checked arithmetic and refuses oversize ones, caps the run arena, does not unroll huge
//! windows, and never truncates a large load offset into a 32-bit immediate.

mod cpu_common;

use cpu_common::*;
use mnc_ir::{Conv, Graph, IrError, Op, Pool, PoolKind, Tensor, TensorType};
use mnc_runtime::cpu::{CompiledModel, CpuOptions, Target};
use mnc_targets::cpu::lower::MAX_UNROLLED_TAPS;
use mnc_targets::cpu::{compile, AlignedBytes, CpuError, MAX_ARENA_BYTES};

/// Every JIT target (compiling does not need the host to run it).
fn jit_targets() -> Vec<Target> {
    Target::ALL.iter().copied().filter(|t| t.is_jit()).collect()
}

/// Compile-only options (no verifier: the point is what the planner accepts).
fn plain() -> CpuOptions {
    CpuOptions {
        threads: 4,
        ..CpuOptions::default()
    }
}

/// `x` of `shape` -> `op` (with constant `w` of `wshape` as the second input, if given).
fn one_op(shape: &[usize], op: Op, wshape: Option<&[usize]>) -> Result<Graph, IrError> {
    let mut g = Graph::new("hostile");
    let x = g.add_input("x", TensorType::f32(shape.to_vec()));
    let mut ins = vec![x];
    if let Some(ws) = wshape {
        let w = Tensor::from_f32(ws.to_vec(), vec![0.5; ws.iter().product()])?;
        ins.push(g.add_constant("w", w));
    }
    let y = g.add_node_inferred("victim", op, &ins)?;
    g.add_output("y", y);
    Ok(g)
}

fn refused(r: Result<Graph, IrError>, needle: &str) {
    let Err(e) = r else {
        panic!("the graph must be refused")
    };
    let e = e.to_string();
    assert!(
        e.contains("node 'victim'") && e.contains(needle),
        "error should name the node and say '{needle}': {e}"
    );
}

/// The issue's case: a depthwise 1x1 conv on a 1x1 input with strides [1, 2^62].
fn issue_depthwise() -> Conv {
    Conv {
        strides: [1, 1 << 62],
        group: 8,
        ..Default::default()
    }
}

#[test]
fn shape_inference_refuses_hostile_conv_geometry() {
    let dw = |c: Conv| one_op(&[1, 8, 1, 1], Op::Conv(c), Some(&[8, 1, 1, 1]));
    refused(dw(issue_depthwise()), "stride");
    // Stride 2 on a 1x1 map: one window either way, but the IR wants the canonical stride
    // (the importer rewrites it, see `hostile_inputs`).
    refused(
        dw(Conv {
            strides: [2, 1],
            group: 8,
            ..Default::default()
        }),
        "stride 2 is larger than the padded input 1",
    );
    // A pad that reaches the window: a 1x1 conv with pad 1; a 3x3 conv with pad 3.
    refused(
        dw(Conv {
            pads: [0, 1, 0, 0],
            group: 8,
            ..Default::default()
        }),
        "smaller than the window",
    );
    refused(
        one_op(
            &[1, 1, 8, 8],
            Op::Conv(Conv {
                kernel: [3, 3],
                pads: [0, 0, 3, 0],
                ..Default::default()
            }),
            Some(&[1, 1, 3, 3]),
        ),
        "smaller than the window",
    );
    // A dilated window lets pads grow, but never past 2^32 in all.
    let big = 1usize << 33;
    refused(
        one_op(
            &[1, 1, 1, 16],
            Op::Conv(Conv {
                kernel: [1, 2],
                dilations: [1, big],
                pads: [0, big - 1, 0, big - 1],
                strides: [1, big],
                ..Default::default()
            }),
            Some(&[1, 1, 1, 2]),
        ),
        "exceeds the limit of 2^32",
    );
    // Ordinary geometry still passes: stride 2 3x3 pad 1, dilation 2 pad 2.
    for c in [
        Conv {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1; 4],
            ..Default::default()
        },
        Conv {
            kernel: [3, 3],
            dilations: [2, 2],
            pads: [2; 4],
            ..Default::default()
        },
    ] {
        one_op(&[1, 1, 9, 9], Op::Conv(c), Some(&[1, 1, 3, 3])).unwrap();
    }
}

#[test]
fn shape_inference_refuses_hostile_pools() {
    let pool = |kernel: [usize; 2], strides: [usize; 2]| {
        Op::Pool(Pool {
            kernel,
            strides,
            ..Default::default()
        })
    };
    // The issue's ~200-byte model: MaxPool 4096x4096 (16.7M taps unrolled by the old code).
    refused(
        one_op(&[1, 1, 4096, 4096], pool([4096, 4096], [1, 1]), None),
        "more than 256x256 taps",
    );
    // 256x256 taps per window over 2^31 outputs: 2^47 taps in all.
    refused(
        one_op(&[1, 1, 1 << 15, 1 << 16], pool([256, 256], [1, 1]), None),
        "more than 2^40 window taps",
    );
    refused(
        one_op(&[1, 1, 4, 4], pool([2, 2], [1, 5]), None),
        "stride 5 is larger than the padded input 4",
    );
    refused(
        one_op(
            &[1, 1, 4, 4],
            Op::Pool(Pool {
                kind: PoolKind::Avg,
                kernel: [2, 2],
                pads: [2, 0, 0, 0],
                ..Default::default()
            }),
            None,
        ),
        "smaller than the window",
    );
    one_op(&[1, 1, 300, 300], pool([256, 256], [1, 1]), None).unwrap();
}

/// Like `Graph::add_node_inferred`, but with a type chosen by the caller (what a graph
/// built without inference, e.g. by a buggy pass, could hold).
fn forged_depthwise() -> Graph {
    let mut g = Graph::new("forged");
    let x = g.add_input("x", TensorType::f32(vec![1, 8, 1, 1]));
    let w = g.add_constant(
        "w",
        Tensor::from_f32(vec![8, 1, 1, 1], vec![1.0; 8]).unwrap(),
    );
    let y = g.add_node_typed(
        "victim",
        Op::Conv(issue_depthwise()),
        &[x, w],
        TensorType::f32(vec![1, 8, 1, 1]),
    );
    g.add_output("y", y);
    g
}

#[test]
fn backend_refuses_the_wrapping_depthwise_scratch() {
    // The old backend computed the padded plane as 3 * 2^62 + 1 floats, wrapped to a few
    // bytes of scratch, and the depthwise kernel zero-filled far past the arena.
    let g = forged_depthwise();
    for t in jit_targets() {
        let e = compile(&g, t, &plain())
            .err()
            .unwrap_or_else(|| panic!("{t}: a conv with stride 2^62 must not compile"));
        assert!(e.to_string().contains("victim"), "{t}: {e}");
    }
}

#[test]
fn backend_refuses_oversize_scratch_and_arena() {
    // im2col of a 3x3 conv over 2048 channels of 512x512: 18432 x 262144 floats = 18 GiB of
    // scratch for tensors well inside the 2^31-element cap.
    let conv = Op::Conv(Conv {
        kernel: [3, 3],
        pads: [1; 4],
        ..Default::default()
    });
    let g = one_op(&[1, 2048, 512, 512], conv, Some(&[1, 2048, 3, 3])).unwrap();
    for t in jit_targets() {
        match compile(&g, t, &plain()) {
            Err(CpuError::Oversize { node, msg, .. }) => {
                assert_eq!(node, "victim");
                assert!(msg.contains("im2col"), "{msg}");
            }
            Err(e) => panic!("{t}: wrong error {e}"),
            Ok(_) => panic!("{t}: 18 GiB of scratch accepted"),
        }
    }
    // Three live activations of 6 GiB each: an 18 GiB arena.
    let n = 3usize << 29;
    let mut g = Graph::new("arena");
    let x = g.add_input("x", TensorType::f32(vec![n]));
    let relu = |g: &mut Graph, name: &str, i| {
        g.add_node_inferred(name, Op::Act(mnc_ir::Activation::Relu), &[i])
            .unwrap()
    };
    let y = relu(&mut g, "y", x);
    let w = relu(&mut g, "w", y);
    let add = Op::Binary(mnc_ir::BinaryOp::Add);
    let z = g.add_node_inferred("z", add.clone(), &[x, y]).unwrap();
    let out = g.add_node_inferred("out", add, &[z, w]).unwrap();
    g.add_output("out", out);
    for t in jit_targets() {
        match compile(&g, t, &plain()) {
            Err(e @ CpuError::ArenaTooLarge { bytes }) => {
                assert!(bytes > MAX_ARENA_BYTES, "{e}");
                assert!(e.to_string().contains("16 GiB"), "{e}");
            }
            Err(e) => panic!("{t}: wrong error {e}"),
            Ok(p) => panic!("{t}: an arena of {} bytes accepted", p.arena_bytes),
        }
    }
}

#[test]
fn aligned_bytes_report_allocation_failure() {
    // 4 EiB: no allocator can provide it; the old `zeroed` aborted the process.
    let e = AlignedBytes::zeroed(1 << 62).err().expect("cannot succeed");
    assert!(e.to_string().contains("cannot allocate"), "{e}");
    assert_eq!(AlignedBytes::zeroed(100).unwrap().bytes(), &[0u8; 100][..]);
}

#[test]
fn large_windows_are_not_unrolled_and_still_correct() {
    // 20x20 = 400 taps > MAX_UNROLLED_TAPS: the reference kernel, reported as a fallback;
    // 16x16 is still generated code.
    const { assert!(20 * 20 > MAX_UNROLLED_TAPS && 16 * 16 <= MAX_UNROLLED_TAPS) };
    let x = rand_tensor(&[1, 2, 23, 22], 7);
    let pools = [
        (PoolKind::Max, [20, 20], 1),
        (PoolKind::Avg, [20, 20], 1),
        (PoolKind::Max, [16, 16], 0),
    ];
    for (kind, kernel, want_fallbacks) in pools {
        let op = Op::Pool(Pool {
            kind,
            kernel,
            strides: [2, 3],
            pads: [1, 0, 2, 1],
            ..Default::default()
        });
        let fb = check_op_all_targets(&op, &[(x.clone(), false)], 1e-5).unwrap();
        let host = Target::host_jit_targets().len();
        assert_eq!(fb, want_fallbacks * host, "{op:?}");
    }
    // Convs: im2col (standard conv on `x86_64`; AVX2/AVX-512 take the 2-channel conv to the
    // stem kernel) and the SSE direct conv (depthwise on `x86_64`).
    for (cig, group) in [(2, 1), (1, 2)] {
        let op = Op::Conv(Conv {
            kernel: [17, 17],
            pads: [8; 4],
            group,
            ..Default::default()
        });
        let w = rand_tensor(&[2, cig, 17, 17], 9);
        let inputs = [(x.clone(), false), (w, true)];
        let fb = check_op_all_targets(&op, &inputs, 1e-4).unwrap();
        // The depthwise and stem kernels of AVX2/AVX-512 loop over taps at run time: not a
        // fallback there.
        let want = Target::host_jit_targets()
            .iter()
            .filter(|&&t| t == Target::X86_64)
            .count();
        assert_eq!(fb, want, "{op:?}");
    }
}

#[test]
fn a_huge_pool_window_compiles_in_bounded_code() {
    // 64x64 taps: the old backend unrolled 4096 taps into one function (and 65536 at the
    // IR's limit of 256x256); now it is one fallback step and no generated code.
    let op = Op::Pool(Pool {
        kernel: [64, 64],
        ..Default::default()
    });
    let g = one_op(&[1, 1, 64, 64], op, None).unwrap();
    for t in jit_targets() {
        let m = CompiledModel::compile(&g, t, &plain()).unwrap();
        let r = m.report();
        assert_eq!(r.fallbacks(), 1, "{t}");
        assert!(
            r.ops[0].strategy.contains("not unrolled"),
            "{t}: {}",
            r.ops[0].strategy
        );
        assert_eq!(r.code_bytes, 0, "{t}");
    }
}

#[test]
fn average_pool_divisors_are_per_row_and_column() {
    // The old divisor table held one float per output pixel (16.8 MB here, 8 GiB for a
    // 2^31-pixel plane, allocated at compile time from a tiny model); now a row and a
    // column factor: 16 KB.
    let op = Op::Pool(Pool {
        kind: PoolKind::Avg,
        kernel: [2, 2],
        ..Default::default()
    });
    let g = one_op(&[1, 1, 2048, 2048], op, None).unwrap();
    for t in jit_targets() {
        let m = CompiledModel::compile(&g, t, &plain()).unwrap();
        let w = m.report().weight_bytes;
        assert!(w <= 2 * 2047 * 4 + 128, "{t}: {w} bytes of divisors");
    }
}

#[test]
fn load_offsets_past_2gib_are_not_truncated() {
    // Max pooling with a 1x1 window and column stride 2^29 over a row of 3 * 2^29 + 1: the
    // four lanes of the output chunk are loaded 0, 2, 4 and 6 GiB past the row start. The
    // old code put `l * stride * 4` into the load's 32-bit offset immediate: -2^31, 0,
    // -2^31. Every address the generated code forms lies after its base, so no load or
    // store offset in the CLIF may be negative.
    let s = 1usize << 29;
    let op = Op::Pool(Pool {
        strides: [1, s],
        ..Default::default()
    });
    let g = one_op(&[1, 1, 1, 3 * s + 1], op, None).unwrap();
    assert_eq!(g.node(g.find("victim").unwrap()).ty.shape, vec![1, 1, 1, 4]);
    let opts = CpuOptions {
        keep_clif: true,
        verify: true,
        ..plain()
    };
    for t in jit_targets() {
        let m = CompiledModel::compile(&g, t, &opts).unwrap();
        let clif = m.clif_text();
        let mut mem_ops = 0;
        for line in clif.lines() {
            let rest = line.split_once(" = ").map_or(line.trim(), |(_, r)| r);
            if !(rest.starts_with("load") || rest.starts_with("store")) {
                continue;
            }
            mem_ops += 1;
            assert!(
                !rest.contains('-'),
                "{t}: negative (truncated) offset in `{}`",
                line.trim()
            );
        }
        assert!(mem_ops > 4, "{t}: no loads found in\n{clif}");
        // The lanes' offsets (2, 4 and 6 GiB) are in the code, as address computations.
        for off in ["0x8000_0000", "0x0001_0000_0000", "0x0001_8000_0000"] {
            assert!(clif.contains(off), "{t}: no offset {off} in\n{clif}");
        }
    }
}
