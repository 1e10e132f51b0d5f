//! 2-D convolution, NHWC activations and HWIO kernels (Keras layout). Forward, and three
//! dedicated backward kernels: dX (gather over the windows that saw each input pixel), dW
//! (im2col(X)ᵀ·dY without materialising im2col) and db ([`super::bias`]).
//!
//! A convolution over a channel count that is not a multiple of 4 (a first layer on 1 or
//! 3 channels) runs its forward pass and kernel gradient on zero-padded copies of its
//! input and kernel: the GEMM cores then load whole vec4s, and such layers share the
//! pipelines of every other layer instead of compiling forms of their own (two fewer
//! pipelines, ~0.7 s (Mesa 22.3) to 1.4 s (Mesa 25.0) of a cold first step on lavapipe).
//! Filters that are not a multiple of 4 (a segmentation or image head, Conv2D(1, 1)) run
//! all three passes on zero-padded kernels, bias and output gradient, and copy the real
//! columns out (Mesa 25.0: the U-Net's head compiled two more forms, 1.8 s).

use super::concat::ColumnPadding;
use super::matmul::{gemm_groups, gemm_variant, split_k_plan, split_k_reduce};
use super::transpose::transpose;
use super::{Padding, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Everything about one conv2d's shapes; owns the output-size and padding maths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels (filters).
    pub out_c: usize,
    /// Kernel height.
    pub k_h: usize,
    /// Kernel width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Gaps between kernel taps (Keras' `dilation_rate`; 1 for none).
    pub dilation_h: usize,
    /// Horizontal gap between kernel taps (see `dilation_h`).
    pub dilation_w: usize,
    /// Keras padding mode.
    pub padding: Padding,
}

