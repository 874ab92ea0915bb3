//! Structural analysis for the cost report: the class of every layer with parameters
//! (stem, depthwise, pointwise, standard, grouped, SE, classifier, norm), the per-class
//! breakdown with arithmetic intensity, and the depthwise-separable pairs.

use super::{constant_source, LayerCost};
use mnc_ir::facts::{self, Weights};
use mnc_ir::{Graph, NodeId, Op};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Cost class of a layer with parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerClass {
    /// A conv whose input reaches the graph input without passing another layer with
    /// parameters (the first conv on the input).
    Stem,
    /// Grouped conv with group == input channels (any channel multiplier).
    Depthwise,
    /// 1x1, stride-1, ungrouped conv.
    Pointwise,
    /// Any other ungrouped conv.
    Standard,
    /// Grouped conv that is not depthwise.
    Grouped,
    /// The two 1x1 convs of a squeeze-and-excitation block (fused `SqueezeExcite` op, or
    /// the pool -> conv -> act -> conv -> gate -> Mul pattern of an imported graph).
    Se,
    /// Gemm or MatMul with a constant operand.
    Classifier,
    /// BatchNorm or ChannelAffine.
    Norm,
}

impl LayerClass {
    /// Every class, in report order.
    pub const ALL: [LayerClass; 8] = [
        LayerClass::Stem,
        LayerClass::Depthwise,
        LayerClass::Pointwise,
        LayerClass::Standard,
        LayerClass::Grouped,
        LayerClass::Se,
        LayerClass::Classifier,
        LayerClass::Norm,
    ];
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerClass::Stem => "stem",
            LayerClass::Depthwise => "depthwise",
            LayerClass::Pointwise => "pointwise",
            LayerClass::Standard => "standard",
            LayerClass::Grouped => "grouped",
            LayerClass::Se => "se",
            LayerClass::Classifier => "classifier",
            LayerClass::Norm => "norm",
        }
    }
}

/// Totals of one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassCost {
    pub class: LayerClass,
    /// Number of rows of this class.
    pub layers: usize,
    pub params: u64,
    pub mult_adds: u64,
    /// Input + parameter + output bytes of the class's layers (f32 activations).
    pub bytes_moved: u64,
    /// `mult_adds / bytes_moved` (0 when nothing is moved).
    pub arithmetic_intensity: f64,
    /// Share of the model's parameters, 0..1.
    pub params_share: f64,
    /// Share of the model's mult-adds, 0..1.
    pub mult_adds_share: f64,
}

/// A depthwise conv followed (through norm, activation and SE gating) by a pointwise conv,
/// costed per image as in the MobileNet paper.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeparablePair {
    /// Layer name of the depthwise conv.
    pub depthwise: String,
    /// Layer name of the pointwise conv.
    pub pointwise: String,
    /// Kernel size D_K as [height, width] (D_K^2 = height x width).
    pub d_k: [usize; 2],
    /// Input channels M (= depthwise channels).
    pub m: usize,
    /// Output channels N of the pointwise conv.
    pub n: usize,
    /// Feature-map size D_F as [height, width]: the depthwise conv's OUTPUT size, so a
    /// stride-2 depthwise conv is compared with a stride-2 standard conv.
    pub d_f: [usize; 2],
    /// D_K^2 M N D_F^2.
    pub standard_mult_adds: u64,
    /// D_K^2 M D_F^2 + M N D_F^2.
    pub separable_mult_adds: u64,
    /// The two layers' mult-adds per image by the torchinfo convention (includes biases).
    pub measured_mult_adds: u64,
    /// separable / standard.
    pub ratio: f64,
    /// 1/N + 1/D_K^2.
    pub expected_ratio: f64,
    /// Whether `ratio` equals `expected_ratio` (relative tolerance 1e-12).
    pub ratio_matches: bool,
}

