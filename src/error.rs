//! Errors of the Rust core. Each variant maps to one Python exception class at the
//! binding boundary (`bindings::to_pyerr`), so kernels never touch pyo3 types.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvError {
    /// Bad shape, size, stride, padding, mode, groups or algorithm: `ValueError`.
    Value(String),
    /// Unsupported dtype or argument type: `TypeError`.
    Type(String),
    /// A result or workspace that cannot be allocated: `MemoryError`.
    Memory(String),
}

pub type Result<T> = std::result::Result<T, ConvError>;

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvError::Value(m) | ConvError::Type(m) | ConvError::Memory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConvError {}

/// Shorthand for the common `Err(ConvError::Value(..))`.
pub fn value_error<T>(msg: impl Into<String>) -> Result<T> {
    Err(ConvError::Value(msg.into()))
}
