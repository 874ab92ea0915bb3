//! The CPU runtime of the Cranelift JIT backend: [`CompiledModel`] owns a program compiled by
//! `mnc_targets::cpu` (generated code, packed weights, arena layout) and executes it.
//!
//! Each run takes an arena of the planned size (reused from a small pool, so concurrent runs
//! each get their own), copies the inputs in (or lets the steps read an input from the
//! caller's buffer where none of them writes it while it lives: `borrowable`), calls every
//! step with its pointer table (output, inputs, packed constants, scratch) and copies the
//! outputs out. Steps the backend does not
//! lower yet run the reference kernel (`mnc_ir::eval::eval_op`); they are listed as
//! fallbacks in [`CompiledModel::report`]. Steps run one after another on the calling thread;
//! with `CpuOptions::threads > 1` the kernels split each call over the persistent pool
//! (`mnc_targets::cpu::par`). A program compiled for one image of a split batch
//! (`CpuProgram::images > 1`, see `CpuOptions::split_batch`) runs once per image: whole
//! images go to the threads at once, each with its own arena, and the outputs are stacked
//! along axis 0; profiling and guard modes run the images in order.
//!
//! Before every call of generated code the step's pointer table is checked
//! (`guard::check_slots`: as long as the code reads, every slot inside its buffer), and a
//! panic inside a kernel (caught at its `extern "C"` boundary, also when it happened on a pool
//! thread) fails the run with [`RuntimeError::KernelPanic`] instead of aborting the process.
//! [`CompiledModel::compile`] verifies the graph first (`mnc_ir::verify`), so a graph whose
//! stored node types lie is refused rather than compiled into out-of-bounds code.
//!
//! Two test modes check that generated code stays inside its buffers: canaries
//! (`CpuOptions::guards`, writes only, checked after every step) and guard pages
//! ([`CompiledModel::run_guarded`], reads and writes fault; see [`crate::guard`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mnc_runtime::cpu::{CompiledModel, CpuOptions};
//! pub use mnc_targets::Target;
//! let mut g = mnc_passes::samples::mobilenet_v2_block(1)?;
//! mnc_passes::optimize(&mut g, &Default::default())?;
//! let model = CompiledModel::compile(&g, Target::detect_host(), &CpuOptions::default())?;
//! let x = mnc_ir::Tensor::zeros(&g.node(g.inputs[0]).ty)?;
//! let y = model.run(&[x])?;
//! println!("{:?}\n{}", y[0].shape, model.report().to_text());
//! # Ok(()) }
//! ```

use crate::error::RuntimeError;
pub use crate::guard::{GuardError, GuardPlacement};
use crate::threads::{RunMode, ThreadChoice};
use mnc_ir::eval::eval_op;
use mnc_ir::tensor::checked_numel;
use mnc_ir::{IrError, Tensor, TensorData, TensorType, TensorView};
use mnc_targets::cpu::{compile, AlignedBytes, AllocError, CpuProgram, Exec, Loc};
pub use mnc_targets::cpu::{CompileReport, CpuError, CpuOptions};
pub use mnc_targets::Target;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Wall time of every step of one run, with the step's node name, in step order.
pub type StepTimes = Vec<(String, Duration)>;

