//! `affine-merge` (after `bn-fold`): per-channel affine chains that no conv absorbed.
//!
//! A chain of per-channel constant ops on an NCHW tensor (`ChannelAffine`, and Add, Sub
//! `x - c`, Mul, Div `x / c` whose constant broadcasts along axis 1 only and does not enlarge
//! `x`), each intermediate used only by the next, computes `y = s[c] * x + b[c]`:
//! - when the chain feeds a conv's data input as its only user and the fold is exact (the
//!   conv has no padding, or every `b` is 0: zero padding commutes with a pure scale), it is
//!   folded into the conv's weights and bias
//!   (`W'[o,i] = W[o,i] * s[i]`, `bias'[o] = bias[o] + sum_{i,kh,kw} W[o,i,kh,kw] * b[i]`,
//!   grouped convs included): Keras `Rescaling`/`Normalization` before the stem conv;
//! - otherwise, when it has at least two links, it becomes one
//!   `ChannelAffine` (a Caffe BatchNorm + Scale pair, a standalone decomposed BatchNorm).
//!
//! Arithmetic in f64, rounded once to f32.

use super::add_const;
use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{const_f32, per_channel, single_user};
use mnc_ir::{BinaryOp, Graph, NodeId, Op, Tensor};

const NAME: &str = "affine-merge";

/// The affine-merging pass.
pub struct AffineMerge;

