//! The CUDA target: lowers a (scheduled) IR graph to one PTX module plus a launch plan.
//!
//! Owns PTX emission (a pure function of the graph: no GPU, driver or toolkit involved, and
//! deterministic text), the GPU tile choice ([`tiles`]), the kernel generators
//! ([`kernels`]), and the device buffer plan: one weights buffer holding every f32 constant
//! and one activation arena laid out by the passes' memory planner
//! (`mnc_passes::memory::plan_arena`, the one the CPU backend uses: views alias their input,
//! nothing runs in place), followed by a scratch area for per-launch temporaries. `mnc-runtime` loads the module and
//! replays the launch plan with `cudarc`.
//!
//! Int8 (issue 14): the quantized ops (`QuantizeLinear`, `DequantizeLinear`, `QConv` on
//! tensor cores (`mma.m16n8k32`, pointwise) or `dp4a`, `QLut`, `QGlobalAveragePool`, `QAdd`/`QMul`) and the integer `Pad` run on
//! generated kernels ([`int8`]), bit-exact against the reference executor; `u8`/`i8` values
//! are stored as bytes ([`storage_words`]).
//!
//! Numerics: exact float32 (FMA accumulation in the reference order for convs and GEMMs);
//! `exp` uses `ex2.approx` (about 2 ulp); means and the softmax denominator accumulate in
//! f32 lane partials. With `allow_tf32` the GEMMs (pointwise convs, Gemm, MatMul) use TF32
//! tensor cores (`mma.sync.m16n8k8`): operands rounded to 10-bit mantissas, f32 accumulation.

pub mod int8;
pub mod kernels;
pub mod ptx;
pub mod tiles;

use crate::epilogue::Epilogue;
use kernels::{ConvSpec, GemmSpec, Gen, PoolSpec};
use mnc_ir::{DType, Graph, NodeId, Op, PoolKind, QType, Tensor, TensorData, TensorType};
use mnc_passes::memory::{plan_arena, ArenaOptions, MemoryPlan, Storage};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// An NVIDIA GPU architecture that PTX is generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CudaArch {
    /// Ampere (A100): `sm_80`.
    Sm80,
    /// Hopper (H100/H200): `sm_90`.
    Sm90,
}

impl CudaArch {
    /// Every architecture.
    pub const ALL: [CudaArch; 2] = [CudaArch::Sm80, CudaArch::Sm90];
    /// The PTX `.target` / `ptxas -arch` name (`sm_80`).
    pub fn sm(self) -> &'static str {
        match self {
            CudaArch::Sm80 => "sm_80",
            CudaArch::Sm90 => "sm_90",
        }
    }
    /// The target name used on the command line (`cuda-sm80`).
    pub fn target_name(self) -> &'static str {
        match self {
            CudaArch::Sm80 => "cuda-sm80",
            CudaArch::Sm90 => "cuda-sm90",
        }
    }
    /// Streaming multiprocessors of the reference part (A100: 108, H100 SXM: 132), used by
    /// the tile choice to fill the GPU.
    pub fn sm_count(self) -> usize {
        self.gpu_facts().sm_count
    }
    /// What the GPU tile choice knows about the reference part of this architecture.
    pub fn gpu_facts(self) -> mnc_passes::target::GpuFacts {
        match self {
            CudaArch::Sm80 => mnc_passes::target::GpuFacts::sm80(),
            CudaArch::Sm90 => mnc_passes::target::GpuFacts::sm90(),
        }
    }
    /// The target facts the scheduling pass uses for this architecture.
    pub fn target_facts(self) -> mnc_passes::TargetFacts {
        match self {
            CudaArch::Sm80 => mnc_passes::TargetFacts::cuda_sm80(),
            CudaArch::Sm90 => mnc_passes::TargetFacts::cuda_sm90(),
        }
    }
    /// The architecture to generate for a device of compute capability `major.minor`
    /// (newer parts run `sm_90` PTX through the driver's JIT); `None` below 8.0.
    pub fn for_compute_capability(major: i32, minor: i32) -> Option<CudaArch> {
        let _ = minor;
        match major {
            8 => Some(CudaArch::Sm80),
            m if m >= 9 => Some(CudaArch::Sm90),
            _ => None,
        }
    }
}

impl fmt::Display for CudaArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.target_name())
    }
}

impl FromStr for CudaArch {
    type Err = CudaError;
    fn from_str(s: &str) -> Result<Self, CudaError> {
        CudaArch::ALL
            .into_iter()
            .find(|a| a.target_name() == s || a.sm() == s)
            .ok_or_else(|| CudaError::UnknownArch(s.to_string()))
    }
}

/// Code generation options of the CUDA target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CudaOptions {
    /// Use TF32 tensor-core `mma` for pointwise convs, Gemm and MatMul (operands rounded to
    /// TF32, about 3 significant digits per product). Off by default: exact float32.
    pub allow_tf32: bool,
}

/// Errors of CUDA code generation. Node-level errors name the node and op.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CudaError {
    #[error("unknown CUDA architecture '{0}' (available: cuda-sm80, cuda-sm90)")]
    UnknownArch(String),
    #[error("node '{node}' ({op}): not supported by the CUDA target: {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("graph '{graph}': {msg}")]
    Graph { graph: String, msg: String },
}

/// Which device buffer a pointer points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// The weights buffer (uploaded once).
    Weights,
    /// The activation arena.
    Arena,
}

/// A pointer into a device buffer, in f32 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufRef {
    pub space: Space,
    pub offset: usize,
}