/// Errors of compiling or running a model on the CPU backend.
#[derive(Debug, Error)]
pub enum CpuRunError {
    #[error("compiling for {target}: {source}")]
    Compile {
        target: Target,
        #[source]
        source: CpuError,
    },
    #[error("target '{0}' cannot run on this host (its CPU lacks the required instruction set); compile for it only to inspect the code")]
    NotOnHost(Target),
    /// Guard mode found a canary byte changed: a step wrote outside its buffers.
    #[error(
        "step '{step}' ({op}) wrote outside its buffers: canary at arena byte {offset} changed"
    )]
    GuardCorrupted {
        step: String,
        op: String,
        offset: usize,
    },
    /// Guard-page mode could not set up a step's buffers (mapping failed, malformed table).
    #[error("step '{step}' ({op}): guard pages: {source}")]
    GuardPages {
        step: String,
        op: String,
        #[source]
        source: GuardError,
    },
    /// A step's pointer table does not fit its buffers or is shorter than its code reads (a
    /// modified program: the compiler never produces one); the code was not called.
    #[error("step '{step}' ({op}): refusing to call its code: {source}")]
    PointerTable {
        step: String,
        op: String,
        #[source]
        source: GuardError,
    },
    /// The run arena could not be allocated.
    #[error("run arena: {0}")]
    Arena(#[from] AllocError),
    #[error(transparent)]
    Run(#[from] RuntimeError),
}

/// The canary byte of guard mode.
const CANARY: u8 = 0xA5;

impl From<IrError> for CpuRunError {
    fn from(e: IrError) -> Self {
        CpuRunError::Run(RuntimeError::Ir(e))
    }
}

/// A model compiled for a CPU target. `Send + Sync`: several threads may run it at once.
pub struct CompiledModel {
    pub(crate) program: CpuProgram,
    graph_name: String,
    compile_time: Duration,
    arenas: Mutex<Vec<AlignedBytes>>,
    /// The arenas of the head of a split batch ([`CpuProgram::head`]).
    head_arenas: Mutex<Vec<AlignedBytes>>,
    /// Pool or calling thread alone, by measured run times ([`crate::threads`]).
    choice: Mutex<ThreadChoice>,
}

impl CompiledModel {
    /// Compiles `g` (normally after `mnc_passes::optimize`) for a JIT target. Compiling for a
    /// target this host cannot run is allowed; running it is refused.
    pub fn compile(
        g: &mnc_ir::Graph,
        target: Target,
        opts: &CpuOptions,
    ) -> Result<Self, CpuRunError> {
        let t = Instant::now();
        let program =
            compile(g, target, opts).map_err(|source| CpuRunError::Compile { target, source })?;
        Ok(CompiledModel {
            program,
            graph_name: g.name.clone(),
            compile_time: t.elapsed(),
            arenas: Mutex::new(Vec::new()),
            head_arenas: Mutex::new(Vec::new()),
            choice: Mutex::new(ThreadChoice::new()),
        })
    }

    /// The target the model was compiled for.
    pub fn target(&self) -> Target {
        self.program.target
    }

    /// Per-op strategies (fallbacks included), code size, arena size and phase times.
    pub fn report(&self) -> &CompileReport {
        &self.program.report
    }

    /// Wall time of the whole compilation (all phases).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// CLIF text of every generated function (empty unless compiled with `keep_clif`).
    pub fn clif_text(&self) -> String {
        self.program.clif_text()
    }

    /// Runs the model on `inputs` (one per graph input, in order) and returns the outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CpuRunError> {
        self.run_views(&views(inputs))
    }

    /// Like [`CompiledModel::run`] on borrowed inputs: each is copied once, straight into
    /// the run's arena, or read by the steps where it is (no step writes it while it lives).
    pub fn run_views(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, CpuRunError> {
        if !self.program.report.thread_choice {
            return self.run_inner(inputs, None, None);
        }
        // The pool or this thread alone, whichever the runs so far measured faster
        // ([`crate::threads`]).
        let mode = self.choice.lock().map_or(RunMode::Pool, |c| c.next());
        let stalls = mnc_targets::cpu::par::stalls();
        let t = Instant::now();
        let out = match mode {
            RunMode::Pool => self.run_inner(inputs, None, None),
            RunMode::Serial => {
                mnc_targets::cpu::par::serial_scope(|| self.run_inner(inputs, None, None))
            }
        };
        if out.is_ok() {
            let t = t.elapsed();
            // A pool run in which the pool's stall detection took over measures nothing.
            let pool_serial = mnc_targets::cpu::par::stalls() != stalls
                || mnc_targets::cpu::par::serial_left().is_some();
            if let Ok(mut c) = self.choice.lock() {
                c.record(mode, (mode == RunMode::Serial || !pool_serial).then_some(t));
            }
        }
        out
    }

    /// How many of the runs so far (`run`, `run_views`) ran on the thread pool and how many
    /// on the calling thread alone ([`crate::threads`]).
    pub fn thread_choice_runs(&self) -> (u64, u64) {
        self.choice.lock().map_or((0, 0), |c| {
            (c.runs_in(RunMode::Pool), c.runs_in(RunMode::Serial))
        })
    }

    /// Test mode: like [`CompiledModel::run`], but every generated step runs with each
    /// buffer it can reach (output, inputs, packed constants, scratch, the pointer table)
    /// copied into its own mapping between two inaccessible pages, placed as `placement`
    /// says; inputs and constants are read-only. An out-of-bounds access by generated code
    /// then faults (SIGSEGV ends the process) instead of corrupting memory. Fallback steps
    /// run as usual; canaries (`CpuOptions::guards`) are still checked when compiled in.
    /// Slow (several system calls and copies per step): for tests only.
    pub fn run_guarded(
        &self,
        inputs: &[Tensor],
        placement: GuardPlacement,
    ) -> Result<Vec<Tensor>, CpuRunError> {
        self.run_inner(&views(inputs), None, Some(placement))
    }

    /// Like [`CompiledModel::run`], also returning the wall time of every step (in step order,
    /// with the step's node name). A batch split by image runs its images in order, and each
    /// step's time is the sum over the images.
    pub fn run_profiled(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, StepTimes), CpuRunError> {
        let mut times = Vec::with_capacity(self.program.steps.len());
        let out = self.run_inner(&views(inputs), Some(&mut times), None)?;
        Ok((out, times))
    }

    fn check_inputs(&self, inputs: &[TensorView<'_>]) -> Result<(), RuntimeError> {
        let p = &self.program;
        if inputs.len() != p.inputs.len() {
            return Err(RuntimeError::InputCount {
                graph: self.graph_name.clone(),
                expected: p.inputs.len(),
                got: inputs.len(),
            });
        }
        for ((name, ty, _), t) in p.inputs.iter().zip(inputs) {
            let ty = &batch_type(ty, p.images);
            if t.dtype() != ty.dtype || t.shape != ty.shape {
                return Err(RuntimeError::InputType {
                    name: name.clone(),
                    expected: ty.clone(),
                    got: t.ty(),
                });
            }
            if checked_numel(t.shape).ok() != Some(t.numel()) {
                return Err(RuntimeError::InputData {
                    name: name.clone(),
                    shape: t.shape.to_vec(),
                    len: t.numel(),
                });
            }
        }
        Ok(())
    }

    fn run_inner(
        &self,
        inputs: &[TensorView<'_>],
        mut times: Option<&mut Vec<(String, Duration)>>,
        guard_pages: Option<GuardPlacement>,
    ) -> Result<Vec<Tensor>, CpuRunError> {
        let p = &self.program;
        if !p.target.runs_on_host() {
            return Err(CpuRunError::NotOnHost(p.target));
        }
        self.check_inputs(inputs)?;
        // FTZ/DAZ for the steps (pool threads take this thread's MXCSR per job); the
        // caller's MXCSR is restored when this returns, on every path.
        let _fpenv = mnc_targets::cpu::fpenv::FlushDenormals::new(p.report.flush_denormals);
        let images = p.images;
        if images == 1 {
            return self.run_program(p, &self.arenas, inputs, times, guard_pages, 0);
        }
        // One run of the one-image program per image. Whole images go to the threads (each
        // image's kernels then run on its thread alone: `par` runs nested jobs serially);
        // a remainder smaller than the thread count runs image by image on the caller with
        // the ops split across threads. Profiling and guard modes run images in order.
        let shapes: Vec<Vec<usize>> = p.inputs.iter().map(|(_, ty, _)| ty.shape.clone()).collect();
        let image = |i: usize| -> Vec<TensorView<'_>> {
            inputs
                .iter()
                .zip(&shapes)
                .map(|(t, shape)| image_view(t, shape, i, images))
                .collect()
        };
        let ordered = times.is_some() || guard_pages.is_some() || p.guard > 0;
        let threads = p.report.threads;
        let together = if ordered || threads < 2 {
            0
        } else {
            images - images % threads
        };
        let results: Vec<Mutex<Option<RunResult>>> =
            (0..together).map(|_| Mutex::new(None)).collect();
        mnc_targets::cpu::par::for_each(threads, together, &|i| {
            let r = self.run_program(p, &self.arenas, &image(i), None, None, 0);
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(r);
            }
        });
        let mut per_image = Vec::with_capacity(images);
        for slot in results {
            let r = slot
                .into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| IrError::Invalid("an image of the batch was not run".into()))?;
            per_image.push(r?);
        }
        for i in together..images {
            per_image.push(self.run_program(
                p,
                &self.arenas,
                &image(i),
                times.as_deref_mut(),
                guard_pages,
                0,
            )?);
        }
        let stacked = stack_images(&p.outputs, per_image)?;
        match &p.head {
            // The head once over the batch, on the stacked outputs of the images; its step
            // times follow the per-image steps'.
            Some(h) => self.run_program(
                h,
                &self.head_arenas,
                &views(&stacked),
                times,
                guard_pages,
                p.steps.len(),
            ),
            None => Ok(stacked),
        }
    }

    /// Runs the program `p` (the model's, or the head of a split batch) once with an arena
    /// from `arenas`: `inputs` are its own inputs (one image of a split batch, or the head's
    /// stacked inputs). Step times are added to `times` from entry `first_step` on (an entry
    /// per step, created on the first run).
    fn run_program(
        &self,
        p: &CpuProgram,
        arenas: &Mutex<Vec<AlignedBytes>>,
        inputs: &[TensorView<'_>],
        mut times: Option<&mut Vec<(String, Duration)>>,
        guard_pages: Option<GuardPlacement>,
        first_step: usize,
    ) -> RunResult {
        let mut arena = arenas
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .map_or_else(|| AlignedBytes::zeroed(p.arena_bytes), Ok)?;
        // Inputs the steps read straight from the caller's buffer (`borrowable`), as arena
        // slot `(offset, bytes)` and the buffer; the others are copied in.
        let mut borrowed: Vec<(Borrow, *mut u8)> = Vec::new();
        for ((_, ty, loc), t) in p.inputs.iter().zip(inputs) {
            if guard_pages.is_none() {
                if let Some(b) = borrowable(p, *loc, ty.bytes()) {
                    let (ptr, len) = raw_bytes(t.data);
                    if len == b.bytes {
                        // Read only: `borrowable` found no step that writes the input.
                        borrowed.push((b, ptr as *mut u8));
                        continue;
                    }
                }
            }
            write_tensor(&mut arena, *loc, *t)?;
            self.guard_fill(&mut arena, *loc, ty.bytes());
        }
        let wptr = p.weights.as_ptr() as *mut u8;
        let mut table: Vec<*mut u8> = Vec::with_capacity(16);
        for (k, step) in p.steps.iter().enumerate() {
            if p.guard > 0 {
                self.guard_fill(&mut arena, step.args[0], step.out.bytes());
                self.guard_fill(&mut arena, Loc::Arena(p.scratch.0), p.scratch.1);
            }
            let t0 = Instant::now();
            match step.exec {
                Exec::Jit(f) => {
                    crate::guard::check_slots(step, arena.len(), p.weights.len()).map_err(
                        |source| CpuRunError::PointerTable {
                            step: step.node.clone(),
                            op: step.op.kind().to_string(),
                            source,
                        },
                    )?;
                    if let Some(placement) = guard_pages {
                        crate::guard::run_jit_step(step, f, &mut arena, &p.weights, placement)
                            .map_err(|source| CpuRunError::GuardPages {
                                step: step.node.clone(),
                                op: step.op.kind().to_string(),
                                source,
                            })?;
                    } else {
                        table.clear();
                        let aptr = arena.as_mut_ptr();
                        for loc in &step.args {
                            table.push(match *loc {
                                Loc::Arena(o) => match borrowed
                                    .iter()
                                    .find(|(b, _)| k < b.until && o >= b.off && o < b.off + b.bytes)
                                {
                                    // SAFETY: before `until` a slot in the input's arena
                                    // slot is the input's and lies inside its bytes
                                    // (`borrowable`), which the caller's buffer holds.
                                    Some(&(b, ptr)) => unsafe { ptr.add(o - b.off) },
                                    // SAFETY: `check_slots` showed `o + bytes <= arena.len()`.
                                    None => unsafe { aptr.add(o) },
                                },
                                // SAFETY: `check_slots` showed `o + bytes <= weights.len()`.
                                Loc::Weight(o) => unsafe { wptr.add(o) },
                                Loc::Unused => std::ptr::null_mut(),
                            });
                        }
                        // SAFETY: the function was generated for this step's pointer table
                        // and reads only its first `slots_read` slots, which exist
                        // (`check_slots`). Every slot points to `arg_bytes` bytes inside the
                        // arena or the weights blob (checked above), which is what its static
                        // shape needs. Weights are only read. The output never aliases an
                        // input, except where `mnc_targets::cpu::lower::in_place_input`
                        // allows it: then it takes over the buffer of one input that dies at
                        // this step and whose code reads each element just before writing
                        // the same output element. Scratch is used by this step only. The
                        // target runs on this host (checked at the start of the run), and
                        // the kernels catch panics at their `extern "C"` boundary.
                        unsafe { f(table.as_ptr()) };
                    }
                    if let Some(message) = mnc_targets::cpu::kernels::take_panic() {
                        return Err(RuntimeError::KernelPanic {
                            node: step.node.clone(),
                            op: step.op.kind().to_string(),
                            message,
                        }
                        .into());
                    }
                }
                Exec::Fallback => {
                    let mut args = Vec::with_capacity(step.inputs.len());
                    for (loc, ty) in step.args[1..=step.inputs.len()].iter().zip(&step.inputs) {
                        args.push(read_tensor(&arena, &p.weights, *loc, ty)?);
                    }
                    let refs: Vec<&Tensor> = args.iter().collect();
                    let out = eval_op(&step.op, &refs)
                        .map_err(|e| e.at_node(&step.node, step.op.kind()))?;
                    if out.ty() != step.out {
                        return Err(RuntimeError::NodeType {
                            node: step.node.clone(),
                            op: step.op.kind().to_string(),
                            expected: step.out.clone(),
                            got: out.ty(),
                        }
                        .into());
                    }
                    write_tensor(&mut arena, step.args[0], out.view())?;
                }
            }
            if let Some(t) = times.as_deref_mut() {
                match t.get_mut(first_step + k) {
                    Some(entry) => entry.1 += t0.elapsed(),
                    None => t.push((step.node.clone(), t0.elapsed())),
                }
            }
            if p.guard > 0 {
                let mut regions = vec![(step.args[0], step.out.bytes())];
                for (loc, ty) in step.args[1..].iter().zip(&step.inputs) {
                    regions.push((*loc, ty.bytes()));
                }
                regions.push((Loc::Arena(p.scratch.0), p.scratch.1));
                for (loc, bytes) in regions {
                    if let Some(offset) = self.guard_check(&arena, loc, bytes) {
                        return Err(CpuRunError::GuardCorrupted {
                            step: step.node.clone(),
                            op: step.op.kind().to_string(),
                            offset,
                        });
                    }
                }
            }
        }
        let mut outs = Vec::with_capacity(p.outputs.len());
        for (_, ty, loc) in &p.outputs {
            outs.push(read_tensor(&arena, &p.weights, *loc, ty)?);
        }
        if let Ok(mut pool) = arenas.lock() {
            if pool.len() < 4 {
                pool.push(arena);
            }
        }
        Ok(outs)
    }
}

impl CompiledModel {
    /// The two canary zones around an arena value of `bytes` bytes at `loc` (none for other
    /// locations or without guard mode).
    fn guard_zones(&self, loc: Loc, bytes: usize) -> Vec<std::ops::Range<usize>> {
        let g = self.program.guard;
        match loc {
            Loc::Arena(o) if g > 0 && o >= g => {
                let end = o + bytes.div_ceil(64) * 64;
                vec![o - g..o, end..end + g]
            }
            _ => vec![],
        }
    }

    fn guard_fill(&self, arena: &mut AlignedBytes, loc: Loc, bytes: usize) {
        for z in self.guard_zones(loc, bytes) {
            if let Some(b) = arena.bytes_mut().get_mut(z) {
                b.fill(CANARY);
            }
        }
    }

    /// The first changed canary byte around the value, if any.
    fn guard_check(&self, arena: &AlignedBytes, loc: Loc, bytes: usize) -> Option<usize> {
        for z in self.guard_zones(loc, bytes) {
            let start = z.start;
            if let Some(b) = arena.bytes().get(z) {
                if let Some(i) = b.iter().position(|&v| v != CANARY) {
                    return Some(start + i);
                }
            }
        }
        None
    }
}

fn region<'a>(
    arena: &'a AlignedBytes,
    weights: &'a AlignedBytes,
    loc: Loc,
    bytes: usize,
) -> Result<&'a [u8], IrError> {
    let (buf, off) = match loc {
        Loc::Arena(o) => (arena, o),
        Loc::Weight(o) => (weights, o),
        Loc::Unused => {
            return Err(IrError::Invalid(
                "a value read by the runtime has no location".into(),
            ))
        }
    };
    buf.bytes().get(off..off + bytes).ok_or_else(|| {
        IrError::Invalid(format!(
            "value at {loc:?} ({bytes} bytes) lies outside its buffer"
        ))
    })
}

