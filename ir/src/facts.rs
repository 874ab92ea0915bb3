//! The facts every pass and backend needs about an op, in one place.
//!
//! [`of`] is one exhaustive `match` over [`Op`] (no catch-all arm) that returns an op's row
//! of the table, [`OpFacts`]; [`through_transpose`], the rewrite `transpose-sink` needs, is
//! the other exhaustive match. A new variant fails to compile here until someone decides each
//! fact for it; the passes and backends read these instead of keeping their own lists:
//!
//! | fact | read by |
//! |---|---|
//! | [`OpFacts::view`] ([`is_view`]): the output is the input's bytes | `simplify` (view chains), the memory plan, the CPU and CUDA backends |
//! | [`OpFacts::in_place`] ([`in_place_candidates`]): which input's buffer the output may take over | the memory plan, the CPU backend |
//! | [`OpFacts::channel_blockable`]: runs on channel-blocked activations | nothing yet: the op's declared fact for a channel-blocked layout (a report-only layout analysis that read it was deleted; no backend runs blocked layouts) |
//! | [`OpFacts::elementwise`] and [`through_transpose`]: how the op meets a transpose | `transpose-sink` |
//! | [`OpFacts::weights`]: parameter inputs and their mult-adds (torchinfo's conventions) | the cost report |
//!
//! A backend may still decline an op (the CPU backend's reference fallback, the CUDA
//! backend's refusal), but never uses a view or an in-place buffer that this table does not
//! allow, and never needs a rule of its own for either.

use crate::op::{BinaryOp, Op};
use crate::tensor::{DType, TensorType};

/// How an op's output is its input's bytes ([`OpFacts::view`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The same value (Identity, inference Dropout): same type, same bytes.
    PassThrough,
    /// The same elements in the same order under another shape (Flatten, Reshape, Squeeze,
    /// Unsqueeze).
    Reshape,
    /// A cast, which is a view only when the input already has the type cast to.
    CastTo(DType),
}

/// Whether a node of `op` whose first input has dtype `input` is a view of that input.
pub fn is_view(op: &Op, input: DType) -> bool {
    match of(op).view {
        Some(View::PassThrough | View::Reshape) => true,
        Some(View::CastTo(to)) => to == input,
        None => false,
    }
}

/// An input whose buffer an op's output may take over when the input dies at the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InPlace {
    /// The input slot.
    pub slot: usize,
    /// The buffer must feed no other input slot of the op: the op reads that input beyond
    /// the element it is writing (a conv whose residual is also its data input reads the
    /// data across all output tiles).
    pub exclusive: bool,
}

/// [`OpFacts::in_place`] narrowed to the slots whose input has exactly the output's type
/// (`inputs[k]` is the type of slot `k`).
pub fn in_place_candidates(op: &Op, inputs: &[TensorType], out: &TensorType) -> Vec<InPlace> {
    of(op)
        .in_place
        .into_iter()
        .filter(|c| inputs.get(c.slot) == Some(out))
        .collect()
}

/// The arithmetic elementwise ops: every output element is a function of the input
/// elements at the same (broadcast) index and of nothing else, so the op commutes with any
/// permutation of the axes of all its inputs at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elementwise {
    /// One input (activations).
    Unary,
    /// Two inputs with numpy broadcasting (Add, Sub, Mul, Div).
    Binary(BinaryOp),
}

