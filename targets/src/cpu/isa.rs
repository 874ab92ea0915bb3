//! The x86-64 ISAs of the JIT backend, one [`IsaDesc`] each, selected as data.
//!
//! Everything the compiler knows about an ISA is in its table entry: the CPU features it
//! needs (run-time detection, the Cranelift ISA flags and the `#[target_feature]` lists of
//! its `std::arch` kernels all stay within them), whether generated code uses FMA, the
//! kernel set ([`kernels::Kernel`] GEMM with its register tile, matrix-vector,
//! SqueezeExcite, the optional depthwise and stem-conv ops, the peak-throughput loop) and the machine facts
//! the passes read ([`IsaDesc::target_facts`]: buffer alignment, int8 kernels). [`Target`] methods,
//! [`super::isa_for`], the kernel selectors of [`kernels`], [`super::compile`] and
//! `mnc::exec::target_facts` all read this table; none of them matches on the ISA itself.
//!
//! Adding an ISA: one new `Target` variant, one `static` here, its line in [`isa`] and
//! [`ISAS`] (the compiler refuses a `Target` variant [`isa`] does not place), see
//! `docs/CPU_BACKEND.md`, "Adding an ISA". The tests below check the entry against
//! run-time detection, Cranelift and the kernels' own constants.

use super::kernels::{self, int8::Int8Kernels, stem::StemFn, DwFn, GemvFn, Kernel, SeFn};
use crate::Target;

/// A kernel entry point with the symbol name under which the JIT resolves it.
#[derive(Clone, Copy, Debug)]
pub struct Sym<F> {
    /// Symbol name registered with the JIT.
    pub symbol: &'static str,
    /// Entry point (only called when the host runs the ISA).
    pub func: F,
}

/// The loop [`kernels::peak_gflops`] times: `func(steps)` does `steps * flops_per_step`
/// FLOPs in the ISA's vector width.
#[derive(Clone, Copy, Debug)]
pub struct PeakLoop {
    /// The loop (`unsafe`: the host must run the ISA).
    pub func: unsafe fn(usize) -> f32,
    /// FLOPs per step.
    pub flops_per_step: usize,
}

/// Machine numbers of an ISA besides the vector width ([`IsaDesc::lanes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineFacts {
    /// Architectural vector registers (the register tiles must fit them; tested).
    pub vector_registers: usize,
    /// Alignment of every activation buffer, bytes (the passes' memory plan).
    pub alignment: usize,
}

/// One x86-64 ISA of the JIT backend.
#[derive(Clone, Copy, Debug)]
pub struct IsaDesc {
    /// The target this entry describes.
    pub target: Target,
    /// Every x86 CPU feature code for the ISA may use, as `is_x86_feature_detected!` spells
    /// them: [`Target::runs_on_host`] checks them all, [`super::isa_for`] enables exactly
    /// their Cranelift flags ([`IsaDesc::cranelift_flags`]), and the kernels'
    /// `#[target_feature]` lists stay within them (tested).
    pub features: &'static [&'static str],
    /// Whether generated code fuses multiply-adds (needs `fma` in [`IsaDesc::features`]).
    pub fma: bool,
    /// f32 lanes of the kernels' vectors.
    pub lanes: usize,
    /// The GEMM micro-kernel and its `MR x NR` register tile.
    pub gemm: Kernel,
    /// The matrix-vector kernel.
    pub gemv: Sym<GemvFn>,
    /// The SqueezeExcite kernel.
    pub se: Sym<SeFn>,
    /// The depthwise op kernel; `None` where generated code runs depthwise convs.
    pub dw: Option<Sym<DwFn>>,
    /// The direct stem-conv kernel; `None` where stem convs run as im2col + GEMM.
    pub stem: Option<Sym<StemFn>>,
    /// The int8 kernel sets (quantized conv, depthwise, QuantizeLinear, DequantizeLinear),
    /// best first: [`kernels::int8::int8_kernels`] takes the first whose extra
    /// [`Int8Kernels::features`] the host has; the last needs none. A set's
    /// `#[target_feature]` lists stay within [`IsaDesc::features`] and its own (tested).
    pub int8: &'static [&'static Int8Kernels],
    /// The peak-throughput loop.
    pub peak: PeakLoop,
    /// What the passes know about a typical machine of the ISA.
    pub machine: MachineFacts,
}

