//! LayerNormalization over the last axis (Keras 3: `epsilon` 1e-3, biased variance,
//! `gamma` and `beta` optional). Each row normalised on its own — the same in training and
//! inference, with no moving statistics. The parameter gradients are column sums, run
//! on the bias-gradient kernel.

use super::bias::{bias_backward, bias_backward_cpu};
use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// One layer normalization's shape: `rows` rows of `cols` (the normalised axis).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormShape {
    /// Rows, each normalised on its own.
    pub rows: usize,
    /// Columns per row (the normalised axis).
    pub cols: usize,
    /// Added to the variance before the square root.
    pub epsilon: f32,
}

impl LayerNormShape {
    /// Elements of the tensor, `rows × cols`.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Floats of the per-row statistics the forward pass keeps: (mean, inv) per row.
    pub fn saved_len(&self) -> usize {
        2 * self.rows
    }
    fn params(&self, accumulate: bool) -> Result<Params> {
        ensure!(
            self.rows > 0 && self.cols > 0 && self.epsilon > 0.0,
            "layer normalization: empty shape or epsilon ≤ 0 ({self:?})"
        );
        u32_of(self.len(), "layer normalization elements")?;
        Ok(Params {
            rows: u32_of(self.rows, "rows")?,
            cols: u32_of(self.cols, "columns")?,
            epsilon: self.epsilon,
            accumulate: u32::from(accumulate),
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    epsilon: f32,
    accumulate: u32,
}

/// `y = layernorm(x)·gamma + beta`, the rows' (mean, inv) into `saved`.
pub fn layernorm_forward(
    gpu: &Gpu,
    y: &Tensor,
    saved: &Tensor,
    x: &Tensor,
    [gamma, beta]: [&Tensor; 2],
    s: &LayerNormShape,
) -> Result<Dispatch> {
    let params = s.params(false)?;
    x.expect_len(s.len(), "layer normalization input")?;
    y.expect_len(s.len(), "layer normalization output")?;
    gamma.expect_len(s.cols, "layer normalization gamma")?;
    beta.expect_len(s.cols, "layer normalization beta")?;
    saved.expect_len(s.saved_len(), "layer normalization statistics")?;
    Dispatch::new(
        gpu,
        Kernel::LayerNormForward,
        &params,
        &[
            &x.buffer,
            &gamma.buffer,
            &beta.buffer,
            &y.buffer,
            &saved.buffer,
        ],
        groups_for(s.rows, 64),
    )
}

/// `dx (+)= ∂L/∂x`, `dgamma = ∂L/∂gamma`, `dbeta = ∂L/∂beta`; `prod` is scratch of the
/// input's size.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    gpu: &Gpu,
    [dx, dgamma, dbeta]: [&Tensor; 3],
    prod: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &Tensor,
    s: &LayerNormShape,
    accumulate: bool,
) -> Result<Dispatch> {
    let params = s.params(accumulate)?;
    for (t, what) in [(dx, "dx"), (dy, "dy"), (x, "x"), (prod, "scratch")] {
        t.expect_len(s.len(), &format!("layer normalization {what}"))?;
    }
    gamma.expect_len(s.cols, "layer normalization gamma")?;
    saved.expect_len(s.saved_len(), "layer normalization statistics")?;
    let rows = Dispatch::new(
        gpu,
        Kernel::LayerNormBackward,
        &params,
        &[
            &x.buffer,
            &gamma.buffer,
            &dy.buffer,
            &saved.buffer,
            &dx.buffer,
            &prod.buffer,
        ],
        groups_for(s.rows, 64),
    )?;
    Ok(rows
        .then(bias_backward(gpu, dgamma, prod, s.rows, s.cols, false)?)
        .then(bias_backward(gpu, dbeta, dy, s.rows, s.cols, false)?))
}

/// CPU reference of the forward pass (f64 statistics); `saved` gets (mean, inv) per row.
pub fn layernorm_forward_cpu(
    y: &mut [f32],
    saved: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: &LayerNormShape,
) {
    let n = s.cols as f64;
    for (r, (xr, yr)) in x.chunks(s.cols).zip(y.chunks_mut(s.cols)).enumerate() {
        let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = xr
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + f64::from(s.epsilon)).sqrt();
        for (c, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let xh = (f64::from(v) - mean) * inv;
            *o = (xh * f64::from(gamma[c]) + f64::from(beta[c])) as f32;
        }
        saved[2 * r] = mean as f32;
        saved[2 * r + 1] = inv as f32;
    }
}

/// CPU reference of the backward pass, accumulating into `dx`, `dgamma` and `dbeta`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_cpu(
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    saved: &[f32],
    s: &LayerNormShape,
) {
    let n = s.cols as f64;
    let mut prod = vec![0f32; s.len()];
    for r in 0..s.rows {
        let (mean, inv) = (f64::from(saved[2 * r]), f64::from(saved[2 * r + 1]));
        let at = r * s.cols;
        let xh = |c: usize| (f64::from(x[at + c]) - mean) * inv;
        let g = |c: usize| f64::from(dy[at + c]) * f64::from(gamma[c]);
        let mg = (0..s.cols).map(g).sum::<f64>() / n;
        let mgx = (0..s.cols).map(|c| g(c) * xh(c)).sum::<f64>() / n;
        for c in 0..s.cols {
            dx[at + c] += (inv * (g(c) - mg - xh(c) * mgx)) as f32;
            prod[at + c] = (f64::from(dy[at + c]) * xh(c)) as f32;
        }
    }
    bias_backward_cpu(dgamma, &prod, s.rows, s.cols);
    bias_backward_cpu(dbeta, dy, s.rows, s.cols);
}
