//! 2-D convolution, NHWC activations and HWIO kernels (Keras layout). Two GEMM kernels
//! and db ([`super::bias`]):
//! - `conv2d_forward.wgsl`, im2col(X)·W without materialising im2col, runs the forward
//!   pass and the input gradient: dX is the convolution of dY with the kernel transposed
//!   ([kh, kw, co, ci]) and walked flipped. A strided convolution's dX splits into
//!   stride_h·stride_w phases (input pixels with the same remainders), each a stride-1
//!   convolution over only the taps that reach it, written to every stride-th pixel: a
//!   gather over all taps multiplied zeros for 3 of every 4 taps at stride 2 (ResNet-20's
//!   3×3 stride-2 dX: 39 → 15 ms at batch 32 on lavapipe), and one kernel instead of two
//!   is ~0.6 s less to compile on Mesa 25.0.
//! - `conv2d_backward_weight.wgsl`, dW = dYᵀ·im2col(X), split over K.
//!
//! A convolution over a channel count that is not a multiple of 4 (a first layer on 1 or
//! 3 channels) runs all three passes on zero-padded copies of its input, kernel and input
//! gradient: the GEMM cores then load whole vec4s, and such layers share the
//! pipelines of every other layer instead of compiling forms of their own (two fewer
//! pipelines, ~0.7 s (Mesa 22.3) to 1.4 s (Mesa 25.0) of a cold first step on lavapipe).
//! Filters that are not a multiple of 4 (a segmentation or image head, Conv2D(1, 1)) run
//! all three passes on zero-padded kernels, bias and output gradient, and copy the real
//! columns out (Mesa 25.0: the U-Net's head compiled two more forms, 1.8 s).

use super::concat::ColumnPadding;
use super::matmul::{gemm_groups, gemm_variant, split_k_plan, split_k_reduce};
use super::transpose::{MatrixGather, transpose_gather};
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

    /// The forward pass's GEMM parameters (and the kernel gradient's im2col).
    fn params(&self, flags: u32, k_chunk: usize) -> Result<Params> {
        self.validate()?;
        let (out_h, out_w) = (self.out_h(), self.out_w());
        Ok(Params {
            batch: u32_of(self.batch, "batch")?,
            in_h: u32_of(self.in_h, "height")?,
            in_w: u32_of(self.in_w, "width")?,
            in_c: u32_of(self.in_c, "channels")?,
            out_h: u32_of(out_h, "output height")?,
            out_w: u32_of(out_w, "output width")?,
            out_c: u32_of(self.out_c, "filters")?,
            k_h: u32_of(self.k_h, "kernel height")?,
            k_w: u32_of(self.k_w, "kernel width")?,
            stride_h: u32_of(self.stride_h, "stride")?,
            stride_w: u32_of(self.stride_w, "stride")?,
            tap_h: i32_of(self.dilation_h, "dilation rate")?,
            tap_w: i32_of(self.dilation_w, "dilation rate")?,
            off_h: -i32_of(self.pad_top(), "padding")?,
            off_w: -i32_of(self.pad_left(), "padding")?,
            flags,
            k_chunk: u32_of(k_chunk.next_multiple_of(4).max(4), "k chunk")?,
            w_offset: 0,
            store_h: u32_of(out_h, "output height")?,
            store_w: u32_of(out_w, "output width")?,
            step_h: 1,
            step_w: 1,
            phase_h: 0,
            phase_w: 0,
        })
    }

    /// The input gradient's GEMM parameters for one phase: a convolution of dY (the
    /// source, `out_c` channels) with the phase's taps of the transposed kernel, walked
    /// backwards, into every stride-th input pixel.
    fn phase_params(&self, ph: &InputGradientPhase, flags: u32) -> Result<Params> {
        self.validate()?;
        let (r, c) = (ph.rows, ph.cols);
        let offset = |v: i64| {
            i32::try_from(v).map_err(|_| anyhow::anyhow!("conv2d: offset {v} out of range"))
        };
        Ok(Params {
            batch: u32_of(self.batch, "batch")?,
            in_h: u32_of(self.out_h(), "output height")?,
            in_w: u32_of(self.out_w(), "output width")?,
            in_c: u32_of(self.out_c, "filters")?,
            out_h: u32_of(r.pixels, "height")?,
            out_w: u32_of(c.pixels, "width")?,
            out_c: u32_of(self.in_c, "channels")?,
            k_h: u32_of(r.taps, "kernel height")?,
            k_w: u32_of(c.taps, "kernel width")?,
            stride_h: 1,
            stride_w: 1,
            tap_h: -i32_of(r.source_step, "dilation rate")?,
            tap_w: -i32_of(c.source_step, "dilation rate")?,
            off_h: offset(r.offset)?,
            off_w: offset(c.offset)?,
            flags,
            k_chunk: u32_of(
                (r.taps * c.taps * self.out_c).next_multiple_of(4).max(4),
                "k",
            )?,
            w_offset: u32_of(ph.tap_base * self.in_c * self.out_c / 4, "kernel offset")?,
            store_h: u32_of(self.in_h, "height")?,
            store_w: u32_of(self.in_w, "width")?,
            step_h: u32_of(self.stride_h, "stride")?,
            step_w: u32_of(self.stride_w, "stride")?,
            phase_h: u32_of(r.phase, "phase")?,
            phase_w: u32_of(c.phase, "phase")?,
        })
    }

    /// The input gradient as convolutions of dY, one per phase (the input pixels whose
    /// coordinates have the same remainders modulo the strides), each with only the taps
    /// that reach its pixels: a gather over every tap would multiply zeros for all but
    /// 1/(stride_h·stride_w) of them. A stride-1 convolution has one phase, the whole kernel.
    pub fn input_gradient_phases(&self) -> Vec<InputGradientPhase> {
        let axis =
            |phase, len, k, stride, dilation, pad| phase_axis(phase, len, k, stride, dilation, pad);
        let mut phases = Vec::with_capacity(self.stride_h * self.stride_w);
        let mut tap_base = 0;
        for ph in 0..self.stride_h {
            let rows = axis(
                ph,
                self.in_h,
                self.k_h,
                self.stride_h,
                self.dilation_h,
                self.pad_top(),
            );
            for pw in 0..self.stride_w {
                let (len, k) = (self.in_w, self.k_w);
                let cols = axis(pw, len, k, self.stride_w, self.dilation_w, self.pad_left());
                phases.push(InputGradientPhase {
                    rows,
                    cols,
                    tap_base,
                });
                tap_base += rows.taps * cols.taps;
            }
        }
        phases
    }
}