/// Model-wide saving of the separable pairs, per image.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeparableTotal {
    pub pairs: usize,
    pub standard_mult_adds: u64,
    pub separable_mult_adds: u64,
    pub saved_mult_adds: u64,
    /// separable / standard over all pairs (0 without pairs).
    pub ratio: f64,
}

impl SeparableTotal {
    /// Sums the pairs.
    pub fn of(pairs: &[SeparablePair]) -> Self {
        let standard: u64 = pairs.iter().map(|p| p.standard_mult_adds).sum();
        let separable: u64 = pairs.iter().map(|p| p.separable_mult_adds).sum();
        SeparableTotal {
            pairs: pairs.len(),
            standard_mult_adds: standard,
            separable_mult_adds: separable,
            saved_mult_adds: standard.saturating_sub(separable),
            ratio: if standard == 0 {
                0.0
            } else {
                separable as f64 / standard as f64
            },
        }
    }
}

/// Follows `Identity` nodes backwards from `id`.
fn through_identity(g: &Graph, mut id: NodeId) -> NodeId {
    while matches!(g.node(id).op, Op::Identity) {
        match g.inputs(id).first() {
            Some(&i) => id = i,
            None => break,
        }
    }
    id
}

/// When `id` feeds a self-gating activation written as two nodes, `x * act(x)` (SiLU as
/// exporters write it: `Sigmoid` + `Mul`), the `Mul`.
fn self_gate(g: &Graph, id: NodeId) -> Option<NodeId> {
    let users = g.users(id);
    let [(u1, _), (u2, _)] = users.as_slice() else {
        return None;
    };
    for (a, m) in [(*u1, *u2), (*u2, *u1)] {
        let is_gate = matches!(g.node(a).op, Op::Act(_))
            && matches!(g.node(m).op, Op::Binary(mnc_ir::BinaryOp::Mul))
            && g.users(a).iter().map(|u| u.0).collect::<Vec<_>>() == [m];
        let mut ins = g.inputs(m);
        ins.sort();
        let mut want = vec![id, a];
        want.sort();
        if is_gate && ins == want {
            return Some(m);
        }
    }
    None
}

/// From `id`, walks forward through single-consumer activations, identities and
/// self-gating activations and returns the first other consumer and its input slot.
fn next_through_acts(g: &Graph, mut id: NodeId) -> Option<(NodeId, usize)> {
    loop {
        if let Some(m) = self_gate(g, id) {
            id = m;
            continue;
        }
        let users = g.users(id);
        let [(u, slot)] = users.as_slice() else {
            return None;
        };
        match g.node(*u).op {
            Op::Act(_) | Op::Identity | Op::Dropout if *slot == 0 => id = *u,
            _ => return Some((*u, *slot)),
        }
    }
}

fn is_1x1_dense(op: &Op) -> bool {
    matches!(op, Op::Conv(c) if c.kernel == [1, 1] && c.group == 1)
}

/// SE blocks of an unfused graph: the set of SE convs and the gate `Mul` nodes with the
/// value they scale.
struct SeBlocks {
    convs: HashSet<NodeId>,
    gates: HashMap<NodeId, NodeId>,
}

fn find_se_blocks(g: &Graph, order: &[NodeId]) -> SeBlocks {
    let mut se = SeBlocks {
        convs: HashSet::new(),
        gates: HashMap::new(),
    };
    for &pool in order {
        let is_pool = match &g.node(pool).op {
            Op::GlobalAveragePool => true,
            Op::ReduceMean { axes, keepdims } => axes == &[2, 3] && *keepdims,
            _ => false,
        };
        if !is_pool {
            continue;
        }
        let Some(&src) = g.inputs(pool).first() else {
            continue;
        };
        let src = through_identity(g, src);
        let found = (|| {
            let (fc1, s1) = next_through_acts(g, pool)?;
            if s1 != 0 || !is_1x1_dense(&g.node(fc1).op) {
                return None;
            }
            let (fc2, s2) = next_through_acts(g, fc1)?;
            if s2 != 0 || !is_1x1_dense(&g.node(fc2).op) {
                return None;
            }
            let (mul, _) = next_through_acts(g, fc2)?;
            if !matches!(g.node(mul).op, Op::Binary(mnc_ir::BinaryOp::Mul)) {
                return None;
            }
            let scaled = g
                .inputs(mul)
                .into_iter()
                .map(|i| through_identity(g, i))
                .find(|&i| i == src)?;
            Some((fc1, fc2, mul, scaled))
        })();
        if let Some((fc1, fc2, mul, scaled)) = found {
            se.convs.insert(fc1);
            se.convs.insert(fc2);
            se.gates.insert(mul, scaled);
        }
    }
    se
}

