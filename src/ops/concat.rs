//! Concatenate's data movement: a block of columns copied between two row-major
//! matrices. A concatenation on any axis views every tensor as `[outer, axis·inner]`;
//! the forward pass copies each input into its columns of the output, the backward pass
//! each input's columns of the output gradient out.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Which columns go where: `dst[r·dst_stride + dst_offset + j] =
/// src[r·src_stride + src_offset + j]` for `r < rows`, `j < width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    /// Rows copied.
    pub rows: usize,
    /// Columns copied per row.
    pub width: usize,
    /// Row length of the source.
    pub src_stride: usize,
    /// First copied column of the source.
    pub src_offset: usize,
    /// Row length of the destination.
    pub dst_stride: usize,
    /// First column written in the destination.
    pub dst_offset: usize,
}

impl Columns {
    /// Input `i` of a concatenation (its `width` columns at `offset` of `total`) copied
    /// into the output: the forward pass.
    pub fn into_output(rows: usize, width: usize, offset: usize, total: usize) -> Columns {
        Columns {
            rows,
            width,
            src_stride: width,
            src_offset: 0,
            dst_stride: total,
            dst_offset: offset,
        }
    }

    /// The same input's columns of the output gradient copied out: the backward pass.
    pub fn out_of_output(rows: usize, width: usize, offset: usize, total: usize) -> Columns {
        Columns {
            rows,
            width,
            src_stride: total,
            src_offset: offset,
            dst_stride: width,
            dst_offset: 0,
        }
    }

    /// Fails unless both matrices hold every element the copy touches.
    fn check(&self, src_len: usize, dst_len: usize) -> Result<()> {
        let end = |stride: usize, offset: usize| {
            if self.rows > 0 && self.width > 0 {
                (self.rows - 1) * stride + offset + self.width
            } else {
                0
            }
        };
        ensure!(
            end(self.src_stride, self.src_offset) <= src_len
                && end(self.dst_stride, self.dst_offset) <= dst_len
                && self.width <= self.src_stride.min(self.dst_stride),
            "column copy {self:?} overruns a source of {src_len} or a destination of {dst_len} elements"
        );
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    width: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
    accumulate: u32,
    _pad: u32,
}

/// Copies the columns `c` says from `src` into `dst` (adds them to `dst`'s if
/// `accumulate`).
pub fn copy_columns(
    gpu: &Gpu,
    dst: &Tensor,
    src: &Tensor,
    c: &Columns,
    accumulate: bool,
) -> Result<Dispatch> {
    c.check(src.len(), dst.len())?;
    let n = c.rows.saturating_mul(c.width);
    let params = Params {
        rows: u32_of(c.rows, "rows")?,
        width: u32_of(c.width, "columns")?,
        src_stride: u32_of(c.src_stride, "source row length")?,
        src_offset: u32_of(c.src_offset, "source offset")?,
        dst_stride: u32_of(c.dst_stride, "destination row length")?,
        dst_offset: u32_of(c.dst_offset, "destination offset")?,
        accumulate: u32::from(accumulate),
        _pad: 0,
    };
    u32_of(n, "elements copied")?;
    Dispatch::new(
        gpu,
        Kernel::CopyColumns,
        &params,
        &[&src.buffer, &dst.buffer],
        groups_for(n, 256),
    )
}

/// Zero-padded stand-ins for tensors whose column count (channels) a kernel needs
/// rounded up: an input is copied in before the kernel, an output copied (or added) out
/// after it. The extra columns are never written, so they stay zero. The convolutions and
/// batch normalization use it for channel counts that are not a multiple of 4.
pub(crate) struct ColumnPadding {
    before: Vec<Dispatch>,
    after: Vec<Dispatch>,
}

impl ColumnPadding {
    pub(crate) fn new() -> ColumnPadding {
        ColumnPadding {
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// A padded copy of input `t`: `rows` rows of `width` columns become rows of `padded`.
    pub(crate) fn input(
        &mut self,
        gpu: &Gpu,
        t: &Tensor,
        (rows, width, padded): (usize, usize, usize),
        what: &str,
    ) -> Result<Tensor> {
        let p = Tensor::zeros(gpu, &[rows, padded], what)?;
        let cols = Columns::into_output(rows, width, 0, padded);
        self.before.push(copy_columns(gpu, &p, t, &cols, false)?);
        Ok(p)
    }

    /// A padded scratch for output `t`, copied (added, if `accumulate`) into it after.
    pub(crate) fn output(
        &mut self,
        gpu: &Gpu,
        t: &Tensor,
        (rows, width, padded): (usize, usize, usize),
        accumulate: bool,
        what: &str,
    ) -> Result<Tensor> {
        let p = Tensor::zeros(gpu, &[rows, padded], what)?;
        let cols = Columns::out_of_output(rows, width, 0, padded);
        self.after
            .push(copy_columns(gpu, t, &p, &cols, accumulate)?);
        Ok(p)
    }

    /// The copies in, `main`, the copies out.
    pub(crate) fn around(self, main: Dispatch) -> Dispatch {
        self.before
            .into_iter()
            .chain([main])
            .chain(self.after)
            .reduce(Dispatch::then)
            .expect("at least the main dispatch")
    }
}

/// CPU reference of [`copy_columns`].
pub fn copy_columns_cpu(dst: &mut [f32], src: &[f32], c: &Columns, accumulate: bool) {
    for r in 0..c.rows {
        let s = r * c.src_stride + c.src_offset;
        let d = r * c.dst_stride + c.dst_offset;
        for (d, s) in dst[d..d + c.width].iter_mut().zip(&src[s..s + c.width]) {
            *d = if accumulate { *d + s } else { *s };
        }
    }
}