impl IsaDesc {
    /// The Cranelift x86-64 settings enabling [`IsaDesc::features`], one per feature
    /// ([`cranelift_flag`]).
    pub fn cranelift_flags(&self) -> impl Iterator<Item = String> + '_ {
        self.features.iter().map(|f| cranelift_flag(f))
    }

    /// The facts the passes read for this ISA, named as the target.
    pub fn target_facts(&self) -> mnc_passes::TargetFacts {
        let m = self.machine;
        mnc_passes::TargetFacts {
            name: self.target.name().into(),
            alignment: m.alignment,
            gpu: None,
            // Every ISA has an int8 set (its last one needs no extra CPU feature); every
            // set's conv takes a fused residual sum.
            int8: !self.int8.is_empty(),
            int8_residual: !self.int8.is_empty(),
        }
    }
}

/// The Cranelift x86-64 setting enabling the CPU feature `f`: `has_` and the name without
/// dots (`sse4.1` -> `has_sse41`).
pub fn cranelift_flag(f: &str) -> String {
    format!("has_{}", f.replace('.', ""))
}

/// Features of the SSE4.2 baseline.
const SSE42: &[&str] = &["sse3", "ssse3", "sse4.1", "sse4.2", "popcnt"];
/// Features of AVX2 machines (Haswell on): the baseline, AVX, AVX2, FMA and the bit
/// instructions that come with them.
const AVX2: &[&str] = &[
    "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt",
];
/// Features of AVX-512 machines (Skylake-SP on): AVX2's and AVX-512 F/VL/DQ.
const AVX512: &[&str] = &[
    "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt",
    "avx512f", "avx512vl", "avx512dq",
];

/// Baseline x86-64: SSE4.2, 128-bit vectors, no FMA (multiply + add); depthwise convs in
/// generated 128-bit code. 16 xmm registers, 32 KiB L1d, 1 MiB L2.
pub static X86_64: IsaDesc = IsaDesc {
    target: Target::X86_64,
    features: SSE42,
    fma: false,
    lanes: 4,
    gemm: Kernel {
        symbol: "mnc_gemm_sse",
        func: kernels::sse::gemm,
        mr: kernels::sse::MR,
        nr: kernels::sse::NR,
        row_lanes: None,
        row_tile: 0,
    },
    gemv: Sym {
        symbol: "mnc_gemv_sse",
        func: kernels::sse::gemv,
    },
    se: Sym {
        symbol: "mnc_se_sse",
        func: kernels::sse::se,
    },
    dw: None,
    stem: None,
    int8: &[&kernels::int8::scalar::KERNELS],
    peak: PeakLoop {
        func: kernels::sse::fma_loop,
        flops_per_step: kernels::sse::FLOPS_PER_STEP,
    },
    machine: MachineFacts {
        vector_registers: 16,
        alignment: 64,
    },
};

