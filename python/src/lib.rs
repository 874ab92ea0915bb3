//! `mnc._mnc`: the native module of the `mnc` Python package. A thin layer over the `mnc`
//! crate's library API ([`mnc::compiled::Model`], [`mnc::bench`], [`mnc::cost::cli`],
//! [`mnc::export`]): the same code paths as the CLI, with NumPy arrays in and out. Errors are
//! raised as the exception classes of `mnc.errors`, carrying the CLI's one-line messages.

use mnc::bench::BenchOptions;
use mnc::compiled::{CompileOptions, Model, PortInfo, Source};
use mnc::exec::ExecOptions;
use mnc_ir::{DType, Tensor, TensorView};
use mnc_targets::Target;
use numpy::{PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use std::path::PathBuf;
use std::sync::Arc;

/// Builds an exception of class `mnc.errors.<kind>` with `msg`.
fn error(py: Python<'_>, kind: &str, msg: String) -> PyErr {
    let class = py
        .import("mnc.errors")
        .and_then(|m| m.getattr(kind))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(c) => PyErr::from_type(c, msg),
        Err(e) => e,
    }
}

/// The exception class for an error of loading/compiling: problems of the model file itself
/// (import, artifact, zoo) are `ModelError`, the rest `CompileError`.
fn compile_error(py: Python<'_>, e: anyhow::Error) -> PyErr {
    let model_problem = e.chain().any(|c| {
        c.is::<mnc::onnx::ImportError>()
            || c.is::<mnc::artifact::ArtifactError>()
            || c.is::<mnc::zoo::ZooError>()
    });
    let kind = if model_problem {
        "ModelError"
    } else {
        "CompileError"
    };
    error(py, kind, mnc::error_line(&e))
}

fn parse_target(py: Python<'_>, name: &str) -> PyResult<Target> {
    name.parse::<Target>()
        .map_err(|e| error(py, "InputError", format!("target '{name}': {e}")))
}

/// The model argument of `compile`/`cost_report`: a path (`str`/`os.PathLike`), `zoo:NAME`,
/// ONNX `bytes`, or an object with `SerializeToString()` (an `onnx.ModelProto`). The bytes
/// object is held, not copied: Python bytes are immutable, so the slice [`ModelArg::source`]
/// borrows stays valid while the GIL is released.
enum ModelArg<'py> {
    Spec(String),
    Bytes(Bound<'py, PyBytes>, String),
}

/// What a [`ModelArg`] names, borrowed: `Send`, for use while the GIL is released.
enum ModelSource<'a> {
    Spec(&'a str),
    Bytes(&'a [u8], &'a str),
}

impl ModelArg<'_> {
    fn source(&self) -> ModelSource<'_> {
        match self {
            ModelArg::Spec(s) => ModelSource::Spec(s),
            ModelArg::Bytes(b, name) => ModelSource::Bytes(b.as_bytes(), name),
        }
    }
}

fn model_arg<'py>(model: &Bound<'py, PyAny>) -> PyResult<ModelArg<'py>> {
    let py = model.py();
    if let Ok(b) = model.cast::<PyBytes>() {
        return Ok(ModelArg::Bytes(b.clone(), "<bytes>".into()));
    }
    if let Ok(s) = model.extract::<String>() {
        return Ok(ModelArg::Spec(s));
    }
    if let Ok(p) = model.extract::<PathBuf>() {
        return Ok(ModelArg::Spec(p.to_string_lossy().into_owned()));
    }
    if model.hasattr("SerializeToString")? {
        let bytes = model.call_method0("SerializeToString")?;
        let b = bytes.cast_into::<PyBytes>().map_err(|_| {
            error(
                py,
                "InputError",
                "SerializeToString() did not return bytes".into(),
            )
        })?;
        let name = model
            .getattr("graph")
            .and_then(|g| g.getattr("name"))
            .and_then(|n| n.extract::<String>())
            .unwrap_or_default();
        let name = if name.is_empty() {
            "<ModelProto>".to_string()
        } else {
            format!("<ModelProto {name}>")
        };
        return Ok(ModelArg::Bytes(b, name));
    }
    Err(error(
        py,
        "InputError",
        format!(
            "model must be a path, 'zoo:NAME', ONNX bytes or an onnx.ModelProto, not {}",
            model.get_type().name()?
        ),
    ))
}

