//! Element types, static tensor types and constant tensor data.

use crate::error::IrError;
use std::fmt;

/// Largest number of elements any single tensor may have (2^31). Shapes beyond it are
/// refused before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Element type of a tensor. Float activations and weights are `F32`; `I64` exists for the
/// shape-computing subgraphs of ONNX exports (folded away before code generation); `U8`/`I8`
/// hold quantized activations and weights and `I32` quantized biases (numerics:
/// [`crate::quant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I64,
    U8,
    I8,
    I32,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
            DType::U8 | DType::I8 => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I32 => "i32",
        })
    }
}

/// Number of elements of a shape, refusing overflow and sizes above [`MAX_ELEMENTS`].
pub fn checked_numel(shape: &[usize]) -> Result<usize, IrError> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or_else(|| IrError::TooLarge {
            shape: shape.to_vec(),
        })?;
    }
    if n > MAX_ELEMENTS {
        return Err(IrError::TooLarge {
            shape: shape.to_vec(),
        });
    }
    Ok(n)
}

/// Static type of a value: element type and fully known shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        TensorType { dtype, shape }
    }
    pub fn f32(shape: Vec<usize>) -> Self {
        TensorType::new(DType::F32, shape)
    }
    /// Number of elements (shapes in a verified graph never overflow).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Element storage of a constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

impl TensorData {
    /// Number of non-zero elements.
    pub fn len_nonzero(&self) -> usize {
        match self {
            TensorData::F32(v) => v.iter().filter(|&&x| x != 0.0).count(),
            TensorData::I64(v) => v.iter().filter(|&&x| x != 0).count(),
            TensorData::U8(v) => v.iter().filter(|&&x| x != 0).count(),
            TensorData::I8(v) => v.iter().filter(|&&x| x != 0).count(),
            TensorData::I32(v) => v.iter().filter(|&&x| x != 0).count(),
        }
    }
    /// Empty storage of `dtype` with room for `n` elements.
    pub fn with_capacity(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(Vec::with_capacity(n)),
            DType::I64 => TensorData::I64(Vec::with_capacity(n)),
            DType::U8 => TensorData::U8(Vec::with_capacity(n)),
            DType::I8 => TensorData::I8(Vec::with_capacity(n)),
            DType::I32 => TensorData::I32(Vec::with_capacity(n)),
        }
    }
    /// Appends `other`'s elements; false (and nothing appended) when the types differ.
    pub fn append(&mut self, other: TensorData) -> bool {
        match (self, other) {
            (TensorData::F32(a), TensorData::F32(b)) => a.extend(b),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend(b),
            (TensorData::U8(a), TensorData::U8(b)) => a.extend(b),
            (TensorData::I8(a), TensorData::I8(b)) => a.extend(b),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend(b),
            _ => return false,
        }
        true
    }
    /// Decodes little-endian bytes (`bytes.len()` a multiple of the element size).
    pub fn from_le_bytes(dtype: DType, b: &[u8]) -> TensorData {
        fn dec<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunk of N bytes")))
                .collect()
        }
        match dtype {
            DType::F32 => TensorData::F32(dec(b, f32::from_le_bytes)),
            DType::I64 => TensorData::I64(dec(b, i64::from_le_bytes)),
            DType::U8 => TensorData::U8(b.to_vec()),
            DType::I8 => TensorData::I8(dec(b, i8::from_le_bytes)),
            DType::I32 => TensorData::I32(dec(b, i32::from_le_bytes)),
        }
    }
}

/// Borrowed element storage of a [`TensorView`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorDataRef<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    I8(&'a [i8]),
    I32(&'a [i32]),
}

/// A borrowed dense tensor in row-major (C) order: a caller's buffer (a NumPy array, a
/// memory map) given to a runtime without first copying it into a [`Tensor`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    pub shape: &'a [usize],
    pub data: TensorDataRef<'a>,
}

