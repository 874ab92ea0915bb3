//! `simplify`: algebraic identities and view canonicalization.
//!
//! - `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x`, `x / 1` (constant all zeros or all ones
//!   that does not broadcast `x` to a larger shape) are removed.
//! - A Transpose that moves only size-1 axes becomes a Reshape.
//! - A view (Reshape, Squeeze, Unsqueeze, Flatten) of a view becomes one Reshape of the
//!   first view's input; a view whose output shape equals its input's shape is removed.
//! - A view from `[N, d1, ...]` to `[N, d1 * ...]` (rank >= 3) becomes `Flatten(axis=1)`,
//!   the form torchvision exports (`Squeeze(axes=2,3)` of a pooled map, Keras `Flatten`).
//! - `ReduceMean(axes=2,3, keepdims=1)` on a rank-4 tensor becomes `GlobalAveragePool`
//!   (`keepdims=0`: GlobalAveragePool + Flatten).
//! - `MatMul(x, W)` with 2-D `x` and constant 2-D `W` becomes `Gemm(x, W)`; an `Add` of a
//!   constant bias `[K]` or `[1,K]` to a Gemm without C (its only user) becomes its C.
//! - A view `[N,K] -> [N,K,1,1]` ending a chain of Gemms and activations that starts at a
//!   Flatten of an `[N,C,1,1]` map (the SE block as GlobalAveragePool/Flatten/Gemm/Reshape)
//!   becomes the same chain as 1x1 convs on the 4-D maps, without the views; `se-fusion`
//!   then recognizes it.
//! - `Flatten(axis=1)` of a 1x1 conv (stride 1, no padding, ungrouped, no residual) over a
//!   `[N,C,1,1]` map becomes a Gemm (`trans_b`, weights reshaped to `[K,C]`, same bias and
//!   activation) of the Flatten of the conv's input; `Flatten(act(x))` becomes
//!   `act(Flatten(x))` so the rule reaches through activations (the Keras classifier head:
//!   pooled map -> 1x1 conv -> activation -> 1x1 conv -> Flatten becomes the torchvision
//!   Flatten -> Gemm -> activation -> Gemm).

use super::{add_const, add_node, retype};
use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{const_f32, single_user};
use mnc_ir::{BinaryOp, Gemm, Graph, NodeId, Op, Tensor};

const NAME: &str = "simplify";

/// The simplification pass.
pub struct Simplify;

/// Whether `op` only reshapes its input (same elements, same order).
fn is_view(op: &Op) -> bool {
    mnc_ir::facts::of(op).view == Some(mnc_ir::facts::View::Reshape)
}

/// Rule: identity arithmetic at `id`.
fn identity_arith(g: &mut Graph, id: NodeId) -> bool {
    let Op::Binary(b) = g.node(id).op else {
        return false;
    };
    let ins = g.inputs(id);
    let all = |c: NodeId, v: f32| const_f32(g, c).is_some_and(|(_, d)| d.iter().all(|&x| x == v));
    let keep = match b {
        BinaryOp::Add if all(ins[1], 0.0) => Some(ins[0]),
        BinaryOp::Add if all(ins[0], 0.0) => Some(ins[1]),
        BinaryOp::Sub if all(ins[1], 0.0) => Some(ins[0]),
        BinaryOp::Mul if all(ins[1], 1.0) => Some(ins[0]),
        BinaryOp::Mul if all(ins[0], 1.0) => Some(ins[1]),
        BinaryOp::Div if all(ins[1], 1.0) => Some(ins[0]),
        _ => None,
    };
    match keep {
        Some(x) if g.node(x).ty == g.node(id).ty => {
            crate::util::absorb_into_input(g, id, x);
            true
        }
        _ => false,
    }
}