/// How `op` commutes with a transpose of its inputs: when every non-constant input of a
/// node is `Transpose(p)(a_k)` (rank `p.len()`), the node equals `Transpose(after)` applied
/// to the returned op run on the `a_k` (constant operands of an elementwise op permuted by
/// `p`'s inverse). `after` is `p` except for a ReduceMean that drops axes. `None` when the
/// op does not commute (or not in a form the backends run natively: a ReduceMean or
/// GlobalAveragePool only when the mapped axes are the trailing ones).
pub fn through_transpose(op: &Op, p: &[usize]) -> Option<(Op, Vec<usize>)> {
    let r = p.len();
    let trailing = |axes: &[usize]| {
        !axes.is_empty()
            && axes
                .iter()
                .enumerate()
                .all(|(i, &a)| a == r - axes.len() + i)
    };
    let reduce = |axes: &[usize], keepdims: bool| -> Option<(Op, Vec<usize>)> {
        if axes.iter().any(|&a| a >= r) {
            return None;
        }
        let mut mapped: Vec<usize> = axes.iter().map(|&a| p[a]).collect();
        mapped.sort_unstable();
        if !trailing(&mapped) {
            return None;
        }
        let after = if keepdims {
            p.to_vec()
        } else {
            // Kept output axes, in the order of the original output; their source axes are
            // the leading (untouched) ones, numbered by position.
            p.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &s)| s)
                .collect()
        };
        Some((
            Op::ReduceMean {
                axes: mapped,
                keepdims,
            },
            after,
        ))
    };
    let axis = |axis: usize| (axis < r).then(|| p[axis]);
    match op {
        Op::Act(_) | Op::Binary(_) => Some((op.clone(), p.to_vec())),
        // Per tensor, (de)quantization is elementwise; per axis it reads the axis by position.
        Op::Quantize(q) | Op::Dequantize(q) => q.axis.is_none().then(|| (op.clone(), p.to_vec())),
        Op::QLut(_) => Some((op.clone(), p.to_vec())),
        Op::Pad { pads, value } => {
            if pads.len() != 2 * r {
                return None;
            }
            let mut q = vec![0; 2 * r];
            for i in 0..r {
                q[p[i]] = pads[i];
                q[r + p[i]] = pads[r + i];
            }
            Some((
                Op::Pad {
                    pads: q,
                    value: *value,
                },
                p.to_vec(),
            ))
        }
        Op::ReduceMean { axes, keepdims } => reduce(axes, *keepdims),
        Op::GlobalAveragePool => {
            if r != 4 {
                return None;
            }
            reduce(&[2, 3], true)
        }
        Op::Concat { axis: a } => Some((Op::Concat { axis: axis(*a)? }, p.to_vec())),
        Op::Softmax { axis: a } => Some((Op::Softmax { axis: axis(*a)? }, p.to_vec())),
        // Views and Cast would commute too, but the pass leaves them where they are
        // (cleanup and `simplify` own them); everything else reads axes by position.
        Op::Input { .. }
        | Op::Constant(_)
        | Op::Identity
        | Op::Dropout
        | Op::Conv(_)
        | Op::BatchNorm { .. }
        | Op::ChannelAffine
        | Op::SqueezeExcite(_)
        | Op::Gemm(_)
        | Op::MatMul
        | Op::Pool(_)
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Slice(_)
        | Op::Gather { .. }
        | Op::Cast { .. }
        | Op::Lrn(_)
        | Op::QConv(_)
        | Op::QGlobalAveragePool(_)
        // Broadcasts `b` over `a`'s trailing axes: reads axes by position.
        | Op::QBinary(_) => None,
    }
}

/// The parameters an op reads, by torchinfo's conventions (what the cost report counts).
/// Parameters are the constant inputs in the listed slots; the op's mult-adds are its
/// parameter count times a factor of its output shape, given per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// No parameters and no mult-adds (activations, pooling, data movement, views).
    None,
    /// Conv: weight in slot 1, bias in slot 2 when `bias`; mult-adds = parameters x
    /// `N * OH * OW` (the output positions).
    Conv { bias: bool },
    /// Gemm and MatMul: the matrix operands in slots 0 and 1 (whichever is constant is the
    /// weight), Gemm's C in slot 2 when `c`; mult-adds = parameters x the output's leading
    /// dimension.
    Matrix { c: bool },
    /// BatchNorm (`running_stats`: scale 1, bias 2, running mean 3 and variance 4 as
    /// buffers, not parameters) and ChannelAffine (scale 1, bias 2); mult-adds = parameters
    /// x the output's leading dimension.
    Norm { running_stats: bool },
    /// SqueezeExcite: two 1x1 convs (weights 1 and 3, biases 2 and 4), each a row of its
    /// own; mult-adds = parameters x the batch.
    SqueezeExcite,
}

impl Weights {
    /// Whether the op is a layer with learned weights (a conv, matrix product or SE block)
    /// rather than none or only a normalization's scale and shift.
    pub fn is_weighted_layer(self) -> bool {
        match self {
            Weights::Conv { .. } | Weights::Matrix { .. } | Weights::SqueezeExcite => true,
            Weights::None | Weights::Norm { .. } => false,
        }
    }

    /// Mult-adds per parameter for an output of shape `out` (torchinfo's convention: a
    /// conv's parameters are used once per output position, the others once per row of the
    /// output's leading dimension, the batch). `None` for a conv whose output is not NCHW.
    pub fn macs_per_param(self, out: &[usize]) -> Option<u64> {
        let lead = out.first().copied().unwrap_or(1) as u64;
        match self {
            Weights::None => Some(0),
            Weights::Conv { .. } => match out {
                [n, _, h, w] => Some((n * h * w) as u64),
                _ => None,
            },
            Weights::Matrix { .. } | Weights::Norm { .. } | Weights::SqueezeExcite => Some(lead),
        }
    }
}

/// One op's row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct OpFacts {
    /// Whether the output is the (single) input's bytes reinterpreted: no code runs, the
    /// output aliases the input's buffer. [`View::CastTo`] depends on the input's type:
    /// [`is_view`] decides for a node.
    pub view: Option<View>,
    /// The inputs (by slot, in order of preference) whose buffer the output may take over
    /// when the input is not read after the op and has exactly the output's type: the op
    /// reads each element of that input just before writing the same output element and
    /// never again. Views are not listed (they alias by `view`). One rule for every
    /// consumer: the memory plan and the CPU backend read it (the CUDA backend allocates
    /// every output before releasing inputs, so it overwrites nothing). A Gemm's residual is
    /// not listed: the CPU's generated GEMM stores each accumulated row before its epilogue
    /// reads the residual row, so it cannot share the residual's buffer.
    pub in_place: Vec<InPlace>,
    /// Whether the op can compute on channel-blocked rank-4 activations
    /// (`[N, C/b, H, W, b]`): it treats channels independently or only by index, and its
    /// attributes leave the channel axis alone.
    pub channel_blockable: bool,
    /// Whether the op is arithmetic elementwise (see [`Elementwise`]). Views and `Cast` are
    /// not counted: the transpose passes never move a transpose across them.
    pub elementwise: Option<Elementwise>,
    /// The parameters the op reads (the cost report).
    pub weights: Weights,
}

