//! UpSampling2D (Keras 3): an NHWC image scaled up by whole factors, `nearest` (each
//! pixel repeated) or `bilinear` (half-pixel centres, edges clamped: what Keras' JAX and
//! TensorFlow backends compute). The backward pass gathers, per input pixel, the output
//! pixels that sampled it.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Keras' `interpolation=`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Interpolation {
    /// Each input pixel repeated over its `scale_h × scale_w` block.
    #[default]
    Nearest,
    /// Bilinear interpolation between the four nearest input pixels (half-pixel centres).
    Bilinear,
}

/// The shapes of one upsampling: output `in_h·scale_h × in_w·scale_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpSampling2dShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Channels (the same in and out).
    pub c: usize,
    /// Vertical upsampling factor.
    pub scale_h: usize,
    /// Horizontal upsampling factor.
    pub scale_w: usize,
    /// How output pixels sample the input.
    pub interpolation: Interpolation,
}

impl UpSampling2dShape {
    /// Output height, `in_h · scale_h`.
    pub fn out_h(&self) -> usize {
        self.in_h * self.scale_h
    }
    /// Output width, `in_w · scale_w`.
    pub fn out_w(&self) -> usize {
        self.in_w * self.scale_w
    }
    /// Elements of the input, `[batch, in_h, in_w, c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.c
    }
    /// Elements of the output, `[batch, out_h, out_w, c]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.c
    }

    fn params(&self, n: usize, accumulate: bool) -> Result<Params> {
        let dims = [
            self.batch,
            self.in_h,
            self.in_w,
            self.c,
            self.scale_h,
            self.scale_w,
        ];
        ensure!(
            !dims.contains(&0),
            "up-sampling: empty shape or zero factor {self:?}"
        );
        Ok(Params {
            n: u32_of(n, "up-sampling elements")?,
            in_h: u32_of(self.in_h, "height")?,
            in_w: u32_of(self.in_w, "width")?,
            c: u32_of(self.c, "channels")?,
            scale_h: u32_of(self.scale_h, "size")?,
            scale_w: u32_of(self.scale_w, "size")?,
            bilinear: u32::from(self.interpolation == Interpolation::Bilinear),
            accumulate: u32::from(accumulate),
        })
    }

    /// (i0, i1, weight of i1) of output index `o` along an axis of `len` inputs scaled
    /// by `scale`, in f32 as the shader computes it.
    fn source(&self, o: usize, scale: usize, len: usize) -> (usize, usize, f32) {
        if self.interpolation == Interpolation::Nearest {
            return (o / scale, o / scale, 0.0);
        }
        let s = ((o as f32 + 0.5) / scale as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(len - 1);
        (i0, (i0 + 1).min(len - 1), s - i0 as f32)
    }

    /// Per output index along an axis: its (input index, weight) pairs.
    fn taps(&self, o: usize, scale: usize, len: usize) -> [(usize, f64); 2] {
        let (i0, i1, f) = self.source(o, scale, len);
        [(i0, f64::from(1.0 - f)), (i1, f64::from(f))]
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    scale_h: u32,
    scale_w: u32,
    bilinear: u32,
    accumulate: u32,
}

/// `out = upsample(inp)`.
pub fn upsampling2d_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    s: &UpSampling2dShape,
) -> Result<Dispatch> {
    inp.expect_len(s.input_len(), "up-sampling input")?;
    out.expect_len(s.output_len(), "up-sampling output")?;
    let params = s.params(s.output_len(), false)?;
    Dispatch::new(
        gpu,
        Kernel::UpSampling2dForward,
        &params,
        &[&inp.buffer, &out.buffer],
        groups_for(s.output_len(), 256),
    )
}

/// `dinp (+)= ∂L/∂inp` from `dout`.
pub fn upsampling2d_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    s: &UpSampling2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    dinp.expect_len(s.input_len(), "up-sampling dinput")?;
    dout.expect_len(s.output_len(), "up-sampling doutput")?;
    let params = s.params(s.input_len(), accumulate)?;
    Dispatch::new(
        gpu,
        Kernel::UpSampling2dBackward,
        &params,
        &[&dout.buffer, &dinp.buffer],
        groups_for(s.input_len(), 256),
    )
}

/// Calls `f(output index, input index, weight)` for every output element's taps.
fn for_each_tap(s: &UpSampling2dShape, mut f: impl FnMut(usize, usize, f64)) {
    let (oh, ow, c) = (s.out_h(), s.out_w(), s.c);
    for n in 0..s.batch {
        for y in 0..oh {
            for x in 0..ow {
                for (i, wy) in s.taps(y, s.scale_h, s.in_h) {
                    for (j, wx) in s.taps(x, s.scale_w, s.in_w) {
                        let o = ((n * oh + y) * ow + x) * c;
                        let k = ((n * s.in_h + i) * s.in_w + j) * c;
                        for ch in 0..c {
                            f(o + ch, k + ch, wy * wx);
                        }
                    }
                }
            }
        }
    }
}

/// CPU reference of the forward pass.
pub fn upsampling2d_forward_cpu(out: &mut [f32], inp: &[f32], s: &UpSampling2dShape) {
    let mut acc = vec![0f64; out.len()];
    for_each_tap(s, |o, i, w| acc[o] += w * f64::from(inp[i]));
    out.iter_mut().zip(&acc).for_each(|(d, &v)| *d = v as f32);
}

/// CPU reference of the backward pass, accumulating into `dinp`.
pub fn upsampling2d_backward_cpu(dinp: &mut [f32], dout: &[f32], s: &UpSampling2dShape) {
    let mut acc = vec![0f64; dinp.len()];
    for_each_tap(s, |o, i, w| acc[i] += w * f64::from(dout[o]));
    dinp.iter_mut().zip(&acc).for_each(|(d, &v)| *d += v as f32);
}