/// Name, shape and dtype of a model input or output.
#[pyclass(frozen, module = "mnc")]
struct TensorInfo {
    /// The tensor's name in the model.
    #[pyo3(get)]
    name: String,
    /// The static shape.
    #[pyo3(get)]
    shape: Vec<usize>,
    /// The NumPy dtype name (`float32`).
    #[pyo3(get)]
    dtype: &'static str,
}

fn numpy_dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::I8 => "int8",
        DType::I32 => "int32",
    }
}

#[pymethods]
impl TensorInfo {
    fn __repr__(&self) -> String {
        format!(
            "TensorInfo(name={:?}, shape={:?}, dtype='{}')",
            self.name,
            tuple_text(&self.shape),
            self.dtype
        )
    }
    fn __eq__(&self, other: &Self) -> bool {
        (&self.name, &self.shape, self.dtype) == (&other.name, &other.shape, other.dtype)
    }
}

fn tuple_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn infos(ports: &[PortInfo]) -> Vec<TensorInfo> {
    ports
        .iter()
        .map(|p| TensorInfo {
            name: p.name.clone(),
            shape: p.shape.clone(),
            dtype: numpy_dtype(p.dtype),
        })
        .collect()
}

/// Parses JSON text into Python objects (dicts, lists, numbers, strings).
fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A model compiled for one target and batch. Call it with NumPy arrays.
#[pyclass(frozen, module = "mnc")]
struct CompiledModel {
    model: Arc<Model>,
}

/// One input array, checked: a float32 ndarray of the input's shape, else `InputError`.
/// An aligned C-contiguous array is borrowed as it is (the backend copies it once, into its
/// arena); any other layout (Fortran order, strided views, fields of record arrays,
/// misaligned buffers) is first copied into a new C-ordered array.
fn input_array<'py>(
    arr: &Bound<'py, PyAny>,
    port: &PortInfo,
    k: usize,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    let py = arr.py();
    let what = format!("input {k} ('{}')", port.name);
    let np = py.import("numpy")?;
    let refuse = |got: String| {
        error(
            py,
            "InputError",
            format!(
                "{what}: expected a float32 numpy array of shape {}, got {got} (convert with .astype(numpy.float32))",
                tuple_text(&port.shape)
            ),
        )
    };
    if !arr.is_instance(&np.getattr("ndarray")?)? {
        return Err(refuse(arr.get_type().name()?.to_string()));
    }
    // The native-endian float32 dtype exactly (a big-endian '>f4' is refused, not reinterpreted).
    let dtype = arr.getattr("dtype")?;
    if !dtype.eq(np.getattr("dtype")?.call1(("=f4",))?)? {
        return Err(refuse(dtype.str()?.to_string()));
    }
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    if shape != port.shape {
        return Err(error(
            py,
            "InputError",
            format!(
                "{what}: expected shape {}, got {}",
                tuple_text(&port.shape),
                tuple_text(&shape)
            ),
        ));
    }
    let flags = arr.getattr("flags")?;
    let direct = flags.getattr("c_contiguous")?.extract::<bool>()?
        && flags.getattr("aligned")?.extract::<bool>()?;
    let arr = if direct {
        arr.clone()
    } else {
        // A fresh, aligned, C-ordered copy (`ascontiguousarray` would return a misaligned
        // but contiguous array unchanged).
        let kw = PyDict::new(py);
        kw.set_item("order", "C")?;
        kw.set_item("copy", true)?;
        np.getattr("array")?.call((arr,), Some(&kw))?
    };
    // Other extraction errors (an array mutably borrowed by other Rust code) pass through.
    arr.extract::<PyReadonlyArrayDyn<'py, f32>>()
}

