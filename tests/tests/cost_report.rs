//! `mnc cost-report`: snapshots of every output format for a tiny hand-built graph with
//! PyTorch-exporter node names, the multi-model comparison, the command's errors, and
//! (ignored unless the full-size fixtures were generated with scripts/make_fixtures.py)
//! the exact torchinfo figures on exported ONNX files, end to end through the importer.

use mnc::cost::cli::{report, CostArgs, Stage};
use mnc::cost::format::{render, Format};
use mnc::cost::{analyze, CostOptions, ModelCost};
use mnc_ir::{Activation, Conv, Gemm, Graph, NodeId, Op, Tensor, TensorType};

fn constant(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    let n = shape.iter().product();
    g.add_constant(
        name,
        Tensor::from_f32(shape.to_vec(), vec![0.25; n]).unwrap(),
    )
}

/// conv (module `m`, exporter scope `scope`) -> BatchNorm (module `bn`, scope
/// `bn_scope`) -> activation (scope `act.0`).
#[allow(clippy::too_many_arguments)]
fn conv_bn_act(
    g: &mut Graph,
    x: NodeId,
    (scope, m): (&str, &str),
    (bn_scope, bn): (&str, &str),
    cout: usize,
    k: usize,
    s: usize,
    group: usize,
    act: Option<(&str, Activation)>,
) -> NodeId {
    let cin = g.node(x).ty.shape[1];
    let w = constant(g, &format!("{m}.weight"), &[cout, cin / group, k, k]);
    let conv = Conv {
        kernel: [k, k],
        strides: [s, s],
        pads: [k / 2; 4],
        group,
        ..Default::default()
    };
    let y = g
        .add_node_inferred(format!("{scope}/Conv"), Op::Conv(conv), &[x, w])
        .unwrap();
    let p: Vec<NodeId> = ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .map(|r| constant(g, &format!("{bn}.{r}"), &[cout]))
        .collect();
    let y = g
        .add_node_inferred(
            format!("{bn_scope}/BatchNormalization"),
            Op::BatchNorm { epsilon: 1e-5 },
            &[y, p[0], p[1], p[2], p[3]],
        )
        .unwrap();
    match act {
        Some((scope, a)) => g
            .add_node_inferred(format!("{scope}/Clip"), Op::Act(a), &[y])
            .unwrap(),
        None => y,
    }
}

/// A MobileNetV2-like toy: stem conv-BN-ReLU6, one depthwise-separable block
/// (dw 3x3 stride 2 -> BN -> ReLU6 -> pw -> BN), pooling and a 2-class Linear head.
fn tiny(batch: usize) -> Graph {
    let mut g = Graph::new("tiny");
    let x = g.add_input("input", TensorType::f32(vec![batch, 3, 8, 8]));
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let y = conv_bn_act(
        &mut g,
        x,
        ("/features/features.0/features.0.0", "features.0.0"),
        ("/features/features.0/features.0.1", "features.0.1"),
        4,
        3,
        1,
        1,
        Some(("/features/features.0/features.0.2", relu6)),
    );
    let y = conv_bn_act(
        &mut g,
        y,
        (
            "/features/features.1/conv/conv.0/conv.0.0",
            "features.1.conv.0.0",
        ),
        (
            "/features/features.1/conv/conv.0/conv.0.1",
            "features.1.conv.0.1",
        ),
        4,
        3,
        2,
        4,
        Some(("/features/features.1/conv/conv.0/conv.0.2", relu6)),
    );
    let y = conv_bn_act(
        &mut g,
        y,
        ("/features/features.1/conv/conv.1", "features.1.conv.1"),
        ("/features/features.1/conv/conv.2", "features.1.conv.2"),
        8,
        1,
        1,
        1,
        None,
    );
    let y = g
        .add_node_inferred("/GlobalAveragePool", Op::GlobalAveragePool, &[y])
        .unwrap();
    let y = g
        .add_node_inferred("/Flatten", Op::Flatten { axis: 1 }, &[y])
        .unwrap();
    let w = constant(&mut g, "classifier.1.weight", &[2, 8]);
    let b = constant(&mut g, "classifier.1.bias", &[2]);
    let gemm = Gemm {
        trans_b: true,
        has_c: true,
        ..Default::default()
    };
    let y = g
        .add_node_inferred("/classifier/classifier.1/Gemm", Op::Gemm(gemm), &[y, w, b])
        .unwrap();
    g.add_output("logits", y);
    mnc_ir::verify::verify(&g).unwrap();
    g
}

fn tiny_cost(batch: usize, freeze: &[&str]) -> ModelCost {
    let opts = CostOptions {
        freeze: freeze.iter().map(|s| s.to_string()).collect(),
        stage: Some("imported".into()),
    };
    analyze(&tiny(batch), &opts).unwrap()
}

#[test]
fn tiny_graph_figures() {
    let c = tiny_cost(2, &["features.0"]);
    // stem 4*3*3*3 + BN 8; dw 4*9 + BN 8; pw 8*4 + BN 16; head 2*8 + 2.
    assert_eq!(c.total_params, 108 + 8 + 36 + 8 + 32 + 16 + 18);
    assert_eq!(c.trainable_params, c.total_params - 116);
    let names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "features.0.0",
            "features.0.1",
            "features.0.2",
            "features.1.conv.0.0",
            "features.1.conv.0.1",
            "features.1.conv.0.2",
            "features.1.conv.1",
            "features.1.conv.2",
            "/GlobalAveragePool",
            "/Flatten",
            "classifier.1",
        ]
    );
    assert_eq!(c.separable.len(), 1);
    assert_eq!(c.separable[0].d_f, [4, 4]);
}