impl<'a> TensorDataRef<'a> {
    /// Elements `range` of the storage.
    pub fn slice(self, range: std::ops::Range<usize>) -> TensorDataRef<'a> {
        match self {
            TensorDataRef::F32(v) => TensorDataRef::F32(&v[range]),
            TensorDataRef::I64(v) => TensorDataRef::I64(&v[range]),
            TensorDataRef::U8(v) => TensorDataRef::U8(&v[range]),
            TensorDataRef::I8(v) => TensorDataRef::I8(&v[range]),
            TensorDataRef::I32(v) => TensorDataRef::I32(&v[range]),
        }
    }
    /// Writes the elements as little-endian bytes into `dst` (at most `dst.len()` bytes).
    pub fn write_le_bytes(self, dst: &mut [u8]) {
        fn put<const N: usize, T: Copy>(dst: &mut [u8], v: &[T], f: impl Fn(T) -> [u8; N]) {
            for (d, &x) in dst.chunks_exact_mut(N).zip(v) {
                d.copy_from_slice(&f(x));
            }
        }
        match self {
            TensorDataRef::F32(v) => put(dst, v, f32::to_le_bytes),
            TensorDataRef::I64(v) => put(dst, v, i64::to_le_bytes),
            TensorDataRef::U8(v) => put(dst, v, u8::to_le_bytes),
            TensorDataRef::I8(v) => put(dst, v, i8::to_le_bytes),
            TensorDataRef::I32(v) => put(dst, v, i32::to_le_bytes),
        }
    }
}

impl<'a> TensorView<'a> {
    /// Views `data` as an f32 tensor of `shape`, checking that the lengths agree.
    pub fn f32(shape: &'a [usize], data: &'a [f32]) -> Result<Self, IrError> {
        if checked_numel(shape)? != data.len() {
            return Err(IrError::DataLength {
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        Ok(TensorView {
            shape,
            data: TensorDataRef::F32(data),
        })
    }
    pub fn dtype(&self) -> DType {
        match self.data {
            TensorDataRef::F32(_) => DType::F32,
            TensorDataRef::I64(_) => DType::I64,
            TensorDataRef::U8(_) => DType::U8,
            TensorDataRef::I8(_) => DType::I8,
            TensorDataRef::I32(_) => DType::I32,
        }
    }
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.to_vec())
    }
    pub fn numel(&self) -> usize {
        match self.data {
            TensorDataRef::F32(v) => v.len(),
            TensorDataRef::I64(v) => v.len(),
            TensorDataRef::U8(v) => v.len(),
            TensorDataRef::I8(v) => v.len(),
            TensorDataRef::I32(v) => v.len(),
        }
    }
    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.shape.to_vec(),
            data: match self.data {
                TensorDataRef::F32(v) => TensorData::F32(v.to_vec()),
                TensorDataRef::I64(v) => TensorData::I64(v.to_vec()),
                TensorDataRef::U8(v) => TensorData::U8(v.to_vec()),
                TensorDataRef::I8(v) => TensorData::I8(v.to_vec()),
                TensorDataRef::I32(v) => TensorData::I32(v.to_vec()),
            },
        }
    }
}

