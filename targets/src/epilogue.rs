//! The fused epilogue of an f32 conv/GEMM/matrix-vector kernel as one `#[repr(C)]`
//! description ([`Epilogue`]), shared by every backend: the CPU kernels read it from their
//! call descriptions in the weights blob ([`GemmCall`](crate::cpu::kernels::GemmCall),
//! [`DwGeom`](crate::cpu::kernels::DwGeom), ...), and the CUDA code generator compiles the
//! same value into PTX ([`ConvSpec`](crate::cuda::kernels::ConvSpec),
//! [`GemmSpec`](crate::cuda::kernels::GemmSpec)). Both build it from the IR with
//! [`Epilogue::of_op`]; its order of operations is the IR's ([`mnc_ir::op::Epilogue`]):
//! accumulator, plus the per-row (per-channel) bias, plus the residual, then the activation.
//!
//! The layout is 16 bytes, no padding: `act` (`u32`), `flags` (`u32`), `p0`, `p1` (`f32`).
//! [`Epilogue::to_words`] writes it as two little-endian `u64` words for the blobs that store
//! descriptions as words.

use mnc_ir::Activation;

/// The activation of a fused epilogue, as the kernels dispatch on it.
///
/// The discriminants are the stored codes; [`ActKind::ALL`] lists every kind at the index of
/// its code.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
    /// No activation.
    None = 0,
    /// `max(x, 0)`.
    Relu = 1,
    /// `min(max(x, p0), p1)`.
    Clip = 2,
    /// `1 / (1 + exp(-x))`.
    Sigmoid = 3,
    /// `min(1, max(0, p0 * x + p1))`.
    HardSigmoid = 4,
    /// `x * min(1, max(0, x / 6 + 1 / 2))`.
    HardSwish = 5,
    /// `x / (1 + exp(-x))`.
    Silu = 6,
}

impl ActKind {
    /// Every kind, `ALL[k as usize] == k` (a constant-generic code indexes it).
    pub const ALL: [ActKind; 7] = [
        ActKind::None,
        ActKind::Relu,
        ActKind::Clip,
        ActKind::Sigmoid,
        ActKind::HardSigmoid,
        ActKind::HardSwish,
        ActKind::Silu,
    ];
}

/// The fused epilogue of one kernel: which per-row bias and residual it adds, its activation
/// and the activation's two parameters (see [`ActKind`]; zero where unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    pub act: ActKind,
    /// [`Epilogue::BIAS`] | [`Epilogue::RESIDUAL`].
    pub flags: u32,
    pub p0: f32,
    pub p1: f32,
}

impl Epilogue {
    /// Flag: a per-row (per output channel) bias is added.
    pub const BIAS: u32 = 1;
    /// Flag: a residual with the output's layout is added (after the bias).
    pub const RESIDUAL: u32 = 2;

    /// No bias, no residual, no activation.
    pub const NONE: Epilogue = Epilogue {
        act: ActKind::None,
        flags: 0,
        p0: 0.0,
        p1: 0.0,
    };

    /// The epilogue of an op with a bias operand (`has_bias`) and the IR's epilogue.
    pub fn of_op(has_bias: bool, e: &mnc_ir::op::Epilogue) -> Epilogue {
        Epilogue::new(has_bias, e.residual, e.act)
    }

    /// The epilogue with the given bias, residual and activation.
    pub fn new(bias: bool, residual: bool, act: Option<Activation>) -> Epilogue {
        let (act, p0, p1) = match act {
            None => (ActKind::None, 0.0, 0.0),
            Some(Activation::Relu) => (ActKind::Relu, 0.0, 0.0),
            Some(Activation::Clip { min, max }) => (ActKind::Clip, min, max),
            Some(Activation::Sigmoid) => (ActKind::Sigmoid, 0.0, 0.0),
            Some(Activation::HardSigmoid { alpha, beta }) => (ActKind::HardSigmoid, alpha, beta),
            Some(Activation::HardSwish) => (ActKind::HardSwish, 0.0, 0.0),
            Some(Activation::Silu) => (ActKind::Silu, 0.0, 0.0),
        };
        let flags =
            if bias { Epilogue::BIAS } else { 0 } | if residual { Epilogue::RESIDUAL } else { 0 };
        Epilogue { act, flags, p0, p1 }
    }

    /// The activation alone (no bias, no residual).
    pub fn act_only(act: Activation) -> Epilogue {
        Epilogue::new(false, false, Some(act))
    }

    /// Whether a per-row bias is added.
    pub fn bias(&self) -> bool {
        self.flags & Epilogue::BIAS != 0
    }

    /// Whether a residual is added.
    pub fn residual(&self) -> bool {
        self.flags & Epilogue::RESIDUAL != 0
    }

    /// The activation as the IR states it (the inverse of [`Epilogue::new`]).
    pub fn activation(&self) -> Option<Activation> {
        let (p0, p1) = (self.p0, self.p1);
        match self.act {
            ActKind::None => None,
            ActKind::Relu => Some(Activation::Relu),
            ActKind::Clip => Some(Activation::Clip { min: p0, max: p1 }),
            ActKind::Sigmoid => Some(Activation::Sigmoid),
            ActKind::HardSigmoid => Some(Activation::HardSigmoid {
                alpha: p0,
                beta: p1,
            }),
            ActKind::HardSwish => Some(Activation::HardSwish),
            ActKind::Silu => Some(Activation::Silu),
        }
    }

    /// The value as the two little-endian `u64` words of its `repr(C)` layout.
    pub fn to_words(&self) -> [u64; 2] {
        [
            self.act as u64 | (self.flags as u64) << 32,
            self.p0.to_bits() as u64 | (self.p1.to_bits() as u64) << 32,
        ]
    }
}

impl Default for Epilogue {
    /// [`Epilogue::NONE`].
    fn default() -> Epilogue {
        Epilogue::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_ir::op::optional_activation_examples;

    #[test]
    fn kinds_sit_at_their_codes() {
        for (i, k) in ActKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn round_trips_the_ir_and_its_layout() {
        assert_eq!(std::mem::size_of::<Epilogue>(), 16);
        for (i, a) in optional_activation_examples().into_iter().enumerate() {
            let (bias, residual) = (i % 2 == 0, i % 3 == 0);
            let e = Epilogue::new(bias, residual, a);
            assert_eq!(
                (e.activation(), e.bias(), e.residual()),
                (a, bias, residual)
            );
            // The words are the struct's bytes.
            let words = e.to_words();
            let mut want = [0u8; 16];
            want[..8].copy_from_slice(&words[0].to_le_bytes());
            want[8..].copy_from_slice(&words[1].to_le_bytes());
            // SAFETY: `Epilogue` is 16 bytes of `repr(C)` fields without padding (size
            // checked above), all initialized.
            let got =
                unsafe { std::slice::from_raw_parts((&e as *const Epilogue).cast::<u8>(), 16) };
            assert_eq!(got, want);
        }
    }
}
