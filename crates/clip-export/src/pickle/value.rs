//! The values a torch.save pickle builds, and the callables it may name.

use std::sync::Arc;

use crate::torch_zip::TorchError;

/// The element types of torch's typed storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageDtype {
    Float,
    Half,
    BFloat16,
    Double,
    Long,
    Int,
    Short,
    Char,
    Byte,
    Bool,
}

impl StorageDtype {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "DoubleStorage" => Self::Double,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            Self::Double | Self::Long => 8,
            Self::Float | Self::Int => 4,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Char | Self::Byte | Self::Bool => 1,
        }
    }

    /// torch's name for the dtype (`torch.float32` and so on).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Float => "float32",
            Self::Half => "float16",
            Self::BFloat16 => "bfloat16",
            Self::Double => "float64",
            Self::Long => "int64",
            Self::Int => "int32",
            Self::Short => "int16",
            Self::Char => "int8",
            Self::Byte => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// The callables a torch.save pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`: a
    /// tensor with Python attributes (the state, which is dropped).
    RebuildFromTypeV2,
    /// `torch.Tensor` and `torch.nn.parameter.Parameter`, only as
    /// `_rebuild_from_type_v2`'s type.
    TensorType,
    Storage(StorageDtype),
}

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Result<Self, TorchError> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
            ("torch", class) => match StorageDtype::from_class(class) {
                Some(dtype) => Global::Storage(dtype),
                None => return Err(forbidden(module, name)),
            },
            _ => return Err(forbidden(module, name)),
        })
    }
}

fn forbidden(module: &str, name: &str) -> TorchError {
    TorchError::ForbiddenGlobal {
        name: format!("{module}.{name}"),
    }
}

/// A storage record as the persistent id names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub dtype: StorageDtype,
    /// The record's name under `<archive>/data/`.
    pub key: Arc<str>,
    /// Elements of `dtype`.
    pub numel: u64,
}

/// `_rebuild_tensor_v2`'s arguments: a strided view of a storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Global(Global),
    /// An index into [`Pickle::heap`].
    Object(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Items in insertion order; a repeated key's last item wins, as in Python.
    Dict(Vec<(Value, Value)>),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Value {
    /// What the value is, for error messages.
    pub(crate) fn kind<'v>(&self, heap: &'v [Object]) -> &'v str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Global(_) => "a class or function",
            Value::Object(i) => match heap.get(*i) {
                Some(Object::Tuple(_)) => "a tuple",
                Some(Object::List(_)) => "a list",
                Some(Object::Dict(_)) => "a dict",
                Some(Object::Storage(_)) => "a storage",
                Some(Object::Tensor(_)) => "a tensor",
                None => "a dangling reference",
            },
        }
    }
}

/// A loaded pickle: the value STOP returned and the heap it refers into.
#[derive(Debug)]
pub(crate) struct Pickle {
    pub heap: Vec<Object>,
    pub root: Value,
}

impl Pickle {
    pub(crate) fn object(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Object(i) => self.heap.get(*i),
            _ => None,
        }
    }
}