/// x86-64 with AVX2 and FMA: 256-bit kernels, 128-bit generated code with FMA. 16 ymm
/// registers, 32 KiB L1d, 1 MiB L2.
pub static X86_64_AVX2: IsaDesc = IsaDesc {
    target: Target::X86_64Avx2,
    features: AVX2,
    fma: true,
    lanes: 8,
    gemm: Kernel {
        symbol: "mnc_gemm_avx2",
        func: kernels::avx2::gemm,
        mr: kernels::avx2::MR,
        nr: kernels::avx2::NR,
        row_lanes: Some(kernels::avx2::W),
        row_tile: kernels::avx2::ROW_TILE,
    },
    gemv: Sym {
        symbol: "mnc_gemv_avx2",
        func: kernels::avx2::gemv,
    },
    se: Sym {
        symbol: "mnc_se_avx2",
        func: kernels::avx2::se,
    },
    dw: Some(Sym {
        symbol: "mnc_dw_avx2",
        func: kernels::avx2::dw,
    }),
    stem: Some(Sym {
        symbol: "mnc_stem_avx2",
        func: kernels::avx2::stem,
    }),
    int8: &[&kernels::int8::avx2::KERNELS],
    peak: PeakLoop {
        func: kernels::avx2::fma_loop,
        flops_per_step: kernels::avx2::FLOPS_PER_STEP,
    },
    machine: MachineFacts {
        vector_registers: 16,
        alignment: 64,
    },
};

/// x86-64 with AVX-512F: 512-bit kernels (implies AVX2 and FMA). 32 zmm registers, 48 KiB
/// L1d, 2 MiB L2.
pub static X86_64_AVX512: IsaDesc = IsaDesc {
    target: Target::X86_64Avx512,
    features: AVX512,
    fma: true,
    lanes: 16,
    gemm: Kernel {
        symbol: "mnc_gemm_avx512",
        func: kernels::avx512::gemm,
        mr: kernels::avx512::MR,
        nr: kernels::avx512::NR,
        row_lanes: Some(kernels::avx512::W),
        row_tile: kernels::avx512::ROW_TILE,
    },
    gemv: Sym {
        symbol: "mnc_gemv_avx512",
        func: kernels::avx512::gemv,
    },
    se: Sym {
        symbol: "mnc_se_avx512",
        func: kernels::avx512::se,
    },
    dw: Some(Sym {
        symbol: "mnc_dw_avx512",
        func: kernels::avx512::dw,
    }),
    stem: Some(Sym {
        symbol: "mnc_stem_avx512",
        func: kernels::avx512::stem,
    }),
    // VNNI with VBMI (Ice Lake, Zen 4 on) or VNNI (Cascade Lake) where the host has it; the entry's features
    // (Skylake-SP) have no VNNI nor AVX512-BW, so the fallback is the AVX2 set.
    int8: &[
        &kernels::int8::vbmi::KERNELS,
        &kernels::int8::vnni::KERNELS,
        &kernels::int8::avx2::KERNELS,
    ],
    peak: PeakLoop {
        func: kernels::avx512::fma_loop,
        flops_per_step: kernels::avx512::FLOPS_PER_STEP,
    },
    machine: MachineFacts {
        vector_registers: 32,
        alignment: 64,
    },
};

/// Every JIT ISA, baseline first (each one's features extend the one before).
pub static ISAS: [&IsaDesc; 3] = [&X86_64, &X86_64_AVX2, &X86_64_AVX512];