fn outputs_to_py<'py>(py: Python<'py>, outs: Vec<Tensor>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    outs.into_iter()
        .map(|t| {
            let shape = t.shape.clone();
            fn array<'py, T: numpy::Element>(
                py: Python<'py>,
                v: Vec<T>,
                shape: Vec<usize>,
            ) -> PyResult<Bound<'py, PyAny>> {
                Ok(numpy::PyArray1::from_vec(py, v).reshape(shape)?.into_any())
            }
            match t.data {
                mnc_ir::TensorData::F32(v) => array(py, v, shape),
                mnc_ir::TensorData::I64(v) => array(py, v, shape),
                mnc_ir::TensorData::U8(v) => array(py, v, shape),
                mnc_ir::TensorData::I8(v) => array(py, v, shape),
                mnc_ir::TensorData::I32(v) => array(py, v, shape),
            }
        })
        .collect()
}

#[pymethods]
impl CompiledModel {
    /// run(*arrays, **named) -> list[numpy.ndarray]
    ///
    /// Runs the model. Inputs are float32 NumPy arrays of the exact input shapes, given in
    /// order (`run(x)`), as one dict by name (`run({"input": x})`) or as keywords
    /// (`run(input=x)`). Returns one array per model output. Releases the GIL while it runs:
    /// several Python threads may call it on one model at once. An aligned C-contiguous
    /// array is read in place while the GIL is released: do not write to or resize it from
    /// another thread during the call (other layouts are copied first).
    #[pyo3(signature = (*args, **kwargs))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let ports = self.model.inputs();
        let named: Option<Bound<'py, PyDict>> = match (args.len(), kwargs) {
            (0, Some(kw)) => Some(kw.clone()),
            (1, None) if args.get_item(0)?.cast::<PyDict>().is_ok() => {
                Some(args.get_item(0)?.cast_into::<PyDict>()?)
            }
            (_, None) => None,
            _ => {
                return Err(error(
                    py,
                    "InputError",
                    "give the inputs either by position or by name, not both".into(),
                ))
            }
        };
        let arrays: Vec<Bound<'py, PyAny>> = match named {
            Some(d) => {
                let mut v = Vec::with_capacity(ports.len());
                for p in ports {
                    match d.get_item(&p.name)? {
                        Some(a) => v.push(a),
                        None => {
                            return Err(error(
                                py,
                                "InputError",
                                format!("missing input '{}'", p.name),
                            ))
                        }
                    }
                }
                if d.len() != ports.len() {
                    let known: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                    return Err(error(
                        py,
                        "InputError",
                        format!(
                            "unknown input name(s); the model's inputs are {}",
                            known.join(", ")
                        ),
                    ));
                }
                v
            }
            None => args.iter().collect(),
        };
        if arrays.len() != ports.len() {
            return Err(error(
                py,
                "InputError",
                format!(
                    "the model has {} input(s), got {}",
                    ports.len(),
                    arrays.len()
                ),
            ));
        }
        let mut held = Vec::with_capacity(arrays.len());
        for (k, (a, p)) in arrays.iter().zip(ports).enumerate() {
            held.push(input_array(a, p, k)?);
        }
        let mut views = Vec::with_capacity(held.len());
        for (h, p) in held.iter().zip(ports) {
            let data = h
                .as_slice()
                .map_err(|e| error(py, "InputError", format!("input '{}': {e}", p.name)))?;
            views.push(
                TensorView::f32(&p.shape, data)
                    .map_err(|e| error(py, "InputError", e.to_string()))?,
            );
        }
        let model = &self.model;
        let outs = py
            .detach(|| model.run_views(&views))
            .map_err(|e| error(py, "RunError", mnc::error_line(&e)))?;
        outputs_to_py(py, outs)
    }

    /// `run` with the call syntax: `model(x)`.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.run(py, args, kwargs)
    }

    /// The model's inputs: list of TensorInfo (name, shape, dtype).
    #[getter]
    fn inputs(&self) -> Vec<TensorInfo> {
        infos(self.model.inputs())
    }

    /// The model's outputs: list of TensorInfo (name, shape, dtype).
    #[getter]
    fn outputs(&self) -> Vec<TensorInfo> {
        infos(self.model.outputs())
    }

    /// The target it was compiled for (`x86_64-avx512`, `reference`, `cuda-sm90`, ...).
    #[getter]
    fn target(&self) -> &'static str {
        self.model.target().name()
    }

    /// The batch size it was compiled for.
    #[getter]
    fn batch(&self) -> usize {
        self.model.batch()
    }

    /// The model as it was named (path, `zoo:NAME`, `<bytes>`).
    #[getter]
    fn name(&self) -> &str {
        self.model.name()
    }

    /// report() -> dict: the compile report (what `mnc compile` prints): nodes before and
    /// after the passes, changes per pass, ops by class, mult-adds, code generation figures
    /// (x86-64 targets) and phase times in milliseconds.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(self.model.summary())
            .map_err(|e| error(py, "Error", e.to_string()))?;
        json_to_py(py, &text)
    }

    /// report_text() -> str: the compile report as `mnc compile` prints it.
    fn report_text(&self) -> String {
        self.model.summary().text()
    }

    /// bench(iters=50, warmup=5, profile=False) -> dict: the fields of
    /// `mnc bench --format json` (median_ms, min_ms, p90_ms, throughput_per_s, gflops, ...).
    #[pyo3(signature = (iters = 50, warmup = 5, profile = false))]
    fn bench<'py>(
        &self,
        py: Python<'py>,
        iters: usize,
        warmup: usize,
        profile: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        bench_json(py, self.model.clone(), iters, warmup, profile)
    }

    /// save(path): writes the compiled-model artifact (`.mnc`: optimized IR and schedules for
    /// this target and batch), which `mnc.load` and the CLI's `run`/`bench` read.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let model = self.model.clone();
        py.detach(move || model.save(&path))
            .map_err(|e| error(py, "Error", mnc::error_line(&e)))
    }

    fn __repr__(&self) -> String {
        format!(
            "CompiledModel({:?}, target='{}', batch={})",
            self.model.name(),
            self.model.target().name(),
            self.model.batch()
        )
    }
}

