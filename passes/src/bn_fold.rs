//! BatchNorm folding: `Conv -> BatchNorm` becomes one conv with rescaled weights and a new
//! bias (any group count, depthwise included); per-channel constant `Mul`/`Add`/`Sub` after
//! a conv fold into it the same way; a BatchNorm with no conv to fold into becomes an
//! [`Op::ChannelAffine`]. New constants are named after the conv weight
//! (`features.0.0.weight` -> `features.0.0.weight.folded`, `features.0.0.bias.folded`).
//! Target-independent; part of `--emit onnx`.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{absorb, const_f32, per_channel, single_user};
use mnc_ir::{BinaryOp, Epilogue, Graph, NodeId, Op, Tensor};

const NAME: &str = "bn-fold";

/// The BatchNorm folding pass.
#[derive(Default)]
pub struct BnFold;

/// A conv that a following per-channel op may be folded into: plain epilogue, constant
/// f32 weight (and bias), its output used only by `user`.
fn foldable_conv(g: &Graph, conv: NodeId, user: NodeId) -> bool {
    let Op::Conv(c) = &g.node(conv).op else {
        return false;
    };
    if c.epilogue != Epilogue::default() || single_user(g, conv).map(|u| u.0) != Some(user) {
        return false;
    }
    let ins = g.inputs(conv);
    const_f32(g, ins[1]).is_some() && (!c.has_bias || const_f32(g, ins[2]).is_some())
}

/// Base of the folded-constant names for a conv weight name.
fn base_name(w: &str) -> &str {
    w.strip_suffix(".weight.folded")
        .or_else(|| w.strip_suffix(".weight"))
        .unwrap_or(w)
}

/// Stores `t` as the constant feeding `conv` at `slot`: updated in place when that constant
/// is already a folded one used only here, otherwise as a new constant called `name`.
fn put_const(g: &mut Graph, slot: Option<NodeId>, name: &str, t: Tensor) -> NodeId {
    if let Some(old) = slot {
        if g.node(old).name.ends_with(".folded") && single_user(g, old).is_some() {
            g.node_mut(old).ty = t.ty();
            g.node_mut(old).op = Op::Constant(t);
            return old;
        }
    }
    let name = g.unique_name(name);
    g.add_constant(name, t)
}

/// Rewrites `conv` to `y' = y * scale[o] + shift[o]` per output channel (`scale` `None`
/// means 1), then lets `gone` be absorbed into it.
fn fold_affine(
    g: &mut Graph,
    conv: NodeId,
    gone: NodeId,
    scale: Option<&[f64]>,
    shift: &[f64],
) -> Result<(), PassError> {
    let ins = g.inputs(conv);
    let Op::Conv(c) = g.node(conv).op.clone() else {
        unreachable!("checked by foldable_conv")
    };
    let (wt, w) = const_f32(g, ins[1]).expect("checked by foldable_conv");
    let oc = wt.shape[0];
    let per = w.len() / oc.max(1);
    let mut w2 = w.to_vec();
    if let Some(s) = scale {
        for (o, chunk) in w2.chunks_mut(per).enumerate() {
            chunk
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * s[o]) as f32);
        }
    }
    let old_b: Vec<f32> = if c.has_bias {
        const_f32(g, ins[2]).expect("checked").1.to_vec()
    } else {
        vec![0.0; oc]
    };
    let b2: Vec<f32> = (0..oc)
        .map(|o| (old_b[o] as f64 * scale.map_or(1.0, |s| s[o]) + shift[o]) as f32)
        .collect();
    let wshape = wt.shape.clone();
    let wname = g.node(ins[1]).name.clone();
    let base = base_name(&wname).to_string();
    let wt2 = Tensor::from_f32(wshape, w2).map_err(PassError::ir(NAME))?;
    let bt2 = Tensor::from_f32(vec![oc], b2).map_err(PassError::ir(NAME))?;
    let new_w = if scale.is_some() {
        put_const(g, Some(ins[1]), &format!("{base}.weight.folded"), wt2)
    } else {
        ins[1]
    };
    let new_b = put_const(
        g,
        c.has_bias.then(|| ins[2]),
        &format!("{base}.bias.folded"),
        bt2,
    );
    g.set_inputs(conv, &[ins[0], new_w, new_b]);
    if let Op::Conv(c) = &mut g.node_mut(conv).op {
        c.has_bias = true;
    }
    absorb(g, conv, gone);
    // The folded constants come from the conv and every op folded into it.
    let sources = g.node(conv).sources.clone();
    for c in [new_w, new_b] {
        if c != ins[1] {
            g.node_mut(c).sources = sources.clone();
        }
    }
    Ok(())
}

