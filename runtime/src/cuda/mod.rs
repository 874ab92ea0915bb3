//! The CUDA runtime: runs a model compiled by `mnc_targets::cuda` on an NVIDIA GPU through
//! the driver API (`cudarc`, loaded dynamically, so building and running without CUDA works).
//!
//! Owns device-side execution: loading the PTX module (the driver JIT-compiles it), uploading
//! the weights once, allocating the activation arena, launching the kernel sequence on one
//! stream, and, for batch 1, capturing that sequence once in a CUDA graph that every run
//! replays. Without a driver or a GPU, [`CudaModel::compile`] returns
//! [`CudaRunError::NoDevice`] with the reason; nothing panics.

use crate::error::RuntimeError;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream, DevicePtr,
    DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use mnc_ir::tensor::checked_numel;
use mnc_ir::{DType, Graph, Tensor, TensorData};
use mnc_targets::cuda::{storage_words, BufRef, CudaError, Space};
use std::sync::Arc;
use thiserror::Error;

/// The code generator (PTX emission), re-exported for callers of the runtime.
pub use mnc_targets::cuda as codegen;
pub use mnc_targets::cuda::{CudaArch, CudaOptions, CudaProgram};

/// Errors of the CUDA runtime.
#[derive(Debug, Error)]
pub enum CudaRunError {
    /// No usable CUDA driver or GPU on this machine (the message says which).
    #[error("CUDA is not available: {0}")]
    NoDevice(String),
    /// A driver call failed.
    #[error("CUDA driver error while {what}: {msg}")]
    Driver { what: String, msg: String },
    /// Code generation refused the graph.
    #[error(transparent)]
    Codegen(#[from] CudaError),
    /// Wrong inputs (count, type or data length).
    #[error(transparent)]
    Input(#[from] RuntimeError),
}

fn drv(what: impl Into<String>) -> impl FnOnce(DriverError) -> CudaRunError {
    let what = what.into();
    move |e| CudaRunError::Driver {
        what,
        msg: format!("{e:?}"),
    }
}

/// Whether a CUDA driver library can be loaded and reports at least one device; `Err` holds
/// the reason when not (for tests that skip with a visible line).
pub fn device_available() -> Result<(), String> {
    // SAFETY: only tries to dlopen the driver library; no CUDA call is made.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda.so) could be loaded".into());
    }
    match CudaContext::device_count() {
        Ok(0) => Err("the CUDA driver reports no device".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the CUDA driver failed to initialize: {e:?}")),
    }
}

/// The compute capability `(major, minor)` of device 0.
pub fn device_capability() -> Result<(i32, i32), CudaRunError> {
    device_available().map_err(CudaRunError::NoDevice)?;
    let ctx = CudaContext::new(0).map_err(drv("creating a context on device 0"))?;
    ctx.compute_capability()
        .map_err(drv("reading the compute capability"))
}

/// A model loaded on the GPU, ready to run.
pub struct CudaModel {
    program: CudaProgram,
    name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    functions: Vec<CudaFunction>,
    weights: CudaSlice<f32>,
    arena: CudaSlice<f32>,
    /// Resolved device pointers of every launch's arguments.
    args: Vec<Vec<u64>>,
    graph: Option<CudaGraph>,
}

impl CudaModel {
    /// Generates PTX for `graph` (run the optimization pipeline first for fused kernels) and
    /// loads it on device 0.
    pub fn compile(
        graph: &Graph,
        arch: CudaArch,
        opts: &CudaOptions,
    ) -> Result<Self, CudaRunError> {
        device_available().map_err(CudaRunError::NoDevice)?;
        let program = mnc_targets::cuda::compile(graph, arch, opts)?;
        Self::load(program, &graph.name)
    }

    /// Loads an already generated program on device 0.
    pub fn load(program: CudaProgram, name: &str) -> Result<Self, CudaRunError> {
        device_available().map_err(CudaRunError::NoDevice)?;
        let ctx = CudaContext::new(0).map_err(drv("creating a context on device 0"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(drv("reading the compute capability"))?;
        let dev_arch = CudaArch::for_compute_capability(major, minor).ok_or_else(|| {
            CudaRunError::NoDevice(format!(
                "device 0 has compute capability {major}.{minor}; sm_80 or newer is required"
            ))
        })?;
        if dev_arch == CudaArch::Sm80 && program.arch == CudaArch::Sm90 {
            return Err(CudaRunError::NoDevice(format!(
                "{name}: code for {} cannot run on a device of compute capability {major}.{minor}",
                program.arch
            )));
        }
        // The launch plan orders every access on one stream: no per-buffer events needed.
        // SAFETY: all work of this model is issued on `stream`, in order.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(drv("creating a stream"))?;
        let module = ctx
            .load_module(Ptx::from_src(program.ptx.clone()))
            .map_err(drv(format!(
                "loading the PTX module of '{name}' (driver JIT)"
            )))?;
        let mut functions = Vec::with_capacity(program.kernels.len());
        for k in &program.kernels {
            functions.push(
                module
                    .load_function(k)
                    .map_err(drv(format!("looking up kernel {k}")))?,
            );
        }
        let mut wdata = program.weights.clone();
        if wdata.is_empty() {
            wdata.push(0.0);
        }
        let weights = stream
            .clone_htod(&wdata)
            .map_err(drv(format!("uploading {} weights", wdata.len())))?;
        let arena = stream
            .alloc_zeros::<f32>(program.arena_len.max(1))
            .map_err(drv(format!(
                "allocating the {}-float arena",
                program.arena_len
            )))?;
        let wbase = {
            let (p, _sync) = weights.device_ptr(&stream);
            p
        };
        let abase = {
            let (p, _sync) = arena.device_ptr(&stream);
            p
        };
        let resolve = |b: &BufRef| -> u64 {
            let base = match b.space {
                Space::Weights => wbase,
                Space::Arena => abase,
            };
            base + 4 * b.offset as u64
        };
        let args = program
            .launches
            .iter()
            .map(|l| l.args.iter().map(resolve).collect())
            .collect();
        let mut model = CudaModel {
            program,
            name: name.to_string(),
            ctx,
            stream,
            _module: module,
            functions,
            weights,
            arena,
            args,
            graph: None,
        };
        let batch1 = model
            .program
            .inputs
            .iter()
            .all(|b| b.ty.shape.first().copied().unwrap_or(1) == 1);
        if batch1 && !model.program.launches.is_empty() {
            model.capture_graph()?;
        }
        Ok(model)
    }

    fn capture_graph(&mut self) -> Result<(), CudaRunError> {
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(drv("beginning CUDA graph capture"))?;
        let launched = self.launch_all();
        let graph = self
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(drv("ending CUDA graph capture"))?;
        launched?;
        if let Some(g) = &graph {
            g.upload().map_err(drv("uploading the CUDA graph"))?;
        }
        self.graph = graph;
        Ok(())
    }

    fn launch_all(&self) -> Result<(), CudaRunError> {
        for (l, args) in self.program.launches.iter().zip(&self.args) {
            let f = &self.functions[l.kernel];
            let mut b = self.stream.launch_builder(f);
            for a in args {
                b.arg(a);
            }
            let cfg = LaunchConfig {
                grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
                block_dim: (l.block[0], l.block[1], l.block[2]),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments are device pointers into `weights`/`arena`, which live as
            // long as `self`; the plan sized every buffer for the kernel reading/writing it.
            unsafe { b.launch(cfg) }.map_err(drv(format!(
                "launching {} for node '{}'",
                self.program.kernels[l.kernel], l.node
            )))?;
        }
        Ok(())
    }

    /// The generated program (PTX, launch plan, buffer layout).
    pub fn program(&self) -> &CudaProgram {
        &self.program
    }
    /// Whether runs replay a captured CUDA graph (batch-1 models).
    pub fn uses_cuda_graph(&self) -> bool {
        self.graph.is_some()
    }
    /// The device's name.
    pub fn device_name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|e| format!("unknown device ({e:?})"))
    }

    /// Checks `inputs` against the program's inputs and copies them to the device.
    pub fn upload_inputs(&mut self, inputs: &[Tensor]) -> Result<(), CudaRunError> {
        if inputs.len() != self.program.inputs.len() {
            return Err(RuntimeError::InputCount {
                graph: self.name.clone(),
                expected: self.program.inputs.len(),
                got: inputs.len(),
            }
            .into());
        }
        for (b, t) in self.program.inputs.iter().zip(inputs) {
            if t.dtype() != b.ty.dtype || t.shape != b.ty.shape {
                return Err(RuntimeError::InputType {
                    name: b.name.clone(),
                    expected: b.ty.clone(),
                    got: t.ty(),
                }
                .into());
            }
            // The device words of the input: f32 as they are, u8/i8 four bytes to a word
            // (the layout of `mnc_targets::cuda::storage_words`).
            let words: Option<std::borrow::Cow<[f32]>> = match &t.data {
                TensorData::F32(v) => Some(v.as_slice().into()),
                TensorData::U8(v) => Some(mnc_targets::bytes_to_words(v).into()),
                TensorData::I8(v) => Some(
                    mnc_targets::bytes_to_words(&v.iter().map(|&x| x as u8).collect::<Vec<u8>>())
                        .into(),
                ),
                TensorData::I64(_) | TensorData::I32(_) => None,
            };
            let data = match (words, checked_numel(&t.shape), storage_words(&b.ty)) {
                (Some(d), Ok(_), Some(w)) if d.len() == w && t.numel() == b.ty.numel() => d,
                _ => {
                    return Err(RuntimeError::InputData {
                        name: b.name.clone(),
                        shape: t.shape.clone(),
                        len: t.numel(),
                    }
                    .into())
                }
            };
            if data.is_empty() {
                continue;
            }
            let mut dst = self
                .arena
                .slice_mut(b.buf.offset..b.buf.offset + data.len());
            self.stream
                .memcpy_htod(data.as_ref(), &mut dst)
                .map_err(drv(format!("uploading input '{}'", b.name)))?;
        }
        Ok(())
    }

    /// Launches the kernel sequence (or replays the CUDA graph) on the uploaded inputs.
    /// Asynchronous: call [`CudaModel::synchronize`] or download the outputs to wait.
    pub fn execute(&self) -> Result<(), CudaRunError> {
        match &self.graph {
            Some(g) => g.launch().map_err(drv("launching the CUDA graph")),
            None => self.launch_all(),
        }
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), CudaRunError> {
        self.stream
            .synchronize()
            .map_err(drv("synchronizing the stream"))
    }

    /// Copies the outputs back to the host (waits for the queued work).
    pub fn download_outputs(&self) -> Result<Vec<Tensor>, CudaRunError> {
        let mut out = Vec::with_capacity(self.program.outputs.len());
        for b in &self.program.outputs {
            let n = storage_words(&b.ty).ok_or_else(|| CudaRunError::Driver {
                what: format!("downloading output '{}'", b.name),
                msg: format!("{} values are never on the device", b.ty),
            })?;
            let mut host = vec![0.0f32; n];
            if n > 0 {
                let src = match b.buf.space {
                    Space::Arena => self.arena.slice(b.buf.offset..b.buf.offset + n),
                    Space::Weights => self.weights.slice(b.buf.offset..b.buf.offset + n),
                };
                self.stream
                    .memcpy_dtoh(&src, &mut host)
                    .map_err(drv(format!("downloading output '{}'", b.name)))?;
            }
            out.push(host);
        }
        self.synchronize()?;
        self.program
            .outputs
            .iter()
            .zip(out)
            .map(|(b, d)| {
                let shape = b.ty.shape.clone();
                // u8/i8 outputs are bytes, four to a word; i32 one word per element.
                let bytes = || d.iter().flat_map(|w| w.to_bits().to_le_bytes());
                let n = b.ty.numel();
                let t = match b.ty.dtype {
                    DType::U8 => Tensor::from_i32_values(
                        shape,
                        DType::U8,
                        bytes().take(n).map(i32::from).collect(),
                    ),
                    DType::I8 => Tensor::from_i32_values(
                        shape,
                        DType::I8,
                        bytes().take(n).map(|x| x as i8 as i32).collect(),
                    ),
                    DType::I32 => Tensor::from_i32_values(
                        shape,
                        DType::I32,
                        d.iter().map(|w| w.to_bits() as i32).collect(),
                    ),
                    DType::F32 | DType::I64 => Tensor::from_f32(shape, d),
                };
                t.map_err(|e| CudaRunError::Input(RuntimeError::Ir(e)))
            })
            .collect()
    }

    /// Runs the model: upload, execute, download.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CudaRunError> {
        self.upload_inputs(inputs)?;
        self.execute()?;
        self.download_outputs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_ir::{Op, TensorType};

    #[test]
    fn without_a_device_compile_is_a_clear_error() {
        let mut g = Graph::new("relu");
        let x = g.add_input("x", TensorType::f32(vec![4]));
        let y = g
            .add_node_inferred("r", Op::Act(mnc_ir::Activation::Relu), &[x])
            .unwrap();
        g.add_output("y", y);
        match device_available() {
            Err(why) => {
                let e = CudaModel::compile(&g, CudaArch::Sm80, &CudaOptions::default())
                    .err()
                    .expect("no device: compile must fail");
                assert!(matches!(e, CudaRunError::NoDevice(_)), "{e}");
                assert!(e.to_string().contains("CUDA is not available"), "{e}");
                eprintln!("(no GPU here: {why})");
            }
            Ok(()) => {
                let mut m =
                    CudaModel::compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
                let t = Tensor::from_f32(vec![4], vec![-1.0, 2.0, -3.0, 4.0]).unwrap();
                let out = m.run(&[t]).unwrap();
                assert_eq!(out[0].as_f32().unwrap(), &[0.0, 2.0, 0.0, 4.0]);
                assert!(m.run(&[]).is_err());
            }
        }
    }
}