fn bench_json(
    py: Python<'_>,
    model: Arc<Model>,
    iters: usize,
    warmup: usize,
    profile: bool,
) -> PyResult<Bound<'_, PyAny>> {
    if iters == 0 {
        return Err(error(py, "InputError", "iters must be at least 1".into()));
    }
    if profile && !model.target().is_jit() {
        return Err(error(
            py,
            "InputError",
            "profile=True needs an x86-64 target (per-op timing of the JIT code)".into(),
        ));
    }
    let opts = BenchOptions {
        iters,
        warmup,
        profile,
    };
    let r = py
        .detach(move || mnc::bench::bench(&model, &opts))
        .map_err(|e| error(py, "RunError", mnc::error_line(&e)))?;
    let text = serde_json::to_string(&r).map_err(|e| error(py, "Error", e.to_string()))?;
    json_to_py(py, &text)
}

fn exec_options(threads: Option<usize>, allow_tf32: bool) -> ExecOptions {
    ExecOptions {
        allow_tf32,
        threads: threads.unwrap_or(0),
        keep_denormals: false,
        no_batch_split: false,
        no_batch_head: false,
        no_thread_choice: false,
    }
}

fn compile_model(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    target: &str,
    batch: Option<usize>,
    threads: Option<usize>,
    allow_tf32: bool,
    nchw_input: bool,
) -> PyResult<Model> {
    let arg = model_arg(model)?;
    let opts = CompileOptions {
        target: parse_target(py, target)?,
        batch,
        exec: exec_options(threads, allow_tf32),
        nchw_inputs: nchw_input,
    };
    if batch == Some(0) || threads == Some(0) {
        return Err(error(
            py,
            "InputError",
            "batch and threads must be at least 1".into(),
        ));
    }
    let src = arg.source();
    py.detach(move || match src {
        ModelSource::Spec(s) => Model::compile(Source::Spec(s), &opts),
        ModelSource::Bytes(bytes, name) => Model::compile(Source::OnnxBytes { bytes, name }, &opts),
    })
    .map_err(|e| compile_error(py, e))
}