/// The row of `op` in the table.
pub fn of(op: &Op) -> OpFacts {
    let plain = OpFacts {
        view: None,
        in_place: vec![],
        channel_blockable: false,
        elementwise: None,
        weights: Weights::None,
    };
    let overwrites = |slot, exclusive| vec![InPlace { slot, exclusive }];
    match op {
        Op::Identity | Op::Dropout => OpFacts {
            view: Some(View::PassThrough),
            channel_blockable: true,
            ..plain
        },
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            OpFacts {
                view: Some(View::Reshape),
                ..plain
            }
        }
        Op::Cast { to } => OpFacts {
            view: Some(View::CastTo(*to)),
            ..plain
        },
        Op::Act(_) => OpFacts {
            in_place: overwrites(0, false),
            channel_blockable: true,
            elementwise: Some(Elementwise::Unary),
            ..plain
        },
        Op::Binary(b) => OpFacts {
            in_place: vec![
                InPlace {
                    slot: 0,
                    exclusive: false,
                },
                InPlace {
                    slot: 1,
                    exclusive: false,
                },
            ],
            channel_blockable: true,
            elementwise: Some(Elementwise::Binary(*b)),
            ..plain
        },
        Op::ChannelAffine => OpFacts {
            in_place: overwrites(0, false),
            channel_blockable: true,
            weights: Weights::Norm {
                running_stats: false,
            },
            ..plain
        },
        Op::BatchNorm { .. } => OpFacts {
            in_place: overwrites(0, false),
            channel_blockable: true,
            weights: Weights::Norm {
                running_stats: true,
            },
            ..plain
        },
        Op::SqueezeExcite(_) => OpFacts {
            in_place: overwrites(0, true),
            channel_blockable: true,
            weights: Weights::SqueezeExcite,
            ..plain
        },
        // The residual is exclusive: a conv whose residual is also its data input reads the
        // data across all output tiles.
        Op::Conv(c) => OpFacts {
            in_place: if c.epilogue.residual {
                overwrites(2 + c.has_bias as usize, true)
            } else {
                vec![]
            },
            channel_blockable: true,
            weights: Weights::Conv { bias: c.has_bias },
            ..plain
        },
        Op::Gemm(g) => OpFacts {
            weights: Weights::Matrix { c: g.has_c },
            ..plain
        },
        // Elementwise per tensor; the output's elements have another size than the input's,
        // so neither overwrites its input.
        Op::Quantize(q) | Op::Dequantize(q) => OpFacts {
            elementwise: q.axis.is_none().then_some(Elementwise::Unary),
            ..plain
        },
        // Reads each element just before writing the same one; same element size.
        Op::QLut(_) => OpFacts {
            in_place: overwrites(0, false),
            elementwise: Some(Elementwise::Unary),
            ..plain
        },
        // Reads NCHW u8/i8 planes; the channel-blocked f32 layout does not apply.
        Op::QGlobalAveragePool(_) | Op::QBinary(_) => plain,
        // A fused residual as the conv's: each output element reads its residual element
        // just before writing it; exclusive (the data input is read across tiles).
        Op::QConv(q) => OpFacts {
            in_place: if q.residual.is_some() {
                overwrites(2 + q.conv.has_bias as usize, true)
            } else {
                vec![]
            },
            weights: Weights::Conv {
                bias: q.conv.has_bias,
            },
            ..plain
        },
        Op::MatMul => OpFacts {
            weights: Weights::Matrix { c: false },
            ..plain
        },
        Op::GlobalAveragePool | Op::Pool(_) => OpFacts {
            channel_blockable: true,
            ..plain
        },
        Op::ReduceMean { axes, keepdims } => OpFacts {
            channel_blockable: axes == &[2, 3] && *keepdims,
            ..plain
        },
        Op::Pad { pads, .. } => OpFacts {
            channel_blockable: pads.len() == 8 && pads[1] == 0 && pads[5] == 0,
            ..plain
        },
        // Data movement indexes the channel axis as plain data; LRN's window and Softmax
        // reduce over an axis (not blocked yet).
        Op::Input { .. }
        | Op::Constant(_)
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice(_)
        | Op::Gather { .. }
        | Op::Softmax { .. }
        | Op::Lrn(_) => plain,
    }
}

#[cfg(test)]
mod tests;