fn read_tensor(
    arena: &AlignedBytes,
    weights: &AlignedBytes,
    loc: Loc,
    ty: &TensorType,
) -> Result<Tensor, IrError> {
    let b = region(arena, weights, loc, ty.bytes())?;
    let data = TensorData::from_le_bytes(ty.dtype, b);
    Ok(Tensor {
        shape: ty.shape.clone(),
        data,
    })
}

/// Borrowed views of owned tensors.
/// The outputs of one run, or why it failed.
type RunResult = Result<Vec<Tensor>, CpuRunError>;

/// `ty` with axis 0 multiplied by `images` (a split batch's full type from one image's).
fn batch_type(ty: &TensorType, images: usize) -> TensorType {
    let mut shape = ty.shape.clone();
    if let Some(d) = shape.first_mut() {
        *d *= images;
    }
    TensorType::new(ty.dtype, shape)
}

/// Image `i` of `images` of a batch `t` (checked to have `images` times `shape`'s elements,
/// axis 0 outermost), viewed with `shape`.
fn image_view<'a>(
    t: &TensorView<'a>,
    shape: &'a [usize],
    i: usize,
    images: usize,
) -> TensorView<'a> {
    let n = t.numel() / images;
    TensorView {
        shape,
        data: t.data.slice(i * n..(i + 1) * n),
    }
}