/// BatchNorm parameters as per-channel `(scale, shift)` computed in f64 (so that the folded
/// weights are rounded to f32 once), when all four are constants.
fn bn_affine(g: &Graph, bn: NodeId, eps: f32) -> Option<(Vec<f64>, Vec<f64>)> {
    let ins = g.inputs(bn);
    let s = const_f32(g, ins[1])?.1;
    let b = const_f32(g, ins[2])?.1;
    let m = const_f32(g, ins[3])?.1;
    let v = const_f32(g, ins[4])?.1;
    let scale: Vec<f64> = s
        .iter()
        .zip(v)
        .map(|(&s, &v)| s as f64 / (v as f64 + eps as f64).sqrt())
        .collect();
    let shift = b
        .iter()
        .zip(m)
        .zip(&scale)
        .map(|((&b, &m), k)| b as f64 - m as f64 * k)
        .collect();
    Some((scale, shift))
}

impl Pass for BnFold {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        for id in g.topo_order().map_err(PassError::ir(NAME))? {
            // (Constants are skipped before the clone below: weights can be hundreds of MB.)
            if !g.contains(id) || matches!(g.node(id).op, Op::Constant(_)) {
                continue;
            }
            match g.node(id).op.clone() {
                Op::BatchNorm { epsilon } => {
                    let Some((scale, shift)) = bn_affine(g, id, epsilon) else {
                        continue;
                    };
                    let x = g.inputs(id)[0];
                    if foldable_conv(g, x, id) {
                        fold_affine(g, x, id, Some(&scale), &shift)?;
                    } else {
                        let base = g.node(id).name.clone();
                        let c = scale.len();
                        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
                        let st =
                            Tensor::from_f32(vec![c], f(scale)).map_err(PassError::ir(NAME))?;
                        let bt =
                            Tensor::from_f32(vec![c], f(shift)).map_err(PassError::ir(NAME))?;
                        let sname = g.unique_name(&format!("{base}.scale"));
                        let s = g.add_constant(sname, st);
                        let bname = g.unique_name(&format!("{base}.shift"));
                        let b = g.add_constant(bname, bt);
                        let src = g.node(id).sources.clone();
                        g.node_mut(s).sources = src.clone();
                        g.node_mut(b).sources = src;
                        g.set_inputs(id, &[x, s, b]);
                        g.node_mut(id).op = Op::ChannelAffine;
                    }
                    n += 1;
                }
                Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Add | BinaryOp::Sub)) => {
                    let ins = g.inputs(id);
                    // Which operand is the conv (Sub only as `conv - k`).
                    let cands: &[(usize, usize)] = if op == BinaryOp::Sub {
                        &[(0, 1)]
                    } else {
                        &[(0, 1), (1, 0)]
                    };
                    for &(ci, ki) in cands {
                        let (conv, k) = (ins[ci], ins[ki]);
                        if !foldable_conv(g, conv, id) || g.node(conv).ty != g.node(id).ty {
                            continue;
                        }
                        let oc = g.node(conv).ty.shape[1];
                        let Some(kv) = const_f32(g, k).and_then(|(t, d)| per_channel(t, d, oc))
                        else {
                            continue;
                        };
                        match op {
                            BinaryOp::Mul => fold_affine(g, conv, id, Some(&kv), &vec![0.0; oc])?,
                            BinaryOp::Add => fold_affine(g, conv, id, None, &kv)?,
                            _ => {
                                let neg: Vec<f64> = kv.iter().map(|v| -v).collect();
                                fold_affine(g, conv, id, None, &neg)?
                            }
                        }
                        n += 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        if n > 0 {
            g.remove_dead();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::Activation;

    #[test]
    fn folds_bn_into_conv_for_every_group_count() {
        for (group, bias) in [(1, false), (1, true), (2, true), (8, false)] {
            let mut b = Builder::new("t", 10 + group as u64);
            let x = b.input("x", &[1, 8, 5, 5]);
            let c = b.conv("conv", x, 8, 3, 1, group, bias).unwrap();
            let y = b.bn("bn", c).unwrap();
            b.g.add_output("y", y);
            let (after, n) = check_pass(&b.g, &BnFold, 1e-5);
            assert_eq!(n, 1);
            assert_eq!(after.node_count(), 4, "input, conv, weight, bias");
            assert!(after.find("conv.weight.folded").is_some());
            assert_eq!(after.node(after.outputs[0].node).sources, ["conv", "bn"]);
        }
    }

    #[test]
    fn snapshot_depthwise_fold() {
        let mut b = Builder::new("t", 5);
        let x = b.input("x", &[1, 4, 5, 5]);
        let c = b.conv("dw", x, 4, 3, 2, 4, false).unwrap();
        let y = b.bn("dw_bn", c).unwrap();
        b.g.add_output("y", y);
        let (after, _) = check_pass(&b.g, &BnFold, 1e-5);
        insta::assert_snapshot!(before_after(&b.g, &after));
    }

    #[test]
    fn bn_without_conv_becomes_channel_affine() {
        let mut b = Builder::new("t", 6);
        let x = b.input("x", &[1, 4, 3, 3]);
        let c = b.conv("conv", x, 4, 1, 1, 1, true).unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap();
        let y = b.bn("bn_after_relu", r).unwrap();
        // Conv output used twice: its BN cannot fold either.
        let c2 = b.conv("conv2", y, 4, 1, 1, 1, false).unwrap();
        let y2 = b.bn("bn2", c2).unwrap();
        let z = b.binary("z", BinaryOp::Add, c2, y2).unwrap();
        b.g.add_output("z", z);
        let (after, n) = check_pass(&b.g, &BnFold, 1e-5);
        assert_eq!(n, 2);
        let kinds: Vec<&str> = after
            .topo_order()
            .unwrap()
            .into_iter()
            .map(|i| after.node(i).op.kind())
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k == "ChannelAffine").count(), 2);
        assert!(!kinds.contains(&"BatchNorm"));
        insta::assert_snapshot!(before_after(&b.g, &after));
    }

    #[test]
    fn folds_per_channel_mul_add_sub_chains() {
        let mut b = Builder::new("t", 7);
        let x = b.input("x", &[1, 3, 4, 4]);
        let c = b.conv("conv", x, 6, 3, 1, 1, false).unwrap();
        let k1 = b.constant("k1", &[6, 1, 1], 0.5, 2.0);
        let m = b.binary("mul", BinaryOp::Mul, k1, c).unwrap();
        let k2 = b.constant("k2", &[1, 6, 1, 1], -1.0, 1.0);
        let a = b.binary("add", BinaryOp::Add, m, k2).unwrap();
        let k3 = b.constant("k3", &[1], -1.0, 1.0);
        let s = b.binary("sub", BinaryOp::Sub, a, k3).unwrap();
        // [6] would broadcast along W, not channels: not folded.
        let k4 = b.constant("k4", &[4], -1.0, 1.0);
        let t = b.binary("not_per_channel", BinaryOp::Add, s, k4).unwrap();
        b.g.add_output("y", t);
        let (after, n) = check_pass(&b.g, &BnFold, 1e-5);
        assert_eq!(n, 3);
        let conv = after.find("conv").unwrap();
        assert_eq!(after.node(conv).sources, ["conv", "mul", "add", "sub"]);
        insta::assert_snapshot!(before_after(&b.g, &after));
    }

    #[test]
    fn conv_with_epilogue_or_second_user_is_not_folded() {
        let mut b = Builder::new("t", 8);
        let x = b.input("x", &[1, 3, 4, 4]);
        let c = b.conv("conv", x, 3, 1, 1, 1, false).unwrap();
        let y = b.bn("bn", c).unwrap();
        b.g.add_output("y", y);
        b.g.add_output("c", c);
        let (after, n) = check_pass(&b.g, &BnFold, 1e-5);
        assert_eq!(n, 1);
        assert!(matches!(
            after.node(after.find("bn").unwrap()).op,
            Op::ChannelAffine
        ));
    }
}
