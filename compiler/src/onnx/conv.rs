//! `Conv` -> [`mnc_ir::Op::Conv`], and the `auto_pad` resolution shared with pooling.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Conv.html>. Opset notes: the signature is the
//! same from opset 1 to 22 (inputs X, W, optional B; attributes `auto_pad`, `dilations`,
//! `group`, `kernel_shape`, `pads`, `strides`); only 2-D convolutions (rank-4 NCHW input)
//! are supported. `auto_pad` SAME_UPPER/SAME_LOWER/VALID are resolved into explicit pads here.

use super::attrs::OnnxNode;
use super::{Ctx, OpResult};
use mnc_ir::{Conv, NodeId, Op};

/// Resolves `auto_pad` and `pads` into explicit `[top, left, bottom, right]` pads for a 2-D
/// window of `kernel` with `strides`/`dilations` over spatial size `hw`.
pub(crate) fn resolve_pads(
    n: &OnnxNode,
    hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> OpResult<[usize; 4]> {
    let auto = n.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let explicit = n.usizes("pads")?;
    match auto.as_str() {
        "NOTSET" | "" => match explicit {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 => Ok([p[0], p[1], p[2], p[3]]),
            Some(p) => Err(format!(
                "attribute 'pads' = {p:?}: expected 4 values for a 2-D window"
            )),
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for i in 0..2 {
                let out = hw[i].div_ceil(strides[i]);
                // kernel, strides and dilations are attribute values: checked arithmetic
                let total = dilations[i]
                    .checked_mul(kernel[i].saturating_sub(1))
                    .and_then(|v| v.checked_add(1))
                    .and_then(|eff| out.saturating_sub(1).checked_mul(strides[i])?.checked_add(eff))
                    .ok_or_else(|| {
                        format!(
                            "auto_pad {auto}: window arithmetic overflows (kernel {kernel:?}, strides {strides:?}, dilations {dilations:?})"
                        )
                    })?
                    .saturating_sub(hw[i]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = begin;
                pads[i + 2] = end;
            }
            Ok(pads)
        }
        other => Err(format!("auto_pad '{other}' is not valid")),
    }
}

/// Strides with every stride longer than its padded extent (`hw + pads`) shortened to that
/// extent: such a stride places one window at the start either way (also with `ceil_mode`),
/// so the result is the same. Exporters write stride-2 1x1 convs on 1x1 maps; the IR refuses
/// strides past the padded input (`mnc_ir::infer::window_out`), so they are rewritten here.
pub(crate) fn canonical_strides(
    hw: [usize; 2],
    pads: [usize; 4],
    strides: [usize; 2],
) -> OpResult<[usize; 2]> {
    let mut out = strides;
    for i in 0..2 {
        let padded = hw[i]
            .checked_add(pads[i])
            .and_then(|v| v.checked_add(pads[i + 2]))
            .ok_or_else(|| format!("pads {pads:?} overflow for an input of {hw:?}"))?;
        if padded > 0 && out[i] > padded {
            out[i] = padded;
        }
    }
    Ok(out)
}

/// ONNX `Conv` (2-D, any group count, optional bias).
pub(crate) fn conv(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let b = cx.opt_input(n, 2)?;
    let op = Op::Conv(conv_attrs(cx, n, x, w, b.is_some())?);
    let mut ins = vec![x, w];
    ins.extend(b);
    cx.emit(n, op, &ins)
}

/// The geometry of a 2-D conv node (`Conv`, `QLinearConv`: the same attributes) over input
/// `x` with weights `w`: kernel from the weight (checked against `kernel_shape`), group,
/// strides, dilations, and explicit pads (`auto_pad` resolved, over-long strides
/// canonicalized).
pub(crate) fn conv_attrs(
    cx: &Ctx,
    n: &OnnxNode,
    x: NodeId,
    w: NodeId,
    has_bias: bool,
) -> OpResult<Conv> {
    n.only_attrs(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    let (xs, ws) = (cx.ty(x).shape.clone(), cx.ty(w).shape.clone());
    if xs.len() != 4 || ws.len() != 4 {
        return Err(format!(
            "only 2-D convolutions are supported (input {xs:?}, weight {ws:?})"
        ));
    }
    let kernel = [ws[2], ws[3]];
    if kernel.contains(&0) {
        return Err(format!("weight {ws:?} has an empty kernel"));
    }
    let ks = n.pair("kernel_shape", kernel)?;
    if ks != kernel {
        return Err(format!(
            "kernel_shape {ks:?} does not match the weight shape {ws:?}"
        ));
    }
    let group = n.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| format!("group {group} must be positive"))?;
    let strides = n.pair("strides", [1, 1])?;
    let dilations = n.pair("dilations", [1, 1])?;
    let pads = resolve_pads(n, [xs[2], xs[3]], kernel, strides, dilations)?;
    let strides = canonical_strides([xs[2], xs[3]], pads, strides)?;
    Ok(Conv {
        kernel,
        strides,
        dilations,
        pads,
        group,
        has_bias,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::Op;

    fn conv_model(attrs: Vec<onnx_protobuf::AttributeProto>, x: &[i64], w: &[i64]) -> Model {
        Model::new(13)
            .input("x", x)
            .init_f32("w", w, None)
            .node("Conv", &["x", "w"], &["y"], attrs)
            .output("y")
    }

    #[test]
    fn depthwise_strided_explicit_pads() {
        let g = conv_model(
            vec![
                a_int("group", 8),
                a_ints("strides", &[2, 2]),
                a_ints("pads", &[1, 0, 1, 2]),
            ],
            &[1, 8, 9, 9],
            &[8, 1, 3, 3],
        )
        .import()
        .unwrap();
        let (op, ty) = op_of(&g, "y");
        let Op::Conv(c) = op else { panic!("{op:?}") };
        assert_eq!(c.group, 8);
        assert_eq!(c.pads, [1, 0, 1, 2]);
        assert_eq!(c.strides, [2, 2]);
        assert!(!c.has_bias);
        // h: (9 + 2 - 3) / 2 + 1 = 5; w: (9 + 2 - 3) / 2 + 1 = 5
        assert_eq!(ty.shape, vec![1, 8, 5, 5]);
    }

    #[test]
    fn auto_pad_same_upper_and_lower() {
        for (mode, want) in [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0])] {
            let g = conv_model(
                vec![a_str("auto_pad", mode), a_ints("strides", &[2, 2])],
                &[1, 3, 8, 8],
                &[4, 3, 3, 3],
            )
            .import()
            .unwrap();
            let (op, ty) = op_of(&g, "y");
            let Op::Conv(c) = op else { panic!() };
            // out = ceil(8 / 2) = 4; total pad = (4-1)*2 + 3 - 8 = 1
            assert_eq!(c.pads, want, "{mode}");
            assert_eq!(ty.shape, vec![1, 4, 4, 4]);
        }
        let g = conv_model(
            vec![a_str("auto_pad", "VALID")],
            &[1, 3, 8, 8],
            &[4, 3, 3, 3],
        )
        .import()
        .unwrap();
        assert_eq!(op_of(&g, "y").1.shape, vec![1, 4, 6, 6]);
    }

    #[test]
    fn bias_and_dilation() {
        let g = Model::new(11)
            .input("x", &[2, 4, 10, 10])
            .init_f32("w", &[6, 2, 3, 3], None)
            .init_f32("b", &[6], None)
            .node(
                "Conv",
                &["x", "w", "b"],
                &["y"],
                vec![a_int("group", 2), a_ints("dilations", &[2, 2])],
            )
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        let Op::Conv(c) = op else { panic!() };
        assert!(c.has_bias);
        assert_eq!(c.dilations, [2, 2]);
        assert_eq!(ty.shape, vec![2, 6, 6, 6]);
    }

    #[test]
    fn bad_conv_attributes_are_errors() {
        let e = conv_model(
            vec![a_ints("kernel_shape", &[5, 5])],
            &[1, 3, 8, 8],
            &[4, 3, 3, 3],
        )
        .import()
        .unwrap_err()
        .to_string();
        assert!(e.contains("kernel_shape") && e.contains("(Conv)"), "{e}");
        let e = conv_model(vec![a_int("group", 0)], &[1, 3, 8, 8], &[4, 3, 3, 3])
            .import()
            .unwrap_err()
            .to_string();
        assert!(e.contains("group"), "{e}");
        let e = conv_model(
            vec![a_str("auto_pad", "BOGUS")],
            &[1, 3, 8, 8],
            &[4, 3, 3, 3],
        )
        .import()
        .unwrap_err()
        .to_string();
        assert!(e.contains("auto_pad"), "{e}");
        let e = conv_model(vec![], &[1, 3, 8], &[4, 3, 3])
            .import()
            .unwrap_err()
            .to_string();
        assert!(e.contains("2-D"), "{e}");
    }

    #[test]
    fn over_long_strides_are_canonicalized_and_bad_pads_refused() {
        // The depthwise 1x1 conv on a 1x1 input with stride 2^62: one window either
        // way, imported with the equivalent stride 1 (so is an exporter's stride-2 1x1 conv).
        for s in [2, 1 << 62] {
            let g = conv_model(
                vec![a_int("group", 4), a_ints("strides", &[2, s])],
                &[1, 4, 1, 1],
                &[4, 1, 1, 1],
            )
            .import()
            .unwrap();
            let (op, ty) = op_of(&g, "y");
            let Op::Conv(c) = op else { panic!("{op:?}") };
            assert_eq!(c.strides, [1, 1]);
            assert_eq!(ty.shape, vec![1, 4, 1, 1]);
        }
        // A stride within the padded input is kept: 5 + 1 + 1 = 7 >= 4.
        let g = conv_model(
            vec![a_ints("strides", &[4, 4]), a_ints("pads", &[1, 1, 1, 1])],
            &[1, 3, 5, 5],
            &[4, 3, 3, 3],
        )
        .import()
        .unwrap();
        let Op::Conv(c) = op_of(&g, "y").0 else {
            panic!()
        };
        assert_eq!(c.strides, [4, 4]);
        // Pads that reach the window are refused, naming the node.
        let e = conv_model(
            vec![a_ints("pads", &[1, 0, 0, 0])],
            &[1, 3, 4, 4],
            &[4, 3, 1, 1],
        )
        .import()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(Conv)") && e.contains("smaller than the window"),
            "{e}"
        );
    }

    #[test]
    fn same_padding_with_absurd_dilation_is_an_error_not_a_panic() {
        for (k, strides) in [(5, 1), (3, 1)] {
            let e = conv_model(
                vec![
                    a_str("auto_pad", "SAME_UPPER"),
                    a_ints("dilations", &[i64::MAX, 1]),
                    a_ints("strides", &[strides, 1]),
                ],
                &[1, 3, 8, 8],
                &[4, 3, k, k],
            )
            .import()
            .unwrap_err()
            .to_string();
            assert!(e.contains("(Conv)") && e.contains("overflow"), "{e}");
        }
    }
}
