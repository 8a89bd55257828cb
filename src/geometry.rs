//! Shapes of a conv2d / im2col problem: padding rules, output size, validation.
//! Everything here is checked arithmetic on user-given numbers.

use crate::error::{value_error, Result};

/// Padding as the user gave it, after the Python layer normalised its form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `(top, bottom, left, right)`.
    Explicit([i64; 4]),
    /// TensorFlow/ONNX SAME_UPPER: `H_out = ceil(H / stride)`, odd padding at the end.
    Same,
    Valid,
}

/// A validated conv2d problem. All fields are in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub groups: usize,
    pub h_out: usize,
    pub w_out: usize,
}

/// Largest accepted stride, dilation, padding or kernel extent: keeps every product of
/// two of them far from overflow.
const MAX_EXTENT: i64 = 1 << 31;

fn in_range(v: i64, min: i64, name: &str) -> Result<usize> {
    if v < min {
        value_error(format!("{name} must be >= {min}, got {v}"))
    } else if v > MAX_EXTENT {
        value_error(format!("{name} must be at most {MAX_EXTENT}, got {v}"))
    } else {
        Ok(v as usize)
    }
}

fn positive(v: i64, name: &str) -> Result<usize> {
    in_range(v, 1, name)
}

fn non_negative(v: i64, name: &str) -> Result<usize> {
    in_range(v, 0, name)
}

/// Output length along one axis, or a `ValueError` naming the kernel when it does not fit.
fn out_len(
    len: usize,
    pad: usize,
    k_eff: usize,
    stride: usize,
    axis: &str,
    kernel_name: &str,
) -> Result<usize> {
    let padded = len + pad;
    if padded < k_eff {
        return value_error(format!(
            "the {kernel_name} {axis} ({k_eff} after dilation) is larger than the padded \
             input {axis} ({padded})"
        ));
    }
    Ok((padded - k_eff) / stride + 1)
}

/// Total and split padding for "same" along one axis.
fn same_padding(len: usize, k_eff: usize, stride: usize) -> (usize, usize) {
    let out = len.div_ceil(stride);
    let needed = (out.saturating_sub(1) * stride + k_eff).saturating_sub(len);
    (needed / 2, needed - needed / 2)
}

/// Kernel geometry shared by conv2d and im2col/col2im.
#[derive(Clone, Copy, Debug)]
pub struct WindowArgs {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub dilation: [i64; 2],
    pub padding: Padding,
}

/// Resolved window: sizes, strides, dilations, paddings and output extent for an
/// `h × w` plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pad: [usize; 4],
    pub h_out: usize,
    pub w_out: usize,
}

impl WindowArgs {
    pub fn resolve(&self, h: usize, w: usize, kernel_name: &str) -> Result<Window> {
        let kh = positive(self.kernel[0], &format!("{kernel_name} height"))?;
        let kw = positive(self.kernel[1], &format!("{kernel_name} width"))?;
        let sh = positive(self.stride[0], "stride")?;
        let sw = positive(self.stride[1], "stride")?;
        let dh = positive(self.dilation[0], "dilation")?;
        let dw = positive(self.dilation[1], "dilation")?;
        let kh_eff = dh * (kh - 1) + 1;
        let kw_eff = dw * (kw - 1) + 1;
        let pad = match self.padding {
            Padding::Explicit(p) => [
                non_negative(p[0], "padding")?,
                non_negative(p[1], "padding")?,
                non_negative(p[2], "padding")?,
                non_negative(p[3], "padding")?,
            ],
            Padding::Valid => [0; 4],
            Padding::Same => {
                let (t, b) = same_padding(h, kh_eff, sh);
                let (l, r) = same_padding(w, kw_eff, sw);
                [t, b, l, r]
            }
        };
        let (h_out, w_out) = if self.padding == Padding::Same {
            // ceil(len / stride) by definition. Equal to the formula below whenever len > 0;
            // an empty axis has no rows to keep (the formula would give one row of padding).
            (h.div_ceil(sh), w.div_ceil(sw))
        } else {
            (
                out_len(h, pad[0] + pad[1], kh_eff, sh, "height", kernel_name)?,
                out_len(w, pad[2] + pad[3], kw_eff, sw, "width", kernel_name)?,
            )
        };
        Ok(Window {
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pad,
            h_out,
            w_out,
        })
    }
}

