//! Bias gradient: column sums of `dout[rows, cols]`, for Dense (rows = batch) and Conv2D
//! (rows = batch·OH·OW). Two passes: chunks of rows into partial sums, then the split-K
//! reduction adds the chunks (and accumulates into `dbias` when asked). And the bias
//! itself, added in place, for the ops whose GEMM adds none (Conv2DTranspose).

use super::matmul::split_k_reduce;
use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    _pad: u32,
}

/// In place: `out[r, c] += bias[c]` over `out[rows, cols]`.
pub fn bias_forward(
    gpu: &Gpu,
    out: &Tensor,
    bias: &Tensor,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    out.expect_len(rows * cols, "bias_forward out")?;
    bias.expect_len(cols, "bias_forward bias")?;
    let params = Params {
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        chunk_rows: 0,
        _pad: 0,
    };
    u32_of(rows * cols, "bias_forward elements")?;
    Dispatch::new(
        gpu,
        Kernel::BiasForward,
        &params,
        &[&bias.buffer, &out.buffer],
        groups_for(rows * cols, 256),
    )
}

/// CPU reference of [`bias_forward`].
pub fn bias_forward_cpu(out: &mut [f32], bias: &[f32], cols: usize) {
    for row in out.chunks_mut(cols) {
        row.iter_mut().zip(bias).for_each(|(o, &b)| *o += b);
    }
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
    // Chunks of ~256 rows: enough parallel work, and the second pass stays small.
    let chunk_rows = 256.min(rows.max(1));
    let chunks = rows.max(1).div_ceil(chunk_rows);
    let params = Params {
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        chunk_rows: chunk_rows as u32,
        _pad: 0,
    };
    let lanes = if cols.is_multiple_of(4) { 4 } else { 1 };
    let partial = Tensor::zeros(gpu, &[chunks, cols], "bias gradient partial sums")?;
    let sums = Dispatch::new(
        gpu,
        Kernel::BiasBackward,
        &params,
        &[&dout.buffer, &partial.buffer],
        groups_for(chunks * cols / lanes, 64),
    )?;
    let flags = if accumulate { 16 } else { 0 };
    Ok(sums.then(split_k_reduce(
        gpu,
        dbias,
        &partial,
        None,
        (1, cols, chunks),
        flags,
    )?))
}

/// CPU reference, accumulating: `dbias += Σ_rows dout`.
pub fn bias_backward_cpu(dbias: &mut [f32], dout: &[f32], rows: usize, cols: usize) {
    for (c, db) in dbias.iter_mut().enumerate().take(cols) {
        let s: f64 = (0..rows).map(|r| f64::from(dout[r * cols + c])).sum();
        *db += s as f32;
    }
}
