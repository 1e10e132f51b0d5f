//! Transposed 2-D convolution (Keras' `Conv2DTranspose`): the gradient of a convolution
//! with respect to its input, used as a layer. It runs on the conv2d kernels with the
//! roles swapped — forward is conv2d's dX pass, dX is conv2d's forward, dW is conv2d's dW
//! with input and output gradient exchanged — so it adds no shader of its own; the CPU
//! reference is written directly (each input pixel scatters kernel × value into the
//! output), which is what the tests hold that mapping to.

use super::Padding;
use super::bias::{bias_backward, bias_forward};
use super::conv2d::{Conv2dShape, conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use crate::gpu::{Dispatch, Gpu};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// One transposed convolution's shapes: input `[batch, in_h, in_w, in_c]`, kernel
/// `[k_h, k_w, filters, in_c]` (Keras' layout), output `[batch, out_h, out_w, filters]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dTransposeShape {
    /// Batch size.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub filters: usize,
    /// Kernel height.
    pub k_h: usize,
    /// Kernel width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Keras padding mode.
    pub padding: Padding,
}

impl Conv2dTransposeShape {
    /// Keras' output length: `in·stride` ('same'), `in·stride + max(k − stride, 0)`
    /// ('valid').
    fn out_len(&self, input: usize, k: usize, stride: usize) -> usize {
        match self.padding {
            Padding::Same => input * stride,
            Padding::Valid => input * stride + k.saturating_sub(stride),
        }
    }
    /// Output height (Keras' rule, see `out_len`).
    pub fn out_h(&self) -> usize {
        self.out_len(self.in_h, self.k_h, self.stride_h)
    }
    /// Output width (Keras' rule, see `out_len`).
    pub fn out_w(&self) -> usize {
        self.out_len(self.in_w, self.k_w, self.stride_w)
    }
    /// Elements of the input, `[batch, in_h, in_w, in_c]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    /// Elements of the output, `[batch, out_h, out_w, filters]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.filters
    }
    /// Elements of the kernel, `[k_h, k_w, filters, in_c]`.
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.filters * self.in_c
    }

    /// The convolution this one transposes: from the output back to the input. Its
    /// kernel layout `[k_h, k_w, filters, in_c]` is this layer's.
    pub fn conv(&self) -> Conv2dShape {
        Conv2dShape {
            batch: self.batch,
            in_h: self.out_h(),
            in_w: self.out_w(),
            in_c: self.filters,
            out_c: self.in_c,
            k_h: self.k_h,
            k_w: self.k_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            dilation_h: 1,
            dilation_w: 1,
            padding: self.padding,
        }
    }

    /// Checks sizes, and that the transposed convolution maps the output back onto the
    /// input exactly.
    pub fn validate(&self) -> Result<()> {
        let dims = [
            self.batch,
            self.in_h,
            self.in_w,
            self.in_c,
            self.filters,
            self.k_h,
            self.k_w,
            self.stride_h,
            self.stride_w,
        ];
        ensure!(
            !dims.contains(&0),
            "conv2d transpose: every size must be positive ({self:?})"
        );
        let c = self.conv();
        c.validate()?;
        ensure!(
            c.out_h() == self.in_h && c.out_w() == self.in_w,
            "conv2d transpose: {self:?} does not invert its convolution"
        );
        Ok(())
    }
}

/// `out = conv2d_transpose(inp, weight) + bias` (bias None: no bias).
pub fn conv2d_transpose_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    s: &Conv2dTransposeShape,
) -> Result<Dispatch> {
    s.validate()?;
    let gemm = conv2d_backward_input(gpu, out, inp, weight, &s.conv(), false)?;
    Ok(match bias {
        Some(b) => {
            let rows = s.batch * s.out_h() * s.out_w();
            gemm.then(bias_forward(gpu, out, b, rows, s.filters)?)
        }
        None => gemm,
    })
}

