//! MobileNet V1 (timm `mobilenetv1_100`), V2 and V3 small/large (torchvision), layer for
//! layer, with torchvision/timm module paths as node names and state-dict keys as tensor
//! names.

use super::builder::{
    Builder, ConvBn, InvertedResidual, SeSpec, GAMMA, GAMMA_RESIDUAL, RELU6, TORCH_HARDSIGMOID,
};
use super::{make_divisible, Resolved, ZooError};
use mnc_ir::{Activation, Graph};

/// timm `mobilenetv1_100`: stem, 13 depthwise-separable blocks (ReLU6, no skips), head.
pub fn mobilenet_v1(o: &Resolved) -> Result<Graph, ZooError> {
    let w = o.width;
    let mut b = Builder::new("mobilenet_v1", o.keep_bn, o.seed, 1e-5);
    let x = b.input(o.batch, o.resolution);
    let stem = make_divisible(32.0 * w, 8);
    let y = b.conv_bn(
        x,
        &ConvBn {
            conv: "conv_stem",
            bn: "bn1",
            cout: stem,
            kernel: 3,
            stride: 2,
            groups: 1,
            gamma: GAMMA,
        },
    )?;
    let mut y = b.act(y, "bn1.act", RELU6)?;
    // (out channels, repeats, first stride)
    let stages: [(usize, usize, usize); 5] = [
        (64, 1, 1),
        (128, 2, 2),
        (256, 2, 2),
        (512, 6, 2),
        (1024, 2, 2),
    ];
    for (si, &(c, n, s)) in stages.iter().enumerate() {
        let cout = make_divisible(c as f64 * w, 8);
        for i in 0..n {
            let p = format!("blocks.{si}.{i}");
            let cin = b.channels(y);
            let stride = if i == 0 { s } else { 1 };
            let d = b.conv_bn(
                y,
                &ConvBn {
                    conv: &format!("{p}.conv_dw"),
                    bn: &format!("{p}.bn1"),
                    cout: cin,
                    kernel: 3,
                    stride,
                    groups: cin,
                    gamma: GAMMA,
                },
            )?;
            let d = b.act(d, &format!("{p}.bn1.act"), RELU6)?;
            let q = b.conv_bn(
                d,
                &ConvBn {
                    conv: &format!("{p}.conv_pw"),
                    bn: &format!("{p}.bn2"),
                    cout,
                    kernel: 1,
                    stride: 1,
                    groups: 1,
                    gamma: GAMMA,
                },
            )?;
            y = b.act(q, &format!("{p}.bn2.act"), RELU6)?;
        }
    }
    let f = b.pool_flatten(y, "global_pool.pool", "global_pool.flatten")?;
    let logits = b.linear(f, "classifier", o.num_classes)?;
    b.finish(logits)
}

/// torchvision `mobilenet_v2` (ReLU6 inverted residuals).
pub fn mobilenet_v2(o: &Resolved) -> Result<Graph, ZooError> {
    let w = o.width;
    let mut b = Builder::new("mobilenet_v2", o.keep_bn, o.seed, 1e-5);
    let x = b.input(o.batch, o.resolution);
    let mut cin = make_divisible(32.0 * w, 8);
    let last = make_divisible(1280.0 * w.max(1.0), 8);
    let mut y = b.cna(x, "features.0", cin, 3, 2, 1, Some(RELU6), GAMMA)?;
    // t, c, n, s
    let setting: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut idx = 1;
    for &(t, c, n, s) in &setting {
        let cout = make_divisible(c as f64 * w, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}.conv");
            let hidden = cin * t;
            let residual = stride == 1 && cin == cout;
            let mut j = 0;
            let mut h = y;
            if t != 1 {
                h = b.cna(h, &format!("{p}.0"), hidden, 1, 1, 1, Some(RELU6), GAMMA)?;
                j = 1;
            }
            h = b.cna(
                h,
                &format!("{p}.{j}"),
                hidden,
                3,
                stride,
                hidden,
                Some(RELU6),
                GAMMA,
            )?;
            h = b.conv_bn(
                h,
                &ConvBn {
                    conv: &format!("{p}.{}", j + 1),
                    bn: &format!("{p}.{}", j + 2),
                    cout,
                    kernel: 1,
                    stride: 1,
                    groups: 1,
                    gamma: if residual { GAMMA_RESIDUAL } else { GAMMA },
                },
            )?;
            y = if residual {
                b.add(h, y, &format!("features.{idx}.add"))?
            } else {
                h
            };
            cin = cout;
            idx += 1;
        }
    }
    y = b.cna(
        y,
        &format!("features.{idx}"),
        last,
        1,
        1,
        1,
        Some(RELU6),
        GAMMA,
    )?;
    let f = b.pool_flatten(y, "avgpool", "flatten")?;
    let f = b.dropout(f, "classifier.0")?;
    let logits = b.linear(f, "classifier.1", o.num_classes)?;
    b.finish(logits)
}