/// compile(model, target="host", batch=None, threads=None, allow_tf32=False, nchw_input=False) -> CompiledModel
///
/// Imports `model` (a path to an .onnx or .mnc file, "zoo:NAME", ONNX bytes, or an
/// onnx.ModelProto), runs the optimization pipeline for `target` and generates its code.
/// `batch` overrides the model's batch size; `threads` (x86-64 targets) defaults to the
/// physical cores; `allow_tf32` (CUDA targets) allows TF32 tensor-core math; `nchw_input`
/// takes a channels-last (NHWC, Keras/tf2onnx) model's 4-D inputs as NCHW (`--nchw-input`).
#[pyfunction]
#[pyo3(signature = (model, target = "host", batch = None, threads = None, allow_tf32 = false, nchw_input = false))]
fn compile(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    target: &str,
    batch: Option<usize>,
    threads: Option<usize>,
    allow_tf32: bool,
    nchw_input: bool,
) -> PyResult<CompiledModel> {
    let m = compile_model(py, model, target, batch, threads, allow_tf32, nchw_input)?;
    Ok(CompiledModel { model: Arc::new(m) })
}

/// load(path, threads=None, allow_tf32=False) -> CompiledModel
///
/// Loads a `.mnc` artifact (written by `CompiledModel.save` or `mnc compile -o`) for the
/// target and batch it was compiled for.
#[pyfunction]
#[pyo3(signature = (path, threads = None, allow_tf32 = false))]
fn load(
    py: Python<'_>,
    path: PathBuf,
    threads: Option<usize>,
    allow_tf32: bool,
) -> PyResult<CompiledModel> {
    let exec = exec_options(threads, allow_tf32);
    let m = py
        .detach(move || Model::load_artifact(&path, &exec))
        .map_err(|e| compile_error(py, e))?;
    Ok(CompiledModel { model: Arc::new(m) })
}

/// bench(model, target="host", batch=None, threads=None, iters=50, warmup=5, profile=False,
/// allow_tf32=False, nchw_input=False) -> dict
///
/// Compiles `model` and times it: the fields of `mnc bench --format json`.
#[pyfunction(name = "bench")]
#[pyo3(signature = (model, target = "host", batch = None, threads = None, iters = 50, warmup = 5, profile = false, allow_tf32 = false, nchw_input = false))]
#[allow(clippy::too_many_arguments)]
fn bench_model<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    target: &str,
    batch: Option<usize>,
    threads: Option<usize>,
    iters: usize,
    warmup: usize,
    profile: bool,
    allow_tf32: bool,
    nchw_input: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let m = compile_model(py, model, target, batch, threads, allow_tf32, nchw_input)?;
    bench_json(py, Arc::new(m), iters, warmup, profile)
}

