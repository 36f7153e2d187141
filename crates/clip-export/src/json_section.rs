//! Typed reads from one object of a JSON config, with errors that name the
//! object and the key.

use serde_json::Value;

use crate::error::{ExportError, Result};

/// A JSON object with its path, for error messages.
pub(crate) struct Section<'a> {
    pub name: String,
    value: &'a Value,
}

impl<'a> Section<'a> {
    pub fn top(value: &'a Value) -> Self {
        Section {
            name: "config".into(),
            value,
        }
    }

    pub fn new(parent: &'a Value, key: &str) -> Result<Self> {
        match parent.get(key) {
            Some(value @ Value::Object(_)) => Ok(Section {
                name: key.into(),
                value,
            }),
            Some(other) => Err(ExportError::Config(format!(
                "{key} should be an object, found {other}"
            ))),
            None => Err(ExportError::Config(format!("{key} is missing"))),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key)
    }

    /// The value, unless absent or null.
    pub fn present(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn require(&self, key: &str) -> Result<&'a Value> {
        self.present(key)
            .ok_or_else(|| ExportError::Config(format!("{}.{key} is missing", self.name)))
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        self.present(key)
            .map_or(Ok(default), |v| self.as_usize(key, v))
    }

    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64> {
        self.present(key)
            .map_or(Ok(default), |v| self.as_i64(key, v))
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        self.present(key)
            .map_or(Ok(default), |v| self.as_f64(key, v))
    }

    pub fn str_or(&self, key: &str, default: &str) -> Result<String> {
        self.present(key)
            .map_or(Ok(default.to_string()), |v| self.as_string(key, v))
    }

    /// A required non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.as_usize(key, self.require(key)?)
    }

    pub fn i64(&self, key: &str) -> Result<i64> {
        self.as_i64(key, self.require(key)?)
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.as_f64(key, self.require(key)?)
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.as_string(key, self.require(key)?)
    }

    fn as_usize(&self, key: &str, v: &Value) -> Result<usize> {
        v.as_u64().map(|n| n as usize).ok_or_else(|| {
            ExportError::Config(format!(
                "{}.{key} should be a non-negative integer, found {v}",
                self.name
            ))
        })
    }

    fn as_i64(&self, key: &str, v: &Value) -> Result<i64> {
        v.as_i64().ok_or_else(|| {
            ExportError::Config(format!(
                "{}.{key} should be an integer, found {v}",
                self.name
            ))
        })
    }

    fn as_f64(&self, key: &str, v: &Value) -> Result<f64> {
        v.as_f64().ok_or_else(|| {
            ExportError::Config(format!("{}.{key} should be a number, found {v}", self.name))
        })
    }

    fn as_string(&self, key: &str, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ExportError::Config(format!(
                "{}.{key} should be a string, found {v}",
                self.name
            ))),
        }
    }
}