/// One kernel launch of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// Index into [`CudaProgram::kernels`].
    pub kernel: usize,
    /// The IR node this launch computes (part of).
    pub node: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// The kernel's pointer arguments, in order.
    pub args: Vec<BufRef>,
}

/// A graph input or output bound to device memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub name: String,
    pub ty: TensorType,
    pub buf: BufRef,
}

/// The compiled model: PTX module text, the launch plan and the buffer layout.
#[derive(Clone, Debug)]
pub struct CudaProgram {
    pub arch: CudaArch,
    /// The whole PTX module (every distinct kernel once).
    pub ptx: String,
    /// Kernel entry names, indexed by [`Launch::kernel`].
    pub kernels: Vec<String>,
    pub launches: Vec<Launch>,
    /// Every f32 constant, packed (offsets aligned to [`ALIGN`] elements).
    pub weights: Vec<f32>,
    /// Size of the activation arena in f32 elements: the planned activations
    /// ([`CudaProgram::memory`]), then the largest per-node scratch (SqueezeExcite's
    /// vectors).
    pub arena_len: usize,
    /// Sum of all activation sizes without reuse plus the scratch (for reports).
    pub naive_len: usize,
    /// The activations' arena plan (`mnc_passes::memory::plan_arena`, byte offsets).
    pub memory: MemoryPlan,
    pub inputs: Vec<Binding>,
    pub outputs: Vec<Binding>,
}

impl CudaProgram {
    /// A human-readable launch plan: one line per launch (node, kernel, grid, block) and the
    /// buffer sizes, for `-v` reports and debugging.
    pub fn plan_text(&self) -> String {
        let mut s = format!(
            "{}: {} kernels, {} launches, weights {:.2} MiB, arena {:.2} MiB (naive {:.2} MiB)\n",
            self.arch.target_name(),
            self.kernels.len(),
            self.launches.len(),
            self.weights.len() as f64 * 4.0 / (1 << 20) as f64,
            self.arena_len as f64 * 4.0 / (1 << 20) as f64,
            self.naive_len as f64 * 4.0 / (1 << 20) as f64,
        );
        let planned = self.memory.arena_bytes.div_ceil(4 * ALIGN) * ALIGN;
        s.push_str(&format!(
            "  {}; then scratch {} bytes\n",
            self.memory.summary(),
            (self.arena_len - planned) * 4
        ));
        for l in &self.launches {
            s.push_str(&format!(
                "  {:<40} {:<20} grid {:?} block {}\n",
                l.node, self.kernels[l.kernel], l.grid, l.block[0]
            ));
        }
        s
    }
}

/// Alignment of every buffer, in f32 elements (128 bytes).
pub const ALIGN: usize = 32;

/// The PTX ISA version emitted (accepted by ptxas 12.x/13.x for sm_80 and sm_90).
pub const PTX_VERSION: &str = "8.0";

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Device storage of a value of type `ty`, in f32-sized words: one per f32 or i32 element,
/// one per four u8/i8 elements (bytes, little-endian within a word); `None` for i64 (never
/// on the device).
pub fn storage_words(ty: &TensorType) -> Option<usize> {
    let n = ty.numel();
    match ty.dtype {
        DType::F32 | DType::I32 => Some(n),
        DType::U8 | DType::I8 => Some(n.div_ceil(4)),
        DType::I64 => None,
    }
}

/// A constant's device words (the bytes of u8/i8 data packed four to a word, i32 as bits),
/// `None` for i64.
fn constant_words(t: &Tensor) -> Option<Vec<f32>> {
    match &t.data {
        TensorData::F32(v) => Some(v.clone()),
        TensorData::I32(v) => Some(v.iter().map(|&x| f32::from_bits(x as u32)).collect()),
        TensorData::U8(v) => Some(crate::bytes_to_words(v)),
        TensorData::I8(v) => Some(crate::bytes_to_words(
            &v.iter().map(|&x| x as u8).collect::<Vec<u8>>(),
        )),
        TensorData::I64(_) => None,
    }
}

/// How the lowering of an op stores and reads its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StorageFacts {
    /// It handles u8/i8 operands or results (every other op must be f32 throughout on this
    /// target).
    int8: bool,
    /// Inputs from this slot on are read on the host at compile time (a `QConv`'s weights
    /// and bias, packed into its constants), not by a kernel: they need no device buffer.
    host_from: Option<usize>,
}

fn storage_facts(op: &Op) -> StorageFacts {
    let (int8, host_from) = match op {
        Op::QConv(_) => (true, Some(1)),
        Op::Input { .. }
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::QLut(_)
        | Op::QGlobalAveragePool(_)
        | Op::QBinary(_)
        | Op::Pad { .. } => (true, None),
        Op::Constant(_)
        | Op::Identity
        | Op::Dropout
        | Op::Conv(_)
        | Op::BatchNorm { .. }
        | Op::ChannelAffine
        | Op::SqueezeExcite(_)
        | Op::Act(_)
        | Op::Binary(_)
        | Op::Gemm(_)
        | Op::MatMul
        | Op::GlobalAveragePool
        | Op::ReduceMean { .. }
        | Op::Pool(_)
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice(_)
        | Op::Gather { .. }
        | Op::Cast { .. }
        | Op::Softmax { .. }
        | Op::Lrn(_) => (false, None),
    };
    StorageFacts { int8, host_from }
}

/// Whether input `slot` of `op` is read by a kernel on the device.
fn device_slot(op: &Op, slot: usize) -> bool {
    storage_facts(op).host_from.is_none_or(|h| slot < h)
}

