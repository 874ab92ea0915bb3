//! Calibration: the range of every activation tensor over the calibration samples, and the
//! quantization parameters derived from ranges (activations) and values (weights).
//!
//! An [`Observer`] sees every value of one tensor over all samples: its running minimum and
//! maximum, and for the histogram methods a histogram of `|x|` with [`BINS`] bins whose
//! width doubles (adjacent bins merged, exactly) whenever a sample exceeds the covered range,
//! so one pass over the samples suffices. The methods ([`Method`]):
//!
//! - `minmax`: `[min, max]` over all samples (onnxruntime's `MinMax` calibrator).
//! - `percentile`: the `|x|` threshold `t` below which `percentile`% of the values lie
//!   (the upper edge of the histogram bin where the cumulative count reaches it); the range
//!   is `[max(min, -t), min(max, t)]`, so a non-negative tensor stays `[0, t]`.
//! - `entropy`: TensorRT's KL-divergence threshold: for every candidate threshold of `i`
//!   bins the reference distribution `P` is the histogram clipped at bin `i` (the outliers
//!   added to its last bin), `Q` is the histogram below `i` merged into as many levels as
//!   the quantized type has for one sign (255 for a non-negative tensor, 128 otherwise) and
//!   spread back uniformly over the non-empty bins; the `t` minimizing `KL(P || Q)` wins,
//!   and the range is clipped at `t` as for `percentile`. Exact zeros are left out of this
//!   histogram (see [`AbsHistogram::entropy_threshold`]).
//!
//! Every range includes 0 (so that 0 is exactly representable, as padding needs). Non-finite
//! values are counted and left out of the ranges.

use mnc_ir::quant::{quantize, QType};

/// Histogram bins of the `percentile` and `entropy` methods (onnxruntime's and TensorRT's
/// default).
pub const BINS: usize = 2048;

/// The default percentile of `--method percentile`.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// How activation ranges are chosen from the calibration samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Running minimum and maximum over all samples.
    Minmax,
    /// Clip `|x|` at a percentile of its histogram (`--percentile`, default 99.99).
    Percentile,
    /// Clip `|x|` at the threshold minimizing the KL divergence (TensorRT's entropy
    /// calibration).
    Entropy,
}

impl Method {
    /// Whether the method needs the `|x|` histogram.
    pub fn needs_histogram(self) -> bool {
        match self {
            Method::Minmax => false,
            Method::Percentile | Method::Entropy => true,
        }
    }
}

/// A histogram of `|x|` over `[0, BINS * width)`, bin `k` covering `[k * width, (k+1) * width)`
/// (the largest values fall in the last bin), exact zeros counted apart. `width == 0` while
/// only zeros were seen.
#[derive(Clone, Debug, PartialEq)]
pub struct AbsHistogram {
    pub counts: Vec<u64>,
    pub width: f32,
    /// Values equal to 0 (not in `counts`).
    pub zeros: u64,
}

impl Default for AbsHistogram {
    fn default() -> Self {
        AbsHistogram {
            counts: vec![0; BINS],
            width: 0.0,
            zeros: 0,
        }
    }
}

impl AbsHistogram {
    /// Adds the finite values of `data`, whose largest magnitude is `max_abs`.
    pub fn add(&mut self, data: &[f32], max_abs: f32) {
        if max_abs > 0.0 {
            if self.width == 0.0 {
                self.width = max_abs / BINS as f32;
            }
            // Double the range until it covers max_abs: bin pairs merge exactly.
            while max_abs > self.width * BINS as f32 {
                for k in 0..BINS / 2 {
                    self.counts[k] = self.counts[2 * k] + self.counts[2 * k + 1];
                }
                self.counts[BINS / 2..].iter_mut().for_each(|c| *c = 0);
                self.width *= 2.0;
            }
        }
        for &x in data.iter().filter(|x| x.is_finite()) {
            if x == 0.0 {
                self.zeros += 1;
            } else {
                // width > 0 here: a non-zero value made max_abs positive.
                self.counts[((x.abs() / self.width) as usize).min(BINS - 1)] += 1;
            }
        }
    }

