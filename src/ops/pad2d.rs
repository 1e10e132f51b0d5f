//! A shifted window of an NHWC image: ZeroPadding2D and Cropping2D, each the other's
//! gradient. `out[n, y, x, c] = inp[n, y − top, x − left, c]`, zero outside the input.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// The shapes of one shifted window: `top`/`left` ≥ 0 pad, ≤ 0 crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pad2dShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Channels (the same in and out).
    pub c: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Rows added above the input (negative: rows cropped from its top).
    pub top: isize,
    /// Columns added left of the input (negative: columns cropped from its left).
    pub left: isize,
}

impl Pad2dShape {
    /// ZeroPadding2D of `in_hwc` by ((top, bottom), (left, right)).
    pub fn padding(batch: usize, in_hwc: [usize; 3], pad: [[usize; 2]; 2]) -> Pad2dShape {
        Pad2dShape {
            batch,
            in_h: in_hwc[0],
            in_w: in_hwc[1],
            c: in_hwc[2],
            out_h: in_hwc[0] + pad[0][0] + pad[0][1],
            out_w: in_hwc[1] + pad[1][0] + pad[1][1],
            top: pad[0][0] as isize,
            left: pad[1][0] as isize,
        }
    }

    /// Cropping2D of `in_hwc` by ((top, bottom), (left, right)); the crop must leave rows
    /// and columns (checked by the layer).
    pub fn cropping(batch: usize, in_hwc: [usize; 3], crop: [[usize; 2]; 2]) -> Pad2dShape {
        Pad2dShape {
            batch,
            in_h: in_hwc[0],
            in_w: in_hwc[1],
            c: in_hwc[2],
            out_h: in_hwc[0].saturating_sub(crop[0][0] + crop[0][1]),
            out_w: in_hwc[1].saturating_sub(crop[1][0] + crop[1][1]),
            top: -(crop[0][0] as isize),
            left: -(crop[1][0] as isize),
        }
    }

    /// The gradient's window: output and input swapped, the shift undone.
    pub fn reversed(&self) -> Pad2dShape {
        Pad2dShape {
            in_h: self.out_h,
            in_w: self.out_w,
            out_h: self.in_h,
            out_w: self.in_w,
            top: -self.top,
            left: -self.left,
            ..*self
        }
    }

    /// Elements of the input, `[batch, in_h, in_w, c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.c
    }
    /// Elements of the output, `[batch, out_h, out_w, c]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.c
    }

    /// The source pixel (y, x) of output pixel (oy, ox), if inside the input.
    fn source(&self, oy: usize, ox: usize) -> Option<(usize, usize)> {
        let y = usize::try_from(oy as isize - self.top).ok()?;
        let x = usize::try_from(ox as isize - self.left).ok()?;
        (y < self.in_h && x < self.in_w).then_some((y, x))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    top: i32,
    left: i32,
    accumulate: u32,
    _pad: [u32; 3],
}

/// `out (+)= window(inp)`.
pub fn pad2d(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    s: &Pad2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    ensure!(
        s.batch > 0 && s.c > 0 && s.out_h > 0 && s.out_w > 0 && s.in_h > 0 && s.in_w > 0,
        "pad2d: empty image {s:?}"
    );
    inp.expect_len(s.input_len(), "pad2d input")?;
    out.expect_len(s.output_len(), "pad2d output")?;
    let shift = |v: isize| -> Result<i32> {
        i32::try_from(v).map_err(|_| anyhow::anyhow!("pad2d: a shift of {v} is too large"))
    };
    let params = Params {
        n: u32_of(s.output_len(), "pad2d output elements")?,
        in_h: u32_of(s.in_h, "height")?,
        in_w: u32_of(s.in_w, "width")?,
        c: u32_of(s.c, "channels")?,
        out_h: u32_of(s.out_h, "height")?,
        out_w: u32_of(s.out_w, "width")?,
        top: shift(s.top)?,
        left: shift(s.left)?,
        accumulate: u32::from(accumulate),
        _pad: [0; 3],
    };
    Dispatch::new(
        gpu,
        Kernel::Pad2d,
        &params,
        &[&inp.buffer, &out.buffer],
        groups_for(s.output_len(), 256),
    )
}

/// CPU reference: `out += window(inp)` (the references accumulate).
pub fn pad2d_cpu(out: &mut [f32], inp: &[f32], s: &Pad2dShape) {
    for n in 0..s.batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                let Some((y, x)) = s.source(oy, ox) else {
                    continue;
                };
                let o = ((n * s.out_h + oy) * s.out_w + ox) * s.c;
                let i = ((n * s.in_h + y) * s.in_w + x) * s.c;
                for c in 0..s.c {
                    out[o + c] += inp[i + c];
                }
            }
        }
    }
}