/// `(x, scale, shift)` when `id` is one per-channel affine link over `c` channels.
fn link(g: &Graph, id: NodeId) -> Option<(NodeId, Vec<f64>, Vec<f64>)> {
    let ty = &g.node(id).ty;
    if ty.rank() != 4 {
        return None;
    }
    let c = ty.shape[1];
    let ins = g.inputs(id);
    match &g.node(id).op {
        Op::ChannelAffine => {
            let (st, s) = const_f32(g, ins[1])?;
            let (bt, b) = const_f32(g, ins[2])?;
            let s = per_channel(st, s, c).or_else(|| (s.len() == c).then(|| to64(s)))?;
            let b = per_channel(bt, b, c).or_else(|| (b.len() == c).then(|| to64(b)))?;
            Some((ins[0], s, b))
        }
        Op::Binary(op) => {
            let (xi, ci) = match (const_f32(g, ins[0]), const_f32(g, ins[1])) {
                (None, Some(_)) => (0, 1),
                (Some(_), None) if matches!(op, BinaryOp::Add | BinaryOp::Mul) => (1, 0),
                _ => return None,
            };
            let x = ins[xi];
            if g.node(x).ty != *ty {
                return None;
            }
            let (t, d) = const_f32(g, ins[ci])?;
            let v = per_channel(t, d, c)?;
            let ones = vec![1.0; c];
            let zeros = vec![0.0; c];
            match op {
                BinaryOp::Add => Some((x, ones, v)),
                BinaryOp::Sub => Some((x, ones, v.iter().map(|b| -b).collect())),
                BinaryOp::Mul => Some((x, v, zeros)),
                BinaryOp::Div => (v.iter().all(|&d| d != 0.0))
                    .then(|| (x, v.iter().map(|d| 1.0 / d).collect(), zeros)),
            }
        }
        _ => None,
    }
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A maximal per-channel affine chain `y = s * x + b`.
struct Chain {
    /// The chain's input.
    x: NodeId,
    /// Its links, first to last.
    links: Vec<NodeId>,
    s: Vec<f64>,
    b: Vec<f64>,
}

/// The maximal chain ending at `end`.
fn chain(g: &Graph, end: NodeId) -> Option<Chain> {
    let (mut x, mut s, mut b) = link(g, end)?;
    let mut links = vec![end];
    let mut next = end;
    while let Some((x2, s2, b2)) = link(g, x) {
        if single_user(g, x).map(|u| u.0) != Some(next) {
            break;
        }
        // y = s (s2 x + b2) + b
        b = (0..s.len()).map(|i| s[i] * b2[i] + b[i]).collect();
        s = (0..s.len()).map(|i| s[i] * s2[i]).collect();
        links.insert(0, x);
        next = x;
        x = x2;
    }
    Some(Chain { x, links, s, b })
}

/// Folds the chain ending at `end` into the conv reading it, when exact. Returns whether it did.
fn fold_into_conv(
    g: &mut Graph,
    end: NodeId,
    x: NodeId,
    s: &[f64],
    b: &[f64],
) -> Result<bool, PassError> {
    let Some((conv, 0)) = single_user(g, end) else {
        return Ok(false);
    };
    let Op::Conv(c) = g.node(conv).op.clone() else {
        return Ok(false);
    };
    let cins = g.inputs(conv);
    let Some((wt, w)) = const_f32(g, cins[1]) else {
        return Ok(false);
    };
    let shift = b.iter().any(|&v| v != 0.0);
    if shift && c.pads != [0; 4] {
        return Ok(false);
    }
    let (oc, icg) = (wt.shape[0], wt.shape[1]);
    let taps = wt.shape[2] * wt.shape[3];
    let ocg = oc / c.group.max(1);
    let mut w2 = w.to_vec();
    let mut bias: Vec<f64> = if c.has_bias {
        match const_f32(g, cins[2]) {
            Some((_, d)) => to64(d),
            None => return Ok(false),
        }
    } else {
        vec![0.0; oc]
    };
    for (o, bo) in bias.iter_mut().enumerate() {
        let grp = o / ocg.max(1);
        for i in 0..icg {
            let ci = grp * icg + i;
            for t in 0..taps {
                let k = (o * icg + i) * taps + t;
                *bo += w[k] as f64 * b[ci];
                w2[k] = (w[k] as f64 * s[ci]) as f32;
            }
        }
    }
    let wshape = wt.shape.clone();
    let wname = format!("{}.prescaled", g.node(cins[1]).name);
    let bname = format!("{}.bias.prescaled", g.node(conv).name);
    let wid = add_const(
        g,
        &wname,
        Tensor::from_f32(wshape, w2).map_err(PassError::ir(NAME))?,
    );
    let bias32 = bias.iter().map(|&v| v as f32).collect();
    let bid = add_const(
        g,
        &bname,
        Tensor::from_f32(vec![oc], bias32).map_err(PassError::ir(NAME))?,
    );
    let mut ins = vec![x, wid, bid];
    ins.extend_from_slice(&cins[2 + c.has_bias as usize..]);
    g.set_inputs(conv, &ins);
    if let Op::Conv(cc) = &mut g.node_mut(conv).op {
        cc.has_bias = true;
    }
    let src = g.node(end).sources.clone();
    crate::util::add_sources(g, conv, &src);
    Ok(true)
}

impl Pass for AffineMerge {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        // Chain ends: visit in reverse topological order so a chain is taken whole.
        let mut order = g.topo_order().map_err(PassError::ir(NAME))?;
        order.reverse();
        for id in order {
            // Links of a chain rewritten earlier in this run are unused now: skip them.
            if !g.contains(id) || (g.users(id).is_empty() && !g.is_output(id)) {
                continue;
            }
            let Some(Chain { x, links, s, b }) = chain(g, id) else {
                continue;
            };
            if fold_into_conv(g, id, x, &s, &b)? {
                n += 1;
                continue;
            }
            if links.len() < 2 {
                continue;
            }
            let c = s.len();
            let name = g.node(id).name.clone();
            let st = Tensor::from_f32(vec![c], s.iter().map(|&v| v as f32).collect())
                .map_err(PassError::ir(NAME))?;
            let bt = Tensor::from_f32(vec![c], b.iter().map(|&v| v as f32).collect())
                .map_err(PassError::ir(NAME))?;
            let sid = add_const(g, &format!("{name}.scale"), st);
            let bid = add_const(g, &format!("{name}.shift"), bt);
            let mut sources = Vec::new();
            for &l in &links {
                sources.extend(g.node(l).sources.clone());
            }
            g.set_inputs(id, &[x, sid, bid]);
            g.node_mut(id).op = Op::ChannelAffine;
            g.node_mut(id).sources.clear();
            crate::util::add_sources(g, id, &sources);
            n += 1;
        }
        n += g.remove_dead();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::{Activation, Conv};

    fn count(g: &Graph, kind: &str) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&i| g.node(i).op.kind() == kind)
            .count()
    }

    /// Input -> Mul(per-channel) [-> Add(per-channel)] -> conv(pads) -> ReLU.
    fn prep(add: bool, pads: usize, group: usize) -> Graph {
        let mut b = Builder::new("prep", 2);
        let x = b.input("x", &[2, 4, 6, 5]);
        let s = b.constant("s", &[1, 4, 1, 1], 0.5, 2.0);
        let mut y = b.binary("mul", BinaryOp::Mul, x, s).unwrap();
        if add {
            let o = b.constant("o", &[4, 1, 1], -1.0, 1.0);
            y = b.binary("sub", BinaryOp::Sub, y, o).unwrap();
        }
        let w = b.constant("w", &[8, 4 / group, 3, 3], -0.5, 0.5);
        let bias = b.constant("bias", &[8], -0.5, 0.5);
        let c =
            b.g.add_node_inferred(
                "conv",
                Op::Conv(Conv {
                    kernel: [3, 3],
                    pads: [pads; 4],
                    group,
                    has_bias: true,
                    ..Default::default()
                }),
                &[y, w, bias],
            )
            .unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap();
        b.g.add_output("y", r);
        b.g
    }

    #[test]
    fn folds_exact_preprocessing_into_the_conv() {
        // A pure scale folds even into a padded conv; scale + shift only into an unpadded one.
        for (add, pads, group) in [(false, 1, 1), (false, 1, 2), (true, 0, 1), (true, 0, 4)] {
            let (h, n) = check_pass(&prep(add, pads, group), &AffineMerge, 1e-5);
            assert!(n > 0);
            assert_eq!(count(&h, "Mul") + count(&h, "Sub"), 0, "{}", text(&h));
            assert_eq!(count(&h, "ChannelAffine"), 0);
        }
    }

    #[test]
    fn inexact_fold_becomes_one_channel_affine() {
        let (h, _) = check_pass(&prep(true, 1, 1), &AffineMerge, 1e-5);
        assert_eq!(count(&h, "ChannelAffine"), 1, "{}", text(&h));
        assert_eq!(count(&h, "Mul") + count(&h, "Sub"), 0);
        insta::assert_snapshot!("padded_prep", text(&h));
    }

    #[test]
    fn batchnorm_then_scale_layer_merge() {
        // DenseNet (Caffe2): BatchNorm (already a ChannelAffine) -> Mul -> Add -> ReLU.
        let mut b = Builder::new("bn_scale", 4);
        let x = b.input("x", &[1, 3, 4, 4]);
        let s = b.constant("bn.s", &[3], 0.5, 1.5);
        let o = b.constant("bn.b", &[3], -0.5, 0.5);
        let a =
            b.g.add_node_inferred("bn", Op::ChannelAffine, &[x, s, o])
                .unwrap();
        let m = b.constant("scale.w", &[1, 3, 1, 1], 0.5, 1.5);
        let y = b.binary("scale.mul", BinaryOp::Mul, a, m).unwrap();
        let c = b.constant("scale.b", &[1, 3, 1, 1], -0.5, 0.5);
        let y = b.binary("scale.add", BinaryOp::Add, y, c).unwrap();
        let r = b.act("relu", Activation::Relu, y).unwrap();
        b.g.add_output("y", r);
        let (h, _) = check_pass(&b.g, &AffineMerge, 1e-5);
        assert_eq!(count(&h, "ChannelAffine"), 1);
        assert_eq!(count(&h, "Mul") + count(&h, "Add"), 0, "{}", text(&h));
    }

    #[test]
    fn a_single_op_or_a_shared_link_stays() {
        let mut b = Builder::new("single", 4);
        let x = b.input("x", &[1, 3, 4, 4]);
        let m = b.constant("m", &[1, 3, 1, 1], 0.5, 1.5);
        let y = b.binary("mul", BinaryOp::Mul, x, m).unwrap();
        let c = b.constant("c", &[1, 3, 1, 1], 0.5, 1.5);
        let z = b.binary("add", BinaryOp::Add, y, c).unwrap();
        b.g.add_output("z", z);
        b.g.add_output("y", y); // the Mul is also an output: the chain is one link long
        let (h, n) = check_pass(&b.g, &AffineMerge, 0.0);
        assert_eq!(n, 0, "{}", text(&h));
    }
}
