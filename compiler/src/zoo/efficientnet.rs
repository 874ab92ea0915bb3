//! EfficientNet B0..B7 (torchvision) generated from B0's stage table by compound scaling:
//! channels `_make_divisible(c * width, 8)`, repeats `ceil(n * depth)`.

use super::builder::{Builder, InvertedResidual, SeSpec, GAMMA};
use super::{make_divisible, Resolved, ZooError};
use mnc_ir::{Activation, Graph};

/// One B0 stage: expand ratio, kernel, stride, input channels, output channels, repeats.
pub type Stage = (usize, usize, usize, usize, usize, usize);

/// EfficientNet-B0's MBConv stage table (paper Table 1, torchvision `_efficientnet_conf`).
pub const B0_STAGES: [Stage; 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// Compound-scaling coefficients of B0..B7 as torchvision sets them: (width, depth,
/// resolution, BatchNorm epsilon).
pub const SCALING: [(f64, f64, usize, f32); 8] = [
    (1.0, 1.0, 224, 1e-5),
    (1.0, 1.1, 240, 1e-5),
    (1.1, 1.2, 260, 1e-5),
    (1.2, 1.4, 300, 1e-5),
    (1.4, 1.8, 380, 1e-5),
    (1.6, 2.2, 456, 1e-3),
    (1.8, 2.6, 528, 1e-3),
    (2.0, 3.1, 600, 1e-3),
];

/// Repeats of a stage after depth scaling (`int(math.ceil(n * depth))`).
pub fn scaled_repeats(n: usize, depth: f64) -> usize {
    (n as f64 * depth).ceil() as usize
}

/// EfficientNet with the given width/depth multipliers and BatchNorm epsilon.
pub fn efficientnet(name: &str, o: &Resolved, eps: f32) -> Result<Graph, ZooError> {
    let (w, d) = (o.width, o.depth);
    let adj = |c: usize| make_divisible(c as f64 * w, 8);
    let mut b = Builder::new(name, o.keep_bn, o.seed, eps);
    let x = b.input(o.batch, o.resolution);
    let mut y = b.cna(
        x,
        "features.0",
        adj(B0_STAGES[0].3),
        3,
        2,
        1,
        Some(Activation::Silu),
        GAMMA,
    )?;
    for (si, &(t, k, s, cin0, cout0, n)) in B0_STAGES.iter().enumerate() {
        let cout = adj(cout0);
        for i in 0..scaled_repeats(n, d) {
            let cin = if i == 0 { adj(cin0) } else { cout };
            let stride = if i == 0 { s } else { 1 };
            y = b.inverted_residual(
                y,
                &InvertedResidual {
                    block: &format!("features.{}.{i}.block", si + 1),
                    add: &format!("features.{}.{i}.add", si + 1),
                    expanded: make_divisible((cin * t) as f64, 8),
                    kernel: k,
                    stride,
                    cout,
                    act: Activation::Silu,
                    se: Some(SeSpec {
                        squeeze: (cin / 4).max(1),
                        act: Activation::Silu,
                        gate: Activation::Sigmoid,
                    }),
                },
            )?;
        }
    }
    let c = b.channels(y);
    y = b.cna(
        y,
        &format!("features.{}", B0_STAGES.len() + 1),
        4 * c,
        1,
        1,
        1,
        Some(Activation::Silu),
        GAMMA,
    )?;
    let f = b.pool_flatten(y, "avgpool", "flatten")?;
    let f = b.dropout(f, "classifier.0")?;
    let logits = b.linear(f, "classifier.1", o.num_classes)?;
    b.finish(logits)
}
