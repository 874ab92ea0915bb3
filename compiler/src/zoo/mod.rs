//! The built-in model zoo: MobileNet V1 (timm `mobilenetv1_100`), V2, V3 small/large and
//! EfficientNet B0..B7 (torchvision) built directly as IR graphs, layer for layer.
//!
//! Owns the architecture definitions ([`mobilenet`], [`efficientnet`]: EfficientNet B1..B7
//! come from B0's stage table by compound scaling), the graph building blocks and the
//! weight initialisation ([`builder`], [`rng`]), and the `mnc zoo` command ([`cli`]).
//!
//! Node names follow the PyTorch module paths (`features.0.0`) and constants follow the
//! state-dict keys (`features.0.0.weight`, `features.0.1.running_mean`, `classifier.1.bias`).
//! `keep_bn` writes `Conv -> BatchNormalization -> activation` as the PyTorch modules are;
//! the default is the BN-folded form an exporter writes (conv with bias `<conv>.bias`).
//! SiLU is written as an exporter writes it (`Sigmoid` + `Mul`), ReLU6 as `Clip(0, 6)`.
//!
//! Weights are deterministic pseudo-random from the seed, scaled so that activations stay
//! O(1) through the network. They are for compiling, testing and benchmarking, not for
//! accuracy.

mod builder;
pub mod cli;
pub mod efficientnet;
pub mod mobilenet;
mod rng;

use mnc_ir::{Graph, IrError};
use thiserror::Error;

/// Errors of the zoo.
#[derive(Debug, Error)]
pub enum ZooError {
    #[error("unknown zoo model '{name}'; valid names: {}", names().join(", "))]
    UnknownModel { name: String },
    #[error("invalid zoo option: {0}")]
    Option(String),
    #[error("building the zoo graph failed: {0}")]
    Ir(#[from] IrError),
}

/// Options of a zoo build.
#[derive(Clone, Debug, PartialEq)]
pub struct ZooOptions {
    /// Classifier outputs (replaces the last Linear layer).
    pub num_classes: usize,
    /// Input height and width; `None` for the model's native resolution.
    pub resolution: Option<usize>,
    /// Width (channel) multiplier; `None` for the model's own.
    pub width: Option<f64>,
    /// Depth (repeats) multiplier, EfficientNet only; `None` for the model's own.
    pub depth: Option<f64>,
    /// Keep `Conv -> BatchNormalization` instead of folding BN into the conv.
    pub keep_bn: bool,
    /// Seed of the pseudo-random weights.
    pub seed: u64,
    /// Batch size of the graph input.
    pub batch: usize,
}

impl Default for ZooOptions {
    fn default() -> Self {
        ZooOptions {
            num_classes: 1000,
            resolution: None,
            width: None,
            depth: None,
            keep_bn: false,
            seed: 0,
            batch: 1,
        }
    }
}

/// Fully resolved options handed to the architecture builders.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub num_classes: usize,
    pub resolution: usize,
    pub width: f64,
    pub depth: f64,
    pub keep_bn: bool,
    pub seed: u64,
    pub batch: usize,
}

const NAMES: [&str; 12] = [
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
];

/// The zoo's model names.
pub fn names() -> &'static [&'static str] {
    &NAMES
}

/// EfficientNet B-index of a name (`efficientnet_b3` -> 3).
fn b_index(name: &str) -> Option<usize> {
    let i: usize = name.strip_prefix("efficientnet_b")?.parse().ok()?;
    (i < efficientnet::SCALING.len()).then_some(i)
}

/// Native (default) input resolution of a zoo model.
pub fn native_resolution(name: &str) -> Result<usize, ZooError> {
    if !NAMES.contains(&name) {
        return Err(ZooError::UnknownModel { name: name.into() });
    }
    Ok(b_index(name).map_or(224, |i| efficientnet::SCALING[i].2))
}

/// Default (width, depth) multipliers of a zoo model.
pub fn native_scaling(name: &str) -> Result<(f64, f64), ZooError> {
    if !NAMES.contains(&name) {
        return Err(ZooError::UnknownModel { name: name.into() });
    }
    Ok(b_index(name).map_or((1.0, 1.0), |i| {
        let s = efficientnet::SCALING[i];
        (s.0, s.1)
    }))
}

/// torchvision's `_make_divisible(v, divisor)`: round to the nearest multiple of
/// `divisor` (at least `divisor`), never going down by more than 10%.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0).floor() / d).floor() * d).max(d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// Largest accepted multipliers and sizes (keep builds within memory).
const MAX_WIDTH: f64 = 4.0;
const MAX_DEPTH: f64 = 8.0;
const MAX_RESOLUTION: usize = 4096;
const MAX_CLASSES: usize = 1_000_000;
const MAX_BATCH: usize = 4096;

fn resolve(name: &str, o: &ZooOptions) -> Result<Resolved, ZooError> {
    let resolution = o.resolution.unwrap_or(native_resolution(name)?);
    let (w0, d0) = native_scaling(name)?;
    let width = o.width.unwrap_or(w0);
    let depth = o.depth.unwrap_or(d0);
    let bad = |m: String| Err(ZooError::Option(m));
    if !(1..=MAX_RESOLUTION).contains(&resolution) {
        return bad(format!(
            "resolution {resolution} must be in 1..={MAX_RESOLUTION}"
        ));
    }
    if !(width.is_finite() && width > 0.0 && width <= MAX_WIDTH) {
        return bad(format!("width {width} must be in (0, {MAX_WIDTH}]"));
    }
    if !(depth.is_finite() && depth > 0.0 && depth <= MAX_DEPTH) {
        return bad(format!("depth {depth} must be in (0, {MAX_DEPTH}]"));
    }
    if o.depth.is_some() && b_index(name).is_none() {
        return bad(format!(
            "--depth applies to the EfficientNet family only, not to {name}"
        ));
    }
    if !(1..=MAX_CLASSES).contains(&o.num_classes) {
        return bad(format!(
            "num_classes {} must be in 1..={MAX_CLASSES}",
            o.num_classes
        ));
    }
    if !(1..=MAX_BATCH).contains(&o.batch) {
        return bad(format!("batch {} must be in 1..={MAX_BATCH}", o.batch));
    }
    Ok(Resolved {
        num_classes: o.num_classes,
        resolution,
        width,
        depth,
        keep_bn: o.keep_bn,
        seed: o.seed,
        batch: o.batch,
    })
}

/// Builds zoo model `name` as an IR graph (input `input` `[batch,3,R,R]`, output `logits`).
pub fn build(name: &str, opts: &ZooOptions) -> Result<Graph, ZooError> {
    let o = resolve(name, opts)?;
    match name {
        "mobilenet_v1" => mobilenet::mobilenet_v1(&o),
        "mobilenet_v2" => mobilenet::mobilenet_v2(&o),
        "mobilenet_v3_small" => mobilenet::mobilenet_v3(&o, false),
        "mobilenet_v3_large" => mobilenet::mobilenet_v3(&o, true),
        _ => match b_index(name) {
            Some(i) => efficientnet::efficientnet(name, &o, efficientnet::SCALING[i].3),
            None => Err(ZooError::UnknownModel { name: name.into() }),
        },
    }
}

#[cfg(test)]
mod tests;