/// Lowering state.
struct Lower<'g> {
    g: &'g Graph,
    arch: CudaArch,
    weights: Vec<f32>,
    /// Location of every computed value.
    loc: HashMap<NodeId, BufRef>,
    /// Where the per-launch temporaries of the node being lowered start (words): the
    /// scratch area after the activations; reset for every node.
    scratch_base: usize,
    /// The next free word of the scratch area.
    scratch_next: usize,
    /// The end of the largest scratch area any node used (words).
    scratch_top: usize,
    /// Distinct kernels: body key -> index.
    dedup: HashMap<String, usize>,
    kernel_texts: Vec<String>,
    kernel_names: Vec<String>,
    launches: Vec<Launch>,
    /// Use the TF32 tensor-core GEMM.
    tf32: bool,
}

/// Whether a node is a view of its (single) input ([`mnc_ir::facts::is_view`]).
fn is_view(op: &Op, g: &Graph, inputs: &[NodeId]) -> bool {
    inputs
        .first()
        .is_some_and(|&i| mnc_ir::facts::is_view(op, g.node(i).ty.dtype))
}

impl<'g> Lower<'g> {
    fn unsupported(&self, id: NodeId, reason: impl Into<String>) -> CudaError {
        let n = self.g.node(id);
        CudaError::Unsupported {
            node: n.name.clone(),
            op: n.op.kind().to_string(),
            reason: reason.into(),
        }
    }

    fn emit(&mut self, node: NodeId, gen: Gen, args: Vec<BufRef>) -> Result<(), CudaError> {
        if gen.grid[1] > 65535 || gen.grid[2] > 65535 || gen.grid[0] > i32::MAX as u32 {
            return Err(self.unsupported(
                node,
                format!("launch grid {:?} exceeds CUDA limits", gen.grid),
            ));
        }
        let key = gen.kernel.body_key();
        let idx = match self.dedup.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.kernel_names.len();
                let name = format!("mnc_k{i}_{}", gen.kind);
                self.kernel_texts.push(gen.kernel.render(&name));
                self.kernel_names.push(name);
                self.dedup.insert(key, i);
                i
            }
        };
        self.launches.push(Launch {
            kernel: idx,
            node: self.g.node(node).name.clone(),
            grid: gen.grid,
            block: [gen.kernel.block, 1, 1],
            args,
        });
        Ok(())
    }

    /// The GEMM kernel for `s` (exact f32, or TF32 tensor cores when allowed).
    fn gemm(&self, s: &GemmSpec) -> Gen {
        if self.tf32 {
            kernels::gemm_tf32(s)
        } else {
            kernels::gemm(s)
        }
    }

    /// Appends `v` to the weights buffer (aligned) and returns its location.
    fn add_weights(&mut self, v: &[f32]) -> BufRef {
        let off = self.weights.len();
        self.weights.extend_from_slice(v);
        self.weights.resize(off + align(v.len().max(1)), 0.0);
        BufRef {
            space: Space::Weights,
            offset: off,
        }
    }

    /// A temporary of `n` words for the node being lowered, in the scratch area after the
    /// planned activations (every node's temporaries start at its beginning: launches run in
    /// order, and a node's temporaries die with it).
    fn temp(&mut self, n: usize) -> BufRef {
        let offset = self.scratch_next;
        self.scratch_next += align(n.max(1));
        self.scratch_top = self.scratch_top.max(self.scratch_next);
        BufRef {
            space: Space::Arena,
            offset,
        }
    }
}

