//! `act-canon`: decomposed activations recognized as the IR's activations.
//!
//! - **Clip chains**: `Clip(a,b)(Clip(c,d)(x))` (Relu is `Clip(0,+inf)`; the importer turns
//!   `Max(x, c)` / `Min(x, c)` with a constant into `Clip(c,+inf)` / `Clip(-inf,c)`) becomes
//!   one `Clip(max(a,c), min(b,d))` when the intervals overlap; `Clip(0,+inf)` is written
//!   `Relu`. Every clip propagates NaN, so the merge keeps NaN semantics.
//! - **HardSigmoid**: `Clip(x + b, 0, m) * k` or `Clip(x + b, 0, m) / (1/k)` with
//!   `m * k = 1` (to 1e-6 relative; Keras and tf2onnx write `relu6(x + 3) / 6` or
//!   `relu6(x + 3) * 0.16666667`) becomes `HardSigmoid(alpha = k, beta = b * k)`:
//!   `clip(x + b, 0, m) * k = clip(k x + k b, 0, 1)`.
//! - **HardSwish**: `x * HardSigmoid(1/6, 1/2)(x)` (either operand order) becomes
//!   `HardSwish(x)`.
//!
//! Every intermediate of a matched pattern must have no other user. SiLU (`x * sigmoid(x)`)
//! is recognized by `act-fusion`, which fuses it into the producing conv directly.

use super::scalar;
use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{absorb, single_user};
use mnc_ir::{Activation, BinaryOp, Graph, NodeId, Op};

const NAME: &str = "act-canon";

/// The activation-recognition pass.
pub struct ActCanon;

/// A clip's bounds (`Relu` is `[0, +inf]`).
fn bounds(a: Activation) -> Option<(f32, f32)> {
    match a {
        Activation::Relu => Some((0.0, f32::INFINITY)),
        Activation::Clip { min, max } => Some((min, max)),
        _ => None,
    }
}

/// The canonical activation for the clip `[lo, hi]`.
fn clip(lo: f32, hi: f32) -> Activation {
    if lo == 0.0 && hi == f32::INFINITY {
        Activation::Relu
    } else {
        Activation::Clip { min: lo, max: hi }
    }
}

fn act_of(g: &Graph, id: NodeId) -> Option<Activation> {
    match g.node(id).op {
        Op::Act(a) => Some(a),
        _ => None,
    }
}