/// cost_report(model, batch=None, freeze=(), stage="imported") -> dict
///
/// Parameters, trainable parameters, mult-adds and memory per layer and in total, with
/// torchinfo's conventions: the figures of `mnc cost-report --format json`. `freeze` marks
/// parameters whose name starts with one of the prefixes as non-trainable; `stage` is
/// "imported" or "optimized".
#[pyfunction]
#[pyo3(signature = (model, batch = None, freeze = Vec::new(), stage = "imported"))]
fn cost_report<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    batch: Option<usize>,
    freeze: Vec<String>,
    stage: &str,
) -> PyResult<Bound<'py, PyAny>> {
    use mnc::cost::cli::Stage;
    let stage = Stage::from_name(stage).ok_or_else(|| {
        error(
            py,
            "InputError",
            format!("stage must be 'imported' or 'optimized', not '{stage}'"),
        )
    })?;
    if batch == Some(0) {
        return Err(error(py, "InputError", "batch must be at least 1".into()));
    }
    let arg = model_arg(model)?;
    let src = arg.source();
    let text = py
        .detach(move || -> anyhow::Result<String> {
            let (graph, label) = match src {
                ModelSource::Spec(s) => (
                    mnc::model::load(s, batch)?,
                    mnc::cost::cli::model_labels(&[PathBuf::from(s)])
                        .pop()
                        .unwrap_or_default(),
                ),
                ModelSource::Bytes(b, name) => (
                    mnc::onnx::import_bytes(b, None, name, &mnc::onnx::ImportOptions { batch })?,
                    name.to_string(),
                ),
            };
            let opts = mnc::cost::CostOptions {
                freeze,
                stage: Some(stage.as_str().to_string()),
            };
            let mut cost = mnc::cost::cli::cost_at_stage(graph, &opts, stage)?;
            cost.model = label;
            Ok(mnc::cost::format::render_json(std::slice::from_ref(&cost))?)
        })
        .map_err(|e| compile_error(py, e))?;
    json_to_py(py, &text)
}

/// zoo(name, num_classes=1000, resolution=None, width=None, depth=None, keep_bn=False,
/// seed=0, batch=1) -> bytes
///
/// A built-in MobileNet / EfficientNet architecture (deterministic random weights: for
/// compiling and benchmarking, not for accuracy) as serialized ONNX, like `mnc zoo NAME -o`.
#[pyfunction]
#[pyo3(signature = (name, num_classes = 1000, resolution = None, width = None, depth = None, keep_bn = false, seed = 0, batch = 1))]
#[allow(clippy::too_many_arguments)]
fn zoo<'py>(
    py: Python<'py>,
    name: &str,
    num_classes: usize,
    resolution: Option<usize>,
    width: Option<f64>,
    depth: Option<f64>,
    keep_bn: bool,
    seed: u64,
    batch: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let opts = mnc::zoo::ZooOptions {
        num_classes,
        resolution,
        width,
        depth,
        keep_bn,
        seed,
        batch,
    };
    let name = name.to_string();
    let bytes = py
        .detach(move || -> anyhow::Result<Vec<u8>> {
            let g = mnc::zoo::build(&name, &opts)?;
            Ok(mnc::export::to_bytes(&g)?)
        })
        .map_err(|e| compile_error(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// zoo_names() -> list[str]: the built-in architectures (`mnc zoo list`).
#[pyfunction]
fn zoo_names() -> Vec<&'static str> {
    mnc::zoo::names().to_vec()
}

/// host_target() -> str: the widest x86-64 target this CPU runs (what "host" means).
#[pyfunction]
fn host_target() -> &'static str {
    Target::detect_host().name()
}

/// host_targets() -> list[str]: every target this machine can run (reference and the
/// x86-64 ISAs its CPU supports; CUDA targets are not probed).
#[pyfunction]
fn host_targets() -> Vec<&'static str> {
    std::iter::once(Target::Reference)
        .chain(Target::host_jit_targets())
        .map(|t| t.name())
        .collect()
}

#[pymodule]
fn _mnc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CompiledModel>()?;
    m.add_class::<TensorInfo>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(bench_model, m)?)?;
    m.add_function(wrap_pyfunction!(cost_report, m)?)?;
    m.add_function(wrap_pyfunction!(zoo, m)?)?;
    m.add_function(wrap_pyfunction!(zoo_names, m)?)?;
    m.add_function(wrap_pyfunction!(host_target, m)?)?;
    m.add_function(wrap_pyfunction!(host_targets, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