/// A dense tensor in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds an f32 tensor, checking that the data length matches the shape.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, IrError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(IrError::DataLength {
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape,
            data: TensorData::F32(data),
        })
    }
    /// Builds an i64 tensor, checking that the data length matches the shape.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, IrError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(IrError::DataLength {
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape,
            data: TensorData::I64(data),
        })
    }
    /// A zero-filled tensor of the given type (size-checked).
    pub fn zeros(ty: &TensorType) -> Result<Self, IrError> {
        let n = checked_numel(&ty.shape)?;
        Ok(Tensor {
            shape: ty.shape.clone(),
            data: match ty.dtype {
                DType::F32 => TensorData::F32(vec![0.0; n]),
                DType::I64 => TensorData::I64(vec![0; n]),
                DType::U8 => TensorData::U8(vec![0; n]),
                DType::I8 => TensorData::I8(vec![0; n]),
                DType::I32 => TensorData::I32(vec![0; n]),
            },
        })
    }
    pub fn scalar_f32(v: f32) -> Self {
        Tensor {
            shape: vec![],
            data: TensorData::F32(vec![v]),
        }
    }
    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::I8(_) => DType::I8,
            TensorData::I32(_) => DType::I32,
        }
    }
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }
    pub fn numel(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }
    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: &self.shape,
            data: match &self.data {
                TensorData::F32(v) => TensorDataRef::F32(v),
                TensorData::I64(v) => TensorDataRef::I64(v),
                TensorData::U8(v) => TensorDataRef::U8(v),
                TensorData::I8(v) => TensorDataRef::I8(v),
                TensorData::I32(v) => TensorDataRef::I32(v),
            },
        }
    }
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_f32_mut(&mut self) -> Option<&mut Vec<f32>> {
        match &mut self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    /// The elements of an integer tensor (u8, i8, i32, i64) widened to i64; `None` for f32.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::F32(_) => None,
            TensorData::I64(v) => Some(v.clone()),
            TensorData::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::I8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
        }
    }
    /// Builds a tensor of an integer `dtype` from i32 values already in its range (values
    /// out of range are an error, so callers saturate first).
    pub fn from_i32_values(shape: Vec<usize>, dtype: DType, v: Vec<i32>) -> Result<Self, IrError> {
        let n = checked_numel(&shape)?;
        if n != v.len() {
            return Err(IrError::DataLength {
                shape,
                len: v.len(),
            });
        }
        let narrow = |what: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(IrError::Invalid(format!("value out of range for {what}")))
            }
        };
        let data = match dtype {
            DType::U8 => {
                narrow("u8", v.iter().all(|&x| (0..=255).contains(&x)))?;
                TensorData::U8(v.into_iter().map(|x| x as u8).collect())
            }
            DType::I8 => {
                narrow("i8", v.iter().all(|&x| (-128..=127).contains(&x)))?;
                TensorData::I8(v.into_iter().map(|x| x as i8).collect())
            }
            DType::I32 => TensorData::I32(v),
            DType::I64 => TensorData::I64(v.into_iter().map(i64::from).collect()),
            DType::F32 => return Err(IrError::Invalid("f32 is not an integer type".into())),
        };
        Ok(Tensor { shape, data })
    }
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }
    /// The elements as little-endian bytes, in order (the layout of a constant in a weights
    /// blob or an arena).
    pub fn le_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.ty().bytes()];
        self.view().data.write_le_bytes(&mut b);
        b
    }
    /// A short deterministic content hash (FNV-1a over shape and bytes), printed by the IR
    /// printer so that snapshot diffs show when a pass changed a constant's values.
    pub fn content_hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |b: u8| {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        };
        for &d in &self.shape {
            for b in (d as u64).to_le_bytes() {
                eat(b);
            }
        }
        match &self.data {
            TensorData::F32(v) => v
                .iter()
                .for_each(|x| x.to_le_bytes().into_iter().for_each(&mut eat)),
            TensorData::I64(v) => v
                .iter()
                .for_each(|x| x.to_le_bytes().into_iter().for_each(&mut eat)),
            TensorData::U8(v) => v.iter().for_each(|&x| eat(x)),
            TensorData::I8(v) => v.iter().for_each(|&x| eat(x as u8)),
            TensorData::I32(v) => v
                .iter()
                .for_each(|x| x.to_le_bytes().into_iter().for_each(&mut eat)),
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numel_overflow_is_refused() {
        assert!(checked_numel(&[usize::MAX, 2]).is_err());
        assert!(checked_numel(&[1 << 20, 1 << 20]).is_err());
        assert_eq!(checked_numel(&[2, 3, 4]).unwrap(), 24);
        assert_eq!(checked_numel(&[]).unwrap(), 1);
    }

    #[test]
    fn data_length_checked() {
        assert!(Tensor::from_f32(vec![2, 2], vec![0.0; 3]).is_err());
        assert!(Tensor::from_f32(vec![2, 2], vec![0.0; 4]).is_ok());
    }

    #[test]
    fn type_display() {
        assert_eq!(
            TensorType::f32(vec![1, 3, 224, 224]).to_string(),
            "f32[1,3,224,224]"
        );
    }
}