/// One axis of an input-gradient phase: input coordinates `phase + i·stride` for
/// `i < pixels`, reached by taps `first_tap + j·tap_step` for `j < taps`, which read dY at
/// `offset + i − j·source_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseAxis {
    /// The remainder of this phase's input coordinates modulo the stride.
    pub phase: usize,
    /// Input coordinates in this phase.
    pub pixels: usize,
    /// Kernel taps that reach them (0: their gradient is zero).
    pub taps: usize,
    /// The first of those taps.
    pub first_tap: usize,
    /// Taps between consecutive ones: stride / gcd(stride, dilation).
    pub tap_step: usize,
    /// The dY coordinate that pixel 0 reads through the first tap.
    pub offset: i64,
    /// dY coordinates between consecutive taps (read backwards): dilation / gcd.
    pub source_step: usize,
}

/// One phase of a convolution's input gradient: its rows and columns, and where its
/// taps start in the gathered, transposed kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputGradientPhase {
    /// The phase's rows.
    pub rows: PhaseAxis,
    /// The phase's columns.
    pub cols: PhaseAxis,
    /// Taps of the phases before this one.
    pub tap_base: usize,
}

/// The taps that reach input coordinates ≡ `phase` (mod `stride`): those k for which
/// ih + pad − k·dilation is a multiple of the stride (the quotient is dY's coordinate).
fn phase_axis(
    phase: usize,
    len: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
) -> PhaseAxis {
    let pixels = len.saturating_sub(phase).div_ceil(stride);
    let reach = |tap: usize| (phase + pad) as i64 - (tap * dilation) as i64;
    let stride_i = stride as i64;
    let valid: Vec<usize> = (0..k)
        .filter(|&t| reach(t).rem_euclid(stride_i) == 0)
        .collect();
    let first_tap = valid.first().copied().unwrap_or(0);
    let g = gcd(stride, dilation);
    PhaseAxis {
        phase,
        pixels,
        taps: valid.len(),
        first_tap,
        tap_step: stride / g,
        offset: reach(first_tap).div_euclid(stride_i),
        source_step: dilation / g,
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| anyhow::anyhow!("{what} = {v} does not fit the shaders' 32-bit indices"))
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
    tap_h: i32,
    tap_w: i32,
    off_h: i32,
    off_w: i32,
    flags: u32,
    k_chunk: u32,
    w_offset: u32,
    store_h: u32,
    store_w: u32,
    step_h: u32,
    step_w: u32,
    phase_h: u32,
    phase_w: u32,
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

/// `dinp (+)= ∂L/∂inp` from `dout` and the kernel: the forward kernel run on dY with the
/// kernel transposed ([kh, kw, co, ci]) and walked flipped, one dispatch per phase of a
/// strided convolution (see [`Conv2dShape::input_gradient_phases`]).
pub fn conv2d_backward_input(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    weight: &Tensor,
    s: &Conv2dShape,
    accumulate: bool,
) -> Result<Dispatch> {
    s.validate()?;
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
    if !s.in_c.is_multiple_of(4) {
        // The gradient of the padded input, whose leading in_c columns are this one's.
        let sp = s.channels_padded();
        let mut pad = ColumnPadding::new();
        let what = "conv2d, channels padded";
        let taps = (s.k_h * s.k_w, s.in_c * s.out_c, sp.in_c * s.out_c);
        let wp = pad.input(gpu, weight, taps, what)?;
        let pixels = s.batch * s.in_h * s.in_w;
        let dxp = pad.output(gpu, dinp, (pixels, s.in_c, sp.in_c), accumulate, what)?;
        let dx = conv2d_backward_input(gpu, &dxp, dout, &wp, &sp, false)?;
        return Ok(pad.around(dx));
    }
    // The kernel transposed to [tap, co, ci], its taps gathered phase after phase.
    let wt = Tensor::zeros(
        gpu,
        &[s.k_h * s.k_w, s.out_c, s.in_c],
        "conv2d transposed kernel",
    )?;
    let zero_bias = Tensor::zeros(gpu, &[s.in_c], "conv2d input gradient (no bias)")?;
    // Phases without pixels (an input smaller than the stride) have nothing to compute.
    let phases: Vec<InputGradientPhase> = s
        .input_gradient_phases()
        .into_iter()
        .filter(|ph| ph.rows.pixels * ph.cols.pixels > 0)
        .collect();
    let mut dispatches = Vec::new();
    for ph in phases.iter().filter(|ph| ph.rows.taps * ph.cols.taps > 0) {
        let (r, c) = (ph.rows, ph.cols);
        let taps = MatrixGather {
            outer: r.taps,
            inner: c.taps,
            start: r.first_tap * s.k_w + c.first_tap,
            step_outer: r.tap_step * s.k_w,
            step_inner: c.tap_step,
            out_start: ph.tap_base,
        };
        dispatches.push(transpose_gather(gpu, &wt, weight, s.in_c, s.out_c, &taps)?);
    }
    let kernel = Kernel::Conv2dForward;
    let variant = gemm_variant(gpu, true, true, [dout, &wt]);
    let flags = u32::from(accumulate) << 1;
    let mut first: Option<usize> = None;
    for ph in &phases {
        let params = s.phase_params(ph, flags)?;
        let m = s.batch * ph.rows.pixels * ph.cols.pixels;
        let groups = gemm_groups(kernel, variant, m, s.in_c);
        let bufs = [&zero_bias.buffer, &dinp.buffer];
        // The phases read the same dY and kernel: one copy into textures, by the first.
        let d = match first {
            None => Dispatch::gemm(gpu, kernel, variant, &params, [dout, &wt], &bufs, groups)?,
            Some(i) => {
                let like = &dispatches[i];
                Dispatch::gemm_like(
                    gpu,
                    like,
                    kernel,
                    variant,
                    &params,
                    [dout, &wt],
                    &bufs,
                    groups,
                )?
            }
        };
        first.get_or_insert(dispatches.len());
        dispatches.push(d);
    }
    Ok(dispatches
        .into_iter()
        .reduce(Dispatch::then)
        .expect("a convolution has at least one phase with pixels"))
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
    // The kernel only writes (see its store): a gradient added to dW's contents takes the
    // split-K path's reduction even unsplit.
    if splits == 1 && !accumulate {
        let params = s.params(0, chunk)?;
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
