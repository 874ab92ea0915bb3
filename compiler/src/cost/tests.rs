//! Tests of the cost report: one per op convention on hand-built graphs, the structural
//! analyses, and the exact torchinfo figures on the zoo's torchvision-identical graphs
//! (totals and every layer, against `scripts/reference_figures.json`).

use super::*;
use crate::zoo::{self, ZooOptions};
use mnc_ir::{Activation, BinaryOp, Conv, Gemm, Graph, NodeId, Op, Tensor, TensorType};

/// A small graph builder for the tests.
struct B {
    g: Graph,
}

impl B {
    fn new(shape: &[usize]) -> (Self, NodeId) {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::f32(shape.to_vec()));
        (B { g }, x)
    }
    fn c(&mut self, name: &str, shape: &[usize]) -> NodeId {
        let n = shape.iter().product();
        let t = Tensor::from_f32(shape.to_vec(), vec![0.5; n]).unwrap();
        self.g.add_constant(name, t)
    }
    fn op(&mut self, name: &str, op: Op, ins: &[NodeId]) -> NodeId {
        self.g.add_node_inferred(name, op, ins).unwrap()
    }
    /// Conv at module path `p` (weights `p.weight`, `p.bias`).
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        p: &str,
        x: NodeId,
        cout: usize,
        k: usize,
        s: usize,
        group: usize,
        bias: bool,
    ) -> NodeId {
        let cin = self.g.node(x).ty.shape[1];
        let w = self.c(&format!("{p}.weight"), &[cout, cin / group, k, k]);
        let mut ins = vec![x, w];
        if bias {
            ins.push(self.c(&format!("{p}.bias"), &[cout]));
        }
        let conv = Conv {
            kernel: [k, k],
            strides: [s, s],
            pads: [k / 2; 4],
            group,
            has_bias: bias,
            ..Default::default()
        };
        self.op(p, Op::Conv(conv), &ins)
    }
    fn bn(&mut self, p: &str, x: NodeId) -> NodeId {
        let c = self.g.node(x).ty.shape[1];
        let ins: Vec<NodeId> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|r| self.c(&format!("{p}.{r}"), &[c]))
            .collect();
        self.op(
            p,
            Op::BatchNorm { epsilon: 1e-5 },
            &[x, ins[0], ins[1], ins[2], ins[3]],
        )
    }
    fn act(&mut self, name: &str, x: NodeId, a: Activation) -> NodeId {
        self.op(name, Op::Act(a), &[x])
    }
    fn linear(&mut self, p: &str, x: NodeId, out: usize) -> NodeId {
        let cin = self.g.node(x).ty.shape[1];
        let w = self.c(&format!("{p}.weight"), &[out, cin]);
        let b = self.c(&format!("{p}.bias"), &[out]);
        let gemm = Gemm {
            trans_b: true,
            has_c: true,
            ..Default::default()
        };
        self.op(p, Op::Gemm(gemm), &[x, w, b])
    }
    fn finish(mut self, y: NodeId) -> Graph {
        self.g.add_output("y", y);
        mnc_ir::verify::verify(&self.g).unwrap();
        self.g
    }
}

fn run(g: &Graph) -> ModelCost {
    analyze(g, &CostOptions::default()).unwrap()
}

fn layer<'a>(c: &'a ModelCost, name: &str) -> &'a LayerCost {
    c.layers
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

#[test]
fn conv_mult_adds_are_weight_plus_bias_times_n_times_output_spatial() {
    let (mut b, x) = B::new(&[2, 3, 9, 9]);
    let y = b.conv("c", x, 8, 3, 2, 1, true);
    let c = run(&b.finish(y));
    let l = layer(&c, "c");
    assert_eq!(l.output_shape, vec![2, 8, 5, 5]);
    assert_eq!(l.params, 8 * 3 * 9 + 8);
    assert_eq!(l.mult_adds, (8 * 3 * 9 + 8) * 2 * 5 * 5);
    assert_eq!(l.param_bytes, 4 * l.params);
    assert_eq!(c.forward_backward_pass_bytes, 2 * 4 * 2 * 8 * 5 * 5);
    assert_eq!(c.input_bytes, 4 * 2 * 3 * 9 * 9);
}

