//! The `.mnc` compiled-model artifact: a versioned, checksummed binary file holding the
//! optimized, scheduled IR of one model for one target and batch.
//!
//! This module owns the file format (documented in `docs/ARTIFACT.md`): [`write`] encodes a
//! graph, [`read`] decodes and verifies one, [`is_artifact`] recognizes the magic bytes. Every
//! length in a file is checked against the bytes that remain (and element counts against
//! [`mnc_ir::tensor::checked_numel`]) before anything is allocated, so a corrupt, truncated,
//! foreign or wrong-version file gives an [`ArtifactError`] naming the file, never a panic.
//!
//! Weights are stored as the optimized IR's constants (raw little-endian); the CPU backend's
//! packed weight layout is not stored, so loading re-packs (at JIT compile time).

use mnc_ir::schedule::{ConvClass, ConvSchedule, GpuTile};
use mnc_ir::tensor::checked_numel;
use mnc_ir::{
    Activation, BinaryOp, Conv, DType, Epilogue, Gemm, Graph, IrError, Lrn, NodeId, Op, Pool,
    PoolKind, QBinary, QBinaryOp, QConv, QLut, QMean, QParams, QResidual, QType, Slice,
    SqueezeExcite, Tensor, TensorData, TensorType,
};
use mnc_targets::Target;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The 8 magic bytes every artifact starts with.
pub const MAGIC: &[u8; 8] = b"MNC\0ART\n";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Conventional file extension.
pub const EXTENSION: &str = "mnc";
/// Bytes of the fixed header: magic, version (u32), total file length (u64).
const HEADER_LEN: usize = 20;

/// Why an artifact could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an mnc artifact (bad magic bytes)", path.display())]
    NotArtifact { path: PathBuf },
    #[error("{}: mnc artifact format version {found} is not supported (this mnc reads version {expected}); recompile the model", path.display())]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{}: corrupt mnc artifact: checksum mismatch (stored {stored:08x}, computed {computed:08x})", path.display())]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    #[error("{}: truncated mnc artifact ({len} bytes{})", path.display(), match expected {
        Some(n) => format!(" of {n}"),
        None => String::new(),
    })]
    Truncated {
        path: PathBuf,
        len: usize,
        /// The total length the header declares, when the header is complete.
        expected: Option<u64>,
    },
    #[error("{}: malformed mnc artifact at byte {offset}: {msg}", path.display())]
    Malformed {
        path: PathBuf,
        offset: usize,
        msg: String,
    },
    #[error("{}: the artifact's graph is invalid: {source}", path.display())]
    Invalid { path: PathBuf, source: IrError },
    #[error("{}: cannot write artifact: {msg}", path.display())]
    Unwritable { path: PathBuf, msg: String },
}

/// A decoded artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The optimized, scheduled graph (verified).
    pub graph: Graph,
    /// The target it was compiled for.
    pub target: Target,
    /// The batch size it was compiled for.
    pub batch: usize,
    /// The pass pipeline header line recorded at compile time.
    pub pipeline_header: String,
}

/// Whether the file at `path` starts with the artifact magic bytes (false when unreadable).
pub fn is_artifact(path: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 8];
    match std::fs::File::open(path) {
        Ok(mut f) => f.read_exact(&mut buf).is_ok() && &buf == MAGIC,
        Err(_) => false,
    }
}

/// Encodes `graph` (compiled for `target` at `batch`) and writes it to `path`.
pub fn write(
    path: &Path,
    graph: &Graph,
    target: Target,
    batch: usize,
    pipeline_header: &str,
) -> Result<(), ArtifactError> {
    let bytes =
        encode(graph, target, batch, pipeline_header).map_err(|msg| ArtifactError::Unwritable {
            path: path.to_path_buf(),
            msg,
        })?;
    std::fs::write(path, bytes).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads, checks and decodes the artifact at `path`, then verifies its graph.
pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
    let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, path)
}

/// Encodes an artifact into bytes (see `docs/ARTIFACT.md`).
pub fn encode(
    graph: &Graph,
    target: Target,
    batch: usize,
    pipeline_header: &str,
) -> Result<Vec<u8>, String> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(MAGIC);
    w.u32(FORMAT_VERSION);
    // Total file length, filled in at the end.
    w.usize(0);
    w.str(target.name());
    w.usize(batch);
    w.str(pipeline_header);
    w.str(&graph.name);
    let order = graph.topo_order().map_err(|e| e.to_string())?;
    let index: HashMap<NodeId, u32> = order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i as u32))
        .collect();
    w.len(order.len());
    for &id in &order {
        let n = graph.node(id);
        w.str(&n.name);
        w.len(n.sources.len());
        for s in &n.sources {
            w.str(s);
        }
        w.op(&n.op);
        w.ty(&n.ty);
        let ins = graph.inputs(id);
        w.len(ins.len());
        for i in ins {
            w.u32(index[&i]);
        }
    }
    w.len(graph.inputs.len());
    for i in &graph.inputs {
        let k = index
            .get(i)
            .ok_or_else(|| "a graph input is not a node".to_string())?;
        w.u32(*k);
    }
    w.len(graph.outputs.len());
    for o in &graph.outputs {
        w.str(&o.name);
        let k = index
            .get(&o.node)
            .ok_or_else(|| format!("graph output '{}' is not a node", o.name))?;
        w.u32(*k);
    }
    if w.overflow {
        return Err("a count exceeds the format's 2^32 - 1 limit".into());
    }
    Ok(seal(w.buf))
}