/// `dinp = ∂L/∂inp` from `dout`; `zero_bias` holds `in_c` zeros (conv2d's forward adds
/// a bias).
pub fn conv2d_transpose_backward_input(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    weight: &Tensor,
    zero_bias: &Tensor,
    s: &Conv2dTransposeShape,
) -> Result<Dispatch> {
    s.validate()?;
    conv2d_forward(gpu, dinp, dout, weight, zero_bias, &s.conv(), false)
}

/// `dweight (+)= ∂L/∂weight` and, if given, `dbias = ∂L/∂bias`.
pub fn conv2d_transpose_backward_weight(
    gpu: &Gpu,
    dweight: &Tensor,
    dbias: Option<&Tensor>,
    dout: &Tensor,
    inp: &Tensor,
    s: &Conv2dTransposeShape,
    accumulate: bool,
) -> Result<Dispatch> {
    s.validate()?;
    let dw = conv2d_backward_weight(gpu, dweight, inp, dout, &s.conv(), accumulate)?;
    Ok(match dbias {
        Some(db) => {
            let rows = s.batch * s.out_h() * s.out_w();
            dw.then(bias_backward(gpu, db, dout, rows, s.filters, false)?)
        }
        None => dw,
    })
}

/// Calls `f(input index, weight index, output index)` for every multiply-add.
fn for_each_tap(s: &Conv2dTransposeShape, mut f: impl FnMut(usize, usize, usize)) {
    let c = s.conv();
    let (pt, pl) = (c.pad_top() as isize, c.pad_left() as isize);
    let (oh_n, ow_n) = (s.out_h() as isize, s.out_w() as isize);
    for n in 0..s.batch {
        for ih in 0..s.in_h {
            for iw in 0..s.in_w {
                let x = ((n * s.in_h + ih) * s.in_w + iw) * s.in_c;
                for kh in 0..s.k_h {
                    let oy = (ih * s.stride_h + kh) as isize - pt;
                    for kw in 0..s.k_w {
                        let ox = (iw * s.stride_w + kw) as isize - pl;
                        if oy < 0 || ox < 0 || oy >= oh_n || ox >= ow_n {
                            continue;
                        }
                        let y =
                            ((n * s.out_h() + oy as usize) * s.out_w() + ox as usize) * s.filters;
                        for f_ in 0..s.filters {
                            for ci in 0..s.in_c {
                                let w = ((kh * s.k_w + kw) * s.filters + f_) * s.in_c + ci;
                                f(x + ci, w, y + f_);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// CPU reference of the forward pass: every input pixel scatters `value · kernel` into
/// the output window at `stride ×` its position, less the padding (f64 sums).
pub fn conv2d_transpose_forward_cpu(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &Conv2dTransposeShape,
) {
    let mut acc = vec![0f64; out.len()];
    for_each_tap(s, |x, w, y| {
        acc[y] += f64::from(inp[x]) * f64::from(weight[w])
    });
    for (i, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        let b = bias.map_or(0.0, |b| f64::from(b[i % s.filters]));
        *o = (a + b) as f32;
    }
}

/// CPU reference of all backward passes, accumulating into `dinp` (if given),
/// `dweight` and `dbias` (if given).
pub fn conv2d_transpose_backward_cpu(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: &Conv2dTransposeShape,
) {
    let mut dx = vec![0f64; inp.len()];
    let mut dw = vec![0f64; weight.len()];
    for_each_tap(s, |x, w, y| {
        let g = f64::from(dout[y]);
        dx[x] += g * f64::from(weight[w]);
        dw[w] += g * f64::from(inp[x]);
    });
    if let Some(dinp) = dinp {
        dinp.iter_mut().zip(&dx).for_each(|(d, &v)| *d += v as f32);
    }
    dweight
        .iter_mut()
        .zip(&dw)
        .for_each(|(d, &v)| *d += v as f32);
    if let Some(db) = dbias {
        super::bias::bias_backward_cpu(db, dout, dout.len() / s.filters, s.filters);
    }
}
