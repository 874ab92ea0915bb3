//! The Cranelift JIT backend for x86-64 (targets `x86_64`, `x86_64-avx2`, `x86_64-avx512`).
//!
//! [`compile`] turns an (optimized) graph into a [`CpuProgram`]:
//! - every op is planned by [`lower::plan_op`]: a generated function specialized to its static
//!   shapes, a no-op view (reshape family), or a *visible* fallback to the reference kernel
//!   (listed in [`CompileReport`] with its reason);
//! - activations get byte offsets in one arena from a liveness-based first-fit planner
//!   (views share their input's buffer); constants and the packed weights live in one
//!   read-only, 64-byte aligned blob;
//! - each generated function takes a pointer table (output, inputs, packed constants,
//!   scratch); convs call the per-ISA `std::arch` kernels of [`kernels`] (GEMM with fused
//!   epilogue per batch and group; the whole depthwise op on AVX2/AVX-512), which split
//!   their work over the thread pool of [`par`]; everything else is Cranelift code (128-bit
//!   vectors).
//!
//! Execution (arena allocation per run, pointer tables, fallbacks) is in `mnc-runtime`.

pub mod emit;
pub mod fpenv;
pub mod isa;
pub mod kernels;
pub mod lower;
pub mod lower_data;
pub mod lower_int8;
pub mod par;

pub use isa::{cranelift_flag, isa, IsaDesc};

use crate::Target;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use lower::{OpInfo, Plan};
use mnc_ir::facts::InPlace;
use mnc_ir::{Graph, IrError, NodeId, Op, Tensor, TensorType};
use mnc_passes::memory::{plan_arena, ArenaOptions, MemoryPlan, Storage};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Errors of the CPU backend's compilation.
#[derive(Debug, Error)]
pub enum CpuError {
    #[error("target '{0}' is not a JIT target")]
    NotJit(Target),
    #[error("cranelift ISA setup for '{target}': {msg}")]
    Isa { target: Target, msg: String },
    #[error("node '{node}' ({op}): code generation failed: {msg}")]
    Codegen {
        node: String,
        op: String,
        msg: String,
    },
    #[error("JIT module: {0}")]
    Module(String),
    /// A size the op's code needs (scratch, padded planes) overflows or exceeds the arena
    /// limit [`MAX_ARENA_BYTES`].
    #[error("node '{node}' ({op}): {msg}")]
    Oversize {
        node: String,
        op: String,
        msg: String,
    },
    /// The run arena (activations and scratch) would exceed [`MAX_ARENA_BYTES`].
    #[error("the model needs a run arena of {bytes} bytes, more than the limit of {} GiB", MAX_ARENA_BYTES >> 30)]
    ArenaTooLarge { bytes: usize },
    /// The arena plan failed its check (a planner bug).
    #[error("the arena plan: {0}")]
    ArenaPlan(mnc_passes::PassError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Options of [`compile`].
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Run Cranelift's verifier on every generated function (on in debug builds).
    pub verify: bool,
    /// Keep the CLIF text of every function (for `--emit clif`).
    pub keep_clif: bool,
    /// Test mode: surround every arena buffer and the scratch area with [`GUARD_BYTES`] of
    /// canary bytes that the runtime fills before and checks after every step, so an
    /// out-of-bounds write by generated code is reported (naming the step) instead of
    /// silently corrupting a neighbour.
    pub guards: bool,
    /// Let an op's output take over the buffer of an input that dies at that op, where the
    /// op's code allows it (`lower::in_place_input`): a smaller arena, hotter caches.
    pub in_place: bool,
    /// Threads per run: the GEMM and depthwise kernels split every call into tasks run by
    /// the caller and up to `threads - 1` threads of the persistent pool ([`par`]); results
    /// are identical for every thread count. 1 runs everything on the caller. Default: the
    /// number of physical cores ([`par::physical_cores`]).
    pub threads: usize,
    /// Flush denormals to zero during a run (MXCSR FTZ + DAZ on the calling thread and the
    /// pool threads, restored after; see [`fpenv`]). Default: on.
    pub flush_denormals: bool,
    /// Run a batch above 1 as one run per image when the graph treats images independently
    /// ([`mnc_ir::batch::per_image`]): the program is compiled for one image, each image's
    /// activations stay in cache from op to op, and with several threads whole images run
    /// in parallel (no synchronisation inside an image; a remainder of fewer images than
    /// threads runs image by image with the ops split across threads). Off: every op
    /// processes the whole batch. Default: on.
    pub split_batch: bool,
    /// With [`CpuOptions::split_batch`]: run the classifier head ([`mnc_ir::batch::split_head`]:
    /// the ops after the first `[B, F]` value that every later op reads alone, when a matrix
    /// product is among them) once over the whole batch after the per-image runs, so that its
    /// weights stream from memory once per batch instead of once per image. Default: on.
    pub batch_head: bool,
    /// The least work (FLOPs) of one image for [`CpuOptions::split_batch`] to split a batch
    /// (default [`MIN_IMAGE_FLOPS`]; tests set 0 to split any separable graph).
    pub min_image_flops: u64,
    /// With 2+ threads: time runs on the pool and on the calling thread alone and run the
    /// faster (`mnc_runtime::threads`; results do not change). Off: every run uses the
    /// pool. Default: on.
    pub thread_choice: bool,
}

/// Size of each canary zone of [`CpuOptions::guards`] (before and after every buffer).
pub const GUARD_BYTES: usize = 64;

/// The largest run arena (activations plus scratch) a model may need: compilation refuses
/// larger ones (and any single scratch area larger than this) with an error.
pub const MAX_ARENA_BYTES: usize = 16 << 30;

/// A buffer that could not be allocated.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot allocate {bytes} bytes")]
pub struct AllocError {
    pub bytes: usize,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            verify: cfg!(debug_assertions),
            keep_clif: false,
            guards: false,
            in_place: true,
            flush_denormals: true,
            split_batch: true,
            batch_head: true,
            thread_choice: true,
            min_image_flops: MIN_IMAGE_FLOPS,
            threads: par::physical_cores(),
        }
    }
}