/// Rule: view chains and canonical views at `id`.
fn views(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    if !is_view(&g.node(id).op) {
        return Ok(false);
    }
    let x = g.inputs(id)[0];
    let out = g.node(id).ty.shape.clone();
    let (src, chained) = if is_view(&g.node(x).op) {
        (g.inputs(x)[0], true)
    } else {
        (x, false)
    };
    let in_shape = g.node(src).ty.shape.clone();
    if in_shape == out && g.node(src).ty.dtype == g.node(id).ty.dtype {
        crate::util::absorb_into_input(g, id, src);
        return Ok(true);
    }
    let flatten = in_shape.len() >= 3
        && out.len() == 2
        && out[0] == in_shape[0]
        && out[1] == in_shape[1..].iter().product::<usize>();
    let canonical = if flatten {
        Op::Flatten { axis: 1 }
    } else {
        Op::Reshape { shape: out }
    };
    if !chained && (g.node(id).op == canonical || !flatten) {
        return Ok(false);
    }
    g.set_inputs(id, &[src]);
    g.node_mut(id).op = canonical;
    retype(g, id, NAME)?;
    Ok(true)
}

/// Rule: a Transpose that moves only size-1 axes (its non-unit axes stay in order) is a
/// view: it becomes a Reshape.
fn transpose_view(g: &mut Graph, id: NodeId) -> bool {
    let Op::Transpose { perm } = &g.node(id).op else {
        return false;
    };
    let x = g.inputs(id)[0];
    let s = &g.node(x).ty.shape;
    let moved: Vec<usize> = perm.iter().copied().filter(|&a| s[a] != 1).collect();
    if !moved.windows(2).all(|w| w[0] < w[1]) {
        return false;
    }
    let shape = g.node(id).ty.shape.clone();
    g.node_mut(id).op = Op::Reshape { shape };
    true
}

/// Rule: spatial ReduceMean to GlobalAveragePool at `id`.
fn reduce_to_gap(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    let Op::ReduceMean { axes, keepdims } = &g.node(id).op else {
        return Ok(false);
    };
    let x = g.inputs(id)[0];
    if *axes != [2, 3] || g.node(x).ty.rank() != 4 {
        return Ok(false);
    }
    let keepdims = *keepdims;
    g.node_mut(id).op = Op::GlobalAveragePool;
    retype(g, id, NAME)?;
    if !keepdims {
        let name = format!("{}/flatten", g.node(id).name);
        let f = add_node(g, &name, Op::Flatten { axis: 1 }, &[id], NAME)?;
        g.replace_all_uses(id, f);
        g.set_inputs(f, &[id]);
    }
    Ok(true)
}