#[test]
fn table_snapshot() {
    let text = render(&[tiny_cost(2, &["features.0"])], Format::Table).unwrap();
    insta::assert_snapshot!("cost_table_tiny", text);
}

#[test]
fn markdown_snapshot() {
    let text = render(&[tiny_cost(2, &["features.0"])], Format::Markdown).unwrap();
    insta::assert_snapshot!("cost_markdown_tiny", text);
}

#[test]
fn csv_snapshot() {
    let text = render(&[tiny_cost(2, &["features.0"])], Format::Csv).unwrap();
    insta::assert_snapshot!("cost_csv_tiny", text);
}

#[test]
fn json_snapshot() {
    let text = render(&[tiny_cost(1, &[])], Format::Json).unwrap();
    insta::assert_snapshot!("cost_json_tiny", text);
}

#[test]
fn comparison_snapshot() {
    let mut a = tiny_cost(1, &[]);
    a.model = "tiny_b1".into();
    let mut b = tiny_cost(4, &["features"]);
    b.model = "tiny_b4".into();
    let text = render(&[a, b], Format::Table).unwrap();
    let cmp = &text[text.find("Comparison").expect("comparison section")..];
    insta::assert_snapshot!("cost_comparison_tiny", cmp);
}

fn args(models: &[&str], batch: Option<usize>, freeze: &[&str], stage: Stage) -> CostArgs {
    CostArgs {
        models: models.iter().map(|m| m.into()).collect(),
        batch,
        freeze: freeze.iter().map(|s| s.to_string()).collect(),
        stage,
        format: Format::Table,
    }
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let e = report(&args(&["/nonexistent/m.onnx"], None, &[], Stage::Imported)).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/m.onnx"), "{e:#}");
    let e = report(&args(
        &["/nonexistent/m.onnx"],
        Some(0),
        &[],
        Stage::Imported,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("--batch"), "{e}");
}

// ---- exported ONNX files (scripts/make_fixtures.py writes fixtures-full/) ----

/// The table report of the full-size fixture `name` (from `fixtures-full/`).
fn fixture_report(name: &str, batch: Option<usize>, freeze: &[&str], stage: Stage) -> String {
    let model = format!(
        "{}/../fixtures-full/{name}/model.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    report(&args(&[&model], batch, freeze, stage)).unwrap()
}

fn assert_lines(text: &str, want: &[&str]) {
    for w in want {
        assert!(
            text.lines().any(|l| l == *w),
            "missing line '{w}' in:\n{text}"
        );
    }
}

const FOLDED_NOTE: &str = "Note: BN-folded graph: BatchNorm parameters are folded into conv biases; parameter counts differ from the training-time model";

#[test]
#[ignore = "needs fixtures-full/ (python scripts/make_fixtures.py)"]
fn exported_mobilenet_v2_matches_torchinfo() {
    let t = fixture_report("mobilenet_v2_bn_op13", None, &[], Stage::Imported);
    assert_lines(
        &t,
        &[
            "Total params: 3,504,872",
            "Trainable params: 3,504,872",
            "Non-trainable params: 0",
            "Total mult-adds (M): 300.81",
            "Input size (MB): 0.60",
            "Forward/backward pass size (MB): 106.86",
            "Params size (MB): 14.02",
            "Estimated Total Size (MB): 121.48",
        ],
    );
    assert!(!t.contains("Note: BN-folded"));
    // The BN-folded export: BN parameters gone, one bias per conv; the report says so.
    let t = fixture_report("mobilenet_v2_op13", None, &[], Stage::Imported);
    assert_lines(
        &t,
        &[
            "Total params: 3,487,816",
            "Total mult-adds (M): 307.45",
            "Forward/backward pass size (MB): 53.43",
            FOLDED_NOTE,
        ],
    );
    // --stage optimized folds the BN-preserved export to the same figures.
    let t = fixture_report("mobilenet_v2_bn_op13", None, &[], Stage::Optimized);
    assert_lines(
        &t,
        &[
            "Total params: 3,487,816",
            "Total mult-adds (M): 307.45",
            FOLDED_NOTE,
        ],
    );
}

#[test]
#[ignore = "needs fixtures-full/ (python scripts/make_fixtures.py)"]
fn exported_efficientnet_b0_matches_torchinfo() {
    let t = fixture_report("efficientnet_b0_bn_op13", None, &[], Stage::Imported);
    assert_lines(
        &t,
        &[
            "Total params: 5,288,548",
            "Total mult-adds (M): 385.87",
            "Input size (MB): 0.60",
            "Forward/backward pass size (MB): 107.89",
            "Params size (MB): 21.15",
            "Estimated Total Size (MB): 129.64",
        ],
    );
    // Re-batched to 32 with the feature extractor frozen: only the 1000-class head trains.
    let t = fixture_report(
        "efficientnet_b0_bn_op13",
        Some(32),
        &["features"],
        Stage::Imported,
    );
    assert_lines(
        &t,
        &[
            "Total params: 5,288,548",
            "Trainable params: 1,281,000",
            "Non-trainable params: 4,007,548",
        ],
    );
}