/// A 64-byte aligned, zero-initialized byte buffer (weights blob, run arenas).
pub struct AlignedBytes {
    chunks: Vec<Chunk>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

impl AlignedBytes {
    /// `len` zero bytes, or an error when the memory cannot be had (never an abort).
    pub fn zeroed(len: usize) -> Result<Self, AllocError> {
        let n = len.div_ceil(64);
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(n)
            .map_err(|_| AllocError { bytes: len })?;
        chunks.resize(n, Chunk([0; 64]));
        Ok(AlignedBytes { chunks, len })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.chunks.as_ptr() as *const u8
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.chunks.as_mut_ptr() as *mut u8
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the chunks hold at least `len` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}

/// Where a value lives: a byte offset into the run's arena or into the weights blob, or
/// nowhere (a constant only read in packed form: its pointer-table slot is null and unread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    Arena(usize),
    Weight(usize),
    Unused,
}

/// Entry point of a generated op function: takes the step's pointer table.
pub type JitFn = unsafe extern "C" fn(*const *mut u8);

/// How a step runs.
#[derive(Clone, Copy)]
pub enum Exec {
    /// Generated code.
    Jit(JitFn),
    /// The reference kernel `mnc_ir::eval::eval_op` (shown as a fallback in the report).
    Fallback,
}

/// One step of the execution plan.
pub struct Step {
    pub node: String,
    pub op: Op,
    pub exec: Exec,
    /// Pointer-table locations: output, inputs, packed constants, then scratch.
    pub args: Vec<Loc>,
    /// Bytes of every pointer-table slot, parallel to `args` (0 for [`Loc::Unused`]): what
    /// the step may read or write through it (the scratch slot: this step's own need).
    pub arg_bytes: Vec<usize>,
    /// Pointer-table slots the generated code reads (`0..slots_read`; 0 for fallbacks).
    /// Compilation guarantees `slots_read <= args.len()`; the runtime checks it again
    /// before every call, since the fields are public.
    pub slots_read: usize,
    pub inputs: Vec<TensorType>,
    pub out: TensorType,
}

/// Per-op line of the compile report.
#[derive(Clone, Debug)]
pub struct OpReport {
    pub node: String,
    pub op: &'static str,
    /// Lowering strategy (`conv-gemm`, `conv-direct`, ..., `view`) or `fallback: reason`.
    pub strategy: String,
    pub fallback: bool,
    pub code_bytes: usize,
    pub flops: u64,
    /// The FLOPs are 8-bit integer multiply-adds (2 each; the int8 convs).
    pub int8: bool,
    /// Compulsory memory traffic of one run of the op, in bytes: its output written once plus
    /// every distinct buffer its step is handed read once (inputs, and constants in the form
    /// the code reads them: packed weights at their packed size; scratch not counted). What
    /// the op must move if none of its data is cached beforehand; re-reads that miss the
    /// cache and write-allocate reads come on top. An over-count for ops that read only part
    /// of an input (Slice, Gather) or are handed a constant both raw and packed (a Gemm's C).
    /// Counted at compile time, not measured cache misses. 0 for views (no step).
    pub bytes: u64,
    /// The op is in the head of a split batch ([`CpuProgram::head`]): it runs once over the
    /// whole batch, and its figures are the batch's (the other ops' are one image's).
    pub per_batch: bool,
}

/// [`OpReport::bytes`] of a step from its pointer-table slots (output first, then what it
/// reads; no scratch slot): a buffer handed in twice (`x * x`) is read once.
fn compulsory_bytes(args: &[Loc], arg_bytes: &[usize]) -> u64 {
    let out = arg_bytes.first().copied().unwrap_or(0) as u64;
    let reads = args.iter().zip(arg_bytes).skip(1);
    let distinct = reads
        .enumerate()
        .filter(|&(k, (loc, _))| !args[1..1 + k].contains(loc))
        .map(|(_, (_, &b))| b as u64);
    out + distinct.sum::<u64>()
}

/// How runs on `threads` threads use them, for the reports: empty with one thread, else
/// whether each run may stay on the calling thread ([`CpuOptions::thread_choice`]).
pub fn thread_choice_text(threads: usize, thread_choice: bool) -> &'static str {
    match (threads >= 2, thread_choice) {
        (false, _) => "",
        (true, true) => " (or the caller alone, where its runs measure faster)",
        (true, false) => " (always)",
    }
}

/// What compilation did and how long each phase took.
#[derive(Clone, Debug, Default)]
pub struct CompileReport {
    pub target: String,
    /// Threads per run the kernels were compiled for.
    pub threads: usize,
    /// Whether runs flush denormals to zero (`CpuOptions::flush_denormals`).
    pub flush_denormals: bool,
    /// Whether runs choose between the pool and the calling thread by their measured times
    /// (`CpuOptions::thread_choice`; only with 2+ threads).
    pub thread_choice: bool,
    /// [`CpuProgram::images`]: when above 1, the ops and their figures are one image's.
    pub images: usize,
    /// How a batch above 1 is run, and why not split by image if it is not (empty for
    /// batch 1).
    pub batch_plan: String,
    /// Ops whose output took over the buffer of an input dying there (`CpuOptions::in_place`).
    pub in_place_ops: usize,
    /// The arena plan the program runs with (activation offsets; the scratch area follows
    /// at `arena_bytes`).
    pub memory: MemoryPlan,
    pub ops: Vec<OpReport>,
    pub code_bytes: usize,
    pub arena_bytes: usize,
    /// Sum of the arena buffers' sizes (what the arena would take without reusing the bytes
    /// of dead buffers).
    pub naive_bytes: usize,
    pub weight_bytes: usize,
    pub scratch_bytes: usize,
    pub flops: u64,
    /// Planning, weight packing and memory planning.
    pub time_plan: Duration,
    /// Building CLIF with the function builder.
    pub time_clif: Duration,
    /// Cranelift compilation (and verification when on).
    pub time_compile: Duration,
    /// Linking/finalizing the JIT module.
    pub time_finalize: Duration,
    /// Creating the Cranelift ISA and the JIT module.
    pub time_setup: Duration,
    /// Everything else (copying the weights blob, bookkeeping).
    pub time_other: Duration,
    /// Wall time of the whole compilation.
    pub time_total: Duration,
}