/// Compiles `graph` for `arch`: PTX for every node some output needs, the launch plan and
/// the buffer layout. Works on any graph that passes the verifier (fused or not; checked
/// here). A pointwise conv runs with
/// the GPU tile of its schedule when the scheduling pass chose one (graph optimized for a
/// CUDA target); otherwise, and for Gemm/MatMul, the tile comes from [`tiles::gemm_tile`].
/// The CPU parts of conv schedules are ignored.
pub fn compile(
    graph: &Graph,
    arch: CudaArch,
    opts: &CudaOptions,
) -> Result<CudaProgram, CudaError> {
    let gerr = |msg: String| CudaError::Graph {
        graph: graph.name.clone(),
        msg,
    };
    // The launch plan and buffer sizes trust every node's stored type, and `Node::ty` is a
    // public field: a graph whose types disagree with shape inference is refused.
    mnc_ir::verify::verify(graph).map_err(|e| gerr(e.to_string()))?;
    let order = graph.topo_order().map_err(|e| gerr(e.to_string()))?;
    // Nodes some output needs.
    let mut needed = HashSet::new();
    let mut stack: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    while let Some(n) = stack.pop() {
        if !graph.contains(n) {
            return Err(gerr("an output refers to a removed node".into()));
        }
        if needed.insert(n) {
            stack.extend(graph.inputs(n));
        }
    }
    let mut lw = Lower {
        g: graph,
        arch,
        weights: Vec::new(),
        loc: HashMap::new(),
        scratch_base: 0,
        scratch_next: 0,
        scratch_top: 0,
        dedup: HashMap::new(),
        kernel_texts: Vec::new(),
        kernel_names: Vec::new(),
        launches: Vec::new(),
        tf32: opts.allow_tf32,
    };
    // The activations' arena is the passes' memory plan (`plan_arena`) over the nodes some
    // output needs, in the order they launch (graph inputs included, needed or not: `run`
    // takes every input): constants live in the weights buffer, views share their input's
    // buffer, and every other value gets bytes of its own; no kernel runs in place.
    let planned: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|id| needed.contains(id) || graph.inputs.contains(id))
        .collect();
    let memory = plan_arena(
        graph,
        &planned,
        |id| {
            let node = graph.node(id);
            match &node.op {
                Op::Constant(_) => Storage::Outside,
                op if is_view(op, graph, &graph.inputs(id)) => Storage::View,
                _ => Storage::Own(Vec::new()),
            }
        },
        &ArenaOptions {
            alignment: ALIGN * 4,
            padding: 0,
            overwrite_inputs: false,
        },
    )
    .map_err(|e| gerr(e.to_string()))?;
    // Word offset of every planned value's buffer.
    let planned_at: HashMap<NodeId, usize> = memory
        .values
        .iter()
        .map(|v| (v.node, memory.buffers[v.buffer].offset / 4))
        .collect();
    lw.scratch_base = memory.arena_bytes.div_ceil(4 * ALIGN) * ALIGN;
    lw.scratch_top = lw.scratch_base;
    // Non-f32 constants some kernel reads on the device (the others, a QConv's weights and
    // bias, are packed at compile time and need no copy of their own).
    let mut device_consts: HashSet<NodeId> = HashSet::new();
    for &id in &order {
        if needed.contains(&id) {
            let op = &graph.node(id).op;
            for (slot, i) in graph.inputs(id).into_iter().enumerate() {
                if device_slot(op, slot) {
                    device_consts.insert(i);
                }
            }
        }
    }

    for &id in &order {
        if !needed.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        let ins = graph.inputs(id);
        if let Op::Constant(t) = &node.op {
            // f32 constants always live in the weights buffer; u8/i8/i32 ones when a kernel
            // reads them. I64 constants are only legal as operands the target reads on the
            // host (none today): any kernel reading one fails below.
            if t.dtype() == DType::F32 || device_consts.contains(&id) {
                if let Some(v) = constant_words(t) {
                    let buf = lw.add_weights(&v);
                    lw.loc.insert(id, buf);
                }
            }
            continue;
        }
        let facts = storage_facts(&node.op);
        let ok_type = |t: DType| {
            t == DType::F32 || (facts.int8 && matches!(t, DType::U8 | DType::I8 | DType::I32))
        };
        if !ok_type(node.ty.dtype) && !is_view(&node.op, graph, &ins) {
            return Err(lw.unsupported(
                id,
                format!(
                    "values of type {} (only f32 runs on the GPU, and u8/i8 in the int8 ops)",
                    node.ty
                ),
            ));
        }
        if let Some(&i) = ins
            .iter()
            .enumerate()
            .filter(|&(slot, _)| device_slot(&node.op, slot))
            .map(|(_, i)| i)
            .find(|&&i| !ok_type(graph.node(i).ty.dtype))
        {
            if !is_view(&node.op, graph, &ins) {
                return Err(lw.unsupported(
                    id,
                    format!(
                        "input '{}' is {} (only the int8 ops read u8/i8 values on the GPU)",
                        graph.node(i).name,
                        graph.node(i).ty
                    ),
                ));
            }
        }
        if is_view(&node.op, graph, &ins) {
            let src = *lw
                .loc
                .get(&ins[0])
                .ok_or_else(|| lw.unsupported(id, "view of a value with no device buffer"))?;
            lw.loc.insert(id, src);
            continue;
        }
        let mut in_refs = Vec::with_capacity(ins.len());
        for (slot, &i) in ins.iter().enumerate() {
            if !device_slot(&node.op, slot) {
                continue;
            }
            match lw.loc.get(&i) {
                Some(&r) => in_refs.push(r),
                None => {
                    return Err(lw.unsupported(
                        id,
                        format!(
                            "input '{}' is {} (only f32 values reach the GPU)",
                            graph.node(i).name,
                            graph.node(i).ty
                        ),
                    ))
                }
            }
        }
        // Output buffer: the plan's (disjoint from every input: no kernel runs in place).
        // The plan sized it in bytes; a type with no device storage (i64) is refused here.
        storage_words(&node.ty)
            .ok_or_else(|| lw.unsupported(id, format!("values of type {}", node.ty)))?;
        let out = BufRef {
            space: Space::Arena,
            offset: *planned_at
                .get(&id)
                .ok_or_else(|| lw.unsupported(id, "no arena buffer was planned for it"))?,
        };
        lw.loc.insert(id, out);
        lw.scratch_next = lw.scratch_base;
        lower_node(&mut lw, id, &ins, &in_refs, out)?;
    }

    let mut inputs = Vec::new();
    for &id in &graph.inputs {
        let n = graph.node(id);
        if let Some(&buf) = lw.loc.get(&id) {
            inputs.push(Binding {
                name: n.name.clone(),
                ty: n.ty.clone(),
                buf,
            });
        } else if !matches!(n.ty.dtype, DType::F32 | DType::U8 | DType::I8) {
            return Err(gerr(format!(
                "input '{}' is {}; only f32, u8 and i8 inputs are supported",
                n.name, n.ty
            )));
        } else if let (Some(&offset), Some(_)) = (planned_at.get(&id), storage_words(&n.ty)) {
            // An input no output depends on: it has a buffer so that `run` can still take it.
            inputs.push(Binding {
                name: n.name.clone(),
                ty: n.ty.clone(),
                buf: BufRef {
                    space: Space::Arena,
                    offset,
                },
            });
        } else {
            return Err(gerr(format!("input '{}' has no device buffer", n.name)));
        }
    }
    let mut outputs = Vec::new();
    for o in &graph.outputs {
        let n = graph.node(o.node);
        let buf = *lw.loc.get(&o.node).ok_or_else(|| {
            gerr(format!(
                "output '{}' has no device buffer ({})",
                o.name, n.ty
            ))
        })?;
        outputs.push(Binding {
            name: o.name.clone(),
            ty: n.ty.clone(),
            buf,
        });
    }
    let mut ptx = format!(
        "//\n// Generated by mnc for {} ({}): {} kernels, {} launches\n//\n\n.version {PTX_VERSION}\n.target {}\n.address_size 64\n",
        graph.name,
        arch.target_name(),
        lw.kernel_names.len(),
        lw.launches.len(),
        arch.sm()
    );
    for t in &lw.kernel_texts {
        ptx.push('\n');
        ptx.push_str(t);
    }
    Ok(CudaProgram {
        arch,
        ptx,
        kernels: lw.kernel_names,
        launches: lw.launches,
        weights: lw.weights,
        arena_len: lw.scratch_top,
        naive_len: memory.naive_bytes.div_ceil(4) + (lw.scratch_top - lw.scratch_base),
        memory,
        inputs,
        outputs,
    })
}

