//! Pooling and reductions: `GlobalAveragePool` -> [`mnc_ir::Op::GlobalAveragePool`],
//! `ReduceMean` -> [`mnc_ir::Op::ReduceMean`], `AveragePool`/`MaxPool` -> [`mnc_ir::Op::Pool`].
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html>,
//! <https://onnx.ai/onnx/operators/onnx__ReduceMean.html> (opset < 18: `axes` attribute;
//! from 18: optional `axes` input and `noop_with_empty_axes`),
//! <https://onnx.ai/onnx/operators/onnx__AveragePool.html> (`ceil_mode` from 10, `dilations`
//! from 19), <https://onnx.ai/onnx/operators/onnx__MaxPool.html> (`ceil_mode`/`dilations`
//! from 10; the optional `Indices` output must be unused). Only 2-D windows are supported.

use super::attrs::OnnxNode;
use super::conv::{canonical_strides, resolve_pads};
use super::{norm_axes, Ctx, OpResult};
use mnc_ir::{NodeId, Op, Pool, PoolKind};

/// ONNX `GlobalAveragePool` (rank-4 input).
pub(crate) fn global_average_pool(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::GlobalAveragePool, &[x])
}

/// ONNX `ReduceMean`.
pub(crate) fn reduce_mean(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let rank = cx.ty(x).rank();
    let keepdims = n.flag("keepdims", true)?;
    let (axes, noop) = if n.opset < 18 {
        n.only_attrs(&["axes", "keepdims"])?;
        (n.ints("axes")?, false)
    } else {
        n.only_attrs(&["keepdims", "noop_with_empty_axes"])?;
        (
            cx.opt_static_ints(n, 1, "axes")?,
            n.flag("noop_with_empty_axes", false)?,
        )
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => norm_axes(&a, rank, "axis")?,
        _ if noop => return cx.emit(n, Op::Identity, &[x]),
        _ => (0..rank).collect(),
    };
    cx.emit(n, Op::ReduceMean { axes, keepdims }, &[x])
}

