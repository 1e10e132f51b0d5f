//! Depthwise and grouped 2-D convolutions. Depthwise (Keras' `DepthwiseConv2D`): every
//! input channel convolved with `M` filters of its own (the depth multiplier), NHWC
//! activations, kernel `[KH, KW, C, M]`; output channel `c·M + m`. Grouped (Keras'
//! `Conv2D(groups=G)`): the channels split into G groups of `C/G` inputs and `M` outputs
//! each, kernel `[KH, KW, C/G, G·M]` — depthwise is the case C/G = 1, with the same
//! layout. Strides, 'valid'/'same' padding and dilation. Kernels of their own, not a full
//! convolution with zeros: forward and input gradient one invocation per quad of
//! channels, kernel gradient split over output pixels and finished by `split_k_reduce`,
//! bias gradient by [`super::bias`].
//!
//! The kernels read and write whole vec4s of channels; a depthwise input channel count
//! that is not a multiple of 4 runs on zero-padded copies (input, kernel, bias, output),
//! as the full convolution does. Grouped convolutions need input and output channel
//! counts that are multiples of 4.

use super::concat::ColumnPadding;
use super::matmul::split_k_reduce;
use super::{Padding, groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel, Variant};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Everything about one depthwise convolution's shapes; owns the output-size and
/// padding maths (with dilation, the window spans (k − 1)·dilation + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels per group (the depth multiplier M).
    pub mult: usize,
    /// Input channels per group (1: a depthwise convolution).
    pub group_in: usize,
    /// Kernel height.
    pub k_h: usize,
    /// Kernel width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical gap between kernel taps (Keras' `dilation_rate`; 1 for none).
    pub dilation_h: usize,
    /// Horizontal gap between kernel taps (1 for none).
    pub dilation_w: usize,
    /// Keras padding mode.
    pub padding: Padding,
}