impl CompileReport {
    /// Sets the whole compilation's wall time; `time_other` is what the phases leave of it.
    fn set_total(&mut self, total: Duration) {
        self.time_total = total;
        self.time_other = total.saturating_sub(
            self.time_setup
                + self.time_plan
                + self.time_clif
                + self.time_compile
                + self.time_finalize,
        );
    }

    /// How runs use the threads, for the reports ([`crate::cpu::thread_choice_text`]).
    pub fn thread_choice_text(&self) -> &'static str {
        thread_choice_text(self.threads, self.thread_choice)
    }

    /// Number of ops that run on the reference kernel.
    pub fn fallbacks(&self) -> usize {
        self.ops.iter().filter(|o| o.fallback).count()
    }
    /// A human-readable table: one line per op, then totals.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "target {}, {} thread(s) per run{}, denormals {}: {} ops, {} fallback",
            self.target,
            self.threads,
            self.thread_choice_text(),
            if self.flush_denormals {
                "flushed"
            } else {
                "kept"
            },
            self.ops.len(),
            self.fallbacks()
        );
        if !self.batch_plan.is_empty() {
            let per = if self.images > 1 && self.ops.iter().any(|o| o.per_batch) {
                "; the figures below are one image's, the head's (marked `batch`) the batch's"
            } else if self.images > 1 {
                "; the figures below are one image's"
            } else {
                ""
            };
            let _ = writeln!(s, "{}{per}", self.batch_plan);
        }
        for o in &self.ops {
            let _ = writeln!(
                s,
                "  {:<40} {:<18} {:<28} {:>7} B {:>12} flop {:>10} B moved{}",
                o.node,
                o.op,
                o.strategy,
                o.code_bytes,
                o.flops,
                o.bytes,
                if o.per_batch { " batch" } else { "" }
            );
        }
        let _ = writeln!(
            s,
            "code {} B, arena {} B (naive {} B), scratch {} B, weights {} B, {:.1} MFLOP",
            self.code_bytes,
            self.arena_bytes,
            self.naive_bytes,
            self.scratch_bytes,
            self.weight_bytes,
            self.flops as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "time: total {:.2} ms = setup {:.2} + plan {:.2} + clif {:.2} + compile {:.2} + finalize {:.2} + other {:.2}",
            self.time_total.as_secs_f64() * 1e3,
            self.time_setup.as_secs_f64() * 1e3,
            self.time_plan.as_secs_f64() * 1e3,
            self.time_clif.as_secs_f64() * 1e3,
            self.time_compile.as_secs_f64() * 1e3,
            self.time_finalize.as_secs_f64() * 1e3,
            self.time_other.as_secs_f64() * 1e3
        );
        s
    }
}

/// Owner of the JIT code. The module is never mutated after finalization; the code it owns
/// is immutable and reentrant, so sharing it across threads is sound.
struct JitCode(Option<JITModule>);

// SAFETY: see the type docs: after `finalize_definitions` the module is only kept alive
// (its memory freed on drop); the generated functions touch only the memory passed to them.
unsafe impl Send for JitCode {}
// SAFETY: as for `Send`: nothing reachable through a shared reference is ever mutated.
unsafe impl Sync for JitCode {}

impl Drop for JitCode {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: no function pointer of this module outlives the program owning it.
            unsafe { m.free_memory() };
        }
    }
}

/// A compiled graph: the steps, where every value lives, the weights and the JIT code.
pub struct CpuProgram {
    pub target: Target,
    /// Runs per batch: 1, or the batch `B` when the graph treats images independently
    /// ([`mnc_ir::batch::per_image`]) and [`CpuOptions::split_batch`] is on. Then this is the
    /// program of one image: `inputs`, `outputs` and the steps have axis 0 of size 1, and
    /// the runtime runs it once per image of the batch (images on different threads).
    pub images: usize,
    pub steps: Vec<Step>,
    /// Graph inputs: name, type and arena location.
    pub inputs: Vec<(String, TensorType, Loc)>,
    /// Graph outputs: name, type and location.
    pub outputs: Vec<(String, TensorType, Loc)>,
    /// Bytes of one run's arena (activations, then scratch).
    pub arena_bytes: usize,
    /// Offset and size of the scratch area in the arena.
    pub scratch: (usize, usize),
    /// Canary bytes before and after every arena buffer (0 unless `CpuOptions::guards`).
    pub guard: usize,
    /// The head of a split batch ([`CpuOptions::batch_head`]): compiled for the whole batch,
    /// it takes this program's outputs stacked over the images as its inputs and computes
    /// the graph's outputs.
    pub head: Option<Box<CpuProgram>>,
    pub weights: AlignedBytes,
    /// `(function name, CLIF text)` per generated function when `keep_clif` was set.
    pub clif: Vec<(String, String)>,
    pub report: CompileReport,
    _code: JitCode,
}

impl CpuProgram {
    /// The CLIF text of every generated function, each headed by its node name.
    pub fn clif_text(&self) -> String {
        self.clif
            .iter()
            .map(|(n, t)| format!("; {n}\n{t}\n"))
            .collect()
    }
}

