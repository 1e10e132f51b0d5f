//! Max and average pooling, NHWC, Keras padding. Max pooling records the flat input index
//! of each maximum; both backward passes gather (each input element visits the windows
//! that contain it), so no atomics are needed.

use super::{Padding, groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Shapes of one pooling layer; owns the output-size and padding maths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Channels (the same in and out).
    pub c: usize,
    /// Window height.
    pub pool_h: usize,
    /// Window width.
    pub pool_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Keras padding mode.
    pub padding: Padding,
}

impl Pool2dShape {
    /// Checks that the window fits the input and that batch and channels are positive.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.batch > 0 && self.c > 0,
            "pooling: batch ({}) and channels ({}) must be positive",
            self.batch,
            self.c
        );
        self.padding
            .out_len(self.in_h, self.pool_h, self.stride_h)?;
        self.padding
            .out_len(self.in_w, self.pool_w, self.stride_w)?;
        Ok(())
    }
    /// Output height (0 when the window does not fit).
    pub fn out_h(&self) -> usize {
        self.padding
            .out_len(self.in_h, self.pool_h, self.stride_h)
            .unwrap_or(0)
    }
    /// Output width (0 when the window does not fit).
    pub fn out_w(&self) -> usize {
        self.padding
            .out_len(self.in_w, self.pool_w, self.stride_w)
            .unwrap_or(0)
    }
    /// Padding rows above the input.
    pub fn pad_top(&self) -> usize {
        self.padding
            .pad_before(self.in_h, self.pool_h, self.stride_h)
    }
    /// Padding columns left of the input.
    pub fn pad_left(&self) -> usize {
        self.padding
            .pad_before(self.in_w, self.pool_w, self.stride_w)
    }
    /// Channels one shader invocation handles: a vec4 when C % 4 == 0 (as the shaders).
    pub fn lanes(&self) -> usize {
        if self.c.is_multiple_of(4) { 4 } else { 1 }
    }
    /// Elements of the input, `[batch, in_h, in_w, c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.c
    }
    /// Elements of the output, `[batch, out_h, out_w, c]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.c
    }

    fn params(&self, accumulate: bool) -> Result<Params> {
        self.validate()?;
        Ok(Params {
            batch: u32_of(self.batch, "batch")?,
            in_h: u32_of(self.in_h, "height")?,
            in_w: u32_of(self.in_w, "width")?,
            c: u32_of(self.c, "channels")?,
            out_h: self.out_h() as u32,
            out_w: self.out_w() as u32,
            pool_h: u32_of(self.pool_h, "pool height")?,
            pool_w: u32_of(self.pool_w, "pool width")?,
            stride_h: u32_of(self.stride_h, "stride")?,
            stride_w: u32_of(self.stride_w, "stride")?,
            pad_top: self.pad_top() as u32,
            pad_left: self.pad_left() as u32,
            flags: u32::from(accumulate),
            _pad: [0; 3],
        })
    }

    /// Pixels per image when one window covers each whole image (GlobalAveragePooling2D)
    /// and the channels are whole vec4s: such pooling runs on global_avgpool2d.wgsl.
    fn global_pixels(&self) -> Option<usize> {
        let whole_h = Self::window(0, self.stride_h, self.pad_top(), self.pool_h, self.in_h);
        let whole_w = Self::window(0, self.stride_w, self.pad_left(), self.pool_w, self.in_w);
        let global = self.out_h() == 1
            && self.out_w() == 1
            && whole_h == (0, self.in_h)
            && whole_w == (0, self.in_w)
            && self.c.is_multiple_of(4);
        global.then_some(self.in_h * self.in_w)
    }

    /// Valid input rows `[lo, hi)` of output index `o` along one axis.
    fn window(o: usize, stride: usize, pad: usize, size: usize, len: usize) -> (usize, usize) {
        let start = (o * stride) as isize - pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + size as isize).max(0) as usize).min(len);
        (lo, hi.max(lo))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    pool_h: u32,
    pool_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32,
    _pad: [u32; 3],
}