#[test]
fn gemm_and_matmul_mult_adds_are_params_times_rows() {
    let (mut b, x) = B::new(&[4, 10]);
    let y = b.linear("fc", x, 3);
    let w = b.c("proj.weight", &[3, 5]);
    let z = b.op("proj", Op::MatMul, &[y, w]);
    let c = run(&b.finish(z));
    assert_eq!(layer(&c, "fc").params, 33);
    assert_eq!(layer(&c, "fc").mult_adds, 33 * 4);
    assert_eq!(layer(&c, "proj").params, 15);
    assert_eq!(layer(&c, "proj").mult_adds, 15 * 4);
    assert_eq!(layer(&c, "fc").class, Some(LayerClass::Classifier));
}

#[test]
fn matmul_of_two_activations_has_no_params() {
    let (mut b, x) = B::new(&[4, 4]);
    let y = b.op("mm", Op::MatMul, &[x, x]);
    let c = run(&b.finish(y));
    assert_eq!(layer(&c, "mm").params, 0);
    assert_eq!(layer(&c, "mm").mult_adds, 0);
    assert_eq!(layer(&c, "mm").trainable, Trainable::NoParams);
    assert_eq!(c.forward_backward_pass_bytes, 0);
}

#[test]
fn batchnorm_params_are_scale_and_bias_running_stats_are_buffers() {
    let (mut b, x) = B::new(&[3, 16, 5, 5]);
    let y = b.bn("bn", x);
    let c = run(&b.finish(y));
    let l = layer(&c, "bn");
    assert_eq!(l.params, 32);
    assert_eq!(l.buffers, 32);
    assert_eq!(l.mult_adds, 3 * 32);
    assert_eq!(c.params_bytes, 32 * 4);
    assert_eq!(c.forward_backward_pass_bytes, 2 * 4 * 3 * 16 * 5 * 5);
    assert_eq!(l.class, Some(LayerClass::Norm));
    assert!(c.notes.is_empty());
}

#[test]
fn channel_affine_is_n_times_params() {
    let (mut b, x) = B::new(&[2, 6, 3, 3]);
    let s = b.c("aff.weight", &[6]);
    let t = b.c("aff.bias", &[6]);
    let y = b.op("aff", Op::ChannelAffine, &[x, s, t]);
    let c = run(&b.finish(y));
    assert_eq!(layer(&c, "aff").params, 12);
    assert_eq!(layer(&c, "aff").mult_adds, 24);
}

#[test]
fn parameter_free_layers_cost_nothing_but_are_listed() {
    let (mut b, x) = B::new(&[1, 4, 6, 6]);
    let r = b.act("relu", x, Activation::Relu);
    let a = b.op("add", Op::Binary(BinaryOp::Add), &[r, x]);
    // LRN has no parameters, so no mult-adds under torchinfo's convention (as
    // `nn.LocalResponseNorm`).
    let lrn = mnc_ir::Lrn {
        size: 5,
        alpha: 1e-4,
        beta: 0.75,
        bias: 1.0,
    };
    let l = b.op("lrn", Op::Lrn(lrn), &[a]);
    let p = b.op("pool", Op::GlobalAveragePool, &[l]);
    let c = run(&b.finish(p));
    let names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["relu", "add", "lrn", "pool"]);
    assert_eq!(layer(&c, "lrn").op, "LRN");
    assert!(c.layers.iter().all(|l| l.params == 0 && l.mult_adds == 0));
    assert_eq!(c.total_params, 0);
    assert_eq!(c.estimated_total_size_mb, c.input_size_mb);
}