    /// The upper edge of the first bin where the cumulative count (zeros included) reaches
    /// `fraction` of the total (`None` without non-zero values).
    pub fn quantile(&self, fraction: f64) -> Option<f32> {
        let nonzero: u64 = self.counts.iter().sum();
        if nonzero == 0 {
            return None;
        }
        let want = fraction.clamp(0.0, 1.0) * (nonzero + self.zeros) as f64;
        let mut acc = self.zeros;
        for (k, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc as f64 >= want {
                return Some((k + 1) as f32 * self.width);
            }
        }
        Some(BINS as f32 * self.width)
    }

    /// TensorRT's entropy threshold for `levels` quantization levels (see the module docs);
    /// `None` without non-zero values. Exact zeros are left out: 0 is exact whatever the
    /// threshold, and the zeros of a ReLU output (often half its values) would otherwise
    /// dominate the first merged level and pull the threshold down.
    pub fn entropy_threshold(&self, levels: usize) -> Option<f32> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 || self.width == 0.0 {
            return None;
        }
        // Only bins up to the last non-empty one matter: beyond it every candidate has the
        // same P and Q as the last non-empty bin's.
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0) + 1;
        if last <= levels {
            return Some(last as f32 * self.width);
        }
        let mut best = (f64::INFINITY, last);
        for i in levels..=last {
            let kl = kl_clipped(&self.counts, i, levels);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        Some(best.1 as f32 * self.width)
    }
}

/// `KL(P || Q)` of the histogram clipped at `i` bins against its `levels`-level
/// quantization (TensorRT's calibration; see the module docs).
fn kl_clipped(counts: &[u64], i: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = counts[..i].iter().map(|&c| c as f64).collect();
    let outliers: u64 = counts[i..].iter().sum();
    p[i - 1] += outliers as f64;
    let mut q = vec![0f64; i];
    for j in 0..levels {
        let (a, b) = (
            j * i / levels,
            ((j + 1) * i / levels).max(j * i / levels + 1),
        );
        let b = b.min(i);
        let chunk = &counts[a..b];
        let sum: u64 = chunk.iter().sum();
        let nonzero = chunk.iter().filter(|&&c| c > 0).count();
        if nonzero == 0 {
            continue;
        }
        let v = sum as f64 / nonzero as f64;
        for (k, &c) in chunk.iter().enumerate() {
            if c > 0 {
                q[a + k] = v;
            }
        }
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (pk, qk) in p.iter().zip(&q) {
        if *pk > 0.0 {
            let (pk, qk) = (pk / sp, (qk / sq).max(1e-12));
            kl += pk * (pk / qk).ln();
        }
    }
    kl
}

/// Everything calibration records about one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    pub min: f32,
    pub max: f32,
    /// Values seen (finite ones).
    pub count: u64,
    /// NaN and infinite values seen (left out of the range).
    pub non_finite: u64,
    pub hist: Option<AbsHistogram>,
}

impl Observer {
    pub fn new(histogram: bool) -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            non_finite: 0,
            hist: histogram.then(AbsHistogram::default),
        }
    }

    /// Records the values of one sample.
    pub fn add(&mut self, data: &[f32]) {
        let (mut lo, mut hi, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
        for &x in data {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            } else {
                bad += 1;
            }
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.non_finite += bad;
        self.count += data.len() as u64 - bad;
        if let Some(h) = &mut self.hist {
            let max_abs = if lo <= hi {
                lo.abs().max(hi.abs())
            } else {
                0.0
            };
            h.add(data, max_abs);
        }
    }

    /// The calibrated range `[rmin, rmax]` by `method`, always including 0.
    pub fn range(&self, method: Method, percentile: f64) -> (f32, f32) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        let (lo, hi) = (self.min.min(0.0), self.max.max(0.0));
        let threshold = match (method, &self.hist) {
            (Method::Minmax, _) | (_, None) => None,
            (Method::Percentile, Some(h)) => h.quantile(percentile / 100.0),
            (Method::Entropy, Some(h)) => h.entropy_threshold(if lo >= 0.0 { 255 } else { 128 }),
        };
        match threshold {
            Some(t) => (lo.max(-t), hi.min(t)),
            None => (lo, hi),
        }
    }
}