/// `out = maxpool(inp)`, `argmax` = flat input index of each maximum (u32 tensor).
pub fn maxpool2d_forward(
    gpu: &Gpu,
    out: &Tensor,
    argmax: &Tensor,
    inp: &Tensor,
    s: &Pool2dShape,
) -> Result<Dispatch> {
    let params = s.params(false)?;
    inp.expect_len(s.input_len(), "maxpool input")?;
    out.expect_len(s.output_len(), "maxpool output")?;
    argmax.expect_len(s.output_len(), "maxpool argmax")?;
    let groups = groups_for(s.output_len() / s.lanes(), 256);
    Dispatch::new(
        gpu,
        Kernel::MaxPool2dForward,
        &params,
        &[&inp.buffer, &out.buffer, &argmax.buffer],
        groups,
    )
}

/// `dinp (+)= ` gradients routed to the recorded maxima.
pub fn maxpool2d_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    argmax: &Tensor,
    s: &Pool2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    maxpool_backward(gpu, dinp, dout, argmax, None, s, accumulate)
}

/// [`maxpool2d_backward`] fused with the backward of a relu that precedes the pooling:
/// `dinp += relu'(x) ⊙ maxpool'(dout)`. `pooled` is the forward output; a gradient
/// passes where it is positive (it equals the relu output at the argmax), which saves
/// the separate relu-backward pass over the larger input.
pub fn maxpool2d_relu_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    argmax: &Tensor,
    pooled: &Tensor,
    s: &Pool2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    pooled.expect_len(s.output_len(), "maxpool output")?;
    maxpool_backward(gpu, dinp, dout, argmax, Some(pooled), s, accumulate)
}

fn maxpool_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    argmax: &Tensor,
    pooled: Option<&Tensor>,
    s: &Pool2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    let mut params = s.params(accumulate)?;
    params.flags |= if pooled.is_some() { 2 } else { 0 };
    dinp.expect_len(s.input_len(), "maxpool dinput")?;
    dout.expect_len(s.output_len(), "maxpool doutput")?;
    argmax.expect_len(s.output_len(), "maxpool argmax")?;
    // Without the relu mask the kernels ignore `y`; dout (same length) fills its binding.
    let y = pooled.unwrap_or(dout);
    let bufs = [&dout.buffer, &argmax.buffer, &y.buffer, &dinp.buffer];
    if s.stride_h == s.pool_h && s.stride_w == s.pool_w {
        // Windows tile the input: scatter from each window, 1/(pool area) the invocations.
        let groups = groups_for(s.output_len() / s.lanes(), 256);
        return Dispatch::new(
            gpu,
            Kernel::MaxPool2dBackwardWindows,
            &params,
            &bufs,
            groups,
        );
    }
    let groups = groups_for(s.input_len() / s.lanes(), 256);
    Dispatch::new(gpu, Kernel::MaxPool2dBackward, &params, &bufs, groups)
}

/// `out = avgpool(inp)` (mean over the unpadded part of each window).
pub fn avgpool2d_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    s: &Pool2dShape,
) -> Result<Dispatch> {
    let params = s.params(false)?;
    inp.expect_len(s.input_len(), "avgpool input")?;
    out.expect_len(s.output_len(), "avgpool output")?;
    if let Some(hw) = s.global_pixels() {
        let c4 = s.c / 4;
        let g = GlobalParams::new(s.batch * c4, c4, c4, hw * c4, hw, hw, false)?;
        return global_avgpool2d(gpu, out, inp, &g);
    }
    Dispatch::new(
        gpu,
        Kernel::AvgPool2dForward,
        &params,
        &[&inp.buffer, &out.buffer],
        groups_for(s.output_len() / s.lanes(), 256),
    )
}

