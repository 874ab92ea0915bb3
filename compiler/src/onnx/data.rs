//! Decoding of ONNX tensors (initializers and `Constant` values) into [`mnc_ir::Tensor`],
//! including external data files, and of graph-input types.
//!
//! Sizes are checked with [`checked_numel`] and against the bytes actually present before
//! anything is allocated. External data must lie inside the model's folder: absolute
//! locations and locations that resolve (after canonicalization) elsewhere are refused.

use super::OpResult;
use mnc_ir::tensor::checked_numel;
use mnc_ir::{DType, Tensor, TensorType};
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::{TensorProto, ValueInfoProto};
use protobuf::Enum;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Element types accepted in initializers and how they are stored in the IR (`INT32` as
/// `i64`, like `INT64`: shape computations mix them; the quantization importer narrows an
/// int32 bias back to `i32`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    F32,
    F64,
    F16,
    I64,
    I32,
    U8,
    I8,
}

impl Elem {
    fn from_onnx(dt: i32) -> OpResult<Elem> {
        Ok(match DataType::from_i32(dt) {
            Some(DataType::FLOAT) => Elem::F32,
            Some(DataType::DOUBLE) => Elem::F64,
            Some(DataType::FLOAT16) => Elem::F16,
            Some(DataType::INT64) => Elem::I64,
            Some(DataType::INT32) => Elem::I32,
            Some(DataType::UINT8) => Elem::U8,
            Some(DataType::INT8) => Elem::I8,
            Some(other) => return Err(format!("element type {other:?} is not supported")),
            None => return Err(format!("unknown element type {dt}")),
        })
    }
    fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::F64 | Elem::I64 => 8,
            Elem::F16 => 2,
            Elem::U8 | Elem::I8 => 1,
        }
    }
}