impl ConvGeometry {
    /// Validate a conv2d problem: `input` is `(n, c_in, h, w)`, `weight` is
    /// `(c_out, c_in / groups, kh, kw)`.
    pub fn new(
        input: [usize; 4],
        weight: [usize; 4],
        stride: [i64; 2],
        padding: Padding,
        dilation: [i64; 2],
        groups: i64,
    ) -> Result<ConvGeometry> {
        let [n, c_in, h, w] = input;
        let [c_out, c_per_group, kh, kw] = weight;
        let groups = positive(groups, "groups")?;
        if c_in % groups != 0 || c_out % groups != 0 {
            return value_error(format!(
                "groups ({groups}) must divide both the input channels ({c_in}) and the \
                 output channels ({c_out})"
            ));
        }
        if c_per_group != c_in / groups {
            return value_error(format!(
                "weight must have shape (C_out, C_in // groups, kH, kW) = ({c_out}, {}, kH, kW); \
                 got {weight:?}",
                c_in / groups
            ));
        }
        if kh == 0 || kw == 0 {
            return value_error(format!(
                "weight kernel size must be at least 1x1; got {kh}x{kw}"
            ));
        }
        let win = WindowArgs {
            kernel: [kh as i64, kw as i64],
            stride,
            dilation,
            padding,
        }
        .resolve(h, w, "weight kernel")?;
        Ok(ConvGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            sh: win.sh,
            sw: win.sw,
            dh: win.dh,
            dw: win.dw,
            pad_top: win.pad[0],
            pad_bottom: win.pad[1],
            pad_left: win.pad[2],
            pad_right: win.pad[3],
            groups,
            h_out: win.h_out,
            w_out: win.w_out,
        })
    }

    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.h_out, self.w_out]
    }

    /// Multiply-adds × 2 of the whole problem.
    pub fn flops(&self) -> f64 {
        2.0 * self.n as f64
            * self.c_out as f64
            * self.c_in_per_group() as f64
            * (self.kh * self.kw) as f64
            * (self.h_out * self.w_out) as f64
    }

    pub fn is_depthwise(&self) -> bool {
        self.groups == self.c_in && self.groups == self.c_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow_rule() {
        // H=5, k=3, s=2: out 3, total pad max((3-1)*2+3-5, 0) = 2 -> (1, 1)
        assert_eq!(same_padding(5, 3, 2), (1, 1));
        // H=4, k=4, s=1: total 3 -> (1, 2): odd element at the end
        assert_eq!(same_padding(4, 4, 1), (1, 2));
        // H=6, k=1, s=4: out 2, needed (1*4+1-6) < 0 -> 0
        assert_eq!(same_padding(6, 1, 4), (0, 0));
    }

    #[test]
    fn same_keeps_empty_axes_empty() {
        let g = ConvGeometry::new([1, 2, 0, 5], [3, 2, 3, 3], [1, 2], Padding::Same, [1, 1], 1)
            .unwrap();
        assert_eq!((g.h_out, g.w_out), (0, 3));
    }

    #[test]
    fn output_size_and_errors() {
        let g = ConvGeometry::new(
            [1, 4, 7, 9],
            [6, 2, 3, 3],
            [2, 1],
            Padding::Explicit([1, 1, 0, 2]),
            [1, 2],
            2,
        )
        .unwrap();
        assert_eq!((g.h_out, g.w_out), ((7 + 2 - 3) / 2 + 1, 9 + 2 - 5 + 1));
        assert!(ConvGeometry::new(
            [1, 4, 2, 2],
            [1, 4, 3, 3],
            [1, 1],
            Padding::Valid,
            [1, 1],
            1
        )
        .is_err());
        assert!(ConvGeometry::new(
            [1, 4, 5, 5],
            [1, 4, 3, 3],
            [0, 1],
            Padding::Valid,
            [1, 1],
            1
        )
        .is_err());
        assert!(ConvGeometry::new(
            [1, 4, 5, 5],
            [3, 2, 3, 3],
            [1, 1],
            Padding::Valid,
            [1, 1],
            2
        )
        .is_err());
    }
}