/// `dinp (+)= ` each window's gradient spread evenly over its unpadded elements.
pub fn avgpool2d_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    s: &Pool2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    let params = s.params(accumulate)?;
    dinp.expect_len(s.input_len(), "avgpool dinput")?;
    dout.expect_len(s.output_len(), "avgpool doutput")?;
    if let Some(hw) = s.global_pixels() {
        let c4 = s.c / 4;
        let outputs = s.batch * hw * c4;
        let g = GlobalParams::new(outputs, c4, hw * c4, c4, 1, hw, accumulate)?;
        return global_avgpool2d(gpu, dinp, dout, &g);
    }
    Dispatch::new(
        gpu,
        Kernel::AvgPool2dBackward,
        &params,
        &[&dout.buffer, &dinp.buffer],
        groups_for(s.input_len() / s.lanes(), 256),
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GlobalParams {
    outputs: u32,
    c4: u32,
    div: u32,
    mul: u32,
    count: u32,
    scale: f32,
    flags: u32,
    _pad: u32,
}

impl GlobalParams {
    /// `out[i] (+)= Σ_{j < count} inp[(i / div)·mul + i % c4 + j·c4] / hw` over vec4s
    /// (global_avgpool2d.wgsl).
    fn new(
        outputs: usize,
        c4: usize,
        div: usize,
        mul: usize,
        count: usize,
        hw: usize,
        accumulate: bool,
    ) -> Result<GlobalParams> {
        Ok(GlobalParams {
            outputs: u32_of(outputs, "global pooling outputs")?,
            c4: u32_of(c4, "channels")?,
            div: u32_of(div, "pixels")?,
            mul: u32_of(mul, "pixels")?,
            count: u32_of(count, "pixels")?,
            scale: 1.0 / hw as f32,
            flags: u32::from(accumulate),
            _pad: 0,
        })
    }
}

fn global_avgpool2d(gpu: &Gpu, out: &Tensor, inp: &Tensor, g: &GlobalParams) -> Result<Dispatch> {
    Dispatch::new(
        gpu,
        Kernel::GlobalAvgPool2d,
        g,
        &[&inp.buffer, &out.buffer],
        groups_for(g.outputs as usize, 64),
    )
}

/// Visits every output element: (flat output index, n, valid row range, valid col range, channel).
fn for_each_window(
    s: &Pool2dShape,
    mut f: impl FnMut(usize, usize, (usize, usize), (usize, usize), usize),
) {
    let (oh_n, ow_n) = (s.out_h(), s.out_w());
    for n in 0..s.batch {
        for oh in 0..oh_n {
            let hr = Pool2dShape::window(oh, s.stride_h, s.pad_top(), s.pool_h, s.in_h);
            for ow in 0..ow_n {
                let wr = Pool2dShape::window(ow, s.stride_w, s.pad_left(), s.pool_w, s.in_w);
                for c in 0..s.c {
                    f(((n * oh_n + oh) * ow_n + ow) * s.c + c, n, hr, wr, c);
                }
            }
        }
    }
}

/// CPU reference of max pooling forward (first maximum on ties).
pub fn maxpool2d_forward_cpu(out: &mut [f32], argmax: &mut [u32], inp: &[f32], s: &Pool2dShape) {
    for_each_window(s, |o, n, (h0, h1), (w0, w1), c| {
        let mut best = (f32::NEG_INFINITY, u32::MAX);
        for ih in h0..h1 {
            for iw in w0..w1 {
                let j = ((n * s.in_h + ih) * s.in_w + iw) * s.c + c;
                if best.1 == u32::MAX || inp[j] > best.0 {
                    best = (inp[j], j as u32);
                }
            }
        }
        out[o] = best.0;
        argmax[o] = best.1;
    });
}

/// CPU reference of max pooling backward, accumulating into `dinp`.
pub fn maxpool2d_backward_cpu(dinp: &mut [f32], dout: &[f32], argmax: &[u32], s: &Pool2dShape) {
    for (o, &j) in argmax.iter().enumerate().take(s.output_len()) {
        if let Some(d) = dinp.get_mut(j as usize) {
            *d += dout[o];
        }
    }
}

/// CPU reference of average pooling forward.
pub fn avgpool2d_forward_cpu(out: &mut [f32], inp: &[f32], s: &Pool2dShape) {
    for_each_window(s, |o, n, (h0, h1), (w0, w1), c| {
        let mut sum = 0f64;
        for ih in h0..h1 {
            for iw in w0..w1 {
                sum += f64::from(inp[((n * s.in_h + ih) * s.in_w + iw) * s.c + c]);
            }
        }
        out[o] = (sum / ((h1 - h0) * (w1 - w0)).max(1) as f64) as f32;
    });
}

/// CPU reference of average pooling backward, accumulating into `dinp`.
pub fn avgpool2d_backward_cpu(dinp: &mut [f32], dout: &[f32], s: &Pool2dShape) {
    for_each_window(s, |o, n, (h0, h1), (w0, w1), c| {
        let share = dout[o] / ((h1 - h0) * (w1 - w0)).max(1) as f32;
        for ih in h0..h1 {
            for iw in w0..w1 {
                dinp[((n * s.in_h + ih) * s.in_w + iw) * s.c + c] += share;
            }
        }
    });
}