fn shape(g: &Graph, id: NodeId) -> &[usize] {
    &g.node(id).ty.shape
}

/// Emits the launches of one non-view node.
fn lower_node(
    lw: &mut Lower,
    id: NodeId,
    ins: &[NodeId],
    a: &[BufRef],
    out: BufRef,
) -> Result<(), CudaError> {
    let g = lw.g;
    let node = g.node(id);
    let oshape = node.ty.shape.clone();
    let n_out = node.ty.numel();
    let args = |extra: &[BufRef]| -> Vec<BufRef> {
        let mut v = extra.to_vec();
        v.push(out);
        v
    };
    match &node.op {
        Op::Input { .. } => {}
        Op::Constant(_) | Op::Identity | Op::Dropout => {}
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {}
        Op::Cast { .. } => return Err(lw.unsupported(id, "casts between types")),
        Op::Act(act) => lw.emit(id, kernels::act(n_out, *act), args(&a[..1]))?,
        Op::Binary(op) => {
            let gen = kernels::binary(*op, shape(g, ins[0]), shape(g, ins[1]), &oshape);
            lw.emit(id, gen, args(&a[..2]))?;
        }
        Op::ChannelAffine => {
            if oshape.len() < 2 {
                return Err(lw.unsupported(id, "rank below 2"));
            }
            lw.emit(id, kernels::channel_affine(&oshape, None), args(&a[..3]))?;
        }
        Op::BatchNorm { epsilon } => {
            if oshape.len() < 2 {
                return Err(lw.unsupported(id, "rank below 2"));
            }
            lw.emit(
                id,
                kernels::channel_affine(&oshape, Some(*epsilon)),
                args(&a[..5]),
            )?;
        }
        Op::Softmax { axis } => {
            let (outer, d, inner) = split3(&oshape, *axis, axis + 1);
            lw.emit(id, kernels::softmax(outer, d, inner), args(&a[..1]))?;
        }
        Op::GlobalAveragePool => {
            let s = shape(g, ins[0]);
            let (outer, red, inner) = split3(s, 2, s.len());
            lw.emit(id, kernels::mean(outer, red, inner), args(&a[..1]))?;
        }
        Op::ReduceMean { axes, .. } => {
            let s = shape(g, ins[0]);
            if axes.is_empty() {
                lw.emit(id, kernels::mean(n_out, 1, 1), args(&a[..1]))?;
            } else {
                let (lo, hi) = (axes[0], axes[axes.len() - 1] + 1);
                if hi - lo != axes.len() {
                    return Err(
                        lw.unsupported(id, format!("non-contiguous reduction axes {axes:?}"))
                    );
                }
                let (outer, red, inner) = split3(s, lo, hi);
                lw.emit(id, kernels::mean(outer, red, inner), args(&a[..1]))?;
            }
        }
        Op::Pool(p) => {
            let s = shape(g, ins[0]);
            let spec = PoolSpec {
                planes: s[0] * s[1],
                h: s[2],
                w: s[3],
                oh: oshape[2],
                ow: oshape[3],
                kernel: p.kernel,
                stride: p.strides,
                dilation: p.dilations,
                pads: p.pads,
                max: p.kind == PoolKind::Max,
                count_include_pad: p.count_include_pad,
            };
            check_pool_windows(&spec).map_err(|r| lw.unsupported(id, r))?;
            lw.emit(id, kernels::pool(&spec), args(&a[..1]))?;
        }
        Op::Conv(c) => {
            let xs = shape(g, ins[0]);
            let ws = shape(g, ins[1]);
            let spec = ConvSpec {
                n: xs[0],
                ci: xs[1],
                h: xs[2],
                w: xs[3],
                co: ws[0],
                oh: oshape[2],
                ow: oshape[3],
                kh: ws[2],
                kw: ws[3],
                stride: c.strides,
                dilation: c.dilations,
                pad: [c.pads[0], c.pads[1]],
                group: c.group,
                epi: Epilogue::of_op(c.has_bias, &c.epilogue),
            };
            let pointwise =
                ws[2] == 1 && ws[3] == 1 && c.strides == [1, 1] && c.pads == [0; 4] && c.group == 1;
            if pointwise {
                let hw = spec.h * spec.w;
                let (m, n, k) = (spec.co, spec.n * hw, spec.ci);
                let gs = GemmSpec {
                    m,
                    n,
                    k,
                    ninner: hw,
                    sam: spec.ci,
                    sak: 1,
                    sbk: hw,
                    sbn: 1,
                    sbb: spec.ci * hw,
                    scm: hw,
                    scn: 1,
                    scb: spec.co * hw,
                    alpha: 1.0,
                    bias: (1, 0, 1.0),
                    epi: spec.epi,
                    tile: match c.schedule.as_ref().and_then(|s| s.gpu) {
                        Some(t) if tiles::supported(&t, lw.arch) => t,
                        Some(t) => {
                            let arch = lw.arch;
                            return Err(lw.unsupported(
                                id,
                                format!("scheduled GPU tile [{t}] is not supported on {arch}"),
                            ));
                        }
                        None => tiles::gemm_tile(m, n, k, lw.arch),
                    },
                };
                // GEMM operands: A = weights [co, ci], B = activations.
                let mut ops = vec![a[1], a[0]];
                ops.extend_from_slice(&a[2..]);
                lw.emit(id, lw.gemm(&gs), args(&ops))?;
            } else if c.group == spec.ci && spec.ci == spec.co {
                lw.emit(id, kernels::depthwise(&spec), args(a))?;
            } else {
                lw.emit(id, kernels::direct_conv(&spec), args(a))?;
            }
        }
        Op::Gemm(gm) => {
            let (m, n) = (oshape[0], oshape[1]);
            let sa = shape(g, ins[0]);
            let k = if gm.trans_a { sa[0] } else { sa[1] };
            let (sam, sak) = if gm.trans_a { (1, m) } else { (k, 1) };
            let (sbk, sbn) = if gm.trans_b { (1, k) } else { (n, 1) };
            let bias = if gm.has_c {
                let cs = kernels::broadcast_strides(shape(g, ins[2]), 2);
                (cs[0], cs[1], gm.beta)
            } else {
                (0, 0, 0.0)
            };
            let gs = GemmSpec {
                m,
                n,
                k,
                ninner: n,
                sam,
                sak,
                sbk,
                sbn,
                sbb: 0,
                scm: n,
                scn: 1,
                scb: 0,
                alpha: gm.alpha,
                bias,
                epi: Epilogue::of_op(gm.has_c, &gm.epilogue),
                tile: tiles::gemm_tile(m, n, k, lw.arch),
            };
            lw.emit(id, lw.gemm(&gs), args(a))?;
        }
        Op::MatMul => {
            let sa = shape(g, ins[0]);
            let sb = shape(g, ins[1]);
            if sb.len() != 2 || sa.len() < 2 {
                return Err(lw.unsupported(id, "only [.., M, K] x [K, N] products"));
            }
            let k = sa[sa.len() - 1];
            let m: usize = sa[..sa.len() - 1].iter().product();
            let n = sb[1];
            let gs = GemmSpec {
                m,
                n,
                k,
                ninner: n,
                sam: k,
                sak: 1,
                sbk: n,
                sbn: 1,
                sbb: 0,
                scm: n,
                scn: 1,
                scb: 0,
                alpha: 1.0,
                bias: (0, 0, 0.0),
                epi: Epilogue::NONE,
                tile: tiles::gemm_tile(m, n, k, lw.arch),
            };
            lw.emit(id, lw.gemm(&gs), args(&a[..2]))?;
        }
        Op::SqueezeExcite(se) => {
            let xs = shape(g, ins[0]);
            let (nb, c, hw) = (xs[0], xs[1], xs[2] * xs[3]);
            let r = shape(g, ins[1])[0];
            let s = lw.temp(nb * c);
            let hid = lw.temp(nb * r);
            let gate = lw.temp(nb * c);
            lw.emit(id, kernels::mean(nb * c, hw, 1), vec![a[0], s])?;
            lw.emit(
                id,
                kernels::matvec(nb, r, c, &Epilogue::new(true, false, Some(se.act))),
                vec![s, a[1], a[2], hid],
            )?;
            lw.emit(
                id,
                kernels::matvec(nb, c, r, &Epilogue::new(true, false, Some(se.gate))),
                vec![hid, a[3], a[4], gate],
            )?;
            lw.emit(id, kernels::scale_rows(n_out, hw), vec![a[0], gate, out])?;
        }
        Op::Transpose { perm } => {
            let s = shape(g, ins[0]);
            let st = kernels::strides(s);
            let src: Vec<i64> = perm.iter().map(|&p| st[p] as i64).collect();
            let dst = kernels::strides(&oshape);
            lw.emit(
                id,
                kernels::copy_strided(&oshape, &src, 0, &dst, 0),
                args(&a[..1]),
            )?;
        }
        Op::Slice(sl) => {
            let s = shape(g, ins[0]);
            let st = kernels::strides(s);
            let mut src: Vec<i64> = st.iter().map(|&v| v as i64).collect();
            let mut base = 0i64;
            for (k, &ax) in sl.axes.iter().enumerate() {
                base += sl.starts[k] * st[ax] as i64;
                src[ax] = st[ax] as i64 * sl.steps[k];
            }
            let dst = kernels::strides(&oshape);
            if n_out > 0 {
                lw.emit(
                    id,
                    kernels::copy_strided(&oshape, &src, base, &dst, 0),
                    args(&a[..1]),
                )?;
            }
        }
        Op::Concat { axis } => {
            let dst = kernels::strides(&oshape);
            let mut at = 0usize;
            for (j, &i) in ins.iter().enumerate() {
                let s = shape(g, i).to_vec();
                let src: Vec<i64> = kernels::strides(&s).iter().map(|&v| v as i64).collect();
                if s.iter().product::<usize>() > 0 {
                    let gen = kernels::copy_strided(&s, &src, 0, &dst, at * dst[*axis]);
                    lw.emit(id, gen, vec![a[j], out])?;
                }
                at += s[*axis];
            }
        }
        Op::Pad { pads, value } => {
            let s = shape(g, ins[0]);
            let r = s.len();
            if r == 0 {
                return Err(lw.unsupported(id, "padding a scalar"));
            }
            let gen = match node.ty.dtype {
                DType::F32 => kernels::pad(s, &oshape, &pads[..r], *value),
                // The integer Pad of a quantized tensor (the verifier checked that the
                // value is an integer of the type).
                DType::U8 | DType::I8 => {
                    int8::pad_bytes(s, &oshape, &pads[..r], *value as i32 as u8)
                }
                t @ (DType::I32 | DType::I64) => {
                    return Err(lw.unsupported(id, format!("padding {t} values")))
                }
            };
            lw.emit(id, gen, args(&a[..1]))?;
        }
        Op::Gather { .. } => {
            return Err(lw.unsupported(
                id,
                "Gather is not lowered (it should have been constant-folded)",
            ))
        }
        Op::Quantize(q) => {
            let qt = QType::of(q.dtype)
                .ok_or_else(|| lw.unsupported(id, format!("quantizing to {}", q.dtype)))?;
            let (p, table) = quant_params(lw, id, q, shape(g, ins[0]))?;
            let mut ops = vec![a[0]];
            ops.extend(table);
            lw.emit(id, int8::quantize(n_out, &p, qt), args(&ops))?;
        }
        Op::Dequantize(q) => {
            let input = match g.node(ins[0]).ty.dtype {
                DType::U8 => int8::DequantInput::Q(QType::U8),
                DType::I8 => int8::DequantInput::Q(QType::I8),
                DType::I32 => int8::DequantInput::I32,
                t @ (DType::F32 | DType::I64) => {
                    return Err(lw.unsupported(id, format!("dequantizing {t}")))
                }
            };
            let (p, table) = quant_params(lw, id, q, shape(g, ins[0]))?;
            let mut ops = vec![a[0]];
            ops.extend(table);
            lw.emit(id, int8::dequantize(n_out, &p, input), args(&ops))?;
        }
        Op::QConv(q) => lower_qconv(lw, id, ins, q, a[0], out)?,
        Op::QLut(l) => {
            if !l.is_valid() {
                return Err(lw.unsupported(id, "a table without one entry per input value"));
            }
            let table = lw.add_weights(&int8::lut_table(&l.table));
            lw.emit(id, int8::lut(n_out, l.x), args(&[a[0], table]))?;
        }
        Op::QGlobalAveragePool(m) => {
            let s = shape(g, ins[0]);
            if s.len() != 4 {
                return Err(lw.unsupported(id, "an input that is not NCHW"));
            }
            let (planes, pixels) = (s[0] * s[1], s[2] * s[3]);
            let rq = m
                .requant(pixels)
                .ok_or_else(|| lw.unsupported(id, "parameters with no requantization"))?;
            let qt = QType::of(m.x.dtype)
                .ok_or_else(|| lw.unsupported(id, format!("an input of type {}", m.x.dtype)))?;
            let gen = int8::qmean(planes, pixels, qt, m.x.at(0).1, &rq);
            lw.emit(id, gen, args(&a[..1]))?;
        }
        Op::QBinary(q) => {
            let (sa, sb) = (shape(g, ins[0]), shape(g, ins[1]));
            let inner = mnc_ir::QBinary::inner(sa, sb).ok_or_else(|| {
                lw.unsupported(id, "b must have a's shape or its leading dims then ones")
            })?;
            let f = q
                .requant()
                .ok_or_else(|| lw.unsupported(id, "parameters with no integer form"))?;
            let qt = QType::of(q.y.dtype)
                .ok_or_else(|| lw.unsupported(id, format!("an output of type {}", q.y.dtype)))?;
            lw.emit(id, int8::qbinary(n_out, inner, qt, &f), args(&a[..2]))?;
        }
        Op::Lrn(l) => {
            if oshape.len() < 2 {
                return Err(lw.unsupported(id, "rank below 2"));
            }
            let (outer, c, inner) = split3(&oshape, 1, 2);
            let taps = kernels::lrn_offsets(l, c).count();
            if taps > kernels::MAX_LRN_TAPS {
                return Err(lw.unsupported(
                    id,
                    format!(
                        "an LRN window of {taps} channels (more than {} are not unrolled)",
                        kernels::MAX_LRN_TAPS
                    ),
                ));
            }
            lw.emit(id, kernels::lrn(outer, c, inner, l), args(&a[..1]))?;
        }
    }
    Ok(())
}

