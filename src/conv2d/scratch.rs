//! Per-thread reusable workspace. Allocating the band, panel and tile buffers afresh in
//! every task costs page faults and, on worker threads, the allocator handing memory back
//! to the OS (with TLB shootdowns across cores) after each call; each thread keeps a few
//! buffers instead, bounded in count and size.
//!
//! Every buffer starts on a cache line, so that the kernels' vector loads and stores of
//! whole lines (packed weights, output tiles and rows) do not each straddle two: on an
//! AVX-512 Xeon, packing `deep`'s weights into a buffer that was only 16-byte aligned, as
//! the allocator returns them, took 10 % of its call, into a line-aligned one 6 %.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::error::Result;
use crate::workspace::{line_elems, memory_error, CACHE_LINE};

/// Buffers one thread keeps between calls, and the largest one it keeps.
const KEEP_BUFFERS: usize = 4;
const KEEP_BYTES: usize = 4 << 20;

thread_local! {
    static CACHE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A `Vec<T>` borrowed from this thread's cache; it goes back there when dropped. Its
/// elements are `buf[start..]`, the first of them on a cache line.
pub struct Scratch<T: 'static> {
    buf: Vec<T>,
    start: usize,
}

impl<T: Copy + Default + 'static> Scratch<T> {
    /// An empty buffer with room for `cap` elements, or `ConvError::Memory` naming `what`.
    pub fn with_capacity(cap: usize, what: &str) -> Result<Self> {
        Self::holding(cap, 0, what)
    }

    /// `len` zeros (`T::default()`).
    pub fn zeroed(len: usize, what: &str) -> Result<Self> {
        let mut s = Self::with_capacity(len, what)?;
        s.extend_zeros(len);
        Ok(s)
    }

    /// `len` elements holding whatever an earlier user of the buffer left there (zeros
    /// where it grows): for a buffer written in full before it is read, which then skips
    /// the zeroing (for `dw`'s im2col, 256 small tasks, that memset took 6 % of the call).
    pub fn overwritable(len: usize, what: &str) -> Result<Self> {
        Self::holding(len, len, what)
    }

    /// Room for `cap` elements, of which the first `len` keep what the cached buffer
    /// held (as far as it reaches), from the first cache line of the allocation on.
    fn holding(cap: usize, len: usize, what: &str) -> Result<Self> {
        let pad = line_elems::<T>();
        let mut buf = take_cached::<T>(cap.saturating_add(pad)).unwrap_or_default();
        buf.truncate(len);
        let room = cap
            .checked_add(pad)
            .ok_or_else(|| memory_error::<T>(cap, what))?;
        buf.try_reserve_exact(room.saturating_sub(buf.len()))
            .map_err(|_| memory_error::<T>(cap, what))?;
        // Within the reserved room the allocation does not move; a type whose size
        // does not divide a line keeps its natural alignment.
        let start = match buf.as_ptr().align_offset(CACHE_LINE) {
            off if off < pad => off,
            _ => 0,
        };
        // The kept elements move by `start`, which only `overwritable` (whatever the
        // buffer held) sees.
        buf.resize(start + len, T::default());
        Ok(Scratch { buf, start })
    }

    /// Appends `k` zeros (`T::default()`): the padding of a band written front to back.
    pub fn extend_zeros(&mut self, k: usize) {
        self.buf.resize(self.buf.len() + k, T::default());
    }

    /// Removes every element, keeping the room.
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
    }

    /// Appends `src`: the copied input of a band.
    pub fn extend_from_slice(&mut self, src: &[T]) {
        self.buf.extend_from_slice(src);
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
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.start..]
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..]
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
        let mut d = Scratch::<f32>::with_capacity(5000, "test").unwrap();
        assert!(d.is_empty());
        d.extend_zeros(4000);
        d.extend_from_slice(&[1.0; 1000]);
        assert_eq!(d.len(), 5000);
        assert_eq!(d[4000], 1.0);
        drop((b, d));
        let e = Scratch::<f32>::overwritable(1200, "test").unwrap();
        assert_eq!(e.len(), 1200);
        // Whatever buffer they come from, the elements start on a cache line.
        let f = Scratch::<f64>::zeroed(33, "test").unwrap();
        let g = Scratch::<f32>::overwritable(7, "test").unwrap();
        for p in [
            e.as_ptr() as usize,
            f.as_ptr() as usize,
            g.as_ptr() as usize,
        ] {
            assert_eq!(p % CACHE_LINE, 0);
        }
    }
}