/// Rule: MatMul with constant 2-D weights to Gemm, and a bias Add into a Gemm's C.
fn gemm(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    let ins = g.inputs(id);
    match &g.node(id).op {
        Op::MatMul => {
            let w_const = const_f32(g, ins[1]).is_some_and(|(t, _)| t.shape.len() == 2);
            if !w_const || g.node(ins[0]).ty.rank() != 2 {
                return Ok(false);
            }
            g.node_mut(id).op = Op::Gemm(Gemm::default());
            retype(g, id, NAME)?;
            Ok(true)
        }
        Op::Binary(BinaryOp::Add) => {
            for (gi, bi) in [(0, 1), (1, 0)] {
                let (gemm_id, bias) = (ins[gi], ins[bi]);
                let Op::Gemm(gm) = &g.node(gemm_id).op else {
                    continue;
                };
                let k = g.node(gemm_id).ty.shape.get(1).copied().unwrap_or(0);
                let bias_ok =
                    const_f32(g, bias).is_some_and(|(t, _)| t.shape == [k] || t.shape == [1, k]);
                if gm.has_c
                    || gm.epilogue != Default::default()
                    || !bias_ok
                    || single_user(g, gemm_id) != Some((id, gi))
                {
                    continue;
                }
                let mut gm = gm.clone();
                gm.has_c = true;
                // beta scaled nothing while there was no C; the bias is added as it is.
                gm.beta = 1.0;
                let gins = g.inputs(gemm_id);
                g.set_inputs(gemm_id, &[gins[0], gins[1], bias]);
                g.node_mut(gemm_id).op = Op::Gemm(gm);
                crate::util::absorb(g, gemm_id, id);
                return Ok(true);
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Rule: `Flatten(1)` of a 1x1 conv over a 1x1 map (or of an activation) at `id`.
fn flatten_head(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    if g.node(id).op != (Op::Flatten { axis: 1 }) {
        return Ok(false);
    }
    let x = g.inputs(id)[0];
    if single_user(g, x) != Some((id, 0)) {
        return Ok(false);
    }
    let op = match &g.node(x).op {
        op @ (Op::Act(_) | Op::Conv(_)) => op.clone(),
        _ => return Ok(false),
    };
    match op {
        Op::Act(a) => {
            // Flatten(act(y)) -> act(Flatten(y)): reuse both nodes, swapped.
            let y = g.inputs(x)[0];
            g.set_inputs(id, &[y]);
            retype(g, id, NAME)?;
            g.replace_all_uses(id, x);
            g.set_inputs(x, &[id]);
            g.node_mut(x).op = Op::Act(a);
            retype(g, x, NAME)?;
            Ok(true)
        }
        Op::Conv(c) => {
            let cins = g.inputs(x);
            let xin = cins[0];
            let s = &g.node(xin).ty.shape;
            let unit = s.len() == 4 && s[2] == 1 && s[3] == 1;
            let pointwise = c.kernel == [1, 1]
                && c.strides == [1, 1]
                && c.pads == [0; 4]
                && c.group == 1
                && !c.epilogue.residual;
            let Some((wt, w)) = const_f32(g, cins[1]) else {
                return Ok(false);
            };
            if !unit || !pointwise {
                return Ok(false);
            }
            let (k, cin) = (wt.shape[0], wt.shape[1]);
            let w2 = Tensor::from_f32(vec![k, cin], w.to_vec()).map_err(PassError::ir(NAME))?;
            let wname = format!("{}.2d", g.node(cins[1]).name);
            let wid = add_const(g, &wname, w2);
            // Flatten reads the conv's input; the conv becomes the Gemm reading the Flatten.
            g.set_inputs(id, &[xin]);
            retype(g, id, NAME)?;
            g.replace_all_uses(id, x);
            let mut gins = vec![id, wid];
            if c.has_bias {
                gins.push(cins[2]);
            }
            g.set_inputs(x, &gins);
            g.node_mut(x).op = Op::Gemm(Gemm {
                trans_b: true,
                has_c: c.has_bias,
                epilogue: c.epilogue,
                ..Gemm::default()
            });
            retype(g, x, NAME)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Rule: `view [N,K] -> [N,K,1,1]` at `id` ending a chain of Gemms (constant weights,
/// constant or no bias, plain) and activations that starts from a `Flatten` of an
/// `[N,C,1,1]` map: the chain runs as 1x1 convs on the 4-D maps and both views go (the SE
/// block in the GlobalAveragePool/Flatten/Gemm/Reshape form, which `se-fusion` then sees
/// in its conv form).
fn unflatten_chain(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    if !is_view(&g.node(id).op) {
        return Ok(false);
    }
    let out = g.node(id).ty.shape.clone();
    if out.len() != 4 || out[2] != 1 || out[3] != 1 {
        return Ok(false);
    }
    // Walk up: (node, is_gemm) from the view's input to the Flatten.
    let mut chain = Vec::new();
    let mut cur = g.inputs(id)[0];
    let mut next = id;
    let flatten = loop {
        if single_user(g, cur).map(|u| u.0) != Some(next) || g.node(cur).ty.rank() != 2 {
            return Ok(false);
        }
        match &g.node(cur).op {
            Op::Act(_) => chain.push(cur),
            Op::Gemm(gm) => {
                let ins = g.inputs(cur);
                let plain = !gm.trans_a
                    && gm.alpha == 1.0
                    && gm.beta == 1.0
                    && gm.epilogue == Default::default();
                let w2d = const_f32(g, ins[1]).is_some_and(|(t, _)| t.shape.len() == 2);
                let k = g.node(cur).ty.shape[1];
                let bias_ok =
                    !gm.has_c || const_f32(g, ins[2]).is_some_and(|(t, _)| t.shape == [k]);
                if !(plain && w2d && bias_ok) {
                    return Ok(false);
                }
                chain.push(cur);
            }
            op if is_view(op) => break cur,
            _ => return Ok(false),
        }
        next = cur;
        cur = g.inputs(cur)[0];
    };
    let src = g.inputs(flatten)[0];
    let ss = g.node(src).ty.shape.clone();
    let top = g.inputs(id)[0];
    // Both views must only drop/add the unit H, W axes (a Reshape that also moves the batch
    // or channel sizes is not this pattern).
    if chain.is_empty()
        || ss.len() != 4
        || ss[2] != 1
        || ss[3] != 1
        || g.node(flatten).ty.shape != ss[..2]
        || g.node(top).ty.shape != out[..2]
    {
        return Ok(false);
    }
    // Rewrite bottom-up: every Gemm becomes a 1x1 conv, every act is retyped.
    let mut below = src;
    for &n in chain.iter().rev() {
        let ins = g.inputs(n);
        match g.node(n).op.clone() {
            Op::Gemm(gm) => {
                let (wt, w) = const_f32(g, ins[1]).expect("checked above");
                let (r, c) = (wt.shape[0], wt.shape[1]);
                // Conv weights are [K, C, 1, 1]: the Gemm's B is [C, K] (or [K, C] if trans_b).
                let wk: Vec<f32> = if gm.trans_b {
                    w.to_vec()
                } else {
                    (0..c)
                        .flat_map(|k| (0..r).map(move |i| (i, k)))
                        .map(|(i, k)| w[i * c + k])
                        .collect()
                };
                let (k, cin) = if gm.trans_b { (r, c) } else { (c, r) };
                let name = format!("{}.conv", g.node(ins[1]).name);
                let t = Tensor::from_f32(vec![k, cin, 1, 1], wk).map_err(PassError::ir(NAME))?;
                let wid = add_const(g, &name, t);
                let mut cins = vec![below, wid];
                if gm.has_c {
                    cins.push(ins[2]);
                }
                g.set_inputs(n, &cins);
                g.node_mut(n).op = Op::Conv(mnc_ir::Conv {
                    has_bias: gm.has_c,
                    ..Default::default()
                });
            }
            _ => g.set_inputs(n, &[below]),
        }
        retype(g, n, NAME)?;
        below = n;
    }
    if g.node(below).ty.shape != out {
        return Err(PassError::Node {
            pass: NAME,
            node: g.node(id).name.clone(),
            msg: format!("unflattened chain gives {}", g.node(below).ty),
        });
    }
    crate::util::absorb_into_input(g, id, below);
    Ok(true)
}

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        super::rewrite_each(g, NAME, |g, id| {
            Ok(identity_arith(g, id)
                || transpose_view(g, id)
                || views(g, id)?
                || reduce_to_gap(g, id)?
                || unflatten_chain(g, id)?
                || gemm(g, id)?
                || flatten_head(g, id)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::Activation;

    fn kinds(g: &Graph) -> Vec<&'static str> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .map(|i| g.node(i).op.kind())
            .filter(|k| *k != "Constant" && *k != "Input")
            .collect()
    }

    /// Runs the pass until it changes nothing (at most 5 runs), checking every run
    /// numerically against the original.
    fn settle(g: &Graph) -> Graph {
        let mut h = g.clone();
        for _ in 0..5 {
            let (next, n) = check_pass(&h, &Simplify, 1e-5);
            h = next;
            if n == 0 {
                break;
            }
        }
        let x = random_inputs(g, 7);
        assert_close(&run(&h, &x), &run(g, &x), 1e-5);
        h
    }

    #[test]
    fn identity_arithmetic_is_removed_unless_it_broadcasts() {
        let mut b = Builder::new("ids", 1);
        let x = b.input("x", &[2, 3]);
        let zero =
            b.g.add_constant("zero", Tensor::from_f32(vec![1, 3], vec![0.0; 3]).unwrap());
        let one = b.g.add_constant("one", Tensor::scalar_f32(1.0));
        let a = b.binary("add0", BinaryOp::Add, zero, x).unwrap();
        let m = b.binary("mul1", BinaryOp::Mul, a, one).unwrap();
        let d = b.binary("div1", BinaryOp::Div, m, one).unwrap();
        let s = b.binary("sub0", BinaryOp::Sub, d, zero).unwrap();
        // 1 * [2,3] broadcast to [4,2,3] changes the shape: kept.
        let big = b.g.add_constant(
            "ones",
            Tensor::from_f32(vec![4, 1, 1], vec![1.0; 4]).unwrap(),
        );
        let k = b.binary("bcast", BinaryOp::Mul, s, big).unwrap();
        b.g.add_output("y", k);
        let h = settle(&b.g);
        assert_eq!(kinds(&h), ["Mul"]);
    }

    #[test]
    fn keras_head_becomes_flatten_gemm_act_gemm() {
        // GAP(keepdims) -> 1x1 conv + bias -> HardSwish -> 1x1 conv + bias
        // -> Transpose(0,2,3,1) (moves only size-1 axes) -> Reshape [N, K].
        let mut b = Builder::new("head", 1);
        let x = b.input("x", &[2, 6, 3, 3]);
        let p =
            b.g.add_node_inferred("gap", Op::GlobalAveragePool, &[x])
                .unwrap();
        let c1 = b.conv("fc1", p, 10, 1, 1, 1, true).unwrap();
        let a = b.act("hswish", Activation::HardSwish, c1).unwrap();
        let c2 = b.conv("fc2", a, 4, 1, 1, 1, true).unwrap();
        let t =
            b.g.add_node_inferred(
                "t",
                Op::Transpose {
                    perm: vec![0, 2, 3, 1],
                },
                &[c2],
            )
            .unwrap();
        let r =
            b.g.add_node_inferred("flat", Op::Reshape { shape: vec![2, 4] }, &[t])
                .unwrap();
        b.g.add_output("y", r);
        let h = settle(&b.g);
        assert_eq!(
            kinds(&h),
            ["GlobalAveragePool", "Flatten", "Gemm", "Act", "Gemm"],
            "{}",
            text(&h)
        );
        insta::assert_snapshot!("keras_head", text(&h));
    }

    #[test]
    fn squeeze_reshape_round_trips_vanish_and_means_become_pools() {
        // EfficientNet via tf2onnx: GAP -> Squeeze(2,3) -> Reshape back to [N,C,1,1].
        let mut b = Builder::new("se_views", 1);
        let x = b.input("x", &[1, 5, 4, 4]);
        let m =
            b.g.add_node_inferred(
                "mean",
                Op::ReduceMean {
                    axes: vec![2, 3],
                    keepdims: true,
                },
                &[x],
            )
            .unwrap();
        let s =
            b.g.add_node_inferred("sq", Op::Squeeze { axes: vec![2, 3] }, &[m])
                .unwrap();
        let r =
            b.g.add_node_inferred(
                "re",
                Op::Reshape {
                    shape: vec![1, 5, 1, 1],
                },
                &[s],
            )
            .unwrap();
        let y = b.act("sig", Activation::Sigmoid, r).unwrap();
        let flat =
            b.g.add_node_inferred(
                "mean2",
                Op::ReduceMean {
                    axes: vec![2, 3],
                    keepdims: false,
                },
                &[x],
            )
            .unwrap();
        b.g.add_output("y", y);
        b.g.add_output("f", flat);
        let h = settle(&b.g);
        let mut k = kinds(&h);
        k.sort();
        assert_eq!(
            k,
            ["Act", "Flatten", "GlobalAveragePool", "GlobalAveragePool"],
            "{}",
            text(&h)
        );
    }

    #[test]
    fn matmul_and_bias_become_gemm() {
        let mut b = Builder::new("dense", 1);
        let x = b.input("x", &[3, 6]);
        let w = b.constant("w", &[6, 4], -1.0, 1.0);
        let m = b.g.add_node_inferred("mm", Op::MatMul, &[x, w]).unwrap();
        let bias = b.constant("b", &[4], -1.0, 1.0);
        let y = b.binary("bias", BinaryOp::Add, bias, m).unwrap();
        b.g.add_output("y", y);
        let h = settle(&b.g);
        assert_eq!(kinds(&h), ["Gemm"]);
        // An imported Gemm without C whose beta is not 1 (it scaled nothing): the bias is
        // still added unscaled.
        let mut b = Builder::new("beta", 1);
        let x = b.input("x", &[3, 6]);
        let w = b.constant("w", &[6, 4], -1.0, 1.0);
        let op = Op::Gemm(Gemm {
            beta: 0.5,
            ..Default::default()
        });
        let m = b.g.add_node_inferred("gemm", op, &[x, w]).unwrap();
        let bias = b.constant("b", &[1, 4], -1.0, 1.0);
        let y = b.binary("bias", BinaryOp::Add, m, bias).unwrap();
        b.g.add_output("y", y);
        assert_eq!(kinds(&settle(&b.g)), ["Gemm"]);
        // A non-constant right operand stays a MatMul.
        let mut b = Builder::new("mm", 1);
        let x = b.input("x", &[3, 6]);
        let w = b.input("w", &[6, 4]);
        let m = b.g.add_node_inferred("mm", Op::MatMul, &[x, w]).unwrap();
        b.g.add_output("y", m);
        assert_eq!(kinds(&settle(&b.g)), ["MatMul"]);
    }

    #[test]
    fn se_in_gemm_form_becomes_the_conv_form() {
        for trans_b in [false, true] {
            let mut b = Builder::new("se_gemm", 1);
            let x = b.input("x", &[2, 6, 3, 3]);
            let p =
                b.g.add_node_inferred("gap", Op::GlobalAveragePool, &[x])
                    .unwrap();
            let f =
                b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[p])
                    .unwrap();
            let gemm = |b: &mut Builder, name: &str, x: NodeId, cin: usize, k: usize| {
                let shape = if trans_b { [k, cin] } else { [cin, k] };
                let w = b.constant(&format!("{name}.w"), &shape, -0.5, 0.5);
                let c = b.constant(&format!("{name}.b"), &[k], -0.5, 0.5);
                let op = Op::Gemm(Gemm {
                    trans_b,
                    has_c: true,
                    ..Default::default()
                });
                b.g.add_node_inferred(name, op, &[x, w, c]).unwrap()
            };
            let h = gemm(&mut b, "fc1", f, 6, 2);
            let h = b.act("relu", Activation::Relu, h).unwrap();
            let h = gemm(&mut b, "fc2", h, 2, 6);
            let h = b.act("gate", Activation::Sigmoid, h).unwrap();
            let r =
                b.g.add_node_inferred(
                    "unflat",
                    Op::Reshape {
                        shape: vec![2, 6, 1, 1],
                    },
                    &[h],
                )
                .unwrap();
            let y = b.binary("excite", BinaryOp::Mul, x, r).unwrap();
            b.g.add_output("y", y);
            let h = settle(&b.g);
            assert_eq!(
                kinds(&h),
                ["GlobalAveragePool", "Conv", "Act", "Conv", "Act", "Mul"],
                "{}",
                text(&h)
            );
            // ... which se-fusion then takes as one SqueezeExcite.
            let mut f = h.clone();
            let n = crate::Pass::run(&crate::se::SeFusion, &mut f, &Default::default()).unwrap();
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn a_reshape_that_moves_the_batch_is_not_an_se_chain() {
        // GAP -> Flatten [2,6] -> Gemm -> Reshape [1,8,1,1]: not the SE form (the batch is
        // folded into channels); left as it is, without an error.
        let mut b = Builder::new("batch_fold", 1);
        let x = b.input("x", &[2, 6, 3, 3]);
        let p =
            b.g.add_node_inferred("gap", Op::GlobalAveragePool, &[x])
                .unwrap();
        let f =
            b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[p])
                .unwrap();
        let w = b.constant("w", &[6, 4], -0.5, 0.5);
        let gm =
            b.g.add_node_inferred("fc", Op::Gemm(Gemm::default()), &[f, w])
                .unwrap();
        let r =
            b.g.add_node_inferred(
                "re",
                Op::Reshape {
                    shape: vec![1, 8, 1, 1],
                },
                &[gm],
            )
            .unwrap();
        b.g.add_output("y", r);
        let h = settle(&b.g);
        assert_eq!(
            kinds(&h),
            ["GlobalAveragePool", "Flatten", "Gemm", "Reshape"]
        );
    }

    #[test]
    fn a_conv_over_a_larger_map_is_not_a_gemm() {
        let mut b = Builder::new("map", 1);
        let x = b.input("x", &[1, 3, 2, 2]);
        let c = b.conv("pw", x, 4, 1, 1, 1, false).unwrap();
        let f =
            b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[c])
                .unwrap();
        b.g.add_output("y", f);
        assert_eq!(kinds(&settle(&b.g)), ["Conv", "Flatten"]);
    }
}