/// The ISA description of a JIT target; `None` for the reference executor and CUDA. The
/// match is exhaustive: a new [`Target`] variant does not compile until it is placed here.
pub fn isa(t: Target) -> Option<&'static IsaDesc> {
    match t {
        Target::Reference | Target::Cuda(_) => None,
        Target::X86_64 => Some(&X86_64),
        Target::X86_64Avx2 => Some(&X86_64_AVX2),
        Target::X86_64Avx512 => Some(&X86_64_AVX512),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn the_table_is_the_jit_targets_each_placed_by_isa() {
        let table: Vec<Target> = ISAS.iter().map(|d| d.target).collect();
        assert_eq!(table, Target::JIT, "ISAS and Target::JIT disagree");
        for d in ISAS {
            assert!(std::ptr::eq(isa(d.target).unwrap(), d), "{}", d.target);
        }
        for &t in Target::ALL {
            assert_eq!(isa(t).is_some(), t.is_jit(), "{t}");
            assert_eq!(t.cpu_features(), isa(t).map_or(&[][..], |d| d.features));
        }
        let symbols: Vec<&str> = ISAS
            .iter()
            .flat_map(|d| {
                [d.gemm.symbol, d.gemv.symbol, d.se.symbol]
                    .into_iter()
                    .chain(d.dw.map(|s| s.symbol))
                    .chain(d.stem.map(|s| s.symbol))
            })
            .collect();
        let unique: HashSet<_> = symbols.iter().collect();
        assert_eq!(unique.len(), symbols.len(), "a symbol name repeats");
    }

    #[test]
    fn cranelift_accepts_every_flag() {
        for d in ISAS {
            let mut ib = cranelift_codegen::isa::lookup_by_name("x86_64").unwrap();
            for flag in d.cranelift_flags() {
                use cranelift_codegen::settings::Configurable;
                ib.enable(&flag)
                    .unwrap_or_else(|e| panic!("{}: Cranelift refuses {flag}: {e}", d.target));
            }
        }
    }

    #[test]
    fn fma_only_where_the_features_have_it() {
        for d in ISAS {
            assert_eq!(d.fma, d.features.contains(&"fma"), "{}", d.target);
        }
    }

    #[test]
    fn kernel_tiles_match_the_kernels_constants() {
        // The register tile is `MR` rows x whole vectors of the ISA's width (two, four on
        // AVX-512), and MR accumulator rows plus the row of B vectors and the A broadcast fit
        // the register file the passes are told about.
        let checked = [
            (&X86_64, kernels::sse::W, kernels::sse::MR, kernels::sse::NR),
            (
                &X86_64_AVX2,
                kernels::avx2::W,
                kernels::avx2::MR,
                kernels::avx2::NR,
            ),
            (
                &X86_64_AVX512,
                kernels::avx512::W,
                kernels::avx512::MR,
                kernels::avx512::NR,
            ),
        ];
        let targets: Vec<Target> = checked.iter().map(|c| c.0.target).collect();
        assert_eq!(
            targets,
            Target::JIT,
            "every entry's kernel module is checked here"
        );
        for (d, w, mr, nr) in checked {
            let t = d.target;
            assert_eq!((d.gemm.mr, d.gemm.nr), (mr, nr), "{t}");
            assert_eq!(
                d.lanes, w,
                "{t}: lanes differ from the kernels' vector width"
            );
            assert_eq!(d.gemm.nr % d.lanes, 0, "{t}: NR is whole vectors");
            let nv = d.gemm.nr / d.lanes;
            let live = d.gemm.mr * nv + nv + 1;
            assert!(
                live <= d.machine.vector_registers,
                "{t}: the register tile needs {live} vector registers"
            );
            assert_eq!(d.peak.flops_per_step % (2 * d.lanes), 0, "{t}");
        }
    }

    #[test]
    fn passes_facts_agree_with_the_kernel_set() {
        for d in ISAS {
            let f = d.target_facts();
            let t = d.target;
            assert_eq!(f.name, t.name());
            assert!(f.gpu.is_none());
            // Every vector load of a kernel may be aligned to a whole vector.
            assert!(
                f.alignment.is_power_of_two() && f.alignment >= 4 * d.lanes,
                "{t}"
            );
            assert_eq!(t.pass_facts(), f);
        }
        // Wider ISAs have wider vectors, and their feature lists extend the narrower ones'.
        for w in ISAS.windows(2) {
            assert!(w[0].lanes < w[1].lanes);
            let (lo, hi): (BTreeSet<_>, BTreeSet<_>) = (
                w[0].features.iter().collect(),
                w[1].features.iter().collect(),
            );
            assert!(lo.is_subset(&hi), "{} ⊄ {}", w[0].target, w[1].target);
        }
    }

    #[test]
    fn the_passes_standalone_default_is_the_avx2_entry() {
        // `mnc-passes` runs without a backend on `TargetFacts::default()` (its own tests and
        // snapshots): it must describe the same machine as the AVX2 entry.
        assert_eq!(
            mnc_passes::TargetFacts::default(),
            X86_64_AVX2.target_facts()
        );
    }
}