/// One MobileNetV3 bneck row: input, kernel, expanded, output channels, SE, hard-swish,
/// stride.
type V3Row = (usize, usize, usize, usize, bool, bool, usize);

const V3_LARGE: [V3Row; 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];

const V3_SMALL: [V3Row; 11] = [
    (16, 3, 16, 16, true, false, 2),
    (16, 3, 72, 24, false, false, 2),
    (24, 3, 88, 24, false, false, 1),
    (24, 5, 96, 40, true, true, 2),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 120, 48, true, true, 1),
    (48, 5, 144, 48, true, true, 1),
    (48, 5, 288, 96, true, true, 2),
    (96, 5, 576, 96, true, true, 1),
    (96, 5, 576, 96, true, true, 1),
];

/// torchvision `mobilenet_v3_large` / `mobilenet_v3_small`.
pub fn mobilenet_v3(o: &Resolved, large: bool) -> Result<Graph, ZooError> {
    let w = o.width;
    let (name, rows, last): (&str, &[V3Row], usize) = if large {
        ("mobilenet_v3_large", &V3_LARGE, 1280)
    } else {
        ("mobilenet_v3_small", &V3_SMALL, 1024)
    };
    let adj = |c: usize| make_divisible(c as f64 * w, 8);
    let mut b = Builder::new(name, o.keep_bn, o.seed, 1e-3);
    let x = b.input(o.batch, o.resolution);
    let mut y = b.cna(
        x,
        "features.0",
        adj(rows[0].0),
        3,
        2,
        1,
        Some(Activation::HardSwish),
        GAMMA,
    )?;
    for (i, &(_, k, exp, cout, use_se, hs, stride)) in rows.iter().enumerate() {
        let (exp, cout) = (adj(exp), adj(cout));
        let act = if hs {
            Activation::HardSwish
        } else {
            Activation::Relu
        };
        let se = use_se.then(|| SeSpec {
            squeeze: make_divisible((exp / 4) as f64, 8),
            act: Activation::Relu,
            gate: TORCH_HARDSIGMOID,
        });
        y = b.inverted_residual(
            y,
            &InvertedResidual {
                block: &format!("features.{}.block", i + 1),
                add: &format!("features.{}.add", i + 1),
                expanded: exp,
                kernel: k,
                stride,
                cout,
                act,
                se,
            },
        )?;
    }
    let c = b.channels(y);
    y = b.cna(
        y,
        &format!("features.{}", rows.len() + 1),
        6 * c,
        1,
        1,
        1,
        Some(Activation::HardSwish),
        GAMMA,
    )?;
    let f = b.pool_flatten(y, "avgpool", "flatten")?;
    let h = b.linear(f, "classifier.0", adj(last))?;
    let h = b.act(h, "classifier.1", Activation::HardSwish)?;
    let h = b.dropout(h, "classifier.2")?;
    let logits = b.linear(h, "classifier.3", o.num_classes)?;
    b.finish(logits)
}
