//! Typed access to the attributes and inputs of one ONNX node. Attribute type mismatches are
//! errors (never a silent default); absent attributes give `None`.

use super::OpResult;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

/// One ONNX node under conversion.
pub(crate) struct OnnxNode<'p> {
    pub proto: &'p NodeProto,
    /// The (unique) IR name of the node.
    pub name: String,
    /// Default-domain opset of the model.
    pub opset: i64,
}

impl<'p> OnnxNode<'p> {
    /// Name of input `k`, `None` when absent or empty (an omitted optional input).
    pub fn input_name(&self, k: usize) -> Option<&'p str> {
        self.proto
            .input
            .get(k)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }

    /// Number of inputs listed (including empty optional ones).
    pub fn num_inputs(&self) -> usize {
        self.proto.input.len()
    }

    fn attr(&self, name: &str) -> Option<&'p AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    fn typed(&self, name: &str, want: AttributeType) -> OpResult<Option<&'p AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                // Very old exporters leave `type` unset; accept then the field we want.
                let t = a.type_.enum_value().ok();
                if t == Some(want) || t == Some(AttributeType::UNDEFINED) {
                    Ok(Some(a))
                } else {
                    let got = match a.type_.enum_value() {
                        Ok(t) => format!("{t:?}"),
                        Err(v) => format!("unknown ({v})"),
                    };
                    Err(format!(
                        "attribute '{name}' has type {got}, expected {want:?}"
                    ))
                }
            }
        }
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub fn int(&self, name: &str) -> OpResult<Option<i64>> {
        Ok(self.typed(name, AttributeType::INT)?.map(|a| a.i))
    }

    pub fn int_or(&self, name: &str, default: i64) -> OpResult<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A boolean integer attribute (any non-zero value is true).
    pub fn flag(&self, name: &str, default: bool) -> OpResult<bool> {
        Ok(self.int(name)?.map_or(default, |v| v != 0))
    }

    pub fn ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        Ok(self
            .typed(name, AttributeType::INTS)?
            .map(|a| a.ints.clone()))
    }

    /// An integer list attribute that must be present.
    pub fn required_ints(&self, name: &str) -> OpResult<Vec<i64>> {
        self.ints(name)?
            .ok_or_else(|| format!("attribute '{name}' is required"))
    }

    pub fn float(&self, name: &str) -> OpResult<Option<f32>> {
        Ok(self.typed(name, AttributeType::FLOAT)?.map(|a| a.f))
    }

    pub fn float_or(&self, name: &str, default: f32) -> OpResult<f32> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        Ok(self
            .typed(name, AttributeType::FLOATS)?
            .map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str) -> OpResult<Option<String>> {
        self.typed(name, AttributeType::STRING)?
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| format!("attribute '{name}' is not valid UTF-8"))
            })
            .transpose()
    }

    pub fn tensor(&self, name: &str) -> OpResult<Option<&'p TensorProto>> {
        match self.typed(name, AttributeType::TENSOR)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| format!("attribute '{name}' holds no tensor"))
            }
        }
    }

    /// A non-negative integer list attribute as `usize`.
    pub fn usizes(&self, name: &str) -> OpResult<Option<Vec<usize>>> {
        self.ints(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x)
                            .map_err(|_| format!("attribute '{name}' has a negative value {x}"))
                    })
                    .collect()
            })
            .transpose()
    }

    /// A two-element spatial attribute (`strides`, `dilations`, `kernel_shape`), all >= 1.
    pub fn pair(&self, name: &str, default: [usize; 2]) -> OpResult<[usize; 2]> {
        Ok(self.opt_pair(name)?.unwrap_or(default))
    }

    /// [`Self::pair`] without a default: `None` when the attribute is absent.
    pub fn opt_pair(&self, name: &str) -> OpResult<Option<[usize; 2]>> {
        match self.usizes(name)? {
            None => Ok(None),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok(Some([v[0], v[1]])),
            Some(v) => Err(format!(
                "attribute '{name}' = {v:?}: only 2-D ops with positive values are supported"
            )),
        }
    }

    /// Refuses attributes this importer does not understand, so that a semantic change is
    /// never silently ignored.
    pub fn only_attrs(&self, known: &[&str]) -> OpResult<()> {
        for a in &self.proto.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(format!(
                    "attribute '{}' is not supported (opset {})",
                    a.name, self.opset
                ));
            }
        }
        Ok(())
    }
}
