//! `im2col` / `col2im` as public building blocks, with the semantics of
//! `torch.nn.functional.unfold` / `fold`: rows ordered (channel, kernel row, kernel column),
//! columns ordered (output row, output column).

use std::ops::Add;

use crate::error::Result;
use crate::geometry::Window;
use crate::threading::{for_each_task, threads_for_work, SharedOut};

/// Source index in an `h × w` plane for output position (p, q) and tap (r, s), or `None`
/// inside the zero padding.
#[inline]
fn source(
    win: &Window,
    h: usize,
    w: usize,
    p: usize,
    q: usize,
    r: usize,
    s: usize,
) -> Option<usize> {
    let row = (p * win.sh + r * win.dh)
        .checked_sub(win.pad[0])
        .filter(|&v| v < h)?;
    let col = (q * win.sw + s * win.dw)
        .checked_sub(win.pad[2])
        .filter(|&v| v < w)?;
    Some(row * w + col)
}

/// `x` is `(planes, h, w)` (planes = N·C); `cols` is `(N, C·kh·kw, L)`, i.e. per plane
/// `kh·kw` consecutive rows of `L = h_out·w_out`.
pub fn im2col<T: Copy + Default + Send + Sync>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    win: &Window,
    cols: &mut [T],
) -> Result<()> {
    let l = win.h_out * win.w_out;
    let per_plane = win.kh * win.kw * l;
    assert_eq!(x.len(), planes * h * w);
    assert_eq!(cols.len(), planes * per_plane);
    let out = SharedOut::new(cols);
    let threads = threads_for_work((planes * per_plane) as f64);
    for_each_task(planes, threads, |t| {
        let plane = &x[t * h * w..(t + 1) * h * w];
        // SAFETY: task t alone writes the rows of plane t.
        let dst = unsafe { out.slice_mut(t * per_plane, per_plane) };
        for r in 0..win.kh {
            for s in 0..win.kw {
                let row = &mut dst[(r * win.kw + s) * l..(r * win.kw + s + 1) * l];
                for (m, d) in row.iter_mut().enumerate() {
                    let (p, q) = (m / win.w_out, m % win.w_out);
                    *d = source(win, h, w, p, q, r, s).map_or(T::default(), |i| plane[i]);
                }
            }
        }
        Ok(())
    })
}

/// The adjoint of [`im2col`]: sums every column entry back into its source pixel.
pub fn col2im<T: Copy + Default + Send + Sync + Add<Output = T>>(
    cols: &[T],
    planes: usize,
    h: usize,
    w: usize,
    win: &Window,
    x: &mut [T],
) -> Result<()> {
    let l = win.h_out * win.w_out;
    let per_plane = win.kh * win.kw * l;
    assert_eq!(x.len(), planes * h * w);
    assert_eq!(cols.len(), planes * per_plane);
    let out = SharedOut::new(x);
    let threads = threads_for_work((planes * per_plane) as f64);
    for_each_task(planes, threads, |t| {
        let src = &cols[t * per_plane..(t + 1) * per_plane];
        // SAFETY: task t alone writes plane t.
        let plane = unsafe { out.slice_mut(t * h * w, h * w) };
        plane.fill(T::default());
        // Same (tap, position) order as torch's col2im, so sums round identically.
        for r in 0..win.kh {
            for s in 0..win.kw {
                let row = &src[(r * win.kw + s) * l..(r * win.kw + s + 1) * l];
                for (m, &v) in row.iter().enumerate() {
                    let (p, q) = (m / win.w_out, m % win.w_out);
                    if let Some(i) = source(win, h, w, p, q, r, s) {
                        plane[i] = plane[i] + v;
                    }
                }
            }
        }
        Ok(())
    })
}