/// The outputs of a split batch: every output's images, in order, along axis 0.
fn stack_images(
    outputs: &[(String, TensorType, Loc)],
    per_image: Vec<Vec<Tensor>>,
) -> Result<Vec<Tensor>, IrError> {
    let images = per_image.len();
    let mut stacked: Vec<Tensor> = outputs
        .iter()
        .map(|(_, ty, _)| {
            let ty = batch_type(ty, images);
            Tensor {
                data: TensorData::with_capacity(ty.dtype, ty.numel()),
                shape: ty.shape,
            }
        })
        .collect();
    for outs in per_image {
        for (s, o) in stacked.iter_mut().zip(outs) {
            if !s.data.append(o.data) {
                return Err(IrError::Invalid("an image's output changed type".into()));
            }
        }
    }
    Ok(stacked)
}

/// Where a run may hand the steps the caller's buffer of a program input instead of copying
/// it into its arena slot ([`borrowable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Borrow {
    /// The input's arena slot: `off..off + bytes`.
    off: usize,
    bytes: usize,
    /// The first step that writes into the slot (the planner reuses it once the input is
    /// dead; the step count when none does): slots of the steps before it that fall in the
    /// slot are the input's (itself or views of it), later ones another value's.
    until: usize,
}

/// The [`Borrow`] of the program input at `loc` (`bytes` long) when a run may read it from
/// the caller's buffer: no canaries, a little-endian host (the arena holds little-endian
/// bytes), a non-empty slot, no step that takes it over (writes its slot while reading it),
/// no fallback step reading it (those read the arena itself) nor a program output in it
/// while it lives, and every step slot that falls in it while it lives inside it (views of
/// the input). Saves the copy of the input at every run (MobileNetV2's 600 KB image). The
/// generated code and the kernels read their inputs with unaligned loads, so the buffer's
/// element alignment is enough (as in guard-page mode).
fn borrowable(p: &CpuProgram, loc: Loc, bytes: usize) -> Option<Borrow> {
    let Loc::Arena(off) = loc else {
        return None;
    };
    if p.guard > 0 || bytes == 0 || !cfg!(target_endian = "little") {
        return None;
    }
    let end = off + bytes;
    let overlaps = |o: usize, n: usize| o < end && off < o + n.max(1);
    let inside = |o: usize, n: usize| o >= off && o + n <= end;
    let mut until = p.steps.len();
    for (k, step) in p.steps.iter().enumerate() {
        let ins = 1..=step.inputs.len();
        let (mut reads, mut writes) = (false, false);
        for (slot, (l, &n)) in step.args.iter().zip(&step.arg_bytes).enumerate() {
            let Loc::Arena(o) = *l else { continue };
            if !overlaps(o, n) {
                continue;
            }
            if ins.contains(&slot) {
                if !inside(o, n) {
                    return None;
                }
                reads = true;
            } else {
                writes = true;
            }
        }
        if writes {
            if reads {
                return None;
            }
            until = k;
            break;
        }
        if reads && !matches!(step.exec, Exec::Jit(_)) {
            return None;
        }
    }
    let output_in_it = p.outputs.iter().any(|(_, ty, l)| match *l {
        Loc::Arena(o) => overlaps(o, ty.bytes()),
        _ => false,
    });
    if until == p.steps.len() && output_in_it {
        return None;
    }
    Some(Borrow { off, bytes, until })
}

