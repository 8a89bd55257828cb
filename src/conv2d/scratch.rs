//! Per-thread reusable workspace. Allocating the band, panel and tile buffers afresh in
//! every task costs page faults and, on worker threads, the allocator handing memory back
//! to the OS (with TLB shootdowns across cores) after each call; each thread keeps a few
//! buffers instead, bounded in count and size.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::error::{ConvError, Result};

/// Buffers one thread keeps between calls, and the largest one it keeps.
const KEEP_BUFFERS: usize = 4;
const KEEP_BYTES: usize = 4 << 20;

thread_local! {
    static CACHE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A `Vec<T>` borrowed from this thread's cache; it goes back there when dropped.
pub struct Scratch<T: 'static> {
    buf: Vec<T>,
}

impl<T: Copy + Default + 'static> Scratch<T> {
    /// An empty vector with room for `cap` elements, or `ConvError::Memory` naming `what`.
    pub fn with_capacity(cap: usize, what: &str) -> Result<Self> {
        let mut buf = take_cached::<T>(cap).unwrap_or_default();
        buf.clear();
        buf.try_reserve_exact(cap).map_err(|_| {
            ConvError::Memory(format!(
                "cannot allocate {cap} elements ({} bytes) for the {what}",
                cap.saturating_mul(std::mem::size_of::<T>())
            ))
        })?;
        Ok(Scratch { buf })
    }

    /// `len` zeros (`T::default()`).
    pub fn zeroed(len: usize, what: &str) -> Result<Self> {
        let mut s = Self::with_capacity(len, what)?;
        s.buf.resize(len, T::default());
        Ok(s)
    }

    /// `len` elements holding whatever an earlier user of the buffer left there (zeros
    /// where it grows): for a buffer written in full before it is read, which then skips
    /// the zeroing (for `dw`'s im2col, 256 small tasks, that memset took 6 % of the call).
    pub fn overwritable(len: usize, what: &str) -> Result<Self> {
        let mut buf = take_cached::<T>(len).unwrap_or_default();
        buf.truncate(len);
        buf.try_reserve_exact(len - buf.len()).map_err(|_| {
            ConvError::Memory(format!(
                "cannot allocate {len} elements ({} bytes) for the {what}",
                len.saturating_mul(std::mem::size_of::<T>())
            ))
        })?;
        buf.resize(len, T::default());
        Ok(Scratch { buf })
    }

    /// Appends `k` zeros (`T::default()`): the padding of a band written front to back.
    pub fn extend_zeros(&mut self, k: usize) {
        self.buf.resize(self.buf.len() + k, T::default());
    }
}

/// The cached `Vec<T>` that best fits `cap`: the smallest with enough room, else the
/// largest (it will grow).
fn take_cached<T: 'static>(cap: usize) -> Option<Vec<T>> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let caps = cache
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.downcast_ref::<Vec<T>>().map(|v| (i, v.capacity())));
            let fit = caps
                .clone()
                .filter(|&(_, c)| c >= cap)
                .min_by_key(|&(_, c)| c)
                .or_else(|| caps.max_by_key(|&(_, c)| c))
                .map(|(i, _)| i)?;
            cache.swap_remove(fit).downcast::<Vec<T>>().ok().map(|b| *b)
        })
        .ok()
        .flatten()
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 || buf.capacity() * std::mem::size_of::<T>() > KEEP_BYTES {
            return;
        }
        // During thread teardown the cache may be gone: then the buffer is simply freed.
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                if cache.len() < KEEP_BUFFERS {
                    cache.push(Box::new(buf));
                }
            }
        });
    }
}

impl<T> Deref for Scratch<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.buf
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_zeroed_and_typed() {
        let ptr = {
            let mut a = Scratch::<f32>::zeroed(1000, "test").unwrap();
            a[3] = 7.0;
            a.as_ptr() as usize
        };
        let b = Scratch::<f32>::zeroed(900, "test").unwrap();
        assert_eq!(b.as_ptr() as usize, ptr, "the cached buffer is reused");
        assert!(b.iter().all(|&v| v == 0.0) && b.len() == 900);
        // A request for another type never receives it.
        let c = Scratch::<f64>::zeroed(10, "test").unwrap();
        assert_ne!(c.as_ptr() as usize, ptr);
        let d = Scratch::<f32>::with_capacity(5000, "test").unwrap();
        assert!(d.is_empty() && d.capacity() >= 5000);
        drop((b, d));
        let e = Scratch::<f32>::overwritable(1200, "test").unwrap();
        assert_eq!(e.len(), 1200);
    }
}