/// The little-endian bytes of `v` (one copy).
fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The Cranelift ISA for a JIT target: x86-64 with exactly the Cranelift flags of its
/// [`IsaDesc`] enabled ([`IsaDesc::cranelift_flags`]).
pub fn isa_for(target: Target) -> Result<cranelift_codegen::isa::OwnedTargetIsa, CpuError> {
    let ie = |msg: String| CpuError::Isa { target, msg };
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("enable_verifier", "false"),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
    ] {
        flags.set(k, v).map_err(|e| ie(e.to_string()))?;
    }
    let mut ib = cranelift_codegen::isa::lookup_by_name("x86_64").map_err(|e| ie(e.to_string()))?;
    let desc = isa(target).ok_or(CpuError::NotJit(target))?;
    for flag in desc.cranelift_flags() {
        ib.enable(&flag).map_err(|e| ie(format!("{flag}: {e}")))?;
    }
    ib.finish(settings::Flags::new(flags))
        .map_err(|e| ie(e.to_string()))
}

/// Checks that the plan gives generated code every pointer-table slot it reads: `args` has
/// at least `slots_read` slots. (A null slot, [`Loc::Unused`], may be loaded: some lowerings
/// load the raw weight slot of a conv whose weights they read in packed form only.)
fn check_slots_read(args: &[Loc], slots_read: usize) -> Result<(), String> {
    if slots_read > args.len() {
        return Err(format!(
            "the generated code reads {slots_read} pointer-table slots but the plan provides {}",
            args.len()
        ));
    }
    Ok(())
}

/// Compiles `g` for a JIT target (normally after `mnc_passes::optimize`); any op that is not
/// lowered runs on its reference kernel and is listed as a fallback in the report.
///
/// The graph is verified first ([`mnc_ir::verify::verify`]): the generated code trusts every
/// node's stored type for its buffer sizes, and `Node::ty` is a public field, so a graph
/// whose types disagree with shape inference is refused here rather than compiled into code
/// that reads or writes outside its buffers.
pub fn compile(g: &Graph, target: Target, opts: &CpuOptions) -> Result<CpuProgram, CpuError> {
    let t0 = Instant::now();
    let batch = g
        .inputs
        .first()
        .and_then(|&i| g.node(i).ty.shape.first().copied())
        .unwrap_or(1);
    if batch < 2 {
        return compile_graph(g, target, opts, 1, String::new());
    }
    if !opts.split_batch {
        let how = format!("batch {batch} runs op by op (image split off)");
        return compile_graph(g, target, opts, 1, how);
    }
    if opts.batch_head {
        if let Some(mut p) = compile_with_head(g, target, opts, batch)? {
            p.report.set_total(t0.elapsed());
            return Ok(p);
        }
    }
    match mnc_ir::batch::per_image(g) {
        Ok(one) => {
            let how = format!("batch {batch} runs as {batch} one-image runs, in parallel");
            let mut p = compile_graph(&one, target, opts, batch, how)?;
            if p.report.flops < opts.min_image_flops {
                let how = format!(
                    "batch {batch} runs op by op (one image is {} FLOP, under the {} that pay for a run per image)",
                    p.report.flops, opts.min_image_flops
                );
                return compile_graph(g, target, opts, 1, how);
            }
            p.report.set_total(t0.elapsed());
            Ok(p)
        }
        Err(why) => {
            let how = format!("batch {batch} runs op by op (not split by image: {why})");
            compile_graph(g, target, opts, 1, how)
        }
    }
}

/// [`compile`] of a batch split by image with its head run once over the batch
/// ([`CpuOptions::batch_head`]): `None` when the graph has no head
/// ([`mnc_ir::batch::split_head`]), the body is not separable by image, or one image of it
/// is too little work ([`CpuOptions::min_image_flops`]); the caller then splits as without
/// a head.
fn compile_with_head(
    g: &Graph,
    target: Target,
    opts: &CpuOptions,
    batch: usize,
) -> Result<Option<CpuProgram>, CpuError> {
    let Some((body, head)) = mnc_ir::batch::split_head(g) else {
        return Ok(None);
    };
    let Ok(one) = mnc_ir::batch::per_image(&body) else {
        return Ok(None);
    };
    let cut = body
        .outputs
        .first()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let how = format!(
        "batch {batch} runs as {batch} one-image runs, in parallel, up to '{cut}'; the head after it once over the batch"
    );
    let mut p = compile_graph(&one, target, opts, batch, how)?;
    if p.report.flops < opts.min_image_flops {
        return Ok(None);
    }
    let h = compile_graph(&head, target, opts, 1, String::new())?;
    let r = &mut p.report;
    r.ops.extend(h.report.ops.iter().map(|o| OpReport {
        per_batch: true,
        ..o.clone()
    }));
    r.code_bytes += h.report.code_bytes;
    r.weight_bytes += h.report.weight_bytes;
    r.in_place_ops += h.report.in_place_ops;
    for (a, b) in [
        (&mut r.time_plan, h.report.time_plan),
        (&mut r.time_clif, h.report.time_clif),
        (&mut r.time_compile, h.report.time_compile),
        (&mut r.time_finalize, h.report.time_finalize),
        (&mut r.time_setup, h.report.time_setup),
    ] {
        *a += b;
    }
    let _ = write!(
        r.batch_plan,
        " ({} ops; arena {} B, scratch {} B)",
        h.report.ops.len(),
        h.report.arena_bytes,
        h.report.scratch_bytes
    );
    p.clif.extend(h.clif.iter().cloned());
    p.head = Some(Box::new(h));
    Ok(Some(p))
}

/// The default least work (FLOPs) of one image for [`CpuOptions::split_batch`] to run a batch
/// image by image ([`CpuOptions::min_image_flops`]): each run of a program costs a few microseconds (arena, input and output copies,
/// the step loop), which must stay small against the image's compute (about 20 us here at
/// 100 GFLOP/s; a 224x224 CNN image is 100-1000 MFLOP).
pub const MIN_IMAGE_FLOPS: u64 = 1 << 21;