/// Sets `class` on every row with parameters. `row_nodes[i]` is the node of `layers[i]`.
pub(crate) fn assign_classes(
    g: &Graph,
    order: &[NodeId],
    row_nodes: &[NodeId],
    layers: &mut [LayerCost],
) {
    // after[n]: a layer with parameters lies between the graph input and n (inclusive).
    let mut after: HashMap<NodeId, bool> = HashMap::new();
    for &id in order {
        let node = g.node(id);
        let has_w = facts::of(&node.op).weights.is_weighted_layer()
            && g.inputs(id)
                .iter()
                .skip(1)
                .any(|&i| constant_source(g, i).is_some());
        let upstream = g
            .inputs(id)
            .iter()
            .any(|i| after.get(i).copied().unwrap_or(false));
        after.insert(id, has_w || upstream);
    }
    let se = find_se_blocks(g, order);
    for (layer, &id) in layers.iter_mut().zip(row_nodes) {
        if layer.params == 0 {
            continue;
        }
        let node = g.node(id);
        layer.class = Some(match facts::of(&node.op).weights {
            Weights::Conv { .. } => {
                let Op::Conv(c) = &node.op else {
                    continue;
                };
                let data = g.inputs(id)[0];
                let cin = layer.input_shape.get(1).copied().unwrap_or(0);
                let cout = layer.output_shape.get(1).copied().unwrap_or(0);
                if !after[&data] {
                    LayerClass::Stem
                } else if se.convs.contains(&id) {
                    LayerClass::Se
                } else if c.group > 1 && c.group == cin && cin > 0 && cout % cin == 0 {
                    LayerClass::Depthwise
                } else if c.group > 1 {
                    LayerClass::Grouped
                } else if c.kernel == [1, 1] && c.strides == [1, 1] {
                    LayerClass::Pointwise
                } else {
                    LayerClass::Standard
                }
            }
            Weights::SqueezeExcite => LayerClass::Se,
            Weights::Matrix { .. } => LayerClass::Classifier,
            Weights::Norm { .. } => LayerClass::Norm,
            // Rows without parameters were skipped above.
            Weights::None => continue,
        });
    }
}

/// Per-class totals in [`LayerClass::ALL`] order (every class present, zero when absent).
pub(crate) fn class_breakdown(layers: &[LayerCost]) -> Vec<ClassCost> {
    let total_params: u64 = layers.iter().map(|l| l.params).sum();
    let total_macs: u64 = layers.iter().map(|l| l.mult_adds).sum();
    let share = |x: u64, t: u64| if t == 0 { 0.0 } else { x as f64 / t as f64 };
    LayerClass::ALL
        .iter()
        .map(|&class| {
            let of: Vec<&LayerCost> = layers.iter().filter(|l| l.class == Some(class)).collect();
            let params = of.iter().map(|l| l.params).sum();
            let mult_adds = of.iter().map(|l| l.mult_adds).sum();
            let bytes_moved = of
                .iter()
                .map(|l| l.input_bytes + l.param_bytes + l.output_bytes)
                .sum();
            ClassCost {
                class,
                layers: of.len(),
                params,
                mult_adds,
                bytes_moved,
                arithmetic_intensity: share(mult_adds, bytes_moved),
                params_share: share(params, total_params),
                mult_adds_share: share(mult_adds, total_macs),
            }
        })
        .collect()
}

