//! Fallible allocation: a workspace or result that cannot be allocated becomes a
//! `MemoryError`, never an abort.

use crate::error::{ConvError, Result};

/// Bytes per cache line on the CPUs the crate targets (x86-64, aarch64).
pub const CACHE_LINE: usize = 64;

/// Elements of `T` per cache line, at least one.
pub fn line_elems<T>() -> usize {
    elems_per_line(std::mem::size_of::<T>())
}

/// Elements of `elem` bytes per cache line, at least one.
pub fn elems_per_line(elem: usize) -> usize {
    (CACHE_LINE / elem.max(1)).max(1)
}

/// The `MemoryError` for `len` elements of `T` that cannot be allocated for `what`.
pub fn memory_error<T>(len: usize, what: &str) -> ConvError {
    ConvError::Memory(format!(
        "cannot allocate {len} elements ({} bytes) for the {what}",
        len.saturating_mul(std::mem::size_of::<T>())
    ))
}

/// A zero-filled vector of `len` elements, or `ConvError::Memory`.
pub fn try_zeroed<T: Copy + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = try_reserved(len, what)?;
    v.resize(len, T::default());
    Ok(v)
}

/// An empty vector with room for `len` elements, or a `MemoryError` naming `what`:
/// for scratch that is filled only as far as it is used.
pub fn try_reserved<T>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| memory_error::<T>(len, what))?;
    Ok(v)
}

/// `a * b * ...` or a `ValueError` naming `what` when the product overflows.
pub fn checked_product(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 16)
        .ok_or_else(|| ConvError::Value(format!("{what} is too large: shape {dims:?}")))
}