/// `a` and `b` equal to 1e-6 relative.
fn near(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// Clip chains at `id`.
fn merge_clips(g: &mut Graph, id: NodeId) -> bool {
    let Some((a, b)) = act_of(g, id).and_then(bounds) else {
        return false;
    };
    let x = g.inputs(id)[0];
    let inner = act_of(g, x).and_then(bounds);
    if let Some((c, d)) = inner {
        let (lo, hi) = (a.max(c), b.min(d));
        if lo <= hi && single_user(g, x) == Some((id, 0)) {
            g.node_mut(x).op = Op::Act(clip(lo, hi));
            absorb(g, x, id);
            return true;
        }
    }
    let canonical = clip(a, b);
    if act_of(g, id) != Some(canonical) {
        g.node_mut(id).op = Op::Act(canonical);
        return true;
    }
    false
}

/// HardSigmoid at `id` (the final Mul or Div).
fn hard_sigmoid(g: &mut Graph, id: NodeId) -> bool {
    let Op::Binary(op) = g.node(id).op else {
        return false;
    };
    let ins = g.inputs(id);
    // (clip node, scale k)
    let (c, k) = match op {
        BinaryOp::Mul => match (scalar(g, ins[0]), scalar(g, ins[1])) {
            (None, Some(k)) => (ins[0], k),
            (Some(k), None) => (ins[1], k),
            _ => return false,
        },
        BinaryOp::Div => match scalar(g, ins[1]) {
            Some(d) if d != 0.0 => (ins[0], 1.0 / d),
            _ => return false,
        },
        _ => return false,
    };
    let Some((lo, m)) = act_of(g, c).and_then(bounds) else {
        return false;
    };
    if lo != 0.0 || !m.is_finite() || !near(m * k, 1.0) || single_user(g, c).is_none() {
        return false;
    }
    let add = g.inputs(c)[0];
    let Op::Binary(BinaryOp::Add) = g.node(add).op else {
        return false;
    };
    let ains = g.inputs(add);
    let (x, b) = match (scalar(g, ains[0]), scalar(g, ains[1])) {
        (None, Some(b)) => (ains[0], b),
        (Some(b), None) => (ains[1], b),
        _ => return false,
    };
    if single_user(g, add).is_none() || g.node(x).ty != g.node(id).ty {
        return false;
    }
    // The Add node becomes the HardSigmoid reading x; the clip and the scale go.
    g.set_inputs(add, &[x]);
    g.node_mut(add).op = Op::Act(Activation::HardSigmoid {
        alpha: k,
        beta: b * k,
    });
    absorb(g, add, c);
    absorb(g, add, id);
    true
}

/// HardSwish at `id` (the Mul).
fn hard_swish(g: &mut Graph, id: NodeId) -> bool {
    let Op::Binary(BinaryOp::Mul) = g.node(id).op else {
        return false;
    };
    let ins = g.inputs(id);
    for (xi, hi) in [(0, 1), (1, 0)] {
        let (x, h) = (ins[xi], ins[hi]);
        let Some(Activation::HardSigmoid { alpha, beta }) = act_of(g, h) else {
            continue;
        };
        if g.inputs(h)[0] != x
            || !near(alpha, 1.0 / 6.0)
            || !near(beta, 0.5)
            || single_user(g, h) != Some((id, hi))
        {
            continue;
        }
        g.node_mut(h).op = Op::Act(Activation::HardSwish);
        absorb(g, h, id);
        return true;
    }
    false
}

impl Pass for ActCanon {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        super::rewrite_each(g, NAME, |g, id| {
            Ok(merge_clips(g, id) || hard_sigmoid(g, id) || hard_swish(g, id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn kinds(g: &Graph) -> Vec<String> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .filter(|&i| !matches!(g.node(i).op, Op::Constant(_) | Op::Input { .. }))
            .map(|i| match &g.node(i).op {
                Op::Act(a) => a.to_string(),
                op => op.kind().to_string(),
            })
            .collect()
    }

    /// `relu6(x + 3)` scaled by 1/6 as a Mul (either operand order) or a Div by 6; then
    /// optionally `x * that` (either order).
    fn keras_hard(div: bool, swap: bool, swish: bool) -> Graph {
        let mut b = Builder::new("hard", 3);
        let x = b.input("x", &[2, 3, 4, 5]);
        let three = b.g.add_constant("three", Tensor::scalar_f32(3.0));
        let a = b.binary("add", BinaryOp::Add, three, x).unwrap();
        let c = b
            .act("relu6", Activation::Clip { min: 0.0, max: 6.0 }, a)
            .unwrap();
        let h = if div {
            let six = b.g.add_constant("six", Tensor::scalar_f32(6.0));
            b.binary("div", BinaryOp::Div, c, six).unwrap()
        } else {
            let k = b.g.add_constant("sixth", Tensor::scalar_f32(0.166_666_67));
            let (l, r) = if swap { (k, c) } else { (c, k) };
            b.binary("scale", BinaryOp::Mul, l, r).unwrap()
        };
        let y = if swish {
            let (l, r) = if swap { (h, x) } else { (x, h) };
            b.binary("mul", BinaryOp::Mul, l, r).unwrap()
        } else {
            h
        };
        b.g.add_output("y", y);
        b.g
    }

    use mnc_ir::Tensor;

    #[test]
    fn recognizes_hardsigmoid_and_hardswish_in_every_spelling() {
        for div in [false, true] {
            for swap in [false, true] {
                let g = keras_hard(div, swap, false);
                let (h, n) = check_pass(&g, &ActCanon, 1e-6);
                assert_eq!(n, 1 + 2, "div {div} swap {swap}"); // rewrite + 2 dead constants
                assert_eq!(kinds(&h), ["hardsigmoid(0.16666667,0.5)"]);
                let g = keras_hard(div, swap, true);
                let (h, _) = check_pass(&g, &ActCanon, 1e-6);
                assert_eq!(kinds(&h), ["hardswish"], "div {div} swap {swap}");
            }
        }
        insta::assert_snapshot!(
            "keras_hardswish",
            before_after(
                &keras_hard(false, false, true),
                &check_pass(&keras_hard(false, false, true), &ActCanon, 1e-6).0
            )
        );
    }

    #[test]
    fn merges_clip_chains_and_names_relu() {
        let mut b = Builder::new("clips", 1);
        let x = b.input("x", &[1, 2, 3, 3]);
        // Max(x, 0) then Min(., 6) as the importer writes them.
        let lo = b
            .act(
                "max",
                Activation::Clip {
                    min: 0.0,
                    max: f32::INFINITY,
                },
                x,
            )
            .unwrap();
        let hi = b
            .act(
                "min",
                Activation::Clip {
                    min: f32::NEG_INFINITY,
                    max: 6.0,
                },
                lo,
            )
            .unwrap();
        let r = b
            .act(
                "relu_only",
                Activation::Clip {
                    min: 0.0,
                    max: f32::INFINITY,
                },
                x,
            )
            .unwrap();
        b.g.add_output("y", hi);
        b.g.add_output("r", r);
        let (h, _) = check_pass(&b.g, &ActCanon, 0.0);
        assert_eq!(kinds(&h), ["clip(0.0,6.0)", "relu"]);
    }

    #[test]
    fn shared_intermediates_and_wrong_constants_are_left_alone() {
        // The Add has a second user: nothing may be removed.
        let mut g = keras_hard(false, false, true);
        let add = g.find("add").unwrap();
        let extra = g
            .add_node_inferred("other", Op::Act(Activation::Relu), &[add])
            .unwrap();
        g.add_output("other", extra);
        let (h, _) = check_pass(&g, &ActCanon, 0.0);
        assert!(kinds(&h).contains(&"Add".to_string()), "{}", text(&h));
        // relu6(x + 3) / 5 is not a HardSigmoid.
        let mut b = Builder::new("not", 1);
        let x = b.input("x", &[4]);
        let three = b.g.add_constant("three", Tensor::scalar_f32(3.0));
        let a = b.binary("add", BinaryOp::Add, x, three).unwrap();
        let c = b
            .act("relu6", Activation::Clip { min: 0.0, max: 6.0 }, a)
            .unwrap();
        let five = b.g.add_constant("five", Tensor::scalar_f32(5.0));
        let d = b.binary("div", BinaryOp::Div, c, five).unwrap();
        b.g.add_output("y", d);
        let (_, n) = check_pass(&b.g, &ActCanon, 0.0);
        assert_eq!(n, 0);
    }
}