/// Asymmetric u8 parameters `(scale, zero_point)` of a range, as onnxruntime computes them:
/// the range is widened to include 0, `scale = (rmax - rmin) / 255` in f64 then stored as
/// f32, `zero_point = round_half_even(0 - rmin / scale)` (with the f64 scale); an empty range
/// gives scale 1 and zero point 0.
pub fn activation_params(rmin: f32, rmax: f32) -> (f32, i32) {
    let (rmin, rmax) = (rmin.min(0.0), rmax.max(0.0));
    let scale = (rmax as f64 - rmin as f64) / 255.0;
    if scale < f32::MIN_POSITIVE as f64 {
        return (1.0, 0);
    }
    let zp = (-(rmin as f64) / scale).round_ties_even().clamp(0.0, 255.0) as i32;
    (scale as f32, zp)
}

/// The symmetric i8 scale of values with largest magnitude `max_abs`: `max_abs / 127`
/// (onnxruntime's symmetric range -127..=127), 1 for an all-zero slice.
pub fn weight_scale(max_abs: f32) -> f32 {
    let s = max_abs as f64 / 127.0;
    if s < f32::MIN_POSITIVE as f64 {
        1.0
    } else {
        s as f32
    }
}

/// The per-slice largest magnitudes of a row-major tensor of `shape` along `axis` (one value
/// for `None`).
pub fn max_abs_along(data: &[f32], shape: &[usize], axis: Option<usize>) -> Vec<f32> {
    let Some(axis) = axis else {
        return vec![data.iter().fold(0f32, |m, x| m.max(x.abs()))];
    };
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0f32; n];
    for (i, x) in data.iter().enumerate() {
        let c = (i / inner.max(1)) % n.max(1);
        out[c] = out[c].max(x.abs());
    }
    out
}

/// Quantizes a row-major f32 tensor to i8 with per-slice scales along `axis` (zero point 0).
pub fn quantize_weights(
    data: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    scales: &[f32],
) -> Vec<i32> {
    let (n, inner) = match axis {
        Some(a) => (
            shape[a].max(1),
            shape[a + 1..].iter().product::<usize>().max(1),
        ),
        None => (1, 1),
    };
    data.iter()
        .enumerate()
        .map(|(i, &x)| quantize(x, scales[(i / inner) % n], 0, QType::I8))
        .collect()
}

/// onnxruntime's adjustment of weight scales for an int32 bias: where the bias scale
/// `x_scale * w_scale[c]` (in f64) is positive but below `1.0001 * 2 |b_c| / (2^32 - 2)`, so
/// that `b_c` would not fit int32, `w_scale[c]` is enlarged by that ratio (per tensor: with
/// the largest `|b|`). A channel with such a bias has (nearly) all-zero weights, so the coarser
/// weight step costs nothing. Returns how many scales changed.
pub fn enlarge_for_bias(x_scale: f32, w_scales: &mut [f32], bias: &[f32]) -> usize {
    let qrange = i32::MAX as f64 - (i32::MIN as f64 + 1.0);
    let per_channel = w_scales.len() > 1 || bias.len() == 1;
    let mut changed = 0;
    for (c, ws) in w_scales.iter_mut().enumerate() {
        let b = if per_channel {
            bias.get(c).map_or(0.0, |b| b.abs() as f64)
        } else {
            bias.iter().fold(0f64, |m, b| m.max(b.abs() as f64))
        };
        let smallest = 1.0001 * 2.0 * b / qrange;
        let candidate = x_scale as f64 * *ws as f64;
        if candidate > 0.0 && candidate < smallest {
            *ws = (*ws as f64 * (smallest / candidate)) as f32;
            changed += 1;
        }
    }
    changed
}

/// Per-channel means of a layer input over the calibration samples (channel axis 1:
/// `[N, C, ...]` for Conv, `[M, K]` for Gemm), for bias correction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelMeans {
    sums: Vec<f64>,
    counts: Vec<u64>,
}

impl ChannelMeans {
    /// Adds the finite values of one sample of `shape` (rank 2 or more; else ignored).
    pub fn add(&mut self, data: &[f32], shape: &[usize]) {
        let Some(&c) = shape.get(1) else { return };
        let inner: usize = shape[2..].iter().product();
        if self.sums.len() != c {
            *self = ChannelMeans {
                sums: vec![0.0; c],
                counts: vec![0; c],
            };
        }
        for (i, &x) in data.iter().enumerate().filter(|(_, x)| x.is_finite()) {
            let ch = (i / inner.max(1)) % c.max(1);
            self.sums[ch] += x as f64;
            self.counts[ch] += 1;
        }
    }