impl Conv2dShape {
    /// Checks that the kernel fits the input and that no size is zero.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.batch > 0 && self.in_c > 0 && self.out_c > 0,
            "conv2d: batch ({}), input channels ({}) and filters ({}) must be positive",
            self.batch,
            self.in_c,
            self.out_c
        );
        ensure!(
            self.dilation_h > 0 && self.dilation_w > 0,
            "conv2d: the dilation rate must be positive"
        );
        self.padding
            .out_len(self.in_h, self.span_h(), self.stride_h)?;
        self.padding
            .out_len(self.in_w, self.span_w(), self.stride_w)?;
        Ok(())
    }
    /// Rows the dilated kernel spans: (k − 1)·dilation + 1.
    pub fn span_h(&self) -> usize {
        (self.k_h.max(1) - 1) * self.dilation_h + 1
    }
    /// Columns the dilated kernel spans.
    pub fn span_w(&self) -> usize {
        (self.k_w.max(1) - 1) * self.dilation_w + 1
    }
    /// Output height (0 when the kernel does not fit).
    pub fn out_h(&self) -> usize {
        self.padding
            .out_len(self.in_h, self.span_h(), self.stride_h)
            .unwrap_or(0)
    }
    /// Output width (0 when the kernel does not fit).
    pub fn out_w(&self) -> usize {
        self.padding
            .out_len(self.in_w, self.span_w(), self.stride_w)
            .unwrap_or(0)
    }
    /// Padding rows above the input.
    pub fn pad_top(&self) -> usize {
        self.padding
            .pad_before(self.in_h, self.span_h(), self.stride_h)
    }
    /// Padding columns left of the input.
    pub fn pad_left(&self) -> usize {
        self.padding
            .pad_before(self.in_w, self.span_w(), self.stride_w)
    }
    /// Elements of the input, `[batch, in_h, in_w, in_c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    /// Elements of the output, `[batch, out_h, out_w, out_c]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.out_c
    }
    /// Elements of the kernel, `[k_h, k_w, in_c, out_c]`.
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.in_c * self.out_c
    }
    /// Multiply-adds × 2 of the forward pass (each backward pass costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_h() * self.out_w()) as f64
            * self.out_c as f64
            * (self.k_h * self.k_w * self.in_c) as f64
    }

    /// The same convolution over input channels zero-padded to a multiple of 4.
    fn channels_padded(&self) -> Conv2dShape {
        Conv2dShape {
            in_c: self.in_c.next_multiple_of(4),
            ..*self
        }
    }

    /// The same convolution to filters zero-padded to a multiple of 4.
    fn filters_padded(&self) -> Conv2dShape {
        Conv2dShape {
            out_c: self.out_c.next_multiple_of(4),
            ..*self
        }
    }

    /// Kernel rows × (filters, padded filters): the kernel's and its gradient's padding.
    fn kernel_columns(&self) -> (usize, usize, usize) {
        let rows = self.k_h * self.k_w * self.in_c;
        (rows, self.out_c, self.out_c.next_multiple_of(4))
    }

    /// Output pixels × (filters, padded filters): the output's and its gradient's padding.
    fn output_columns(&self) -> (usize, usize, usize) {
        let pixels = self.batch * self.out_h() * self.out_w();
        (pixels, self.out_c, self.out_c.next_multiple_of(4))
    }

    fn params(&self, flags: u32, k_chunk: usize) -> Result<Params> {
        self.validate()?;
        Ok(Params {
            batch: u32_of(self.batch, "batch")?,
            in_h: u32_of(self.in_h, "height")?,
            in_w: u32_of(self.in_w, "width")?,
            in_c: u32_of(self.in_c, "channels")?,
            out_h: u32_of(self.out_h(), "output height")?,
            out_w: u32_of(self.out_w(), "output width")?,
            out_c: u32_of(self.out_c, "filters")?,
            k_h: u32_of(self.k_h, "kernel height")?,
            k_w: u32_of(self.k_w, "kernel width")?,
            stride_h: u32_of(self.stride_h, "stride")?,
            stride_w: u32_of(self.stride_w, "stride")?,
            dilation_h: u32_of(self.dilation_h, "dilation rate")?,
            dilation_w: u32_of(self.dilation_w, "dilation rate")?,
            pad_top: self.pad_top() as u32,
            pad_left: self.pad_left() as u32,
            flags,
            k_chunk: u32_of(k_chunk.next_multiple_of(4).max(4), "k chunk")?,
            _pad: [0; 3],
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
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32,
    k_chunk: u32,
    _pad: [u32; 3],
}

/// `out = conv2d(inp, weight) + bias`, relu fused when asked.
pub fn conv2d_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    s: &Conv2dShape,
    relu: bool,
) -> Result<Dispatch> {
    let params = s.params(u32::from(relu), s.k_h * s.k_w * s.in_c)?;
    inp.expect_len(s.input_len(), "conv2d input")?;
    weight.expect_len(s.weight_len(), "conv2d kernel")?;
    bias.expect_len(s.out_c, "conv2d bias")?;
    out.expect_len(s.output_len(), "conv2d output")?;
    if !s.in_c.is_multiple_of(4) {
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, channels padded";
        let pixels = s.batch * s.in_h * s.in_w;
        let xp = pad.input(gpu, inp, (pixels, s.in_c, sp.in_c), what)?;
        // HWIO: each tap's [in_c·out_c] block becomes [in_c_p·out_c], zeros after it.
        let taps = (s.k_h * s.k_w, s.in_c * s.out_c, sp.in_c * s.out_c);
        let wp = pad.input(gpu, weight, taps, what)?;
        return Ok(pad.around(conv2d_forward(gpu, out, &xp, &wp, bias, &sp, relu)?));
    }
    if !s.out_c.is_multiple_of(4) {
        let sp = s.filters_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, filters padded";
        let wp = pad.input(gpu, weight, s.kernel_columns(), what)?;
        let bp = pad.input(gpu, bias, (1, s.out_c, sp.out_c), what)?;
        let yp = pad.output(gpu, out, s.output_columns(), false, what)?;
        return Ok(pad.around(conv2d_forward(gpu, &yp, inp, &wp, &bp, &sp, relu)?));
    }
    let variant = gemm_variant(gpu, true, s.out_c.is_multiple_of(4), [inp, weight]);
    let groups = gemm_groups(
        Kernel::Conv2dForward,
        variant,
        s.batch * s.out_h() * s.out_w(),
        s.out_c,
    );
    Dispatch::gemm(
        gpu,
        Kernel::Conv2dForward,
        variant,
        &params,
        [inp, weight],
        &[&bias.buffer, &out.buffer],
        groups,
    )
}

/// `dinp (+)= ∂L/∂inp` from `dout` and the kernel.
pub fn conv2d_backward_input(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    weight: &Tensor,
    s: &Conv2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    let params = s.params(u32::from(accumulate) << 1, s.k_h * s.k_w * s.out_c)?;
    dinp.expect_len(s.input_len(), "conv2d dinput")?;
    dout.expect_len(s.output_len(), "conv2d doutput")?;
    weight.expect_len(s.weight_len(), "conv2d kernel")?;
    if !s.out_c.is_multiple_of(4) {
        let sp = s.filters_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, filters padded";
        let dyp = pad.input(gpu, dout, s.output_columns(), what)?;
        let wp = pad.input(gpu, weight, s.kernel_columns(), what)?;
        let dx = conv2d_backward_input(gpu, dinp, &dyp, &wp, &sp, accumulate)?;
        return Ok(pad.around(dx));
    }
    // The GEMM wants the kernel as [kh, kw, co, ci]: transpose it first (it is small).
    let wt = Tensor::zeros(
        gpu,
        &[s.k_h, s.k_w, s.out_c, s.in_c],
        "conv2d transposed kernel",
    )?;
    let transpose = transpose(gpu, &wt, weight, s.k_h * s.k_w, s.in_c, s.out_c)?;
    let (a_aligned, b_aligned) = (s.out_c.is_multiple_of(4), s.in_c.is_multiple_of(4));
    let variant = gemm_variant(gpu, a_aligned, b_aligned, [dout, &wt]);
    let kernel = Kernel::Conv2dBackwardInput;
    let groups = gemm_groups(kernel, variant, s.batch * s.in_h * s.in_w, s.in_c);
    let gemm = Dispatch::gemm(
        gpu,
        kernel,
        variant,
        &params,
        [dout, &wt],
        &[&dinp.buffer],
        groups,
    )?;
    Ok(transpose.then(gemm))
}

/// `dweight (+)= ∂L/∂weight` from `dout` and the layer input.
pub fn conv2d_backward_weight(
    gpu: &Gpu,
    dweight: &Tensor,
    dout: &Tensor,
    inp: &Tensor,
    s: &Conv2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    s.validate()?;
    dweight.expect_len(s.weight_len(), "conv2d dkernel")?;
    dout.expect_len(s.output_len(), "conv2d doutput")?;
    inp.expect_len(s.input_len(), "conv2d input")?;
    if !s.in_c.is_multiple_of(4) {
        // The gradient of the padded kernel, whose taps' leading in_c·out_c columns are
        // this kernel's.
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, channels padded";
        let pixels = s.batch * s.in_h * s.in_w;
        let xp = pad.input(gpu, inp, (pixels, s.in_c, sp.in_c), what)?;
        let taps = (s.k_h * s.k_w, s.in_c * s.out_c, sp.in_c * s.out_c);
        let dwp = pad.output(gpu, dweight, taps, accumulate, what)?;
        let grad = conv2d_backward_weight(gpu, &dwp, dout, &xp, &sp, false)?;
        return Ok(pad.around(grad));
    }
    if !s.out_c.is_multiple_of(4) {
        let sp = s.filters_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, filters padded";
        let dyp = pad.input(gpu, dout, s.output_columns(), what)?;
        let dwp = pad.output(gpu, dweight, s.kernel_columns(), accumulate, what)?;
        let grad = conv2d_backward_weight(gpu, &dwp, &dyp, inp, &sp, false)?;
        return Ok(pad.around(grad));
    }
    // K = B·OH·OW is long while M·N (the kernel) is small: split K over workgroups. The
    // GEMM computes dWᵀ (M = CO, N = taps) so that im2col loads vec4 along the channels;
    // A's loads are element by element: "aligned" asks only K % 4 == 0.
    let k = s.batch * s.out_h() * s.out_w();
    let taps = s.k_h * s.k_w * s.in_c;
    let (kernel, m, n) = (Kernel::Conv2dBackwardWeight, s.out_c, taps);
    let variant = gemm_variant(gpu, k.is_multiple_of(4), true, [inp, dout]);
    let (splits, chunk) = split_k_plan(gpu, kernel, variant, m, n, k);
    let groups = gemm_groups(kernel, variant, m, n) * splits as u64;
    if splits == 1 {
        let params = s.params(u32::from(accumulate) << 1, chunk)?;
        let bufs = [&dweight.buffer];
        return Dispatch::gemm(gpu, kernel, variant, &params, [inp, dout], &bufs, groups);
    }
    // Partial sums in dW's own layout, [splits, taps, CO].
    let partial = Tensor::zeros(gpu, &[splits, taps, s.out_c], "conv2d dW partial sums")?;
    let params = s.params(4, chunk)?;
    let gemm = Dispatch::gemm(
        gpu,
        kernel,
        variant,
        &params,
        [inp, dout],
        &[&partial.buffer],
        groups,
    )?;
    let accumulate_flag = if accumulate { 16 } else { 0 };
    Ok(gemm.then(split_k_reduce(
        gpu,
        dweight,
        &partial,
        None,
        (taps, s.out_c, splits),
        accumulate_flag,
    )?))
}

/// Index of input element (n, ih, iw, c) for the output pixel (oh, ow) and tap (kh, kw),
/// or None in the padding.
fn tap(s: &Conv2dShape, n: usize, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<usize> {
    let ih = (oh * s.stride_h + kh * s.dilation_h).checked_sub(s.pad_top())?;
    let iw = (ow * s.stride_w + kw * s.dilation_w).checked_sub(s.pad_left())?;
    (ih < s.in_h && iw < s.in_w).then_some(((n * s.in_h + ih) * s.in_w + iw) * s.in_c)
}

/// CPU reference of the forward pass (f64 accumulation).
pub fn conv2d_forward_cpu(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: &Conv2dShape,
    relu: bool,
) {
    let (oh_n, ow_n, co_n) = (s.out_h(), s.out_w(), s.out_c);
    let mut acc = vec![0f64; co_n];
    for n in 0..s.batch {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                acc.iter_mut()
                    .zip(bias)
                    .for_each(|(a, &b)| *a = f64::from(b));
                for kh in 0..s.k_h {
                    for kw in 0..s.k_w {
                        let Some(base) = tap(s, n, oh, ow, kh, kw) else {
                            continue;
                        };
                        for ci in 0..s.in_c {
                            let x = f64::from(inp[base + ci]);
                            let wrow = &weight[((kh * s.k_w + kw) * s.in_c + ci) * co_n..][..co_n];
                            acc.iter_mut()
                                .zip(wrow)
                                .for_each(|(a, &w)| *a += x * f64::from(w));
                        }
                    }
                }
                let o = &mut out[((n * oh_n + oh) * ow_n + ow) * co_n..][..co_n];
                for (dst, &a) in o.iter_mut().zip(&acc) {
                    *dst = if relu { (a as f32).max(0.0) } else { a as f32 };
                }
            }
        }
    }
}