impl DepthwiseShape {
    /// Checks that the window fits the input and that no size is zero.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.batch > 0
                && self.in_c > 0
                && self.mult > 0
                && self.dilation_h > 0
                && self.dilation_w > 0,
            "depthwise conv2d: batch ({}), channels ({}), depth multiplier ({}) and dilation \
             ({}, {}) must be positive",
            self.batch,
            self.in_c,
            self.mult,
            self.dilation_h,
            self.dilation_w
        );
        ensure!(
            self.group_in > 0 && self.in_c.is_multiple_of(self.group_in),
            "grouped conv2d: {} input channels do not split into groups of {}",
            self.in_c,
            self.group_in
        );
        ensure!(
            self.group_in == 1 || (self.in_c.is_multiple_of(4) && self.out_c().is_multiple_of(4)),
            "grouped conv2d: the kernels need input ({}) and output ({}) channel counts that \
             are multiples of 4",
            self.in_c,
            self.out_c()
        );
        self.padding
            .out_len(self.in_h, self.window_h(), self.stride_h)?;
        self.padding
            .out_len(self.in_w, self.window_w(), self.stride_w)?;
        Ok(())
    }
    /// Number of groups (the input channels for a depthwise convolution).
    pub fn groups(&self) -> usize {
        self.in_c / self.group_in.max(1)
    }
    /// Rows the dilated kernel spans.
    pub fn window_h(&self) -> usize {
        (self.k_h.max(1) - 1) * self.dilation_h + 1
    }
    /// Columns the dilated kernel spans.
    pub fn window_w(&self) -> usize {
        (self.k_w.max(1) - 1) * self.dilation_w + 1
    }
    /// Output height (0 when the window does not fit).
    pub fn out_h(&self) -> usize {
        self.padding
            .out_len(self.in_h, self.window_h(), self.stride_h)
            .unwrap_or(0)
    }
    /// Output width (0 when the window does not fit).
    pub fn out_w(&self) -> usize {
        self.padding
            .out_len(self.in_w, self.window_w(), self.stride_w)
            .unwrap_or(0)
    }
    /// Output channels: groups × depth multiplier.
    pub fn out_c(&self) -> usize {
        self.groups() * self.mult
    }
    /// Padding rows above the input.
    pub fn pad_top(&self) -> usize {
        self.padding
            .pad_before(self.in_h, self.window_h(), self.stride_h)
    }
    /// Padding columns left of the input.
    pub fn pad_left(&self) -> usize {
        self.padding
            .pad_before(self.in_w, self.window_w(), self.stride_w)
    }
    /// Elements of the input, `[batch, in_h, in_w, in_c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    /// Elements of the output, `[batch, out_h, out_w, out_c]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.out_c()
    }
    /// Elements of the kernel, `[k_h, k_w, group_in, out_c]`.
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.group_in * self.out_c()
    }
    /// Multiply-adds × 2 of the forward pass (each backward pass costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * self.output_len() as f64 * (self.k_h * self.k_w * self.group_in) as f64
    }

    /// The same convolution over input channels zero-padded to a multiple of 4.
    fn channels_padded(&self) -> DepthwiseShape {
        DepthwiseShape {
            in_c: self.in_c.next_multiple_of(4),
            ..*self
        }
    }

    fn params(&self, flags: u32, chunk: usize) -> Result<Params> {
        self.validate()?;
        ensure!(
            self.in_c.is_multiple_of(4),
            "depthwise kernels need padded channels"
        );
        u32_of(self.input_len(), "depthwise conv2d input elements")?;
        u32_of(self.output_len(), "depthwise conv2d output elements")?;
        Ok(Params {
            batch: u32_of(self.batch, "batch")?,
            in_h: u32_of(self.in_h, "height")?,
            in_w: u32_of(self.in_w, "width")?,
            in_c: u32_of(self.in_c, "channels")?,
            out_h: u32_of(self.out_h(), "output height")?,
            out_w: u32_of(self.out_w(), "output width")?,
            mult: u32_of(self.mult, "depth multiplier")?,
            k_h: u32_of(self.k_h, "kernel height")?,
            k_w: u32_of(self.k_w, "kernel width")?,
            stride_h: u32_of(self.stride_h, "stride")?,
            stride_w: u32_of(self.stride_w, "stride")?,
            dil_h: u32_of(self.dilation_h, "dilation")?,
            dil_w: u32_of(self.dilation_w, "dilation")?,
            pad_top: self.pad_top() as u32,
            pad_left: self.pad_left() as u32,
            flags,
            chunk: u32_of(chunk.max(1), "pixels per chunk")?,
            group_in: u32_of(self.group_in, "channels per group")?,
            _pad: [0; 2],
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    mult: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32,
    chunk: u32,
    group_in: u32,
    _pad: [u32; 2],
}

/// The family a pass runs on: its two operands read from textures where the device's
/// family does (and they fit), else from storage buffers.
fn variant(gpu: &Gpu, operands: [&Tensor; 2]) -> Variant {
    if gpu.variant.uses_textures() && operands.iter().all(|t| gpu.fits_texture(t.len())) {
        Variant::Texture
    } else {
        Variant::Portable
    }
}

/// The depthwise kernel, or its grouped form where groups are whole texels of input and
/// output channels (x read as vec4s, 4×4 kernel blocks).
fn kernel(s: &DepthwiseShape, depthwise: Kernel, grouped: Kernel) -> Kernel {
    if (s.group_in | s.mult).is_multiple_of(4) {
        grouped
    } else {
        depthwise
    }
}

const RELU: u32 = 1;
const ACCUMULATE: u32 = 2;

/// `out = depthwise_conv2d(inp, weight) + bias`, relu fused when asked.
pub fn depthwise_conv2d_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    s: &DepthwiseShape,
    relu: bool,
) -> Result<Dispatch> {
    s.validate()?;
    inp.expect_len(s.input_len(), "depthwise conv2d input")?;
    weight.expect_len(s.weight_len(), "depthwise conv2d kernel")?;
    bias.expect_len(s.out_c(), "depthwise conv2d bias")?;
    out.expect_len(s.output_len(), "depthwise conv2d output")?;
    if !s.in_c.is_multiple_of(4) {
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let pixels = s.batch * s.in_h * s.in_w;
        let xp = pad.input(
            gpu,
            inp,
            (pixels, s.in_c, sp.in_c),
            "depthwise conv2d, channels padded",
        )?;
        let taps = s.k_h * s.k_w;
        let wp = pad.input(
            gpu,
            weight,
            (taps, s.out_c(), sp.out_c()),
            "depthwise conv2d, channels padded",
        )?;
        let bp = pad.input(
            gpu,
            bias,
            (1, s.out_c(), sp.out_c()),
            "depthwise conv2d, channels padded",
        )?;
        let out_pixels = s.batch * s.out_h() * s.out_w();
        let yp = pad.output(
            gpu,
            out,
            (out_pixels, s.out_c(), sp.out_c()),
            false,
            "depthwise conv2d, channels padded",
        )?;
        let main = depthwise_conv2d_forward(gpu, &yp, &xp, &wp, &bp, &sp, relu)?;
        return Ok(pad.around(main));
    }
    let params = s.params(if relu { RELU } else { 0 }, 1)?;
    Dispatch::gemm(
        gpu,
        kernel(
            s,
            Kernel::DepthwiseConv2dForward,
            Kernel::GroupedConv2dForward,
        ),
        variant(gpu, [inp, weight]),
        &params,
        [inp, weight],
        &[&bias.buffer, &out.buffer],
        groups_for(s.output_len() / 4, 64),
    )
}

/// `dinp (+)= ∂L/∂inp` from `dout` and the kernel.
pub fn depthwise_conv2d_backward_input(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    weight: &Tensor,
    s: &DepthwiseShape,
    accumulate: bool,
) -> Result<Dispatch> {
    s.validate()?;
    dinp.expect_len(s.input_len(), "depthwise conv2d dinput")?;
    dout.expect_len(s.output_len(), "depthwise conv2d doutput")?;
    weight.expect_len(s.weight_len(), "depthwise conv2d kernel")?;
    if !s.in_c.is_multiple_of(4) {
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let out_pixels = s.batch * s.out_h() * s.out_w();
        let dyp = pad.input(
            gpu,
            dout,
            (out_pixels, s.out_c(), sp.out_c()),
            "depthwise conv2d, channels padded",
        )?;
        let wp = pad.input(
            gpu,
            weight,
            (s.k_h * s.k_w, s.out_c(), sp.out_c()),
            "depthwise conv2d, channels padded",
        )?;
        let pixels = s.batch * s.in_h * s.in_w;
        let dxp = pad.output(
            gpu,
            dinp,
            (pixels, s.in_c, sp.in_c),
            accumulate,
            "depthwise conv2d, channels padded",
        )?;
        let main = depthwise_conv2d_backward_input(gpu, &dxp, &dyp, &wp, &sp, false)?;
        return Ok(pad.around(main));
    }
    let params = s.params(if accumulate { ACCUMULATE } else { 0 }, 1)?;
    Dispatch::gemm(
        gpu,
        kernel(
            s,
            Kernel::DepthwiseConv2dBackwardInput,
            Kernel::GroupedConv2dBackwardInput,
        ),
        variant(gpu, [dout, weight]),
        &params,
        [dout, weight],
        &[&dinp.buffer],
        groups_for(s.input_len() / 4, 64),
    )
}

/// `dweight (+)= ∂L/∂weight` from `dout` and the layer input.
pub fn depthwise_conv2d_backward_weight(
    gpu: &Gpu,
    dweight: &Tensor,
    dout: &Tensor,
    inp: &Tensor,
    s: &DepthwiseShape,
    accumulate: bool,
) -> Result<Dispatch> {
    s.validate()?;
    dweight.expect_len(s.weight_len(), "depthwise conv2d dkernel")?;
    dout.expect_len(s.output_len(), "depthwise conv2d doutput")?;
    inp.expect_len(s.input_len(), "depthwise conv2d input")?;
    let taps = s.k_h * s.k_w;
    if !s.in_c.is_multiple_of(4) {
        // (Only depthwise shapes get here: validate() refuses unaligned groups.)
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let xp = pad.input(
            gpu,
            inp,
            (s.batch * s.in_h * s.in_w, s.in_c, sp.in_c),
            "depthwise conv2d, channels padded",
        )?;
        let out_pixels = s.batch * s.out_h() * s.out_w();
        let dyp = pad.input(
            gpu,
            dout,
            (out_pixels, s.out_c(), sp.out_c()),
            "depthwise conv2d, channels padded",
        )?;
        let dwp = pad.output(
            gpu,
            dweight,
            (taps, s.out_c(), sp.out_c()),
            accumulate,
            "depthwise conv2d, channels padded",
        )?;
        let main = depthwise_conv2d_backward_weight(gpu, &dwp, &dyp, &xp, &sp, false)?;
        return Ok(pad.around(main));
    }
    // Each invocation sums one (tap, quad) over a chunk of output pixels: enough chunks
    // for a few thousand invocations, none shorter than 64 pixels.
    let pixels = s.batch * s.out_h() * s.out_w();
    // One row of the kernel per (tap, input channel of a group); an invocation sums one
    // output quad of one row, or of four rows where the groups are whole texels.
    let rows = taps * s.group_in;
    let rows_per_cell = if (s.group_in | s.mult).is_multiple_of(4) {
        4
    } else {
        1
    };
    let cells = rows / rows_per_cell * s.out_c() / 4;
    let splits = (4096 / cells.max(1)).clamp(1, pixels.div_ceil(64).max(1));
    let chunk = pixels.div_ceil(splits);
    let splits = pixels.div_ceil(chunk);
    let partial = Tensor::zeros(
        gpu,
        &[splits, rows, s.out_c()],
        "depthwise conv2d dW partial sums",
    )?;
    let params = s.params(0, chunk)?;
    let sums = Dispatch::gemm(
        gpu,
        kernel(
            s,
            Kernel::DepthwiseConv2dBackwardWeight,
            Kernel::GroupedConv2dBackwardWeight,
        ),
        variant(gpu, [inp, dout]),
        &params,
        [inp, dout],
        &[&partial.buffer],
        groups_for(splits * cells, 64),
    )?;
    let flags = if accumulate { 16 } else { 0 };
    Ok(sums.then(split_k_reduce(
        gpu,
        dweight,
        &partial,
        None,
        (rows, s.out_c(), splits),
        flags,
    )?))
}

/// Index of input element (n, ih, iw, c) for output pixel (oh, ow) and tap (kh, kw), or
/// None in the padding.
fn tap(s: &DepthwiseShape, n: usize, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<usize> {
    let ih = (oh * s.stride_h + kh * s.dilation_h).checked_sub(s.pad_top())?;
    let iw = (ow * s.stride_w + kw * s.dilation_w).checked_sub(s.pad_left())?;
    (ih < s.in_h && iw < s.in_w).then_some(((n * s.in_h + ih) * s.in_w + iw) * s.in_c)
}

/// Calls `f(input index, output index, kernel index)` for every multiply-add of the
/// convolution (input index: channel included).
fn for_each_tap(s: &DepthwiseShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh_n, ow_n, oc) = (s.out_h(), s.out_w(), s.out_c());
    for n in 0..s.batch {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let o_base = ((n * oh_n + oh) * ow_n + ow) * oc;
                for kh in 0..s.k_h {
                    for kw in 0..s.k_w {
                        let Some(x_base) = tap(s, n, oh, ow, kh, kw) else {
                            continue;
                        };
                        let tap = kh * s.k_w + kw;
                        for o in 0..oc {
                            let first = o / s.mult * s.group_in;
                            for ci in 0..s.group_in {
                                let w = (tap * s.group_in + ci) * oc + o;
                                f(x_base + first + ci, o_base + o, w);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// CPU reference of the forward pass (f64 accumulation).
pub fn depthwise_conv2d_forward_cpu(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: &DepthwiseShape,
    relu: bool,
) {
    let oc = s.out_c();
    let mut acc: Vec<f64> = (0..s.output_len())
        .map(|i| f64::from(bias[i % oc]))
        .collect();
    for_each_tap(s, |x, o, w| {
        acc[o] += f64::from(inp[x]) * f64::from(weight[w]);
    });
    for (y, a) in out.iter_mut().zip(acc) {
        *y = if relu { a.max(0.0) } else { a } as f32;
    }
}

/// CPU reference of the backward pass, accumulating into `dinp` (if given), `dweight`
/// and `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_backward_cpu(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: &DepthwiseShape,
) {
    let oc = s.out_c();
    let mut dx = vec![0f64; s.input_len()];
    let mut dw = vec![0f64; s.weight_len()];
    for_each_tap(s, |x, o, w| {
        let g = f64::from(dout[o]);
        dx[x] += g * f64::from(weight[w]);
        dw[w] += g * f64::from(inp[x]);
    });
    let mut db = vec![0f64; oc];
    for (i, g) in dout.iter().enumerate() {
        db[i % oc] += f64::from(*g);
    }
    if let Some(dinp) = dinp {
        for (d, v) in dinp.iter_mut().zip(dx) {
            *d += v as f32;
        }
    }
    for (d, v) in dweight.iter_mut().zip(dw) {
        *d += v as f32;
    }
    for (d, v) in dbias.iter_mut().zip(db) {
        *d += v as f32;
    }
}
