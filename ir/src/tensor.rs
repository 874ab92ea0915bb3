//! Element types, static tensor types and constant tensor data.

use crate::error::IrError;
use std::fmt;

/// Largest number of elements any single tensor may have (2^31). Shapes beyond it are
/// refused before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Element type of a tensor. Activations and weights are `F32`; `I64` exists for the
/// shape-computing subgraphs of ONNX exports (folded away before code generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
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
}

/// Borrowed element storage of a [`TensorView`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorDataRef<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// A borrowed dense tensor in row-major (C) order: a caller's buffer (a NumPy array, a
/// memory map) given to a runtime without first copying it into a [`Tensor`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    pub shape: &'a [usize],
    pub data: TensorDataRef<'a>,
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
        }
    }
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.to_vec())
    }
    pub fn numel(&self) -> usize {
        match self.data {
            TensorDataRef::F32(v) => v.len(),
            TensorDataRef::I64(v) => v.len(),
        }
    }
    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.shape.to_vec(),
            data: match self.data {
                TensorDataRef::F32(v) => TensorData::F32(v.to_vec()),
                TensorDataRef::I64(v) => TensorData::I64(v.to_vec()),
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
        }
    }
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }
    pub fn numel(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }
    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: &self.shape,
            data: match &self.data {
                TensorData::F32(v) => TensorDataRef::F32(v),
                TensorData::I64(v) => TensorDataRef::I64(v),
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
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
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