/// The bytes of a tensor's storage: its address and length.
fn raw_bytes(d: mnc_ir::tensor::TensorDataRef<'_>) -> (*const u8, usize) {
    use mnc_ir::tensor::TensorDataRef as D;
    match d {
        D::F32(v) => (v.as_ptr().cast(), std::mem::size_of_val(v)),
        D::I64(v) => (v.as_ptr().cast(), std::mem::size_of_val(v)),
        D::U8(v) => (v.as_ptr(), std::mem::size_of_val(v)),
        D::I8(v) => (v.as_ptr().cast(), std::mem::size_of_val(v)),
        D::I32(v) => (v.as_ptr().cast(), std::mem::size_of_val(v)),
    }
}

fn views(ts: &[Tensor]) -> Vec<TensorView<'_>> {
    ts.iter().map(Tensor::view).collect()
}

fn write_tensor(arena: &mut AlignedBytes, loc: Loc, t: TensorView<'_>) -> Result<(), IrError> {
    let Loc::Arena(off) = loc else {
        return Err(IrError::Invalid(
            "a computed value is placed in the weights blob".into(),
        ));
    };
    let bytes = t.ty().bytes();
    let dst = arena.bytes_mut().get_mut(off..off + bytes).ok_or_else(|| {
        IrError::Invalid(format!("arena slot at {off} ({bytes} bytes) out of range"))
    })?;
    t.data.write_le_bytes(dst);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mnc_ir::{Activation, Graph, Op, TensorType};
    use mnc_targets::cpu::Exec;

    /// `y = relu(x)` over `n` floats (node `relu`).
    fn relu_graph(n: usize) -> Graph {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::f32(vec![n]));
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[x])
            .unwrap();
        g.add_output("y", r);
        g
    }

    /// The host's JIT target; `None` on a host without one (after printing a SKIPPED line
    /// naming the calling test's location).
    #[track_caller]
    pub(crate) fn host_jit() -> Option<Target> {
        let t = Target::detect_host();
        if !t.is_jit() {
            eprintln!(
                "SKIPPED {}: no JIT target runs on this CPU",
                std::panic::Location::caller()
            );
            return None;
        }
        Some(t)
    }

    /// `relu` over 32 floats (one JIT step: output slot 0, input slot 1) compiled with `opts`
    /// for the host, with an input of both signs; `None` on a host without a JIT target
    /// ([`host_jit`]).
    #[track_caller]
    pub(crate) fn relu32(opts: &CpuOptions) -> Option<(CompiledModel, Tensor)> {
        let t = host_jit()?;
        let m = CompiledModel::compile(&relu_graph(32), t, opts).unwrap();
        let x = Tensor::from_f32(vec![32], (0..32).map(|i| i as f32 - 15.5).collect()).unwrap();
        Some((m, x))
    }

    /// A 1x1 conv 64 -> 64 over 128x128 (67M multiply-adds: the GEMM kernel splits it into
    /// tasks over the pool, long enough for the pool threads to take some) whose every
    /// product is 2^-60 * 2^-76 = 2^-136 and every output the exact sum of 64 of them,
    /// 2^-130: denormals throughout (below 2^-126), 0 when flushed.
    fn denormal_conv() -> (Graph, Tensor) {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::f32(vec![1, 64, 128, 128]));
        let w = Tensor::from_f32(vec![64, 64, 1, 1], vec![2f32.powi(-76); 64 * 64]).unwrap();
        let w = g.add_constant("w", w);
        let c = g
            .add_node_inferred("conv", Op::Conv(mnc_ir::Conv::default()), &[x, w])
            .unwrap();
        g.add_output("y", c);
        let x =
            Tensor::from_f32(vec![1, 64, 128, 128], vec![2f32.powi(-60); 64 * 128 * 128]).unwrap();
        (g, x)
    }

    #[test]
    fn denormals_are_flushed_on_every_thread_and_mxcsr_is_restored() {
        let Some(t) = host_jit() else {
            return;
        };
        let (g, x) = denormal_conv();
        use mnc_targets::cpu::fpenv::{mxcsr, CONTROL};
        let before = mxcsr() & CONTROL;
        // Alternating modes: pool threads spawned (and so initialized) in either mode must
        // follow the dispatcher's mode of each run.
        for threads in [1, 2, 3] {
            for flush in [false, true, false, true] {
                let opts = CpuOptions {
                    threads,
                    flush_denormals: flush,
                    ..Default::default()
                };
                let m = CompiledModel::compile(&g, t, &opts).unwrap();
                assert_eq!(m.report().flush_denormals, flush);
                let y = m.run(std::slice::from_ref(&x)).unwrap();
                let y = y[0].as_f32().unwrap();
                let want = if flush { 0.0 } else { 2f32.powi(-130) };
                // Every element: a pool thread that kept its own (default) MXCSR would leave
                // denormals in its part of the output.
                assert!(
                    y.iter().all(|&v| v == want),
                    "threads {threads}, flush {flush}: expected every element {want:e}, got {:e} .. {:e}",
                    y.iter().cloned().fold(f32::INFINITY, f32::min),
                    y.iter().cloned().fold(0.0, f32::max)
                );
                assert_eq!(mxcsr() & CONTROL, before, "caller's MXCSR restored");
            }
        }
    }

    /// The input is read from the caller's buffer where no step writes it (a conv, the relu
    /// after it in place, and a second conv whose output the planner puts where the input
    /// was: from that step on the slot is the arena's again), with the outputs of the
    /// copying path (guard pages copy every buffer) and the caller's buffer unchanged;
    /// where the only step may take the input over in place (`relu` alone), or canaries are
    /// on, the input is copied in and the caller's buffer stays unchanged too.
    #[test]
    fn inputs_are_read_in_place_only_where_no_step_writes_them() {
        let Some(t) = host_jit() else {
            return;
        };
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::f32(vec![1, 8, 12, 12]));
        let w: Vec<f32> = (0..8 * 8 * 9)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let w = g.add_constant("w", Tensor::from_f32(vec![8, 8, 3, 3], w).unwrap());
        let conv = mnc_ir::Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            ..Default::default()
        };
        let c = g
            .add_node_inferred("conv", Op::Conv(conv), &[x, w])
            .unwrap();
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[c])
            .unwrap();
        let w2 = g.add_constant(
            "w2",
            Tensor::from_f32(vec![8, 8, 1, 1], vec![0.25; 64]).unwrap(),
        );
        let c2 = g
            .add_node_inferred("conv2", Op::Conv(mnc_ir::Conv::default()), &[r, w2])
            .unwrap();
        g.add_output("y", c2);
        let data: Vec<f32> = (0..8 * 144).map(|i| (i % 17) as f32 - 8.0).collect();
        let x = Tensor::from_f32(vec![1, 8, 12, 12], data).unwrap();
        for threads in [1, 2] {
            let opts = CpuOptions {
                threads,
                ..Default::default()
            };
            let m = CompiledModel::compile(&g, t, &opts).unwrap();
            let (_, ty, loc) = &m.program.inputs[0];
            let b = borrowable(&m.program, *loc, ty.bytes()).unwrap();
            // The second conv's output takes the input's place.
            assert_eq!((b.off, b.bytes, b.until), (0, 4608, 2));
            let before = x.clone();
            let y = m.run(std::slice::from_ref(&x)).unwrap();
            assert_eq!(x, before, "the caller's input changed");
            let copied = m
                .run_guarded(std::slice::from_ref(&x), GuardPlacement::AgainstEnd)
                .unwrap();
            assert_eq!(y, copied);
        }
        // `relu` alone may write its output over its dying input: copied in.
        let Some((m, x)) = relu32(&CpuOptions::default()) else {
            return;
        };
        let (_, ty, loc) = &m.program.inputs[0];
        let in_place = m.program.steps[0].args[0] == *loc;
        assert_eq!(borrowable(&m.program, *loc, ty.bytes()).is_none(), in_place);
        assert!(
            in_place,
            "relu no longer takes its input over: pick another case"
        );
        let before = x.clone();
        m.run(std::slice::from_ref(&x)).unwrap();
        assert_eq!(x, before);
        // Canaries: copied in.
        let guarded = CpuOptions {
            guards: true,
            ..Default::default()
        };
        let Some((m, _)) = relu32(&guarded) else {
            return;
        };
        let (_, ty, loc) = &m.program.inputs[0];
        assert!(borrowable(&m.program, *loc, ty.bytes()).is_none());
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_model_is_send_and_sync() {
        assert_send_sync::<CompiledModel>();
    }

    #[test]
    fn guard_mode_reports_an_out_of_bounds_write() {
        let opts = CpuOptions {
            guards: true,
            ..Default::default()
        };
        let Some((mut m, x)) = relu32(&opts) else {
            return;
        };
        let relu = x.as_f32().unwrap().iter().map(|v| v.max(0.0)).collect();
        let want = Tensor::from_f32(vec![32], relu).unwrap();
        assert_eq!(m.run(std::slice::from_ref(&x)).unwrap()[0], want);
        // Pretend the step's output holds 16 floats: the generated code still writes 32, so
        // its last 64 bytes land in the canary zone after a 64-byte buffer.
        m.program.steps[0].out = TensorType::f32(vec![16]);
        let e = m.run(&[x]).unwrap_err();
        assert!(matches!(e, CpuRunError::GuardCorrupted { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("step 'relu' (Act) wrote outside its buffers"),
            "{e}"
        );
    }

    #[test]
    fn a_graph_with_a_lying_node_type_is_refused() {
        let mut g = relu_graph(32);
        let r = g.find("relu").unwrap();
        // `Node::ty` is public: claim the relu makes 4096 floats out of 32. Compiled as is,
        // the arena would be planned from the claim and the code would read 4096 floats of
        // a 32-float input.
        g.node_mut(r).ty = TensorType::f32(vec![4096]);
        for target in [Target::X86_64, Target::X86_64Avx2, Target::X86_64Avx512] {
            let e = match CompiledModel::compile(&g, target, &CpuOptions::default()) {
                Err(e) => e,
                Ok(_) => panic!("{target}: a graph with a wrong node type compiled"),
            };
            assert!(
                e.to_string().contains("node 'relu' (Act) is typed"),
                "{target}: {e}"
            );
        }
    }

    /// A stand-in for generated code whose kernel panics in a pool task (threads = 2).
    unsafe extern "C" fn kernel_panics_in_pool_task(_: *const *mut u8) {
        mnc_targets::cpu::kernels::at_boundary(|| {
            mnc_targets::cpu::par::for_each(2, 4, &|t| {
                if t == 1 {
                    panic!("task {t} failed")
                }
            })
        });
    }

    #[test]
    fn a_kernel_panic_becomes_an_error_of_the_run() {
        let Some((mut m, x)) = relu32(&CpuOptions::default()) else {
            return;
        };
        let xs = std::slice::from_ref(&x);
        let want = m.run(xs).unwrap();
        let real = m.program.steps[0].exec;
        m.program.steps[0].exec = Exec::Jit(kernel_panics_in_pool_task);
        for _ in 0..20 {
            let e = m.run(xs).unwrap_err();
            assert!(
                matches!(
                    &e,
                    CpuRunError::Run(RuntimeError::KernelPanic { message, .. })
                        if message == "task 1 failed"
                ),
                "{e}"
            );
            assert_eq!(
                e.to_string(),
                "node 'relu' (Act): a kernel panicked: task 1 failed"
            );
        }
        // The model (and the pool) keep working; no panic is left pending.
        m.program.steps[0].exec = real;
        assert_eq!(m.run(xs).unwrap(), want);
        assert_eq!(mnc_targets::cpu::kernels::take_panic(), None);
    }

    #[test]
    fn pool_task_panics_are_caught_in_this_crate() {
        // Regression: built into this crate's test binary (opt-level 1), a panic of a task
        // the caller ran crashed with SIGSEGV in `__rust_panic_cleanup` (see `par::caught`).
        for _ in 0..200 {
            let r = std::panic::catch_unwind(|| {
                mnc_targets::cpu::par::for_each(2, 4, &|t| {
                    if t == 1 {
                        panic!("task 1")
                    }
                })
            });
            assert!(r.is_err());
        }
    }

    #[test]
    fn generated_activations_agree_with_the_reference_on_the_probes() {
        use mnc_ir::op::{agrees, ACTIVATION_EXAMPLES, ACTIVATION_PROBES};
        // Three copies (75 values): the unrolled vector loop, single vectors and the scalar
        // tail all see every probe.
        let xs: Vec<f32> = (0..3)
            .flat_map(|_| ACTIVATION_PROBES.iter().copied())
            .collect();
        for t in Target::jit_targets_for_test(
            "generated_activations_agree_with_the_reference_on_the_probes",
        ) {
            for &a in ACTIVATION_EXAMPLES {
                let mut g = Graph::new("g");
                let x = g.add_input("x", TensorType::f32(vec![xs.len()]));
                let r = g.add_node_inferred("act", Op::Act(a), &[x]).unwrap();
                g.add_output("y", r);
                let m = CompiledModel::compile(&g, t, &CpuOptions::default()).unwrap();
                assert_eq!(m.report().fallbacks(), 0);
                let x = Tensor::from_f32(vec![xs.len()], xs.clone()).unwrap();
                let y = m.run(&[x]).unwrap();
                for (&x, &got) in xs.iter().zip(y[0].as_f32().unwrap()) {
                    let want = a.apply(x);
                    assert!(agrees(got, want), "{t} {a}({x}) = {got}, reference {want}");
                }
            }
        }
    }
}