/// The parameters of a quantize/dequantize kernel over a tensor of `shape`: immediates per
/// tensor, or a table in the weights buffer (its location returned) per axis.
fn quant_params(
    lw: &mut Lower,
    id: NodeId,
    q: &mnc_ir::QParams,
    shape: &[usize],
) -> Result<(int8::QuantParams, Option<BufRef>), CudaError> {
    match q.axis {
        None => {
            let (scale, zp) = q.at(0);
            Ok((int8::QuantParams::PerTensor { scale, zp }, None))
        }
        Some(ax) => {
            let dim = *shape
                .get(ax)
                .ok_or_else(|| lw.unsupported(id, format!("axis {ax} out of range")))?;
            if q.scale.len() != dim || q.zero_point.len() != dim {
                return Err(lw.unsupported(id, "per-axis parameters of the wrong length"));
            }
            let inner = shape[ax + 1..].iter().product();
            let table = lw.add_weights(&int8::axis_table(&q.scale, &q.zero_point));
            Ok((int8::QuantParams::PerAxis { dim, inner }, Some(table)))
        }
    }
}

/// The integer values of constant input `i` of type `dtype`.
fn const_data(g: &Graph, i: NodeId) -> Option<&TensorData> {
    match &g.node(i).op {
        Op::Constant(t) => Some(&t.data),
        _ => None,
    }
}