#[test]
fn fused_squeeze_excite_gives_two_rows_named_after_their_weights() {
    let (mut b, x) = B::new(&[2, 8, 4, 4]);
    let w1 = b.c("blk.se.fc1.weight", &[2, 8, 1, 1]);
    let b1 = b.c("blk.se.fc1.bias", &[2]);
    let w2 = b.c("blk.se.fc2.weight", &[8, 2, 1, 1]);
    let b2 = b.c("blk.se.fc2.bias", &[8]);
    let se = mnc_ir::SqueezeExcite {
        act: Activation::Silu,
        gate: Activation::Sigmoid,
    };
    let y = b.op("blk.se", Op::SqueezeExcite(se), &[x, w1, b1, w2, b2]);
    let c = run(&b.finish(y));
    let fc1 = layer(&c, "blk.se.fc1");
    let fc2 = layer(&c, "blk.se.fc2");
    assert_eq!(
        (fc1.op.as_str(), fc2.op.as_str()),
        ("SqueezeExcite.fc1", "SqueezeExcite.fc2")
    );
    assert_eq!((fc1.params, fc2.params), (18, 24));
    assert_eq!((fc1.mult_adds, fc2.mult_adds), (36, 48));
    assert_eq!(fc1.output_shape, vec![2, 2, 1, 1]);
    assert_eq!(fc2.input_shape, vec![2, 2, 1, 1]);
    assert_eq!(c.forward_backward_pass_bytes, 2 * 4 * (2 * 2 + 2 * 8));
    assert_eq!(fc1.class, Some(LayerClass::Se));
}

