//! Target facts: the few numbers about a CPU that the target-dependent passes (scheduling,
//! layout analysis, memory alignment) read. Pure data; the presets describe common vector
//! ISAs, and `mnc-targets` maps its targets onto them.

use std::fmt;

/// What the scheduling and layout passes know about the target machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetFacts {
    /// Name shown in the IR dump header, e.g. `x86_64-avx2`.
    pub name: String,
    /// f32 lanes per vector register.
    pub vector_f32: usize,
    /// Number of architectural vector registers.
    pub vector_registers: usize,
    /// L1 data cache size per core, bytes.
    pub l1_bytes: usize,
    /// L2 cache size per core, bytes.
    pub l2_bytes: usize,
    /// Alignment of every buffer in the activation arena, bytes.
    pub alignment: usize,
}

impl TargetFacts {
    /// Baseline x86-64 (SSE4.2): 4 f32 lanes, 16 xmm registers, 32 KiB L1d, 1 MiB L2.
    pub fn x86_64() -> Self {
        TargetFacts {
            name: "x86_64".into(),
            vector_f32: 4,
            vector_registers: 16,
            l1_bytes: 32 << 10,
            l2_bytes: 1 << 20,
            alignment: 64,
        }
    }
    /// x86-64 with AVX2/FMA: 8 f32 lanes, 16 ymm registers, 32 KiB L1d, 1 MiB L2.
    pub fn x86_64_avx2() -> Self {
        TargetFacts {
            name: "x86_64-avx2".into(),
            vector_f32: 8,
            vector_registers: 16,
            l1_bytes: 32 << 10,
            l2_bytes: 1 << 20,
            alignment: 64,
        }
    }
    /// x86-64 with AVX-512F: 16 f32 lanes, 32 zmm registers, 48 KiB L1d, 2 MiB L2.
    pub fn x86_64_avx512() -> Self {
        TargetFacts {
            name: "x86_64-avx512".into(),
            vector_f32: 16,
            vector_registers: 32,
            l1_bytes: 48 << 10,
            l2_bytes: 2 << 20,
            alignment: 64,
        }
    }
    /// AArch64 with NEON: 4 f32 lanes, 32 registers, 64 KiB L1d, 1 MiB L2.
    pub fn aarch64_neon() -> Self {
        TargetFacts {
            name: "aarch64-neon".into(),
            vector_f32: 4,
            vector_registers: 32,
            l1_bytes: 64 << 10,
            l2_bytes: 1 << 20,
            alignment: 64,
        }
    }
    /// A scalar machine (also what the reference executor is scheduled for).
    pub fn scalar() -> Self {
        TargetFacts {
            name: "scalar".into(),
            vector_f32: 1,
            vector_registers: 16,
            l1_bytes: 32 << 10,
            l2_bytes: 256 << 10,
            alignment: 64,
        }
    }
    /// The presets by name (`x86_64`, `x86_64-avx2`, `x86_64-avx512`, `aarch64-neon`,
    /// `scalar`).
    pub fn by_name(name: &str) -> Option<Self> {
        Self::presets().into_iter().find(|t| t.name == name)
    }
    /// Every preset.
    pub fn presets() -> Vec<Self> {
        vec![
            Self::x86_64(),
            Self::x86_64_avx2(),
            Self::x86_64_avx512(),
            Self::aarch64_neon(),
            Self::scalar(),
        ]
    }
}

impl Default for TargetFacts {
    fn default() -> Self {
        Self::x86_64_avx2()
    }
}

impl fmt::Display for TargetFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} regs{} l1={}K l2={}K",
            self.name,
            self.vector_f32,
            self.vector_registers,
            self.l1_bytes >> 10,
            self.l2_bytes >> 10
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name() {
        for t in TargetFacts::presets() {
            assert_eq!(TargetFacts::by_name(&t.name), Some(t.clone()));
            assert!(t.vector_f32 >= 1 && t.alignment.is_power_of_two());
        }
        assert_eq!(TargetFacts::by_name("x86_64").unwrap().vector_f32, 4);
        assert!(TargetFacts::by_name("reference").is_none());
    }
}
