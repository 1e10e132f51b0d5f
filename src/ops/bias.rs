//! Bias gradient: column sums of `dout[rows, cols]`, for Dense (rows = batch) and Conv2D
//! (rows = batch·OH·OW).

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    flags: u32,
    _pad: u32,
}

/// `dbias (+)= Σ_rows dout`.
pub fn bias_backward(
    gpu: &Gpu,
    dbias: &Tensor,
    dout: &Tensor,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    dout.expect_len(rows * cols, "bias_backward dout")?;
    dbias.expect_len(cols, "bias_backward dbias")?;
    let params = Params {
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        flags: u32::from(accumulate),
        _pad: 0,
    };
    Dispatch::new(
        gpu,
        Kernel::BiasBackward,
        &params,
        &[&dout.buffer, &dbias.buffer],
        groups_for(cols, 1),
    )
}

/// CPU reference, accumulating: `dbias += Σ_rows dout`.
pub fn bias_backward_cpu(dbias: &mut [f32], dout: &[f32], rows: usize, cols: usize) {
    for (c, db) in dbias.iter_mut().enumerate().take(cols) {
        let s: f64 = (0..rows).map(|r| f64::from(dout[r * cols + c])).sum();
        *db += s as f32;
    }
}