    /// The mean of every channel (0 where nothing was seen).
    pub fn means(&self) -> Vec<f64> {
        self.sums
            .iter()
            .zip(&self.counts)
            .map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 })
            .collect()
    }
}

/// Bias correction (Nagel et al., "Data-Free Quantization", 2019, the empirical form): the
/// mean error that weight quantization adds to each output channel, `E[(W_q - W) x]`
/// with `E[x]` the per-input-channel `mean` of the layer's float input, so that the bias
/// `b - shift` cancels it. `w` of `shape` is the float weight, `q` its int8 values with
/// `scales` (one, or one per channel of `out_axis`); `out_axis` 0 is `[C_out, C_in / group,
/// k...]` (Conv; the group count is `mean.len() / C_in_per_group`) or `[N, K]` (Gemm with
/// `transB`), `out_axis` 1 is `[K, N]` (Gemm without `transB`, MatMul). Borders (padding)
/// are ignored: every tap is taken to see the channel mean. `None` when the shapes do not
/// fit.
pub fn weight_error_shift(
    w: &[f32],
    shape: &[usize],
    out_axis: usize,
    q: &[i32],
    scales: &[f32],
    mean: &[f64],
) -> Option<Vec<f64>> {
    if w.len() != q.len() || shape.iter().product::<usize>() != w.len() || shape.len() < 2 {
        return None;
    }
    let scale = |c: usize| scales[if scales.len() == 1 { 0 } else { c }] as f64;
    match out_axis {
        0 => {
            let (cout, cin_g) = (shape[0], shape[1]);
            let taps: usize = shape[2..].iter().product();
            if cin_g == 0
                || !mean.len().is_multiple_of(cin_g)
                || !(scales.len() == 1 || scales.len() == cout)
            {
                return None;
            }
            let group = mean.len() / cin_g;
            if group == 0 || !cout.is_multiple_of(group) {
                return None;
            }
            let per_group = cout / group;
            Some(
                (0..cout)
                    .map(|c| {
                        let base = (c / per_group) * cin_g;
                        (0..cin_g * taps)
                            .map(|j| {
                                let i = c * cin_g * taps + j;
                                (q[i] as f64 * scale(c) - w[i] as f64) * mean[base + j / taps]
                            })
                            .sum()
                    })
                    .collect(),
            )
        }
        1 if shape.len() == 2 => {
            let (k, n) = (shape[0], shape[1]);
            if mean.len() != k || !(scales.len() == 1 || scales.len() == n) {
                return None;
            }
            Some(
                (0..n)
                    .map(|c| {
                        (0..k)
                            .map(|r| {
                                (q[r * n + c] as f64 * scale(c) - w[r * n + c] as f64) * mean[r]
                            })
                            .sum()
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The int32 bias of a quantized conv/Gemm: `round_half_even(b / (x_scale * w_scale[c]))`
/// in f64, saturated to i32 (onnxruntime's), with the f32 bias scales. Returns the values,
/// the scales and how many saturated.
pub fn quantize_bias(bias: &[f32], x_scale: f32, w_scales: &[f32]) -> (Vec<i32>, Vec<f32>, usize) {
    let scales: Vec<f32> = w_scales.iter().map(|&w| x_scale * w).collect();
    let mut saturated = 0;
    let q = bias
        .iter()
        .enumerate()
        .map(|(c, &b)| {
            let s = scales[if scales.len() == 1 { 0 } else { c }];
            let v = (b as f64 / s as f64).round_ties_even();
            if !(i32::MIN as f64..=i32::MAX as f64).contains(&v) {
                saturated += 1;
            }
            v.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    (q, scales, saturated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(method: Method, samples: &[Vec<f32>]) -> Observer {
        let mut o = Observer::new(method.needs_histogram());
        for s in samples {
            o.add(s);
        }
        o
    }

    #[test]
    fn minmax_is_the_running_range_and_includes_zero() {
        let o = observe(Method::Minmax, &[vec![1.0, 2.0, 3.0], vec![0.5, 7.5]]);
        assert_eq!(o.range(Method::Minmax, 0.0), (0.0, 7.5));
        let o = observe(Method::Minmax, &[vec![-2.0, -1.0], vec![-3.0, f32::NAN]]);
        assert_eq!(o.range(Method::Minmax, 0.0), (-3.0, 0.0));
        assert_eq!((o.count, o.non_finite), (3, 1));
        let o = observe(Method::Minmax, &[vec![-4.0, 1.0], vec![3.0, f32::INFINITY]]);
        assert_eq!(o.range(Method::Minmax, 0.0), (-4.0, 3.0));
    }

    #[test]
    fn histogram_growth_merges_bins_exactly() {
        let mut h = AbsHistogram::default();
        h.add(&[0.0, 1.0, -1.0], 1.0);
        assert_eq!(h.width, 1.0 / BINS as f32);
        h.add(&[4.0], 4.0); // two doublings
        assert_eq!(h.width, 4.0 / BINS as f32);
        assert_eq!(h.counts.iter().sum::<u64>(), 3);
        assert_eq!(h.zeros, 1);
        // |1.0| was in the last bin of the first range: after two merges, bin BINS/4 - 1.
        assert_eq!(h.counts[BINS / 4 - 1], 2);
        assert_eq!(h.counts[BINS - 1], 1);
    }

    #[test]
    fn percentile_clips_the_outliers() {
        // 9999 values uniform in [0, 1), one outlier at 100: 99.9% of |x| lies below ~1.
        let mut v: Vec<f32> = (0..9999).map(|i| i as f32 / 9999.0).collect();
        v.push(100.0);
        let o = observe(Method::Percentile, &[v.clone()]);
        let (lo, hi) = o.range(Method::Percentile, 99.9);
        assert_eq!(lo, 0.0);
        assert!((0.99..1.1).contains(&hi), "{hi}");
        assert_eq!(o.range(Method::Minmax, 99.9), (0.0, 100.0));
        // Symmetric data keeps both signs, clipped at the same threshold.
        let sym: Vec<f32> = v.iter().flat_map(|&x| [x, -x]).collect();
        let o = observe(Method::Percentile, &[sym]);
        let (lo, hi) = o.range(Method::Percentile, 99.9);
        assert!(
            (lo + hi).abs() < 1e-6 && (0.99..1.1).contains(&hi),
            "{lo} {hi}"
        );
    }

    #[test]
    fn entropy_cuts_a_long_tail_but_keeps_a_uniform_range() {
        // Uniform data: nothing to cut, the threshold is (about) the maximum.
        let uniform: Vec<f32> = (0..20000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        let o = observe(Method::Entropy, &[uniform]);
        let (_, hi) = o.range(Method::Entropy, 0.0);
        assert!(hi > 0.95, "{hi}");
        // Laplace-like bulk with a few huge outliers: the threshold lands far below them.
        let mut tail: Vec<f32> = (1..20000)
            .map(|i| -(1.0 - i as f32 / 20000.0).ln())
            .collect();
        tail.extend([200.0, -200.0]);
        let o = observe(Method::Entropy, &[tail]);
        let (lo, hi) = o.range(Method::Entropy, 0.0);
        assert!(hi < 50.0 && hi > 2.0, "{hi}");
        assert_eq!(lo, -hi);
        // A ReLU6-like output: half zeros, a spread, a spike of saturated values at 6. The
        // zeros do not pull the threshold down (with them in the first bin it fell to 1.49,
        // and EfficientNet-Lite0's int8 logits to -0.4 dB SQNR).
        // Here: 50% zeros, 48% exponential with mean 0.5, 2% at 6.
        let mut relu6: Vec<f32> = vec![0.0; 50000];
        relu6.extend((0..48000).map(|i| -(1.0 - (i as f32 + 0.5) / 48000.0).ln() * 0.5));
        relu6.extend(vec![6.0; 2000]);
        let o = observe(Method::Entropy, &[relu6]);
        let (lo, hi) = o.range(Method::Entropy, 0.0);
        assert_eq!(lo, 0.0);
        assert!(hi > 5.5, "{hi}");
    }

    #[test]
    fn weight_error_shift_is_the_mean_error_of_the_rounded_weights() {
        // Conv [2 out, 1 in/group, 2 taps], group 2 (depthwise): channel c sees mean[c].
        let w = [0.3, 0.2, 1.0, -0.6];
        let scales = [0.25, 0.5];
        let q = quantize_weights(&w, &[2, 1, 2], Some(0), &scales);
        assert_eq!(q, vec![1, 1, 2, -1]); // 0.25, 0.25, 1.0, -0.5
        let s = weight_error_shift(&w, &[2, 1, 2], 0, &q, &scales, &[2.0, -4.0]).unwrap();
        let want = [(-0.05 + 0.05) * 2.0, (0.0 + 0.1) * -4.0];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
        // The same weights as a dense [2, 2] conv: both outputs see both channel means.
        let s = weight_error_shift(&w, &[2, 2], 0, &q, &scales, &[2.0, -4.0]).unwrap();
        let want = [-0.05 * 2.0 + 0.05 * -4.0, 0.0 * 2.0 + 0.1 * -4.0];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
        // [K, N] (MatMul / Gemm without transB): column c is output channel c.
        let s = weight_error_shift(&w, &[2, 2], 1, &q, &[0.25], &[1.0, 1.0]);
        assert!(s.is_some());
        assert_eq!(
            weight_error_shift(&w, &[2, 2], 0, &q, &scales, &[1.0; 3]),
            None
        );
        let mut m = ChannelMeans::default();
        m.add(
            &[1.0, 3.0, 10.0, f32::NAN, 5.0, 7.0, 20.0, 20.0],
            &[2, 2, 2],
        );
        assert_eq!(m.means(), vec![4.0, 50.0 / 3.0]);
    }

    #[test]
    fn activation_params_match_onnxruntime() {
        // onnxruntime: compute_scale_zp(rmin, rmax, 0, 255): scale = (rmax - rmin) / 255 in
        // f64, zero point round(-rmin / scale).
        assert_eq!(activation_params(0.0, 6.0), ((6.0f64 / 255.0) as f32, 0));
        let (s, zp) = activation_params(-1.0, 3.0);
        assert_eq!(s, (4.0f64 / 255.0) as f32);
        assert_eq!(zp, 64); // 63.75 -> 64
        assert_eq!(activation_params(1.0, 2.0).1, 0); // widened to include 0
        assert_eq!(
            activation_params(-2.0, -1.0),
            ((2.0f64 / 255.0) as f32, 255)
        );
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        let w = [1.0, -0.5, 0.25, 0.0, 2.0, -4.0];
        let m = max_abs_along(&w, &[2, 3], Some(0));
        assert_eq!(m, vec![1.0, 4.0]);
        let scales: Vec<f32> = m.iter().map(|&a| weight_scale(a)).collect();
        assert_eq!(scales, vec![1.0 / 127.0, 4.0 / 127.0]);
        let q = quantize_weights(&w, &[2, 3], Some(0), &scales);
        assert_eq!(q, vec![127, -64, 32, 0, 64, -127]); // -63.5 -> -64, 31.75 -> 32
        assert_eq!(max_abs_along(&w, &[2, 3], Some(1)), vec![1.0, 2.0, 4.0]);
        assert_eq!(max_abs_along(&w, &[2, 3], None), vec![4.0]);
        assert_eq!(weight_scale(0.0), 1.0);
        let (b, s, sat) = quantize_bias(&[0.5, -1.0], 0.5, &scales);
        assert_eq!(s, vec![0.5 / 127.0, 2.0 / 127.0]);
        assert_eq!(b, vec![127, -64]);
        assert_eq!(sat, 0);
        let (b, _, sat) = quantize_bias(&[1e30], 1e-6, &[1e-6]);
        assert_eq!((b[0], sat), (i32::MAX, 1));
        // A channel whose bias would overflow int32 gets a larger weight scale; the other
        // keeps its own; afterwards the bias fits.
        let mut ws = vec![1e-9f32, 0.01];
        assert_eq!(enlarge_for_bias(0.02, &mut ws, &[10.0, 10.0]), 1);
        assert!(ws[0] > 2.3e-7 && ws[0] < 2.4e-7, "{ws:?}");
        assert_eq!(ws[1], 0.01);
        let (_, _, sat) = quantize_bias(&[10.0, 10.0], 0.02, &ws);
        assert_eq!(sat, 0);
    }
}