/// [`compile`] of a graph as it is: `images` is [`CpuProgram::images`] and `batch_plan` the
/// report's line about it.
fn compile_graph(
    g: &Graph,
    target: Target,
    opts: &CpuOptions,
    images: usize,
    batch_plan: String,
) -> Result<CpuProgram, CpuError> {
    let t0 = Instant::now();
    mnc_ir::verify::verify(g)?;
    let desc = isa(target).ok_or(CpuError::NotJit(target))?;
    let kernel = desc.gemm;
    // More threads than the pool can seat would only make empty tasks.
    let threads = opts.threads.clamp(1, par::MAX_HELPERS + 1);
    let dw = desc.dw;
    let stem = desc.stem;
    let ts = Instant::now();
    let isa = isa_for(target)?;
    let mut t_setup = ts.elapsed();
    let fma = desc.fma;
    let mut report = CompileReport {
        target: target.name().to_string(),
        threads,
        flush_denormals: opts.flush_denormals,
        thread_choice: opts.thread_choice && threads >= 2,
        images,
        batch_plan,
        ..Default::default()
    };

    // Nodes some output needs, in topological order.
    for o in &g.outputs {
        if !g.contains(o.node) {
            return Err(
                IrError::Invalid(format!("output '{}' refers to a removed node", o.name)).into(),
            );
        }
    }
    let mut needed = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|o| o.node).collect();
    stack.extend(g.inputs.iter().copied());
    while let Some(n) = stack.pop() {
        if needed.insert(n) {
            stack.extend(g.inputs(n));
        }
    }
    let order: Vec<NodeId> = g
        .topo_order()?
        .into_iter()
        .filter(|n| needed.contains(n))
        .collect();

    // Weights blob: every constant, then the packed extras.
    let const_bytes: usize = order
        .iter()
        .filter_map(|&n| match &g.node(n).op {
            Op::Constant(t) => Some(t.ty().bytes() + 64),
            _ => None,
        })
        .sum();
    let mut blob: Vec<u8> = Vec::with_capacity(const_bytes + const_bytes / 8);
    let mut put = |bytes: &[u8]| -> usize {
        let off = blob.len().div_ceil(64) * 64;
        blob.resize(off, 0);
        blob.extend_from_slice(bytes);
        off
    };
    let tensor_bytes = |t: &Tensor| -> Vec<u8> { t.le_bytes() };

    // Plan every op, and decide each value's storage for the arena planner: views alias
    // their input, an op whose strategy allows it may take over an input dying there.
    let mut weight_loc: HashMap<NodeId, usize> = HashMap::new();
    // Constants, and views of constants, mapped to the constant.
    let mut const_alias: HashMap<NodeId, NodeId> = HashMap::new();
    let mut storage: HashMap<NodeId, Storage> = HashMap::new();
    let mut plans: Vec<(NodeId, Plan)> = Vec::new();
    for &id in &order {
        let node = g.node(id);
        let st = match &node.op {
            Op::Constant(_) => {
                const_alias.insert(id, id);
                Storage::Outside
            }
            Op::Input { .. } => Storage::Own(Vec::new()),
            _ => {
                let info = OpInfo::of(g, id);
                let plan =
                    lower::plan_op(&info, desc, threads).map_err(|msg| CpuError::Oversize {
                        node: node.name.clone(),
                        op: node.op.kind().into(),
                        msg,
                    })?;
                let st = match &plan {
                    Plan::View => {
                        let src = g.inputs(id).first().copied();
                        if let Some(&c) = src.and_then(|i| const_alias.get(&i)) {
                            const_alias.insert(id, c);
                        }
                        Storage::View
                    }
                    Plan::Jit(jp) if opts.in_place => Storage::Own(
                        lower::in_place_input(&jp.kind, &info)
                            .map(|(slot, exclusive)| InPlace { slot, exclusive })
                            .into_iter()
                            .collect(),
                    ),
                    Plan::Jit(_) | Plan::Fallback(_) => Storage::Own(Vec::new()),
                };
                plans.push((id, plan));
                st
            }
        };
        storage.insert(id, st);
    }

    // Constants go into the blob only when some step reads them as they are: conv weights
    // and Gemm/MatMul B operands that the lowering packed are read only in packed form.
    let mut raw: HashSet<NodeId> = HashSet::new();
    for (id, plan) in &plans {
        for (k, i) in g.inputs(*id).into_iter().enumerate() {
            let packed = k == 1
                && matches!(plan, Plan::Jit(jp) if matches!(jp.kind, lower::Kind::ConvGemm { .. } | lower::Kind::ConvStem { .. } | lower::Kind::Gemm | lower::Kind::GemmVec { .. }));
            if let (false, Some(&c)) = (packed, const_alias.get(&i)) {
                raw.insert(c);
            }
        }
    }
    for o in &g.outputs {
        if let Some(&c) = const_alias.get(&o.node) {
            raw.insert(c);
        }
    }
    for &id in &order {
        if let (true, Op::Constant(t)) = (raw.contains(&id), &g.node(id).op) {
            weight_loc.insert(id, put(&tensor_bytes(t)));
        }
    }
    for (&v, &c) in &const_alias {
        if let Some(&w) = weight_loc.get(&c) {
            weight_loc.insert(v, w);
        }
    }

    // The arena: the shared planner lays out the values as decided above (checked there).
    let guard = if opts.guards { GUARD_BYTES } else { 0 };
    let arena_opts = ArenaOptions {
        alignment: 64,
        padding: guard,
        overwrite_inputs: true,
    };
    let memory = plan_arena(g, &order, |id| storage[&id].clone(), &arena_opts)
        .map_err(CpuError::ArenaPlan)?;
    let arena_off: HashMap<NodeId, usize> = memory
        .values
        .iter()
        .map(|v| (v.node, memory.buffers[v.buffer].offset))
        .collect();
    let arena_bytes = memory.arena_bytes;
    report.in_place_ops = memory.in_place_count();
    report.naive_bytes = memory.buffers.iter().map(|b| b.bytes).sum();
    report.memory = memory;
    let loc_of = |id: NodeId| -> Option<Loc> {
        if let Some(&w) = weight_loc.get(&id) {
            return Some(Loc::Weight(w));
        }
        if const_alias.contains_key(&id) {
            return Some(Loc::Unused);
        }
        arena_off.get(&id).map(|&o| Loc::Arena(o))
    };
    let scratch_off = arena_bytes + guard;
    // The run arena is allocated per run: refuse a model whose arena exceeds the limit now.
    let scratch_need = plans
        .iter()
        .filter_map(|(_, p)| match p {
            Plan::Jit(jp) => Some(jp.scratch_bytes.div_ceil(64) * 64),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let total = scratch_off
        .saturating_add(scratch_need)
        .saturating_add(guard);
    if total > MAX_ARENA_BYTES {
        return Err(CpuError::ArenaTooLarge { bytes: total });
    }
    let mut scratch_bytes = 0usize;
    report.time_plan = t0.elapsed().saturating_sub(t_setup);

    // Code generation.
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    let (ksym, kfunc) = (kernel.symbol, kernel.func);
    jb.symbol(ksym, kfunc as *const u8);
    if let Some(d) = dw {
        jb.symbol(d.symbol, d.func as *const u8);
    }
    if let Some(d) = stem {
        jb.symbol(d.symbol, d.func as *const u8);
    }
    jb.symbol(desc.gemv.symbol, desc.gemv.func as *const u8);
    jb.symbol(desc.se.symbol, desc.se.func as *const u8);
    let mut shared = kernels::shared_kernels();
    if let Some(k) = kernels::int8::int8_kernels(target) {
        shared.extend(lower_int8::kernels_of(k));
    }
    for k in &shared {
        jb.symbol(k.symbol, k.func);
    }
    let ts = Instant::now();
    let mut module = JITModule::new(jb);
    t_setup += ts.elapsed();
    let ptr = types::I64;
    let import = |module: &mut JITModule, name: &str, params: usize| {
        let mut sig = module.make_signature();
        for _ in 0..params {
            sig.params.push(AbiParam::new(ptr));
        }
        module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| CpuError::Module(e.to_string()))
    };
    let kid = import(&mut module, ksym, kernels::GEMM_PARAMS)?;
    let vid = import(&mut module, desc.gemv.symbol, kernels::GEMV_PARAMS)?;
    let sid = import(&mut module, desc.se.symbol, kernels::SE_PARAMS)?;
    let shared_ids = shared
        .iter()
        .map(|k| Ok((k.symbol, import(&mut module, k.symbol, k.params)?)))
        .collect::<Result<Vec<_>, CpuError>>()?;
    let did = match dw {
        Some(d) => Some(import(&mut module, d.symbol, kernels::DW_PARAMS)?),
        None => None,
    };
    let stid = match stem {
        Some(d) => Some(import(&mut module, d.symbol, kernels::DW_PARAMS)?),
        None => None,
    };
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(ptr));
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut clif = Vec::new();
    let mut pending: Vec<(usize, FuncId)> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    for (idx, (id, plan)) in plans.iter().enumerate() {
        let node = g.node(*id);
        let ins = g.inputs(*id);
        let info = OpInfo::of(g, *id);
        let missing = |what: &str| CpuError::Codegen {
            node: node.name.clone(),
            op: node.op.kind().into(),
            msg: format!("no location for {what}"),
        };
        let mut args = vec![loc_of(*id).ok_or_else(|| missing("the output"))?];
        let mut arg_bytes = vec![info.out.bytes()];
        for (&i, ty) in ins.iter().zip(&info.inputs) {
            let loc = loc_of(i).ok_or_else(|| missing("an input"))?;
            args.push(loc);
            arg_bytes.push(if loc == Loc::Unused { 0 } else { ty.bytes() });
        }
        let mut rep = OpReport {
            node: node.name.clone(),
            op: node.op.kind(),
            strategy: String::new(),
            fallback: false,
            code_bytes: 0,
            flops: 0,
            int8: false,
            bytes: 0,
            per_batch: false,
        };
        match plan {
            Plan::View => {
                rep.strategy = "view".into();
            }
            Plan::Fallback(why) => {
                rep.strategy = format!("fallback: {why}");
                rep.fallback = true;
                rep.bytes = compulsory_bytes(&args, &arg_bytes);
                steps.push(Step {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    exec: Exec::Fallback,
                    args,
                    arg_bytes,
                    slots_read: 0,
                    inputs: info.inputs.clone(),
                    out: info.out.clone(),
                });
            }
            Plan::Jit(jp) => {
                rep.strategy = jp.kind.label().into();
                rep.flops = jp.flops;
                rep.int8 = jp.kind.int8_macs();
                for x in &jp.extras {
                    args.push(Loc::Weight(put(&f32_le_bytes(x))));
                    arg_bytes.push(x.len() * 4);
                }
                rep.bytes = compulsory_bytes(&args, &arg_bytes);
                if jp.scratch_bytes > 0 {
                    args.push(Loc::Arena(scratch_off));
                    arg_bytes.push(jp.scratch_bytes);
                    scratch_bytes = scratch_bytes.max(jp.scratch_bytes.div_ceil(64) * 64);
                }
                let cg = |e: String| CpuError::Codegen {
                    node: node.name.clone(),
                    op: node.op.kind().into(),
                    msg: e,
                };
                let t1 = Instant::now();
                let slots_read;
                let fname = format!("op{idx}");
                let fid = module
                    .declare_function(&fname, Linkage::Local, &sig)
                    .map_err(|e| cg(e.to_string()))?;
                ctx.func.signature = sig.clone();
                ctx.func.name = UserFuncName::user(0, fid.as_u32());
                {
                    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                    let entry = b.create_block();
                    b.append_block_params_for_function_params(entry);
                    b.switch_to_block(entry);
                    b.seal_block(entry);
                    let table = b.block_params(entry)[0];
                    let refs = lower::KernelRefs {
                        gemm: Some(module.declare_func_in_func(kid, b.func)),
                        dw: did.map(|d| module.declare_func_in_func(d, b.func)),
                        stem: stid.map(|d| module.declare_func_in_func(d, b.func)),
                        gemv: Some(module.declare_func_in_func(vid, b.func)),
                        se: Some(module.declare_func_in_func(sid, b.func)),
                        shared: shared_ids
                            .iter()
                            .map(|&(sym, id)| (sym, module.declare_func_in_func(id, b.func)))
                            .collect(),
                    };
                    let mut e = emit::Emitter {
                        b,
                        table,
                        fma,
                        slots_read: 0,
                    };
                    lower::emit_op(&mut e, &info, jp, &kernel, refs).map_err(cg)?;
                    slots_read = e.slots_read;
                    e.b.ins().return_(&[]);
                    e.b.seal_all_blocks();
                    e.b.finalize(module.isa().frontend_config());
                }
                check_slots_read(&args, slots_read).map_err(cg)?;
                let t2 = Instant::now();
                report.time_clif += t2 - t1;
                if opts.verify {
                    cranelift_codegen::verify_function(&ctx.func, module.isa())
                        .map_err(|e| cg(format!("verifier: {e}")))?;
                }
                if opts.keep_clif {
                    clif.push((
                        format!("{fname} {} ({})", node.name, node.op.kind()),
                        ctx.func.display().to_string(),
                    ));
                }
                module
                    .define_function(fid, &mut ctx)
                    .map_err(|e| cg(format!("{e:?}")))?;
                rep.code_bytes = ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
                module.clear_context(&mut ctx);
                report.time_compile += t2.elapsed();
                pending.push((steps.len(), fid));
                steps.push(Step {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    exec: Exec::Fallback,
                    args,
                    arg_bytes,
                    slots_read,
                    inputs: info.inputs.clone(),
                    out: info.out.clone(),
                });
            }
        }
        report.code_bytes += rep.code_bytes;
        report.flops += rep.flops;
        report.ops.push(rep);
    }
    let t3 = Instant::now();
    module
        .finalize_definitions()
        .map_err(|e| CpuError::Module(e.to_string()))?;
    for (si, fid) in pending {
        let p = module.get_finalized_function(fid);
        // SAFETY: every generated function has the signature `fn(*const *mut u8)` (one
        // pointer parameter, no return value, the ISA's default calling convention = C).
        let f: JitFn = unsafe { std::mem::transmute::<*const u8, JitFn>(p) };
        steps[si].exec = Exec::Jit(f);
    }
    report.time_finalize = t3.elapsed();

    let mut weights = AlignedBytes::zeroed(blob.len())?;
    weights.bytes_mut().copy_from_slice(&blob);
    report.arena_bytes = arena_bytes;
    report.scratch_bytes = scratch_bytes;
    report.weight_bytes = blob.len();
    let io = |ids: Vec<(String, NodeId)>| -> Result<Vec<(String, TensorType, Loc)>, CpuError> {
        ids.into_iter()
            .map(|(name, id)| {
                let loc = loc_of(id)
                    .ok_or_else(|| IrError::Invalid(format!("value '{name}' has no location")))?;
                Ok((name, g.node(id).ty.clone(), loc))
            })
            .collect()
    };
    let inputs = io(g
        .inputs
        .iter()
        .map(|&i| (g.node(i).name.clone(), i))
        .collect())?;
    let outputs = io(g.outputs.iter().map(|o| (o.name.clone(), o.node)).collect())?;
    report.time_setup = t_setup;
    report.set_total(t0.elapsed());
    Ok(CpuProgram {
        target,
        images,
        steps,
        inputs,
        outputs,
        arena_bytes: scratch_off + scratch_bytes + guard,
        scratch: (scratch_off, scratch_bytes),
        guard,
        weights,
        clif,
        report,
        head: None,
        _code: JitCode(Some(module)),
    })
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    /// The reports say whether a multi-thread run may stay on its caller; one thread says
    /// nothing; the report of a compile with `thread_choice` off says "always".
    #[test]
    fn reports_say_how_runs_use_the_threads() {
        assert_eq!(thread_choice_text(1, true), "");
        assert!(thread_choice_text(2, true).contains("caller alone"));
        assert_eq!(thread_choice_text(2, false), " (always)");
        let r = CompileReport {
            threads: 2,
            thread_choice: false,
            ..Default::default()
        };
        assert!(
            r.to_text().contains("2 thread(s) per run (always)"),
            "{}",
            r.to_text()
        );
    }

    #[test]
    fn a_plan_with_fewer_slots_than_the_code_reads_is_refused() {
        let args = [Loc::Arena(0), Loc::Weight(0)];
        assert!(check_slots_read(&args, 2).is_ok());
        let e = check_slots_read(&args, 3).unwrap_err();
        assert_eq!(
            e,
            "the generated code reads 3 pointer-table slots but the plan provides 2"
        );
    }

    /// The phases of the compile report add up to the total, setup (ISA and JIT module
    /// creation) recorded in its own field and not counted again in "other".
    #[test]
    fn compile_phases_add_up() {
        let mut g = mnc_passes::samples::mobilenet_v2_block(2).unwrap();
        mnc_passes::optimize(&mut g, &Default::default()).unwrap();
        // Compiling needs no host support for the target: every JIT target is checked.
        for t in [Target::X86_64, Target::X86_64Avx2, Target::X86_64Avx512] {
            let r = compile(&g, t, &CpuOptions::default()).unwrap().report;
            assert!(r.time_setup > Duration::ZERO, "{t}: setup not recorded");
            let parts = r.time_setup
                + r.time_plan
                + r.time_clif
                + r.time_compile
                + r.time_finalize
                + r.time_other;
            assert_eq!(parts, r.time_total, "{t}: {}", r.to_text());
        }
    }

    /// The compulsory traffic of each step, computed by hand: an elementwise op reads its
    /// input and writes its output; an operand given twice is read once; a matrix-vector
    /// product reads its packed `k x n` weights (no padding in that layout).
    #[test]
    fn op_reports_count_the_bytes_each_step_moves() {
        use mnc_ir::{Activation, BinaryOp, DType, Gemm};
        let f = |s: &[usize]| TensorType::new(DType::F32, s.to_vec());
        let mut g = Graph::new("traffic");
        let x = g.add_input("x", f(&[1, 4, 8, 8])); // 256 floats
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[x])
            .unwrap();
        let sq = g
            .add_node_inferred("square", Op::Binary(BinaryOp::Mul), &[r, r])
            .unwrap();
        let flat = g
            .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[sq])
            .unwrap();
        let (k, n) = (256, 10);
        let w = Tensor::from_f32(vec![k, n], (0..k * n).map(|i| i as f32).collect()).unwrap();
        let w = g.add_constant("w", w);
        let fc = g
            .add_node_inferred("fc", Op::Gemm(Gemm::default()), &[flat, w])
            .unwrap();
        g.add_output("y", fc);
        // In place or not, a step reads its input and writes its output.
        let r = compile(&g, Target::X86_64, &CpuOptions::default())
            .unwrap()
            .report;
        let bytes = |node: &str| {
            let o = r.ops.iter().find(|o| o.node == node).unwrap();
            (o.strategy.as_str(), o.bytes)
        };
        assert_eq!(bytes("relu").1, 2 * 256 * 4, "{}", r.to_text());
        assert_eq!(bytes("square").1, 2 * 256 * 4, "{}", r.to_text());
        assert_eq!(bytes("flat"), ("view", 0));
        // x, B (its column blocks, the last zero-padded: what the kernel reads) and y, plus
        // the call description the kernel reads from the blob.
        let call = std::mem::size_of::<kernels::GemvCall>() as u64;
        let stored_n =
            n.next_multiple_of(kernels::gemv_block_cols(isa(Target::X86_64).unwrap().lanes));
        assert_eq!(
            bytes("fc"),
            ("gemm-kernel", (k + k * stored_n + n) as u64 * 4 + call)
        );
        assert!(r.to_text().contains("B moved"), "{}", r.to_text());
    }

    /// The arena plan in the report is the one the program runs with, and it carries the
    /// backend's in-place decisions: the activation takes over the conv's buffer (same
    /// location in the step's pointer table) when in-place execution is on, and not when it is
    /// off, although the op facts allow it either way.
    #[test]
    fn the_cpu_in_place_decision_is_the_shared_plan() {
        use mnc_ir::{Activation, Conv, DType};
        let mut g = Graph::new("in_place");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![1, 8, 6, 6]));
        let w = Tensor::from_f32(vec![8, 8, 1, 1], (0..64).map(|i| i as f32).collect()).unwrap();
        let w = g.add_constant("w", w);
        let c = g
            .add_node_inferred("conv", Op::Conv(Conv::default()), &[x, w])
            .unwrap();
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[c])
            .unwrap();
        let f = g
            .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[r])
            .unwrap();
        g.add_output("y", f);
        let facts = mnc_passes::plan_memory(&g, 64).unwrap();
        assert_eq!(facts.value(r).unwrap().in_place_of, Some(c));
        for in_place in [true, false] {
            let opts = CpuOptions {
                in_place,
                ..Default::default()
            };
            let p = compile(&g, Target::X86_64, &opts).unwrap();
            let m = &p.report.memory;
            m.check().unwrap();
            let relu = m.value(r).unwrap();
            assert_eq!(relu.in_place_of, in_place.then_some(c), "{}", m.to_text());
            assert!(!relu.view);
            let flat = m.value(f).unwrap();
            assert_eq!((flat.in_place_of, flat.view), (Some(r), true));
            assert_eq!(p.report.in_place_ops, m.in_place_count());
            assert_eq!(m.in_place_count(), usize::from(in_place));
            let step = p.steps.iter().find(|s| s.node == "relu").unwrap();
            assert_eq!(step.args[0], Loc::Arena(m.offset_of(r).unwrap()));
            assert_eq!(step.args[1], Loc::Arena(m.offset_of(c).unwrap()));
            assert_eq!(step.args[0] == step.args[1], in_place);
            assert_eq!(p.report.arena_bytes, m.arena_bytes);
        }
    }

    #[test]
    fn every_step_records_the_slots_its_code_reads() {
        let t = Target::detect_host();
        if !t.is_jit() {
            eprintln!("SKIPPED every_step_records_the_slots_its_code_reads: no JIT target runs on this CPU");
            return;
        }
        let mut g = mnc_passes::samples::mobilenet_v2_block(2).unwrap();
        mnc_passes::optimize(&mut g, &Default::default()).unwrap();
        let p = compile(&g, t, &CpuOptions::default()).unwrap();
        for s in &p.steps {
            match s.exec {
                Exec::Jit(_) => assert!(
                    s.slots_read >= 2 && s.slots_read <= s.args.len(),
                    "{}: reads {} of {} slots",
                    s.node,
                    s.slots_read,
                    s.args.len()
                ),
                Exec::Fallback => assert_eq!(s.slots_read, 0),
            }
        }
    }
}