#[test]
fn weight_shared_through_identity_counts_once_per_consuming_layer() {
    let (mut b, x) = B::new(&[1, 4, 4, 4]);
    let w = b.c("shared", &[4, 4, 1, 1]);
    let i1 = b.op("Identity_0", Op::Identity, &[w]);
    let i2 = b.op("Identity_1", Op::Identity, &[i1]);
    let conv = Op::Conv(Conv::default());
    let y1 = b.op("/a/Conv", conv.clone(), &[x, w]);
    let y2 = b.op("/b/Conv", conv, &[y1, i2]);
    let g = b.finish(y2);
    let c = run(&g);
    assert_eq!(c.layers.len(), 2, "Identity nodes are not layers");
    assert_eq!(layer(&c, "a").params, 16);
    assert_eq!(layer(&c, "b").params, 16);
    assert_eq!(c.total_params, 32);
    // Through Identity, the parameter is the consuming module's own (`b.weight`).
    assert_eq!(
        param_name(&g, "b", "weight", i2).as_deref(),
        Some("b.weight")
    );
    assert_eq!(param_name(&g, "a", "weight", w).as_deref(), Some("shared"));
    let frozen = analyze(
        &g,
        &CostOptions {
            freeze: vec!["b.".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(layer(&frozen, "a").trainable, Trainable::Yes);
    assert_eq!(layer(&frozen, "b").trainable, Trainable::No);
}

#[test]
fn freeze_marks_by_prefix_and_layers_can_be_partial() {
    let (mut b, x) = B::new(&[1, 3, 4, 4]);
    let w = b.c("features.0.weight", &[5, 3, 1, 1]);
    let bias = b.c("head.bias", &[5]);
    let conv = Conv {
        has_bias: true,
        ..Default::default()
    };
    let y = b.op("features.0", Op::Conv(conv), &[x, w, bias]);
    let g = b.finish(y);
    let opts = CostOptions {
        freeze: vec!["features".into()],
        ..Default::default()
    };
    let c = analyze(&g, &opts).unwrap();
    let l = layer(&c, "features.0");
    assert_eq!((l.params, l.trainable_params), (20, 5));
    assert_eq!(l.trainable, Trainable::Partial);
    assert_eq!((c.trainable_params, c.non_trainable_params), (5, 15));
    let all = analyze(
        &g,
        &CostOptions {
            freeze: vec!["features".into(), "head".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(layer(&all, "features.0").trainable, Trainable::No);
}

#[test]
fn exporter_named_weights_belong_to_their_module() {
    let (mut b, x) = B::new(&[1, 3, 4, 4]);
    let w = b.c("onnx::Conv_538", &[2, 3, 1, 1]);
    let bias = b.c("onnx::Conv_539", &[2]);
    let conv = Conv {
        has_bias: true,
        ..Default::default()
    };
    let y = b.op(
        "/features/features.0/features.0.0/Conv",
        Op::Conv(conv),
        &[x, w, bias],
    );
    let g = b.finish(y);
    assert_eq!(
        param_name(&g, "features.0.0", "bias", bias).as_deref(),
        Some("features.0.0.bias")
    );
    let opts = CostOptions {
        freeze: vec!["features".into()],
        ..Default::default()
    };
    let c = analyze(&g, &opts).unwrap();
    assert_eq!(layer(&c, "features.0.0").trainable, Trainable::No);
    assert_eq!(c.trainable_params, 0);
}

#[test]
fn bn_folded_graphs_get_a_note() {
    let (mut b, x) = B::new(&[1, 3, 8, 8]);
    let y = b.conv("c", x, 4, 3, 1, 1, true);
    let c = run(&b.finish(y));
    assert_eq!(c.notes, vec![BN_FOLDED_NOTE.to_string()]);
    let (mut b, x) = B::new(&[1, 3, 8, 8]);
    let y = b.conv("c", x, 4, 3, 1, 1, true);
    let y = b.bn("bn", y);
    assert!(run(&b.finish(y)).notes.is_empty());
}

#[test]
fn constant_subgraphs_are_not_layers() {
    let (mut b, x) = B::new(&[2, 4]);
    let k = b.c("k", &[2, 4]);
    let k2 = b.op("k_relu", Op::Act(Activation::Relu), &[k]);
    let y = b.op("add", Op::Binary(BinaryOp::Add), &[x, k2]);
    let c = run(&b.finish(y));
    let names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["add"]);
}

/// stem conv -> BN -> ReLU6 -> dw (stride `s`) -> BN -> SiLU (Sigmoid + Mul) -> SE
/// (unfused) -> pw -> BN, then pool, flatten, linear.
fn mbconv_graph(s: usize) -> Graph {
    let (mut b, x) = B::new(&[2, 3, 16, 16]);
    let y = b.conv("stem", x, 8, 3, 2, 1, false);
    let y = b.bn("stem_bn", y);
    let y = b.act("stem_act", y, Activation::Clip { min: 0.0, max: 6.0 });
    let y = b.conv("dw", y, 8, 3, s, 8, false);
    let y = b.bn("dw_bn", y);
    let sg = b.act("dw_sig", y, Activation::Sigmoid);
    let y = b.op("dw_silu", Op::Binary(BinaryOp::Mul), &[y, sg]);
    let p = b.op("se.avgpool", Op::GlobalAveragePool, &[y]);
    let f1 = b.conv("se.fc1", p, 2, 1, 1, 1, true);
    let a = b.act("se.act", f1, Activation::Relu);
    let f2 = b.conv("se.fc2", a, 8, 1, 1, 1, true);
    let gt = b.act("se.gate", f2, Activation::Sigmoid);
    let y = b.op("se", Op::Binary(BinaryOp::Mul), &[gt, y]);
    let y = b.conv("pw", y, 16, 1, 1, 1, false);
    let y = b.bn("pw_bn", y);
    let y = b.op("pool", Op::GlobalAveragePool, &[y]);
    let y = b.op("flat", Op::Flatten { axis: 1 }, &[y]);
    let y = b.linear("fc", y, 3);
    b.finish(y)
}

#[test]
fn classes_are_recognized() {
    let c = run(&mbconv_graph(1));
    let class = |n: &str| layer(&c, n).class;
    assert_eq!(class("stem"), Some(LayerClass::Stem));
    assert_eq!(class("dw"), Some(LayerClass::Depthwise));
    assert_eq!(class("se.fc1"), Some(LayerClass::Se));
    assert_eq!(class("se.fc2"), Some(LayerClass::Se));
    assert_eq!(class("pw"), Some(LayerClass::Pointwise));
    assert_eq!(class("fc"), Some(LayerClass::Classifier));
    assert_eq!(class("dw_bn"), Some(LayerClass::Norm));
    assert_eq!(class("pool"), None);
    // The breakdown covers every parameter and mult-add exactly once.
    let p: u64 = c.classes.iter().map(|k| k.params).sum();
    let m: u64 = c.classes.iter().map(|k| k.mult_adds).sum();
    assert_eq!((p, m), (c.total_params, c.total_mult_adds));
    let dw = c
        .classes
        .iter()
        .find(|k| k.class == LayerClass::Depthwise)
        .unwrap();
    let l = layer(&c, "dw");
    assert_eq!(
        dw.bytes_moved,
        l.input_bytes + l.param_bytes + l.output_bytes
    );
    assert_eq!(
        dw.arithmetic_intensity,
        l.mult_adds as f64 / dw.bytes_moved as f64
    );
}

#[test]
fn grouped_and_standard_convs() {
    let (mut b, x) = B::new(&[1, 4, 8, 8]);
    let y = b.conv("stem", x, 8, 3, 1, 1, false);
    let y = b.conv("std", y, 8, 3, 1, 1, false);
    let y = b.conv("grp", y, 8, 3, 1, 2, false);
    let y = b.conv("pw_s2", y, 8, 1, 2, 1, false);
    let c = run(&b.finish(y));
    assert_eq!(layer(&c, "std").class, Some(LayerClass::Standard));
    assert_eq!(layer(&c, "grp").class, Some(LayerClass::Grouped));
    assert_eq!(layer(&c, "pw_s2").class, Some(LayerClass::Standard));
}

#[test]
fn separable_pair_through_bn_silu_and_se() {
    for stride in [1, 2] {
        let c = run(&mbconv_graph(stride));
        assert_eq!(c.separable.len(), 1, "stride {stride}");
        let p = &c.separable[0];
        assert_eq!((p.depthwise.as_str(), p.pointwise.as_str()), ("dw", "pw"));
        // The depthwise conv's output size is D_F (8x8 at stride 1, 4x4 at stride 2).
        let df = 8 / stride;
        assert_eq!((p.d_k, p.m, p.n, p.d_f), ([3, 3], 8, 16, [df, df]));
        let df2 = (df * df) as u64;
        assert_eq!(p.standard_mult_adds, 9 * 8 * 16 * df2);
        assert_eq!(p.separable_mult_adds, 9 * 8 * df2 + 8 * 16 * df2);
        assert_eq!(p.measured_mult_adds, p.separable_mult_adds);
        assert!(p.ratio_matches);
        assert!((p.ratio - (1.0 / 16.0 + 1.0 / 9.0)).abs() < 1e-15);
        let t = &c.separable_total;
        assert_eq!(t.pairs, 1);
        assert_eq!(
            t.saved_mult_adds,
            p.standard_mult_adds - p.separable_mult_adds
        );
    }
}

#[test]
fn no_pair_when_the_depthwise_output_branches() {
    let (mut b, x) = B::new(&[1, 4, 8, 8]);
    let y = b.conv("stem", x, 4, 3, 1, 1, false);
    let d = b.conv("dw", y, 4, 3, 1, 4, false);
    let p = b.conv("pw", d, 8, 1, 1, 1, false);
    let q = b.conv("pw2", d, 8, 1, 1, 1, false);
    let s = b.op("sum", Op::Binary(BinaryOp::Add), &[p, q]);
    let c = run(&b.finish(s));
    assert!(c.separable.is_empty());
    assert_eq!(c.separable_total.pairs, 0);
}

#[test]
fn graph_without_inputs_is_an_error() {
    let mut g = Graph::new("empty");
    let k = g.add_constant("k", Tensor::scalar_f32(1.0));
    g.add_output("y", k);
    let e = analyze(&g, &CostOptions::default()).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

// ---- exact torchinfo figures on the zoo's torchvision-identical graphs ----

fn reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/reference_figures.json"
    );
    let text = std::fs::read_to_string(path).expect("scripts/reference_figures.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn zoo_cost(
    name: &str,
    num_classes: usize,
    batch: usize,
    keep_bn: bool,
    freeze: &[&str],
) -> ModelCost {
    let opts = ZooOptions {
        num_classes,
        keep_bn,
        batch,
        ..Default::default()
    };
    let g = zoo::build(name, &opts).unwrap();
    let copts = CostOptions {
        freeze: freeze.iter().map(|s| s.to_string()).collect(),
        stage: None,
    };
    analyze(&g, &copts).unwrap()
}

/// torchinfo counts the input as `sys.getsizeof(storage)`: its bytes plus a 64-byte
/// Python object header. mnc counts the tensor bytes only.
const TORCHINFO_STORAGE_HEADER: u64 = 64;

fn check_totals(c: &ModelCost, r: &serde_json::Value) {
    let int = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(c.total_params, int("total_params"));
    assert_eq!(c.trainable_params, int("trainable_params"));
    assert_eq!(c.non_trainable_params, int("non_trainable_params"));
    assert_eq!(c.total_mult_adds, int("total_mult_adds"));
    assert_eq!(
        c.forward_backward_pass_bytes,
        int("forward_backward_pass_bytes")
    );
    assert_eq!(c.params_bytes, int("params_bytes"));
    assert_eq!(c.input_bytes + TORCHINFO_STORAGE_HEADER, int("input_bytes"));
    // The printed lines, label for label, as torchinfo prints them.
    let printed = r["printed"].as_object().unwrap();
    let ours = format::totals_lines(c);
    for (label, value) in printed {
        let want = format!("{label}: {}", value.as_str().unwrap());
        assert!(ours.contains(&want), "missing '{want}' in {ours:#?}");
    }
}

/// Every torchinfo leaf module with parameters appears, in order, as a row with the same
/// module path, parameter count, mult-adds and output shape.
fn check_layers(c: &ModelCost, rows: &serde_json::Value) {
    let want: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["params"].as_u64().unwrap() > 0)
        .collect();
    let ours: Vec<&LayerCost> = c.layers.iter().filter(|l| l.params > 0).collect();
    assert_eq!(ours.len(), want.len());
    for (l, r) in ours.iter().zip(want) {
        assert_eq!(l.name, r["path"].as_str().unwrap());
        assert_eq!(l.params, r["params"].as_u64().unwrap(), "{}", l.name);
        assert_eq!(
            l.trainable_params,
            r["trainable_params"].as_u64().unwrap(),
            "{}",
            l.name
        );
        assert_eq!(l.mult_adds, r["mult_adds"].as_u64().unwrap(), "{}", l.name);
        assert_eq!(
            l.output_bytes,
            r["output_bytes"].as_u64().unwrap(),
            "{}",
            l.name
        );
        let shape: Vec<usize> = serde_json::from_value(r["output_shape"].clone()).unwrap();
        assert_eq!(l.output_shape, shape, "{}", l.name);
    }
}

#[test]
fn mobilenet_v2_matches_torchinfo() {
    let r = reference();
    let c = zoo_cost("mobilenet_v2", 1000, 1, true, &[]);
    check_totals(&c, &r["models"]["mobilenet_v2"]);
    check_layers(&c, &r["layers"]["mobilenet_v2"]);
    assert!(c.notes.is_empty());
    // 17 inverted-residual blocks, each with one depthwise + pointwise (project) pair.
    assert_eq!(c.separable.len(), 17);
    assert!(c.separable.iter().all(|p| p.ratio_matches));
    assert!(c
        .separable
        .iter()
        .all(|p| p.measured_mult_adds == p.separable_mult_adds));
}

#[test]
fn efficientnet_b0_head3_batch32_frozen_features_matches_torchinfo() {
    let r = reference();
    let key = "efficientnet_b0_head3_b32_freeze_features";
    let c = zoo_cost("efficientnet_b0", 3, 32, true, &["features"]);
    check_totals(&c, &r["models"][key]);
    check_layers(&c, &r["layers"][key]);
    assert_eq!(c.batch, 32);
    // 16 MBConv blocks: depthwise -> BN -> SiLU -> SE -> project conv.
    assert_eq!(c.separable.len(), 16);
    assert!(c.separable.iter().all(|p| p.ratio_matches));
    let se = c
        .classes
        .iter()
        .find(|k| k.class == LayerClass::Se)
        .unwrap();
    assert_eq!(se.layers, 32);
}

/// Folding BN removes its parameters, mult-adds and activation bytes and gives each
/// conv a bias; the report notes it. The figures move by exactly that.
#[test]
fn bn_folded_graph_differs_by_exactly_the_bn_terms() {
    for (name, classes, batch) in [("mobilenet_v2", 1000, 1), ("efficientnet_b0", 3, 2)] {
        let kept = zoo_cost(name, classes, batch, true, &[]);
        let folded = zoo_cost(name, classes, batch, false, &[]);
        let bn: Vec<&LayerCost> = kept.layers.iter().filter(|l| l.op == "BatchNorm").collect();
        let bn_params: u64 = bn.iter().map(|l| l.params).sum();
        let bn_macs: u64 = bn.iter().map(|l| l.mult_adds).sum();
        let bn_fb: u64 = bn.iter().map(|l| 2 * l.output_bytes).sum();
        // One bias of C elements per folded conv: half the BN's params.
        let bias = bn_params / 2;
        let bias_macs: u64 = kept
            .layers
            .iter()
            .filter(|l| l.op == "BatchNorm")
            .map(|l| {
                l.params / 2
                    * l.output_shape[0] as u64
                    * (l.output_shape[2] * l.output_shape[3]) as u64
            })
            .sum();
        assert_eq!(
            folded.total_params,
            kept.total_params - bn_params + bias,
            "{name}"
        );
        assert_eq!(
            folded.total_mult_adds,
            kept.total_mult_adds - bn_macs + bias_macs,
            "{name}"
        );
        assert_eq!(
            folded.forward_backward_pass_bytes,
            kept.forward_backward_pass_bytes - bn_fb,
            "{name}"
        );
        assert_eq!(folded.notes, vec![BN_FOLDED_NOTE.to_string()], "{name}");
        assert_eq!(folded.separable.len(), kept.separable.len(), "{name}");
    }
}

/// `--stage optimized` (the mnc-passes pipeline) gives the figures of the BN-folded graph:
/// folding, activation/residual/SE fusion and scheduling change no parameter, mult-add or
/// activation-memory figure beyond the folding.
#[test]
fn optimized_stage_matches_the_bn_folded_graph() {
    for name in ["mobilenet_v2", "efficientnet_b0"] {
        let opts = ZooOptions {
            keep_bn: true,
            ..Default::default()
        };
        let g = zoo::build(name, &opts).unwrap();
        let before = run(&g);
        let optimized = cli::optimize(g).unwrap();
        let after = run(&optimized);
        let folded = zoo_cost(name, 1000, 1, false, &[]);
        assert_eq!(after.total_params, folded.total_params, "{name}");
        assert_eq!(after.total_mult_adds, folded.total_mult_adds, "{name}");
        assert_eq!(
            after.forward_backward_pass_bytes, folded.forward_backward_pass_bytes,
            "{name}"
        );
        assert_eq!(after.separable.len(), before.separable.len(), "{name}");
        assert!(after.layers.len() < before.layers.len(), "{name}");
        assert_eq!(after.notes, vec![BN_FOLDED_NOTE.to_string()], "{name}");
        let note = cli::savings_note(&before, &after);
        assert!(note.starts_with(&format!(
            "optimized vs imported: params {} -> {}",
            format::commas(before.total_params),
            format::commas(after.total_params)
        )));
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// The documented JSON schema (docs/COST.md): exactly these keys and value types.
#[test]
fn json_schema_is_stable() {
    let c = run(&mbconv_graph(2));
    let text = format::render_json(std::slice::from_ref(&c)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        keys(&v),
        sorted(&[
            "model",
            "stage",
            "batch",
            "total_params",
            "trainable_params",
            "non_trainable_params",
            "total_mult_adds",
            "int8_mult_adds",
            "input_bytes",
            "forward_backward_pass_bytes",
            "params_bytes",
            "input_size_mb",
            "forward_backward_pass_size_mb",
            "params_size_mb",
            "estimated_total_size_mb",
            "layers",
            "separable",
            "separable_total",
            "classes",
            "notes",
        ])
    );
    assert_eq!(v["total_params"].as_u64(), Some(c.total_params));
    assert_eq!(v["total_mult_adds"].as_u64(), Some(c.total_mult_adds));
    assert!(v["estimated_total_size_mb"].is_f64());
    assert!(v["stage"].is_null());
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), c.layers.len());
    for l in layers {
        assert_eq!(
            keys(l),
            sorted(&[
                "name",
                "node",
                "op",
                "input_shape",
                "output_shape",
                "params",
                "trainable_params",
                "param_bytes",
                "buffers",
                "mult_adds",
                "int8_mult_adds",
                "input_bytes",
                "output_bytes",
                "trainable",
                "class",
            ])
        );
        let t = l["trainable"].as_str().unwrap();
        assert!(["yes", "no", "partial", "--"].contains(&t), "{t}");
        assert!(l["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.is_u64()));
    }
    let dw = layers.iter().find(|l| l["name"] == "dw").unwrap();
    assert_eq!(dw["class"], "depthwise");
    assert_eq!(dw["trainable"], "yes");
    let pool = layers.iter().find(|l| l["name"] == "pool").unwrap();
    assert!(pool["class"].is_null());
    assert_eq!(pool["trainable"], "--");
    let sep = v["separable"].as_array().unwrap();
    assert_eq!(sep.len(), 1);
    assert_eq!(
        keys(&sep[0]),
        sorted(&[
            "depthwise",
            "pointwise",
            "d_k",
            "m",
            "n",
            "d_f",
            "standard_mult_adds",
            "separable_mult_adds",
            "measured_mult_adds",
            "ratio",
            "expected_ratio",
            "ratio_matches",
        ])
    );
    assert_eq!(sep[0]["d_f"], serde_json::json!([4, 4]));
    assert_eq!(
        keys(&v["separable_total"]),
        sorted(&[
            "pairs",
            "standard_mult_adds",
            "separable_mult_adds",
            "saved_mult_adds",
            "ratio"
        ])
    );
    let classes = v["classes"].as_array().unwrap();
    let names: Vec<&str> = classes
        .iter()
        .map(|k| k["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "stem",
            "depthwise",
            "pointwise",
            "standard",
            "grouped",
            "se",
            "classifier",
            "norm"
        ]
    );
    for k in classes {
        assert_eq!(
            keys(k),
            sorted(&[
                "class",
                "layers",
                "params",
                "mult_adds",
                "bytes_moved",
                "arithmetic_intensity",
                "params_share",
                "mult_adds_share",
            ])
        );
    }
    // Several models: an array of such objects.
    let two = format::render_json(&[c.clone(), c]).unwrap();
    let v2: serde_json::Value = serde_json::from_str(&two).unwrap();
    assert_eq!(v2.as_array().map(|a| a.len()), Some(2));
    assert_eq!(v2[1], v);
}