/// ONNX `AveragePool` and `MaxPool` (2-D).
pub(crate) fn pool(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let max = n.proto.op_type == "MaxPool";
    n.only_attrs(&[
        "auto_pad",
        "ceil_mode",
        "count_include_pad",
        "dilations",
        "kernel_shape",
        "pads",
        "strides",
        "storage_order",
    ])?;
    if max && n.has_attr("count_include_pad") {
        return Err("attribute 'count_include_pad' is not valid on MaxPool".into());
    }
    if !max && n.has_attr("storage_order") {
        return Err("attribute 'storage_order' is not valid on AveragePool".into());
    }
    let x = cx.input(n, 0)?;
    let xs = cx.ty(x).shape.clone();
    if xs.len() != 4 {
        return Err(format!(
            "only 2-D pooling (NCHW input) is supported, got {xs:?}"
        ));
    }
    let kernel = n
        .opt_pair("kernel_shape")?
        .ok_or("attribute 'kernel_shape' is required")?;
    let strides = n.pair("strides", [1, 1])?;
    let dilations = n.pair("dilations", [1, 1])?;
    let pads = resolve_pads(n, [xs[2], xs[3]], kernel, strides, dilations)?;
    let strides = canonical_strides([xs[2], xs[3]], pads, strides)?;
    let op = Op::Pool(Pool {
        kind: if max { PoolKind::Max } else { PoolKind::Avg },
        kernel,
        strides,
        pads,
        dilations,
        ceil_mode: n.flag("ceil_mode", false)?,
        count_include_pad: n.flag("count_include_pad", false)?,
    });
    cx.emit(n, op, &[x])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{Op, Pool, PoolKind};

    #[test]
    fn global_average_pool() {
        let g = Model::new(13)
            .input("x", &[3, 7, 5, 5])
            .node("GlobalAveragePool", &["x"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(op, Op::GlobalAveragePool);
        assert_eq!(ty.shape, vec![3, 7, 1, 1]);
    }

    #[test]
    fn reduce_mean_attribute_and_input_forms() {
        let g = Model::new(13)
            .input("x", &[2, 3, 4, 5])
            .node(
                "ReduceMean",
                &["x"],
                &["y"],
                vec![a_ints("axes", &[-1, 2]), a_int("keepdims", 1)],
            )
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::ReduceMean {
                axes: vec![2, 3],
                keepdims: true
            }
        );
        assert_eq!(ty.shape, vec![2, 3, 1, 1]);

        let g = Model::new(18)
            .input("x", &[2, 3, 4, 5])
            .init_i64("ax", &[2], &[2, 3])
            .node(
                "ReduceMean",
                &["x", "ax"],
                &["y"],
                vec![a_int("keepdims", 0)],
            )
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::ReduceMean {
                axes: vec![2, 3],
                keepdims: false
            }
        );
        assert_eq!(ty.shape, vec![2, 3]);

        // no axes: all axes, or a no-op with noop_with_empty_axes
        let g = Model::new(18)
            .input("x", &[2, 3])
            .node("ReduceMean", &["x"], &["y"], vec![])
            .node(
                "ReduceMean",
                &["x"],
                &["z"],
                vec![a_int("noop_with_empty_axes", 1)],
            )
            .output("y")
            .output("z")
            .import()
            .unwrap();
        assert_eq!(
            op_of(&g, "y").0,
            Op::ReduceMean {
                axes: vec![0, 1],
                keepdims: true
            }
        );
        assert_eq!(op_of(&g, "z").0, Op::Identity);
    }

    #[test]
    fn reduce_mean_bad_axes() {
        let e = Model::new(13)
            .input("x", &[2, 3])
            .node("ReduceMean", &["x"], &["y"], vec![a_ints("axes", &[1, -1])])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("axes [1, -1] repeat an axis"), "{e}");
        let e = Model::new(18)
            .input("x", &[2, 3])
            .input("ax", &[1])
            .node("ReduceMean", &["x", "ax"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("must be a constant"), "{e}");
    }

    #[test]
    fn max_and_average_pool() {
        let g = Model::new(13)
            .input("x", &[1, 3, 9, 9])
            .node(
                "MaxPool",
                &["x"],
                &["y"],
                vec![
                    a_ints("kernel_shape", &[3, 3]),
                    a_ints("strides", &[2, 2]),
                    a_ints("pads", &[1, 1, 1, 1]),
                    a_int("ceil_mode", 1),
                ],
            )
            .node(
                "AveragePool",
                &["x"],
                &["z"],
                vec![
                    a_ints("kernel_shape", &[2, 2]),
                    a_ints("strides", &[2, 2]),
                    a_str("auto_pad", "SAME_UPPER"),
                    a_int("count_include_pad", 1),
                ],
            )
            .output("y")
            .output("z")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::Pool(Pool {
                kind: PoolKind::Max,
                kernel: [3, 3],
                strides: [2, 2],
                pads: [1, 1, 1, 1],
                ceil_mode: true,
                ..Default::default()
            })
        );
        assert_eq!(ty.shape, vec![1, 3, 5, 5]);
        let (op, ty) = op_of(&g, "z");
        let Op::Pool(p) = op else { panic!() };
        assert_eq!(p.kind, PoolKind::Avg);
        assert_eq!(p.pads, [0, 0, 1, 1]);
        assert!(p.count_include_pad);
        assert_eq!(ty.shape, vec![1, 3, 5, 5]);
    }

    #[test]
    fn maxpool_indices_must_be_unused() {
        let m = Model::new(13)
            .input("x", &[1, 3, 4, 4])
            .node(
                "MaxPool",
                &["x"],
                &["y", "idx"],
                vec![a_ints("kernel_shape", &[2, 2])],
            )
            .output("y");
        assert!(m.import().is_ok());
        let e = m.output("idx").import().unwrap_err();
        assert!(e.to_string().contains("'idx' is used"), "{e}");
        let e = Model::new(13)
            .input("x", &[1, 3, 4, 4])
            .node("MaxPool", &["x"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("kernel_shape"), "{e}");
        for k in [&[0, 2][..], &[2], &[-1, 2]] {
            let e = Model::new(13)
                .input("x", &[1, 3, 4, 4])
                .node("MaxPool", &["x"], &["y"], vec![a_ints("kernel_shape", k)])
                .output("y")
                .import()
                .unwrap_err();
            assert!(e.to_string().contains("'kernel_shape'"), "{e}");
        }
    }
}
