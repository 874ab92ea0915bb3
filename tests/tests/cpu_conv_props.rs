//! Property tests of the CPU backend's convolutions against `mnc_ir::eval::eval_op` on random
//! ragged shapes: channels 1-67, spatial 1-37, stride 1 and 2, kernels 1/3/5/7, ungrouped,
//! depthwise (with channel multipliers) and in between, every fused activation, bias,
//! residual add, batch 1-3, dilation 1-2, asymmetric pads; on every JIT target the host runs,
//! with Cranelift's verifier on. Tolerance per element: `max|y - y_ref| <= 1e-4 * max|y_ref|`.
//! Case counts are bounded (and the work per case capped) to keep the suite short on 2 cores.

mod cpu_common;

use cpu_common::*;
use mnc_ir::{Activation, Conv, Epilogue, Op};
use mnc_runtime::cpu::CpuOptions;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    ci: usize,
    co: usize,
    group: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    dil: usize,
    pads: [usize; 4],
    bias: bool,
    residual: bool,
    act: Option<Activation>,
    seed: u64,
}

fn act_strategy() -> impl Strategy<Value = Option<Activation>> {
    prop_oneof![
        Just(None),
        Just(Some(Activation::Relu)),
        Just(Some(Activation::Clip { min: 0.0, max: 6.0 })),
        Just(Some(Activation::Clip {
            min: -0.5,
            max: 0.25
        })),
        Just(Some(Activation::Sigmoid)),
        Just(Some(Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5
        })),
        Just(Some(Activation::HardSwish)),
        Just(Some(Activation::Silu)),
    ]
}

/// (ci, co, group): ungrouped, depthwise (multiplier 1 or 2) or grouped in between.
fn channels() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        (1usize..=67, 1usize..=67).prop_map(|(ci, co)| (ci, co, 1)),
        (1usize..=67).prop_map(|c| (c, c, c)),
        (1usize..=33).prop_map(|c| (c, 2 * c, c)),
        (2usize..=8, 2usize..=8, 1usize..=8).prop_map(|(g, cig, cog)| (g * cig, g * cog, g)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..=3, channels(), 1usize..=37, 1usize..=37),
        (
            prop::sample::select(vec![1usize, 3, 5, 7]),
            1usize..=2,
            prop::sample::select(vec![1usize, 1, 1, 2]),
        ),
        (
            prop::array::uniform4(0usize..=3),
            any::<bool>(),
            any::<bool>(),
            act_strategy(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((n, (ci, co, group), h, w), (k, stride, dil), (pads, bias, residual, act, seed))| {
                Case {
                    n,
                    ci,
                    co,
                    group,
                    h,
                    w,
                    k,
                    stride,
                    dil,
                    pads: pads.map(|p| p.min(k - 1)),
                    bias,
                    residual,
                    act,
                    seed,
                }
            },
        )
}

fn out_len(inp: usize, pb: usize, pe: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let padded = inp + pb + pe;
    (padded >= span).then(|| (padded - span) / s + 1)
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let oh = out_len(c.h, c.pads[0], c.pads[2], c.k, c.stride, c.dil);
    let ow = out_len(c.w, c.pads[1], c.pads[3], c.k, c.stride, c.dil);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(TestCaseError::reject("kernel larger than the padded input"));
    };
    // Cap the reference's work so that the debug-profile oracle stays fast.
    let macs = c.n * c.co * oh * ow * (c.ci / c.group) * c.k * c.k;
    prop_assume!(macs <= 6_000_000);
    // A stride past the padded input places one window either way; the IR wants it written
    // as the padded extent (what the ONNX importer does).
    let padded = [c.h + c.pads[0] + c.pads[2], c.w + c.pads[1] + c.pads[3]];
    let conv = Conv {
        kernel: [c.k, c.k],
        strides: padded.map(|p| c.stride.min(p)),
        dilations: [c.dil, c.dil],
        pads: c.pads,
        group: c.group,
        has_bias: c.bias,
        epilogue: Epilogue {
            residual: c.residual,
            act: c.act,
        },
        schedule: None,
    };
    let mut ins = vec![
        (rand_tensor(&[c.n, c.ci, c.h, c.w], c.seed), false),
        (
            rand_tensor(&[c.co, c.ci / c.group, c.k, c.k], c.seed ^ 1),
            true,
        ),
    ];
    if c.bias {
        ins.push((rand_tensor(&[c.co], c.seed ^ 2), true));
    }
    if c.residual {
        ins.push((rand_tensor(&[c.n, c.co, oh, ow], c.seed ^ 3), false));
    }
    // 1, 2 or 3 threads: the kernels split the same work differently.
    let opts = CpuOptions {
        threads: 1 + (c.seed % 3) as usize,
        ..verified()
    };
    let fb = check_op_all_targets_with(&Op::Conv(conv), &ins, 1e-4, &opts)
        .map_err(TestCaseError::fail)?;
    prop_assert_eq!(fb, 0, "a conv fell back to the reference kernel");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_global_rejects: 4096, ..ProptestConfig::default() })]

    #[test]
    fn ragged_convs_match_reference(c in case()) {
        run_case(&c)?;
    }
}

/// The corners of the ranges, deterministic: 1x1 spatial, 37x37, 67 channels, 7x7 kernels.
#[test]
fn extreme_corners() {
    let mut cases = Vec::new();
    for (ci, co, group) in [(1, 1, 1), (67, 67, 67), (67, 5, 1), (3, 67, 1), (64, 64, 8)] {
        for (h, w) in [(1, 1), (37, 37), (1, 37)] {
            for (k, stride) in [(1, 2), (3, 2), (7, 1)] {
                let pad = k / 2;
                cases.push(Case {
                    n: 1,
                    ci,
                    co,
                    group,
                    h,
                    w,
                    k,
                    stride,
                    dil: 1,
                    pads: [pad; 4],
                    bias: true,
                    residual: true,
                    act: Some(Activation::Silu),
                    seed: (ci * 1000 + h * 10 + k) as u64,
                });
            }
        }
    }
    for c in &cases {
        match run_case(c) {
            Ok(()) | Err(TestCaseError::Reject(_)) => {}
            Err(e) => panic!("{c:?}: {e}"),
        }
    }
}