/// CPU reference of all three backward passes, accumulating into `dinp` (if given),
/// `dweight` and `dbias`.
pub fn conv2d_backward_cpu(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: &Conv2dShape,
) {
    let (oh_n, ow_n, co_n) = (s.out_h(), s.out_w(), s.out_c);
    let mut dw = vec![0f64; dweight.len()];
    let mut dx = vec![0f64; inp.len()];
    for n in 0..s.batch {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let g = &dout[((n * oh_n + oh) * ow_n + ow) * co_n..][..co_n];
                for kh in 0..s.k_h {
                    for kw in 0..s.k_w {
                        let Some(base) = tap(s, n, oh, ow, kh, kw) else {
                            continue;
                        };
                        for ci in 0..s.in_c {
                            let x = f64::from(inp[base + ci]);
                            let wi = ((kh * s.k_w + kw) * s.in_c + ci) * co_n;
                            let mut sx = 0f64;
                            for co in 0..co_n {
                                let gv = f64::from(g[co]);
                                dw[wi + co] += x * gv;
                                sx += gv * f64::from(weight[wi + co]);
                            }
                            dx[base + ci] += sx;
                        }
                    }
                }
            }
        }
    }
    dweight
        .iter_mut()
        .zip(&dw)
        .for_each(|(d, &v)| *d += v as f32);
    if let Some(dinp) = dinp {
        dinp.iter_mut().zip(&dx).for_each(|(d, &v)| *d += v as f32);
    }
    super::bias::bias_backward_cpu(dbias, dout, s.batch * oh_n * ow_n, co_n);
}