/// IEEE half -> single precision.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: normalize
            let mut e: i32 = -14;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (((e + 127) as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Converts dims to `usize`, refusing negative values and absurd products.
pub(crate) fn dims_of(dims: &[i64]) -> OpResult<(Vec<usize>, usize)> {
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in {dims:?}")))
        .collect::<OpResult<Vec<_>>>()?;
    let n = checked_numel(&shape).map_err(|e| e.to_string())?;
    Ok((shape, n))
}

/// Decodes `t` (reading external data relative to `model_dir`).
pub(crate) fn tensor_from_proto(t: &TensorProto, model_dir: Option<&Path>) -> OpResult<Tensor> {
    let elem = Elem::from_onnx(t.data_type)?;
    let (shape, n) = dims_of(&t.dims)?;
    let external = t.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
    let raw: Option<Vec<u8>>;
    let raw_ref: Option<&[u8]> = if external {
        raw = Some(read_external(t, model_dir, n * elem.size())?);
        raw.as_deref()
    } else if !t.raw_data.is_empty() || n == 0 {
        Some(&t.raw_data)
    } else {
        None
    };
    if let Some(bytes) = raw_ref {
        let want = n * elem.size();
        if bytes.len() != want {
            return Err(format!(
                "shape {shape:?} needs {want} bytes of {elem:?} data, the tensor holds {}",
                bytes.len()
            ));
        }
        let words = |k: usize| bytes.chunks_exact(k);
        return match elem {
            Elem::F32 => Tensor::from_f32(
                shape,
                words(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Elem::F64 => Tensor::from_f32(
                shape,
                words(8)
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect(),
            ),
            Elem::F16 => Tensor::from_f32(
                shape,
                words(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            Elem::I64 => Tensor::from_i64(
                shape,
                words(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            Elem::I32 => Tensor::from_i64(
                shape,
                words(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            Elem::U8 => {
                Tensor::from_i32_values(shape, DType::U8, bytes.iter().map(|&b| b as i32).collect())
            }
            Elem::I8 => Tensor::from_i32_values(
                shape,
                DType::I8,
                bytes.iter().map(|&b| b as i8 as i32).collect(),
            ),
        }
        .map_err(|e| e.to_string());
    }
    let have = match elem {
        Elem::F32 => t.float_data.len(),
        Elem::F64 => t.double_data.len(),
        Elem::F16 | Elem::I32 | Elem::U8 | Elem::I8 => t.int32_data.len(),
        Elem::I64 => t.int64_data.len(),
    };
    if have != n {
        return Err(format!(
            "shape {shape:?} needs {n} values, the tensor holds {have}"
        ));
    }
    match elem {
        Elem::F32 => Tensor::from_f32(shape, t.float_data.clone()),
        Elem::F64 => Tensor::from_f32(shape, t.double_data.iter().map(|&x| x as f32).collect()),
        Elem::F16 => Tensor::from_f32(
            shape,
            t.int32_data.iter().map(|&x| f16_to_f32(x as u16)).collect(),
        ),
        Elem::I64 => Tensor::from_i64(shape, t.int64_data.clone()),
        Elem::I32 => Tensor::from_i64(shape, t.int32_data.iter().map(|&x| x as i64).collect()),
        // Out-of-range values are refused by `from_i32_values`.
        Elem::U8 => Tensor::from_i32_values(shape, DType::U8, t.int32_data.clone()),
        Elem::I8 => Tensor::from_i32_values(shape, DType::I8, t.int32_data.clone()),
    }
    .map_err(|e| e.to_string())
}

/// Reads the `want` bytes of an externally stored tensor.
fn read_external(t: &TensorProto, model_dir: Option<&Path>, want: usize) -> OpResult<Vec<u8>> {
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for kv in &t.external_data {
        let num = || {
            kv.value
                .parse::<u64>()
                .map_err(|_| format!("external data {} '{}' is not a number", kv.key, kv.value))
        };
        match kv.key.as_str() {
            "location" => location = Some(kv.value.as_str()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    let dir = model_dir.ok_or_else(|| {
        format!("external data '{location}' cannot be read: the model's folder is not known")
    })?;
    let rel = Path::new(location);
    if location.is_empty()
        || rel.is_absolute()
        || location.starts_with('/')
        || location.starts_with('\\')
        || rel
            .components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        return Err(format!(
            "external data location '{location}' is absolute; only files inside the model's folder are read"
        ));
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the model's folder {}: {e}", dir.display()))?;
    let path = dir.join(rel);
    let path = path.canonicalize().map_err(|e| {
        format!(
            "external data file '{location}' ({}) cannot be opened: {e}",
            path.display()
        )
    })?;
    if !path.starts_with(&dir) {
        return Err(format!(
            "external data location '{location}' resolves to {} outside the model's folder {}",
            path.display(),
            dir.display()
        ));
    }
    if let Some(len) = length {
        if len != want as u64 {
            return Err(format!(
                "external data length {len} does not match the {want} bytes the shape needs"
            ));
        }
    }
    let mut f = std::fs::File::open(&path)
        .map_err(|e| format!("external data file '{location}' cannot be opened: {e}"))?;
    let size = f
        .metadata()
        .map_err(|e| format!("external data file '{location}': {e}"))?
        .len();
    let end = offset
        .checked_add(want as u64)
        .ok_or("external data offset overflows")?;
    if end > size {
        return Err(format!(
            "external data file '{location}' is too short: needs bytes {offset}..{end}, has {size}"
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("external data file '{location}': {e}"))?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf)
        .map_err(|e| format!("external data file '{location}': {e}"))?;
    Ok(buf)
}

/// The static type of a graph input, and its static first dimension when the file had one.
/// A symbolic or zero first dimension becomes the batch (`batch`, default 1); `batch` also
/// overrides a static first dimension. Other symbolic dimensions are refused.
pub(crate) fn input_type(
    vi: &ValueInfoProto,
    batch: Option<usize>,
) -> OpResult<(TensorType, Option<usize>)> {
    let Some(TypeValue::TensorType(tt)) = vi.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("only tensor inputs are supported".into());
    };
    if DataType::from_i32(tt.elem_type) != Some(DataType::FLOAT) {
        return Err(format!(
            "element type {} is not supported (only float32 inputs)",
            DataType::from_i32(tt.elem_type)
                .map(|d| format!("{d:?}"))
                .unwrap_or_else(|| tt.elem_type.to_string())
        ));
    }
    let Some(shape) = tt.shape.as_ref() else {
        return Err("the input has no shape; mnc needs static shapes".into());
    };
    let mut dims = Vec::with_capacity(shape.dim.len());
    let mut orig = None;
    for (i, d) in shape.dim.iter().enumerate() {
        let v = match &d.value {
            Some(DimValue::DimValue(v)) if *v > 0 => Some(*v as usize),
            Some(DimValue::DimValue(v)) if *v < 0 => {
                return Err(format!("dimension {i} is negative ({v})"))
            }
            _ => None,
        };
        let dim = if i == 0 {
            orig = v;
            batch.or(v).unwrap_or(1)
        } else {
            v.ok_or_else(|| {
                let what = match &d.value {
                    Some(DimValue::DimParam(p)) => format!("symbolic ('{p}')"),
                    _ => "unknown".to_string(),
                };
                format!("dimension {i} is {what}; only the first (batch) dimension may be symbolic")
            })?
        };
        dims.push(dim);
    }
    checked_numel(&dims).map_err(|e| e.to_string())?;
    Ok((TensorType::f32(dims), orig))
}