/// Lowers a `QConv`: its weights and bias (constants) packed with the folded zero point and
/// the multipliers ([`int8::pack_qconv`], [`int8::pack_qconv_imma`]), then the kernel of its
/// shape ([`int8::QConvSpec::kernel`]: tensor-core `mma` for pointwise convs, else `dp4a`).
fn lower_qconv(
    lw: &mut Lower,
    id: NodeId,
    ins: &[NodeId],
    q: &mnc_ir::QConv,
    x: BufRef,
    out: BufRef,
) -> Result<(), CudaError> {
    let g = lw.g;
    let c = &q.conv;
    let (xs, ws, ys) = (shape(g, ins[0]), shape(g, ins[1]), &g.node(id).ty.shape);
    if xs.len() != 4 || ws.len() != 4 || ys.len() != 4 {
        return Err(lw.unsupported(id, "a convolution that is not 2-D NCHW"));
    }
    if c.epilogue.residual {
        return Err(lw.unsupported(id, "a residual sum (the integer conv has none)"));
    }
    let w: Vec<i8> = match const_data(g, ins[1]) {
        Some(TensorData::I8(v)) => v.clone(),
        _ => return Err(lw.unsupported(id, "weights that are not an i8 constant")),
    };
    let co = ws[0];
    let bias: Vec<i32> = if c.has_bias {
        match const_data(g, ins[2]) {
            Some(TensorData::I32(v)) => v.clone(),
            _ => return Err(lw.unsupported(id, "a bias that is not an i32 constant")),
        }
    } else {
        vec![0; co]
    };
    let rq = q
        .requant(co)
        .ok_or_else(|| lw.unsupported(id, "parameters with no integer requantization"))?;
    let x_type = QType::of(g.node(ins[0]).ty.dtype)
        .ok_or_else(|| lw.unsupported(id, "an input that is not u8 or i8"))?;
    if c.group == 0 || xs[1] % c.group != 0 || co % c.group != 0 || ws[1] * c.group != xs[1] {
        return Err(lw.unsupported(id, "channels that do not split into the groups"));
    }
    let spec = int8::QConvSpec {
        conv: ConvSpec {
            n: xs[0],
            ci: xs[1],
            h: xs[2],
            w: xs[3],
            co,
            oh: ys[2],
            ow: ys[3],
            kh: ws[2],
            kw: ws[3],
            stride: c.strides,
            dilation: c.dilations,
            pad: [c.pads[0], c.pads[1]],
            group: c.group,
            // The requantization follows the integer accumulation (`int8`); the residual was
            // refused above.
            epi: Epilogue::new(c.has_bias, false, None),
        },
        x: x_type,
        x_zp: q.x.at(0).1,
        y_zp: rq.zero_point,
        lo: rq.lo,
        hi: rq.hi,
    };
    let (packed, gen) = match spec.kernel() {
        int8::QConvKernel::Imma => (
            int8::pack_qconv_imma(&spec, &w, &bias, &rq.mult),
            int8::qconv_imma(&spec),
        ),
        int8::QConvKernel::Dp4a => (
            int8::pack_qconv(&spec, &w, &bias, &rq.mult),
            int8::qconv(&spec),
        ),
        int8::QConvKernel::Depthwise => (
            int8::pack_qconv(&spec, &w, &bias, &rq.mult),
            int8::qdwconv(&spec),
        ),
    };
    let packed = packed.map_err(|r| lw.unsupported(id, r))?;
    let consts = lw.add_weights(&packed);
    lw.emit(id, gen, vec![x, consts, out])
}

/// `(prod(s[..lo]), prod(s[lo..hi]), prod(s[hi..]))`.
fn split3(s: &[usize], lo: usize, hi: usize) -> (usize, usize, usize) {
    (
        s[..lo].iter().product(),
        s[lo..hi].iter().product(),
        s[hi..].iter().product(),
    )
}

/// Refuses pooling windows that cover no input cell (the reference executor errors there).
fn check_pool_windows(s: &PoolSpec) -> Result<(), String> {
    let covers = |o: usize, stride: usize, pad: usize, k: usize, dil: usize, size: usize| {
        (0..k).any(|t| {
            let i = (o * stride + t * dil) as i64 - pad as i64;
            i >= 0 && (i as usize) < size
        })
    };
    for oy in 0..s.oh {
        if !covers(oy, s.stride[0], s.pads[0], s.kernel[0], s.dilation[0], s.h) {
            return Err(format!("pooling window row {oy} covers no input cell"));
        }
    }
    for ox in 0..s.ow {
        if !covers(ox, s.stride[1], s.pads[1], s.kernel[1], s.dilation[1], s.w) {
            return Err(format!("pooling window column {ox} covers no input cell"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