/// Completes an artifact's `body` (everything before the checksum): writes the total file
/// length into the header (when the body holds a complete header) and appends the CRC-32 of
/// the body. [`encode`] ends with it; tests and the fuzzer re-seal altered bodies with it to
/// reach the decoder's checks that come after the checksum.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    if body.len() >= HEADER_LEN {
        let total = (body.len() + 4) as u64;
        body[12..20].copy_from_slice(&total.to_le_bytes());
    }
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Decodes artifact bytes read from `path` (the path only names the file in errors).
pub fn decode(bytes: &[u8], path: &Path) -> Result<Artifact, ArtifactError> {
    let p = || path.to_path_buf();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A short prefix of the magic is a truncated artifact, anything else is foreign.
        if !bytes.is_empty() && bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(ArtifactError::Truncated {
                path: p(),
                len: bytes.len(),
                expected: None,
            });
        }
        return Err(ArtifactError::NotArtifact { path: p() });
    }
    if bytes.len() < HEADER_LEN - 8 {
        return Err(ArtifactError::Truncated {
            path: p(),
            len: bytes.len(),
            expected: None,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version {
            path: p(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(ArtifactError::Truncated {
            path: p(),
            len: bytes.len(),
            expected: None,
        });
    }
    let declared = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if (bytes.len() as u64) < declared {
        return Err(ArtifactError::Truncated {
            path: p(),
            len: bytes.len(),
            expected: Some(declared),
        });
    }
    if bytes.len() as u64 > declared || declared < HEADER_LEN as u64 + 4 {
        return Err(ArtifactError::Malformed {
            path: p(),
            offset: 12,
            msg: format!(
                "the header declares {declared} bytes but the file has {}",
                bytes.len()
            ),
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(ArtifactError::Checksum {
            path: p(),
            stored,
            computed,
        });
    }
    let mut r = Reader {
        buf: body,
        pos: HEADER_LEN,
        path,
    };
    let art = r.artifact()?;
    if r.pos != body.len() {
        return Err(r.err(format!("{} trailing bytes", body.len() - r.pos)));
    }
    mnc_ir::verify::verify(&art.graph)
        .map_err(|source| ArtifactError::Invalid { path: p(), source })?;
    Ok(art)
}

// ---------------------------------------------------------------------------------------
// Encoding

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    /// Set when a count did not fit in a u32 (the encoding is then refused).
    overflow: bool,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn usize(&mut self, v: usize) {
        self.buf.extend_from_slice(&(v as u64).to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    /// A count: u32 (graphs and attributes never approach 2^32 entries).
    fn len(&mut self, n: usize) {
        let v = u32::try_from(n).unwrap_or_else(|_| {
            self.overflow = true;
            u32::MAX
        });
        self.u32(v);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn usizes(&mut self, v: &[usize]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.usize(x));
    }
    fn i64s(&mut self, v: &[i64]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.i64(x));
    }
    fn dtype(&mut self, d: DType) {
        self.u8(match d {
            DType::F32 => 0,
            DType::I64 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::I32 => 4,
        });
    }
    fn ty(&mut self, t: &TensorType) {
        self.dtype(t.dtype);
        self.usizes(&t.shape);
    }
    fn act(&mut self, a: &Activation) {
        match *a {
            Activation::Relu => self.u8(0),
            Activation::Clip { min, max } => {
                self.u8(1);
                self.f32(min);
                self.f32(max);
            }
            Activation::Sigmoid => self.u8(2),
            Activation::HardSigmoid { alpha, beta } => {
                self.u8(3);
                self.f32(alpha);
                self.f32(beta);
            }
            Activation::HardSwish => self.u8(4),
            Activation::Silu => self.u8(5),
        }
    }
    fn opt_act(&mut self, a: &Option<Activation>) {
        match a {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.act(a);
            }
        }
    }
    fn epilogue(&mut self, e: &Epilogue) {
        let Epilogue { residual, act } = e;
        self.bool(*residual);
        self.opt_act(act);
    }
    fn schedule(&mut self, s: &ConvSchedule) {
        let ConvSchedule { class, gpu } = s;
        self.u8(match class {
            ConvClass::Stem => 0,
            ConvClass::Depthwise => 1,
            ConvClass::Pointwise => 2,
            ConvClass::Standard => 3,
            ConvClass::Grouped => 4,
        });
        match gpu {
            None => self.u8(0),
            Some(GpuTile { bm, bn, bk, tm, tn }) => {
                self.u8(1);
                for v in [bm, bn, bk, tm, tn] {
                    self.usize(*v);
                }
            }
        }
    }
    fn tensor(&mut self, t: &Tensor) {
        self.dtype(t.dtype());
        self.usizes(&t.shape);
        self.buf.extend_from_slice(&t.le_bytes());
    }
    /// A conv's attributes (destructured, so a new field fails to compile here).
    fn conv(&mut self, c: &Conv) {
        let Conv {
            kernel,
            strides,
            dilations,
            pads,
            group,
            has_bias,
            epilogue,
            schedule,
        } = c;
        kernel
            .iter()
            .chain(strides)
            .chain(dilations)
            .chain(pads)
            .for_each(|&v| self.usize(v));
        self.usize(*group);
        self.bool(*has_bias);
        self.epilogue(epilogue);
        match schedule {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.schedule(s);
            }
        }
    }
    fn qparams(&mut self, q: &QParams) {
        let QParams {
            dtype,
            axis,
            scale,
            zero_point,
        } = q;
        self.dtype(*dtype);
        match axis {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.usize(*a);
            }
        }
        self.len(scale.len());
        scale.iter().for_each(|&v| self.f32(v));
        self.len(zero_point.len());
        zero_point.iter().for_each(|&v| self.i64(v as i64));
    }
    /// One op: a tag byte then its attributes. The match is exhaustive (and destructures
    /// every attribute struct), so a new variant or field fails to compile here.
    fn op(&mut self, op: &Op) {
        match op {
            Op::Input { index } => {
                self.u8(0);
                self.usize(*index);
            }
            Op::Constant(t) => {
                self.u8(1);
                self.tensor(t);
            }
            Op::Identity => self.u8(2),
            Op::Dropout => self.u8(3),
            Op::Conv(c) => {
                self.u8(4);
                self.conv(c);
            }
            Op::BatchNorm { epsilon } => {
                self.u8(5);
                self.f32(*epsilon);
            }
            Op::ChannelAffine => self.u8(6),
            Op::SqueezeExcite(SqueezeExcite { act, gate }) => {
                self.u8(7);
                self.act(act);
                self.act(gate);
            }
            Op::Act(a) => {
                self.u8(8);
                self.act(a);
            }
            Op::Binary(b) => {
                self.u8(9);
                self.u8(match b {
                    BinaryOp::Add => 0,
                    BinaryOp::Sub => 1,
                    BinaryOp::Mul => 2,
                    BinaryOp::Div => 3,
                });
            }
            Op::Gemm(Gemm {
                trans_a,
                trans_b,
                alpha,
                beta,
                has_c,
                epilogue,
            }) => {
                self.u8(10);
                self.bool(*trans_a);
                self.bool(*trans_b);
                self.f32(*alpha);
                self.f32(*beta);
                self.bool(*has_c);
                self.epilogue(epilogue);
            }
            Op::MatMul => self.u8(11),
            Op::GlobalAveragePool => self.u8(12),
            Op::ReduceMean { axes, keepdims } => {
                self.u8(13);
                self.usizes(axes);
                self.bool(*keepdims);
            }
            Op::Pool(Pool {
                kind,
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
                count_include_pad,
            }) => {
                self.u8(14);
                self.u8(match kind {
                    PoolKind::Max => 0,
                    PoolKind::Avg => 1,
                });
                kernel
                    .iter()
                    .chain(strides)
                    .chain(pads)
                    .chain(dilations)
                    .for_each(|&v| self.usize(v));
                self.bool(*ceil_mode);
                self.bool(*count_include_pad);
            }
            Op::Flatten { axis } => {
                self.u8(15);
                self.usize(*axis);
            }
            Op::Reshape { shape } => {
                self.u8(16);
                self.usizes(shape);
            }
            Op::Squeeze { axes } => {
                self.u8(17);
                self.usizes(axes);
            }
            Op::Unsqueeze { axes } => {
                self.u8(18);
                self.usizes(axes);
            }
            Op::Transpose { perm } => {
                self.u8(19);
                self.usizes(perm);
            }
            Op::Concat { axis } => {
                self.u8(20);
                self.usize(*axis);
            }
            Op::Slice(Slice {
                axes,
                starts,
                ends,
                steps,
            }) => {
                self.u8(21);
                self.usizes(axes);
                self.i64s(starts);
                self.i64s(ends);
                self.i64s(steps);
            }
            Op::Gather { axis } => {
                self.u8(22);
                self.usize(*axis);
            }
            Op::Cast { to } => {
                self.u8(23);
                self.dtype(*to);
            }
            Op::Pad { pads, value } => {
                self.u8(24);
                self.usizes(pads);
                self.f32(*value);
            }
            Op::Softmax { axis } => {
                self.u8(25);
                self.usize(*axis);
            }
            Op::Lrn(Lrn {
                size,
                alpha,
                beta,
                bias,
            }) => {
                self.u8(26);
                self.usize(*size);
                self.f32(*alpha);
                self.f32(*beta);
                self.f32(*bias);
            }
            Op::Quantize(q) => {
                self.u8(27);
                self.qparams(q);
            }
            Op::Dequantize(q) => {
                self.u8(28);
                self.qparams(q);
            }
            Op::QLut(QLut { x, y, table }) => {
                self.u8(30);
                self.dtype(x.dtype());
                self.dtype(y.dtype());
                self.len(table.len());
                table.iter().for_each(|&v| self.i64(v as i64));
            }
            Op::QBinary(QBinary { op, a, b, y }) => {
                self.u8(32);
                self.u8(match op {
                    QBinaryOp::Add => 0,
                    QBinaryOp::Mul => 1,
                });
                self.qparams(a);
                self.qparams(b);
                self.qparams(y);
            }
            Op::QGlobalAveragePool(QMean { x, y }) => {
                self.u8(31);
                self.qparams(x);
                self.qparams(y);
            }
            Op::QConv(q) => {
                let QConv {
                    conv,
                    x,
                    w,
                    y,
                    residual,
                } = &**q;
                self.u8(29);
                self.conv(conv);
                self.qparams(x);
                self.qparams(w);
                self.qparams(y);
                self.bool(residual.is_some());
                if let Some(QResidual { mid, b, conv_is_a }) = residual {
                    self.qparams(mid);
                    self.qparams(b);
                    self.bool(*conv_is_a);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

type R<T> = Result<T, ArtifactError>;

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> ArtifactError {
        ArtifactError::Malformed {
            path: self.path.to_path_buf(),
            offset: self.pos,
            msg: msg.into(),
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> R<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what} needs {n} bytes, only {} remain",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> R<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.arr::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn usize(&mut self, what: &str) -> R<usize> {
        let v = u64::from_le_bytes(self.arr(what)?);
        usize::try_from(v).map_err(|_| self.err(format!("{what} {v} does not fit this machine")))
    }
    fn i64(&mut self, what: &str) -> R<i64> {
        Ok(i64::from_le_bytes(self.arr(what)?))
    }
    fn f32(&mut self, what: &str) -> R<f32> {
        Ok(f32::from_bits(u32::from_le_bytes(self.arr(what)?)))
    }
    fn bool(&mut self, what: &str) -> R<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.err(format!("{what}: bad boolean {b}"))),
        }
    }
    /// A count of items of at least `item_bytes` bytes each, checked against what remains.
    fn len(&mut self, item_bytes: usize, what: &str) -> R<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(item_bytes.max(1)) > self.remaining() {
            return Err(self.err(format!(
                "{what}: {n} entries do not fit in the {} remaining bytes",
                self.remaining()
            )));
        }
        Ok(n)
    }
    fn str(&mut self, what: &str) -> R<String> {
        let n = self.len(1, what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }
    fn usizes(&mut self, what: &str) -> R<Vec<usize>> {
        let n = self.len(8, what)?;
        (0..n).map(|_| self.usize(what)).collect()
    }
    fn i64s(&mut self, what: &str) -> R<Vec<i64>> {
        let n = self.len(8, what)?;
        (0..n).map(|_| self.i64(what)).collect()
    }
    fn dtype(&mut self) -> R<DType> {
        match self.u8("dtype")? {
            0 => Ok(DType::F32),
            1 => Ok(DType::I64),
            2 => Ok(DType::U8),
            3 => Ok(DType::I8),
            4 => Ok(DType::I32),
            b => Err(self.err(format!("unknown dtype tag {b}"))),
        }
    }
    fn shape(&mut self, what: &str) -> R<Vec<usize>> {
        let shape = self.usizes(what)?;
        checked_numel(&shape).map_err(|e| self.err(format!("{what}: {e}")))?;
        Ok(shape)
    }
    fn ty(&mut self) -> R<TensorType> {
        let dtype = self.dtype()?;
        Ok(TensorType::new(dtype, self.shape("type shape")?))
    }
    fn act(&mut self) -> R<Activation> {
        Ok(match self.u8("activation")? {
            0 => Activation::Relu,
            1 => Activation::Clip {
                min: self.f32("clip min")?,
                max: self.f32("clip max")?,
            },
            2 => Activation::Sigmoid,
            3 => Activation::HardSigmoid {
                alpha: self.f32("hardsigmoid alpha")?,
                beta: self.f32("hardsigmoid beta")?,
            },
            4 => Activation::HardSwish,
            5 => Activation::Silu,
            b => return Err(self.err(format!("unknown activation tag {b}"))),
        })
    }
    fn opt_act(&mut self) -> R<Option<Activation>> {
        Ok(if self.bool("activation present")? {
            Some(self.act()?)
        } else {
            None
        })
    }
    fn epilogue(&mut self) -> R<Epilogue> {
        Ok(Epilogue {
            residual: self.bool("residual")?,
            act: self.opt_act()?,
        })
    }
    fn pair(&mut self, what: &str) -> R<[usize; 2]> {
        Ok([self.usize(what)?, self.usize(what)?])
    }
    fn quad(&mut self, what: &str) -> R<[usize; 4]> {
        Ok([
            self.usize(what)?,
            self.usize(what)?,
            self.usize(what)?,
            self.usize(what)?,
        ])
    }
    fn schedule(&mut self) -> R<ConvSchedule> {
        let class = match self.u8("conv class")? {
            0 => ConvClass::Stem,
            1 => ConvClass::Depthwise,
            2 => ConvClass::Pointwise,
            3 => ConvClass::Standard,
            4 => ConvClass::Grouped,
            b => return Err(self.err(format!("unknown conv class tag {b}"))),
        };
        let gpu = if self.bool("gpu tile present")? {
            Some(GpuTile {
                bm: self.usize("gpu bm")?,
                bn: self.usize("gpu bn")?,
                bk: self.usize("gpu bk")?,
                tm: self.usize("gpu tm")?,
                tn: self.usize("gpu tn")?,
            })
        } else {
            None
        };
        Ok(ConvSchedule { class, gpu })
    }
    fn tensor(&mut self) -> R<Tensor> {
        let dtype = self.dtype()?;
        let shape = self.shape("constant shape")?;
        let n = checked_numel(&shape).map_err(|e| self.err(e.to_string()))?;
        let bytes = self.take(n * dtype.size(), "constant data")?;
        Ok(Tensor {
            shape,
            data: TensorData::from_le_bytes(dtype, bytes),
        })
    }
    fn op(&mut self) -> R<Op> {
        let tag = self.u8("op tag")?;
        Ok(match tag {
            0 => Op::Input {
                index: self.usize("input index")?,
            },
            1 => Op::Constant(self.tensor()?),
            2 => Op::Identity,
            3 => Op::Dropout,
            4 => Op::Conv(self.conv()?),
            5 => Op::BatchNorm {
                epsilon: self.f32("batchnorm epsilon")?,
            },
            6 => Op::ChannelAffine,
            7 => Op::SqueezeExcite(SqueezeExcite {
                act: self.act()?,
                gate: self.act()?,
            }),
            8 => Op::Act(self.act()?),
            9 => Op::Binary(match self.u8("binary op")? {
                0 => BinaryOp::Add,
                1 => BinaryOp::Sub,
                2 => BinaryOp::Mul,
                3 => BinaryOp::Div,
                b => return Err(self.err(format!("unknown binary op tag {b}"))),
            }),
            10 => Op::Gemm(Gemm {
                trans_a: self.bool("gemm trans_a")?,
                trans_b: self.bool("gemm trans_b")?,
                alpha: self.f32("gemm alpha")?,
                beta: self.f32("gemm beta")?,
                has_c: self.bool("gemm has_c")?,
                epilogue: self.epilogue()?,
            }),
            11 => Op::MatMul,
            12 => Op::GlobalAveragePool,
            13 => Op::ReduceMean {
                axes: self.usizes("reducemean axes")?,
                keepdims: self.bool("reducemean keepdims")?,
            },
            14 => {
                let kind = match self.u8("pool kind")? {
                    0 => PoolKind::Max,
                    1 => PoolKind::Avg,
                    b => return Err(self.err(format!("unknown pool kind tag {b}"))),
                };
                Op::Pool(Pool {
                    kind,
                    kernel: self.pair("pool kernel")?,
                    strides: self.pair("pool strides")?,
                    pads: self.quad("pool pads")?,
                    dilations: self.pair("pool dilations")?,
                    ceil_mode: self.bool("pool ceil_mode")?,
                    count_include_pad: self.bool("pool count_include_pad")?,
                })
            }
            15 => Op::Flatten {
                axis: self.usize("flatten axis")?,
            },
            16 => Op::Reshape {
                shape: self.shape("reshape shape")?,
            },
            17 => Op::Squeeze {
                axes: self.usizes("squeeze axes")?,
            },
            18 => Op::Unsqueeze {
                axes: self.usizes("unsqueeze axes")?,
            },
            19 => Op::Transpose {
                perm: self.usizes("transpose perm")?,
            },
            20 => Op::Concat {
                axis: self.usize("concat axis")?,
            },
            21 => Op::Slice(Slice {
                axes: self.usizes("slice axes")?,
                starts: self.i64s("slice starts")?,
                ends: self.i64s("slice ends")?,
                steps: self.i64s("slice steps")?,
            }),
            22 => Op::Gather {
                axis: self.usize("gather axis")?,
            },
            23 => Op::Cast { to: self.dtype()? },
            24 => Op::Pad {
                pads: self.usizes("pad pads")?,
                value: self.f32("pad value")?,
            },
            25 => Op::Softmax {
                axis: self.usize("softmax axis")?,
            },
            26 => Op::Lrn(Lrn {
                size: self.usize("LRN size")?,
                alpha: self.f32("LRN alpha")?,
                beta: self.f32("LRN beta")?,
                bias: self.f32("LRN bias")?,
            }),
            27 => Op::Quantize(self.qparams()?),
            28 => Op::Dequantize(self.qparams()?),
            29 => Op::QConv(Box::new(QConv {
                conv: self.conv()?,
                x: self.qparams()?,
                w: self.qparams()?,
                y: self.qparams()?,
                residual: if self.bool("QConv residual")? {
                    Some(QResidual {
                        mid: self.qparams()?,
                        b: self.qparams()?,
                        conv_is_a: self.bool("QConv residual order")?,
                    })
                } else {
                    None
                },
            })),
            30 => {
                let qt = |r: &mut Self, what: &str| {
                    let d = r.dtype()?;
                    QType::of(d).ok_or_else(|| r.err(format!("{what}: {d} is not u8 or i8")))
                };
                let x = qt(self, "lookup input")?;
                let y = qt(self, "lookup output")?;
                let n = self.len(8, "lookup table")?;
                let table = (0..n)
                    .map(|_| {
                        let v = self.i64("table entry")?;
                        i32::try_from(v).map_err(|_| self.err(format!("table entry {v}")))
                    })
                    .collect::<R<Vec<i32>>>()?;
                let l = QLut { x, y, table };
                if !l.is_valid() {
                    return Err(self.err("lookup table of the wrong size or range"));
                }
                Op::QLut(l)
            }
            32 => Op::QBinary(QBinary {
                op: match self.u8("quantized binary op")? {
                    0 => QBinaryOp::Add,
                    1 => QBinaryOp::Mul,
                    k => return Err(self.err(format!("unknown quantized binary op {k}"))),
                },
                a: self.qparams()?,
                b: self.qparams()?,
                y: self.qparams()?,
            }),
            31 => Op::QGlobalAveragePool(QMean {
                x: self.qparams()?,
                y: self.qparams()?,
            }),
            b => return Err(self.err(format!("unknown op tag {b}"))),
        })
    }
    fn conv(&mut self) -> R<Conv> {
        let kernel = self.pair("conv kernel")?;
        let strides = self.pair("conv strides")?;
        let dilations = self.pair("conv dilations")?;
        let pads = self.quad("conv pads")?;
        let group = self.usize("conv group")?;
        let has_bias = self.bool("conv has_bias")?;
        let epilogue = self.epilogue()?;
        let schedule = if self.bool("conv schedule present")? {
            Some(self.schedule()?)
        } else {
            None
        };
        Ok(Conv {
            kernel,
            strides,
            dilations,
            pads,
            group,
            has_bias,
            epilogue,
            schedule,
        })
    }
    fn qparams(&mut self) -> R<QParams> {
        let dtype = self.dtype()?;
        let axis = if self.bool("quantization axis present")? {
            Some(self.usize("quantization axis")?)
        } else {
            None
        };
        let n = self.len(4, "scales")?;
        let scale = (0..n).map(|_| self.f32("scale")).collect::<R<Vec<f32>>>()?;
        let n = self.len(8, "zero points")?;
        let zero_point = (0..n)
            .map(|_| {
                let z = self.i64("zero point")?;
                i32::try_from(z).map_err(|_| self.err(format!("zero point {z} out of range")))
            })
            .collect::<R<Vec<i32>>>()?;
        Ok(QParams {
            dtype,
            axis,
            scale,
            zero_point,
        })
    }

    fn artifact(&mut self) -> R<Artifact> {
        let tname = self.str("target name")?;
        let target = Target::ALL
            .iter()
            .copied()
            .find(|t| t.name() == tname)
            .ok_or_else(|| self.err(format!("unknown target '{tname}'")))?;
        let batch = self.usize("batch")?;
        let pipeline_header = self.str("pipeline header")?;
        let mut graph = Graph::new(self.str("graph name")?);
        // Every node takes at least 4 (name) + 4 (sources) + 1 (op) + 5 (type) + 4 bytes.
        let count = self.len(18, "node count")?;
        let mut ids: Vec<NodeId> = Vec::with_capacity(count);
        for k in 0..count {
            let name = self.str("node name")?;
            let nsrc = self.len(4, "source count")?;
            let sources = (0..nsrc)
                .map(|_| self.str("source name"))
                .collect::<R<Vec<_>>>()?;
            let op = self.op()?;
            let ty = self.ty()?;
            let nin = self.len(4, "input count")?;
            let mut ins = Vec::with_capacity(nin);
            for _ in 0..nin {
                let i = self.u32("input node")? as usize;
                if i >= k {
                    return Err(self.err(format!(
                        "node '{name}' input {i} is not an earlier node (nodes are stored in \
                         topological order)"
                    )));
                }
                ins.push(ids[i]);
            }
            let id = graph.add_node_typed(name, op, &ins, ty);
            graph.node_mut(id).sources = sources;
            ids.push(id);
        }
        let ninputs = self.len(4, "graph input count")?;
        for _ in 0..ninputs {
            let i = self.u32("graph input")? as usize;
            let id = *ids
                .get(i)
                .ok_or_else(|| self.err(format!("graph input {i} is not a node")))?;
            graph.inputs.push(id);
        }
        let noutputs = self.len(8, "graph output count")?;
        for _ in 0..noutputs {
            let name = self.str("graph output name")?;
            let i = self.u32("graph output node")? as usize;
            let id = *ids
                .get(i)
                .ok_or_else(|| self.err(format!("graph output '{name}' ({i}) is not a node")))?;
            graph.add_output(name, id);
        }
        Ok(Artifact {
            graph,
            target,
            batch,
            pipeline_header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_ir::print::print_graph;

    fn tmp(tag: &str) -> PathBuf {
        mnc_tests::tmp_dir(&format!("artifact-{tag}"))
    }

    fn optimized_fixture(dir: &Path) -> (Graph, Graph) {
        let g = crate::onnx::import_file(
            &dir.join("model.onnx"),
            &crate::onnx::ImportOptions::default(),
        )
        .unwrap();
        let opt = crate::exec::optimized(g.clone(), Target::X86_64Avx2).unwrap();
        (g, opt)
    }

    fn input_for(g: &Graph) -> Vec<Tensor> {
        g.inputs
            .iter()
            .map(|&i| {
                let ty = &g.node(i).ty;
                let n = ty.numel();
                Tensor::from_f32(
                    ty.shape.clone(),
                    (0..n)
                        .map(|k| ((k * 7919) % 251) as f32 / 251.0 - 0.5)
                        .collect(),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn artifact_round_trips_every_fixture() {
        let fixtures = mnc_tests::fixtures();
        assert!(!fixtures.is_empty());
        let d = tmp("fixtures");
        for dir in fixtures {
            let (_, opt) = optimized_fixture(&dir);
            let path = d.join(format!(
                "{}.mnc",
                dir.file_name().unwrap().to_str().unwrap()
            ));
            write(&path, &opt, Target::X86_64Avx2, 1, "pipeline: test").unwrap();
            assert!(is_artifact(&path));
            let art = read(&path).unwrap();
            assert_eq!(art.target, Target::X86_64Avx2);
            assert_eq!(art.batch, 1);
            assert_eq!(art.pipeline_header, "pipeline: test");
            assert_eq!(
                print_graph(&art.graph).unwrap(),
                print_graph(&opt).unwrap(),
                "{}",
                dir.display()
            );
            let x = input_for(&opt);
            let y0 = mnc_runtime::reference::run(&opt, &x).unwrap();
            let y1 = mnc_runtime::reference::run(&art.graph, &x).unwrap();
            assert_eq!(y0, y1, "{}", dir.display());
        }
    }

    /// A graph holding every `Op` variant (types are set by hand: it is only encoded).
    fn every_op_graph() -> Graph {
        let mut g = Graph::new("every-op");
        let t = TensorType::f32(vec![1, 2, 3, 3]);
        let x = g.add_input("x", t.clone());
        let c = g.add_constant("c", Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap());
        let ci = g.add_constant("ci", Tensor::from_i64(vec![2], vec![0, -1]).unwrap());
        let sched = ConvSchedule {
            class: ConvClass::Pointwise,
            gpu: Some(GpuTile {
                bm: 32,
                bn: 64,
                bk: 8,
                tm: 2,
                tn: 4,
            }),
        };
        let acts = mnc_ir::op::ACTIVATION_EXAMPLES;
        let mut ops = vec![
            Op::Identity,
            Op::Dropout,
            Op::Conv(Conv {
                kernel: [3, 3],
                strides: [2, 1],
                dilations: [1, 2],
                pads: [1, 0, 1, 2],
                group: 2,
                has_bias: true,
                epilogue: Epilogue {
                    residual: true,
                    act: Some(Activation::Silu),
                },
                schedule: Some(sched),
            }),
            Op::Conv(Conv::default()),
            Op::BatchNorm { epsilon: 1e-5 },
            Op::ChannelAffine,
            Op::SqueezeExcite(SqueezeExcite {
                act: Activation::Silu,
                gate: Activation::HardSigmoid {
                    alpha: 1.0 / 6.0,
                    beta: 0.5,
                },
            }),
            Op::Gemm(Gemm {
                trans_a: true,
                trans_b: false,
                alpha: 0.5,
                beta: 2.0,
                has_c: true,
                epilogue: Epilogue {
                    residual: false,
                    act: Some(Activation::Relu),
                },
            }),
            Op::MatMul,
            Op::GlobalAveragePool,
            Op::ReduceMean {
                axes: vec![2, 3],
                keepdims: true,
            },
            Op::Pool(Pool {
                kind: PoolKind::Avg,
                kernel: [3, 2],
                strides: [2, 2],
                pads: [1, 1, 0, 0],
                dilations: [1, 1],
                ceil_mode: true,
                count_include_pad: true,
            }),
            Op::Pool(Pool::default()),
            Op::Flatten { axis: 1 },
            Op::Reshape { shape: vec![1, 18] },
            Op::Squeeze { axes: vec![0] },
            Op::Unsqueeze { axes: vec![0, 4] },
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            Op::Concat { axis: 1 },
            Op::Slice(Slice {
                axes: vec![1, 2],
                starts: vec![0, -3],
                ends: vec![2, i64::MAX],
                steps: vec![1, -1],
            }),
            Op::Gather { axis: 1 },
            Op::Cast { to: DType::I64 },
            Op::Pad {
                pads: vec![0, 0, 1, 1, 0, 0, 1, 1],
                value: -0.25,
            },
            Op::Softmax { axis: 1 },
            Op::Lrn(Lrn {
                size: 5,
                alpha: 1e-4,
                beta: 0.75,
                bias: 2.0,
            }),
        ];
        for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            ops.push(Op::Binary(b));
        }
        ops.extend(acts.iter().copied().map(Op::Act));
        // The quantized ops (per tensor and per axis parameters).
        let u8p = QParams::per_tensor(DType::U8, 0.02, 128);
        let axis = QParams {
            dtype: DType::I8,
            axis: Some(0),
            scale: vec![0.5, 0.25],
            zero_point: vec![0, 0],
        };
        ops.extend([
            Op::Quantize(u8p.clone()),
            Op::Dequantize(axis.clone()),
            Op::QConv(Box::new(QConv {
                conv: Conv {
                    kernel: [1, 1],
                    strides: [1, 1],
                    dilations: [1, 1],
                    pads: [0, 0, 0, 0],
                    group: 1,
                    has_bias: false,
                    epilogue: Epilogue::default(),
                    schedule: None,
                },
                x: u8p.clone(),
                w: axis,
                y: QParams::per_tensor(DType::I8, 0.1, -3),
                residual: None,
            })),
            Op::QLut(QLut::of(QType::I8, QType::U8, |v| v + 128)),
            Op::QGlobalAveragePool(QMean {
                x: u8p.clone(),
                y: QParams::per_tensor(DType::U8, 0.01, 7),
            }),
            Op::QBinary(QBinary {
                op: QBinaryOp::Mul,
                a: u8p.clone(),
                b: QParams::per_tensor(DType::U8, 0.03, 1),
                y: QParams::per_tensor(DType::U8, 0.04, 200),
            }),
        ]);
        let mut prev = x;
        for (k, op) in ops.into_iter().enumerate() {
            let (lo, _) = op.arity();
            let ins: Vec<NodeId> = (0..lo)
                .map(|i| match i {
                    0 => prev,
                    1 => ci,
                    _ => c,
                })
                .collect();
            prev = g.add_node_typed(format!("n{k}"), op, &ins, t.clone());
            g.node_mut(prev).sources = vec![format!("a{k}"), format!("b{k}")];
        }
        g.add_output("y", prev);
        g.add_output("c", c);
        g
    }

    /// Every node's op, type, sources and inputs (by name) in topological order.
    /// One node's name, op, type, sources and input names.
    type NodeView = (String, Op, TensorType, Vec<String>, Vec<String>);

    fn structure(g: &Graph) -> Vec<NodeView> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .map(|id| {
                let n = g.node(id);
                let ins = g.inputs(id).into_iter().map(|i| g.node(i).name.clone());
                (
                    n.name.clone(),
                    n.op.clone(),
                    n.ty.clone(),
                    n.sources.clone(),
                    ins.collect(),
                )
            })
            .collect()
    }

    #[test]
    fn every_op_variant_round_trips() {
        let g = every_op_graph();
        let bytes = encode(&g, Target::Cuda(mnc_targets::cuda::CudaArch::Sm90), 3, "h").unwrap();
        // Decode without verification (the hand-typed graph is not type-correct).
        let mut r = Reader {
            buf: &bytes[..bytes.len() - 4],
            pos: HEADER_LEN,
            path: Path::new("mem"),
        };
        let art = r.artifact().unwrap();
        assert_eq!(r.pos, bytes.len() - 4);
        assert_eq!(art.batch, 3);
        assert_eq!(art.target, Target::Cuda(mnc_targets::cuda::CudaArch::Sm90));
        assert_eq!(structure(&art.graph), structure(&g));
        let names = |g: &Graph| {
            g.inputs
                .iter()
                .map(|&i| g.node(i).name.clone())
                .chain(
                    g.outputs
                        .iter()
                        .map(|o| format!("{}={}", o.name, g.node(o.node).name)),
                )
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&art.graph), names(&g));
        // The full decoder runs the verifier, which rejects this hand-typed graph cleanly.
        let e = decode(&bytes, Path::new("every.mnc")).unwrap_err();
        assert!(matches!(e, ArtifactError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("every.mnc"), "{e}");
    }

    fn small_artifact() -> Vec<u8> {
        let dir = mnc_tests::fixtures_dir().join("mnv2_trunc_dynbatch_op10");
        let (_, opt) = optimized_fixture(&dir);
        encode(&opt, Target::X86_64, 1, "pipeline: small").unwrap()
    }

    #[test]
    fn corrupt_bytes_fail_the_checksum() {
        let bytes = small_artifact();
        let p = Path::new("corrupt.mnc");
        assert!(decode(&bytes, p).is_ok());
        let step = (bytes.len() / 97).max(1);
        // A flipped length field is caught by the length check.
        for at in 12..HEADER_LEN {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            assert!(decode(&b, p).is_err(), "byte {at}");
        }
        for at in (HEADER_LEN..bytes.len()).step_by(step) {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            let e = decode(&b, p).unwrap_err();
            assert!(
                matches!(e, ArtifactError::Checksum { .. }),
                "byte {at}: {e}"
            );
            assert!(e.to_string().contains("corrupt.mnc: corrupt mnc artifact"));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = small_artifact();
        let p = Path::new("short.mnc");
        for n in 0..bytes.len() {
            let e = decode(&bytes[..n], p).unwrap_err();
            assert!(e.to_string().starts_with("short.mnc: "), "{n}: {e}");
            if n > 0 {
                assert!(matches!(e, ArtifactError::Truncated { .. }), "{n}: {e}");
                assert!(e.to_string().contains("truncated mnc artifact"), "{e}");
            }
        }
        let mut long = bytes.clone();
        long.push(0);
        let e = decode(&long, p).unwrap_err();
        assert!(e.to_string().contains("declares"), "{e}");
    }

    #[test]
    fn malformed_body_with_valid_checksum_is_an_error_not_a_panic() {
        // Re-seal each truncated body with a correct checksum: the decoder itself must
        // catch every inconsistency from the lengths.
        let bytes = small_artifact();
        let body = &bytes[..bytes.len() - 4];
        let p = Path::new("resealed.mnc");
        let step = (body.len() / 400).max(1);
        for n in (HEADER_LEN..body.len()).step_by(step) {
            let b = seal(body[..n].to_vec());
            let e = decode(&b, p).unwrap_err();
            assert!(matches!(e, ArtifactError::Malformed { .. }), "{n}: {e}");
        }
        // Huge counts are refused before allocating.
        let mut b = body[..HEADER_LEN].to_vec();
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = decode(&seal(b), p).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn foreign_files_are_not_artifacts() {
        let onnx = mnc_tests::fixtures_dir()
            .join("mnv2_w035_op13")
            .join("model.onnx");
        assert!(!is_artifact(&onnx));
        let e = read(&onnx).unwrap_err();
        assert!(matches!(e, ArtifactError::NotArtifact { .. }), "{e}");
        assert!(e.to_string().contains("not an mnc artifact"), "{e}");
        assert!(e.to_string().contains("model.onnx"), "{e}");
        let random: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let e = decode(&random, Path::new("r.bin")).unwrap_err();
        assert!(matches!(e, ArtifactError::NotArtifact { .. }), "{e}");
        let e = read(Path::new("/nonexistent/x.mnc")).unwrap_err();
        assert!(matches!(e, ArtifactError::Io { .. }), "{e}");
        assert!(!is_artifact(Path::new("/nonexistent/x.mnc")));
    }

    #[test]
    fn wrong_version_is_a_clear_error() {
        let mut bytes = small_artifact();
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        let e = decode(&bytes, Path::new("old.mnc")).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::Version {
                    found: 7,
                    expected: FORMAT_VERSION,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("old.mnc: mnc artifact format version 7"));
    }
}

/// Load-time measurement on the full EfficientNet-B0 (run in release:
/// `cargo test --release -p mnc --lib artifact::timing -- --ignored --nocapture`).
#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore = "measurement on fixtures-full; run in release"]
    fn efficientnet_b0_load_time() {
        let onnx = mnc_tests::repo_root()
            .join("fixtures-full")
            .join("efficientnet_b0_op13")
            .join("model.onnx");
        let target = Target::detect_host();
        let t = Instant::now();
        let g = crate::onnx::import_file(&onnx, &Default::default()).unwrap();
        let t_import = t.elapsed();
        let t = Instant::now();
        let opt = crate::exec::optimized(g, target).unwrap();
        let t_passes = t.elapsed();
        let path = mnc_tests::tmp_dir("artifact-timing").join("effb0.mnc");
        let t = Instant::now();
        write(&path, &opt, target, 1, "h").unwrap();
        let t_write = t.elapsed();
        let size = std::fs::metadata(&path).unwrap().len();
        let t = Instant::now();
        let art = read(&path).unwrap();
        let t_read = t.elapsed();
        assert_eq!(art.graph.node_count(), opt.node_count());
        let mut line = format!(
            "effnet-b0 {target}: artifact {size} bytes; import {t_import:?}, passes \
             {t_passes:?}, write {t_write:?}, read+verify {t_read:?}"
        );
        if target.is_jit() {
            let t = Instant::now();
            let m =
                mnc_runtime::cpu::CompiledModel::compile(&art.graph, target, &Default::default())
                    .unwrap();
            line += &format!(", JIT compile+pack {:?}", t.elapsed());
            drop(m);
        }
        println!("{line}");
    }
}
