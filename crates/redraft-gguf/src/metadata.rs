//! GGUF metadata: typed key-value pairs, read with typed getters that name the key on error.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type (u8 to u64).
    Uint(u64),
    /// Any signed integer type (i8 to i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced by U+FFFD).
    Str(String),
    /// An array (GGUF arrays are homogeneous).
    Array(Vec<Value>),
}

impl Value {
    /// The name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Uint(_) => "an unsigned integer",
            Self::Int(_) => "a signed integer",
            Self::Float(_) => "a float",
            Self::Bool(_) => "a boolean",
            Self::Str(_) => "a string",
            Self::Array(_) => "an array",
        }
    }
}

/// The metadata of a GGUF file, keyed by name (`general.architecture`, `llama.block_count`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub(crate) values: BTreeMap<String, Value>,
}

impl Metadata {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey { key: key.into() })
    }

    fn wrong(key: &str, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            key: key.into(),
            expected,
            found: found.kind(),
        }
    }

    /// The string `key`.
    pub fn str(&self, key: &str) -> Result<&str> {
        match self.required(key)? {
            Value::Str(s) => Ok(s),
            other => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// The non-negative integer `key` (any integer type).
    pub fn uint(&self, key: &str) -> Result<u64> {
        match self.required(key)? {
            Value::Uint(v) => Ok(*v),
            Value::Int(v) if *v >= 0 => Ok(*v as u64),
            other => Err(Self::wrong(key, "a non-negative integer", other)),
        }
    }

    /// The number `key` (integer or float).
    pub fn float(&self, key: &str) -> Result<f64> {
        match self.required(key)? {
            Value::Float(v) => Ok(*v),
            Value::Uint(v) => Ok(*v as f64),
            Value::Int(v) => Ok(*v as f64),
            other => Err(Self::wrong(key, "a number", other)),
        }
    }

    /// The boolean `key`.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.required(key)? {
            Value::Bool(v) => Ok(*v),
            other => Err(Self::wrong(key, "a boolean", other)),
        }
    }

    /// The array of strings `key`.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        match self.required(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.as_str()),
                    other => Err(Self::wrong(key, "an array of strings", other)),
                })
                .collect(),
            other => Err(Self::wrong(key, "an array of strings", other)),
        }
    }

    /// The array of numbers `key`, as f64.
    pub fn float_array(&self, key: &str) -> Result<Vec<f64>> {
        match self.required(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Float(x) => Ok(*x),
                    Value::Uint(x) => Ok(*x as f64),
                    Value::Int(x) => Ok(*x as f64),
                    other => Err(Self::wrong(key, "an array of numbers", other)),
                })
                .collect(),
            other => Err(Self::wrong(key, "an array of numbers", other)),
        }
    }

    /// The array of integers `key`, as i64.
    pub fn int_array(&self, key: &str) -> Result<Vec<i64>> {
        match self.required(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Int(x) => Ok(*x),
                    Value::Uint(x) => {
                        i64::try_from(*x).map_err(|_| Self::wrong(key, "an array of integers", v))
                    }
                    other => Err(Self::wrong(key, "an array of integers", other)),
                })
                .collect(),
            other => Err(Self::wrong(key, "an array of integers", other)),
        }
    }
}
