//! One file per op: the GPU launcher (building a [`Dispatch`](crate::gpu::Dispatch)) and
//! the CPU reference of the same maths, side by side. CPU references *accumulate* into
//! their gradient outputs (llm.c style); GPU launchers overwrite unless `accumulate`.

pub mod activation;
pub mod batchnorm;
pub mod bias;
pub mod bytes;
pub mod channel_affine;
pub mod clip;
pub mod concat;
pub mod conv2d;
pub mod conv2d_transpose;
pub mod depthwise_conv2d;
pub mod dropout;
pub mod l2;
pub mod layernorm;
pub mod loss;
pub mod matmul;
pub mod merge;
pub mod optimizer;
pub mod pad2d;
pub mod pool2d;
pub mod softmax_xent;
pub mod transpose;
pub mod upsampling2d;

use anyhow::{Result, bail};

/// Keras padding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// No padding: the window must fit inside the input.
    Valid,
    /// Pad so that `out = ceil(in / stride)`; the extra row/column (odd total) goes to the
    /// bottom/right, as in TensorFlow.
    Same,
}

impl Padding {
    /// Output length along one axis, or an error when the window does not fit.
    pub fn out_len(self, input: usize, window: usize, stride: usize) -> Result<usize> {
        if window == 0 || stride == 0 {
            bail!("window {window} and stride {stride} must be positive");
        }
        match self {
            Padding::Valid if input < window => {
                bail!("a window of {window} does not fit an input of {input} with 'valid' padding")
            }
            Padding::Valid => Ok((input - window) / stride + 1),
            Padding::Same if input == 0 => bail!("empty input"),
            Padding::Same => Ok(input.div_ceil(stride)),
        }
    }

    /// Padding before the first element (top or left).
    pub fn pad_before(self, input: usize, window: usize, stride: usize) -> usize {
        match self {
            Padding::Valid => 0,
            Padding::Same => {
                let out = input.div_ceil(stride);
                ((out - 1) * stride + window).saturating_sub(input) / 2
            }
        }
    }
}

/// Workgroups needed to cover `n` invocations with `size` per group.
pub(crate) fn groups_for(n: usize, size: usize) -> u64 {
    n.div_ceil(size) as u64
}

/// Converts a size to the u32 a shader sees, with a clear error past 4G elements.
pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| anyhow::anyhow!("{what} = {v} does not fit the shaders' 32-bit indices"))
}