/// Finds the depthwise-separable pairs: every depthwise conv with channel multiplier 1
/// whose output reaches a pointwise conv through BatchNorm, ChannelAffine, activations,
/// Identity/Dropout, a fused `SqueezeExcite`, the gate `Mul` of an SE block, a binary op
/// with a constant operand (a decomposed BatchNorm) or a layout Transpose (the NHWC graphs
/// of tf2onnx), each the only consumer of the value before it.
pub(crate) fn separable_pairs(
    g: &Graph,
    order: &[NodeId],
    layers: &[LayerCost],
    row_nodes: &[NodeId],
) -> Vec<SeparablePair> {
    let se = find_se_blocks(g, order);
    let row_of: HashMap<NodeId, usize> = row_nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| layers[*i].op == "Conv")
        .map(|(i, &n)| (n, i))
        .collect();
    let mut pairs = Vec::new();
    for (i, dw) in layers.iter().enumerate() {
        if dw.class != Some(LayerClass::Depthwise)
            || dw.input_shape.get(1) != dw.output_shape.get(1)
        {
            continue;
        }
        let Op::Conv(dc) = &g.node(row_nodes[i]).op else {
            continue;
        };
        let mut cur = row_nodes[i];
        let pw = loop {
            let users = g.users(cur);
            if let Some(&(mul, _)) = users.iter().find(|(u, _)| se.gates.get(u) == Some(&cur)) {
                cur = mul;
                continue;
            }
            if let Some(mul) = self_gate(g, cur) {
                cur = mul;
                continue;
            }
            let [(u, slot)] = users.as_slice() else {
                break None;
            };
            // A decomposed BatchNorm (tf2onnx: Mul/Add by constants) passes like a BatchNorm.
            let other_is_const = g
                .inputs(*u)
                .iter()
                .enumerate()
                .all(|(k, &i)| k == *slot || matches!(g.node(i).op, Op::Constant(_)));
            match &g.node(*u).op {
                Op::BatchNorm { .. }
                | Op::ChannelAffine
                | Op::Act(_)
                | Op::Identity
                | Op::Dropout
                | Op::SqueezeExcite(_)
                | Op::Transpose { .. }
                    if *slot == 0 =>
                {
                    cur = *u
                }
                Op::Binary(_) if other_is_const => cur = *u,
                Op::Conv(_) if *slot == 0 => break row_of.get(u).copied(),
                _ => break None,
            }
        };
        let Some(j) = pw else { continue };
        let pwl = &layers[j];
        if pwl.class != Some(LayerClass::Pointwise) {
            continue;
        }
        let (kh, kw) = (dc.kernel[0] as u64, dc.kernel[1] as u64);
        let (oh, ow) = match dw.output_shape.as_slice() {
            [_, _, h, w] => (*h as u64, *w as u64),
            _ => continue,
        };
        let m = dw.output_shape[1] as u64;
        let n = pwl.output_shape.get(1).copied().unwrap_or(0) as u64;
        let standard = kh * kw * m * n * oh * ow;
        let separable = kh * kw * m * oh * ow + m * n * oh * ow;
        let batch = dw.output_shape[0].max(1) as u64;
        let ratio = if standard == 0 {
            0.0
        } else {
            separable as f64 / standard as f64
        };
        let expected = if n == 0 {
            0.0
        } else {
            1.0 / n as f64 + 1.0 / (kh * kw) as f64
        };
        pairs.push(SeparablePair {
            depthwise: dw.name.clone(),
            pointwise: pwl.name.clone(),
            d_k: [kh as usize, kw as usize],
            m: m as usize,
            n: n as usize,
            d_f: [oh as usize, ow as usize],
            standard_mult_adds: standard,
            separable_mult_adds: separable,
            measured_mult_adds: (dw.mult_adds + pwl.mult_adds) / batch,
            ratio,
            expected_ratio: expected,
            ratio_matches: (ratio - expected).abs() <= 1e-12 * expected.abs(),
        });
    }
    pairs
}
