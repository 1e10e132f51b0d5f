//! A fixed affine map per channel (the last axis), `y = x·scale[c] + offset[c]`: Keras'
//! `Rescaling` and `Normalization` (with its mean and variance folded into scale and
//! offset). Its input gradient is `dy·scale[c]`; nothing in it learns.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    channels: u32,
    backward: u32,
    _pad: u32,
}

/// `out = inp·scale[c] + offset[c]` over `inp`'s `channels`-wide rows, or with `backward`
/// the input gradient `out = inp·scale[c]` (`inp` being the output's gradient).
pub fn channel_affine(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    (scale, offset): (&Tensor, &Tensor),
    channels: usize,
    backward: bool,
) -> Result<Dispatch> {
    out.expect_len(inp.len(), "channel_affine output")?;
    scale.expect_len(channels, "channel_affine scale")?;
    offset.expect_len(channels, "channel_affine offset")?;
    anyhow::ensure!(
        channels > 0 && inp.len().is_multiple_of(channels),
        "channel_affine: {} values are not rows of {channels} channels",
        inp.len()
    );
    let params = Params {
        n: u32_of(inp.len(), "channel_affine elements")?,
        channels: u32_of(channels, "channels")?,
        backward: u32::from(backward),
        _pad: 0,
    };
    Dispatch::new(
        gpu,
        Kernel::ChannelAffine,
        &params,
        &[&scale.buffer, &offset.buffer, &inp.buffer, &out.buffer],
        groups_for(inp.len(), 256),
    )
}

/// CPU reference of [`channel_affine`]'s forward pass.
pub fn channel_affine_cpu(out: &mut [f32], inp: &[f32], scale: &[f32], offset: &[f32]) {
    let c = scale.len();
    for (i, (o, &x)) in out.iter_mut().zip(inp).enumerate() {
        *o = x * scale[i % c] + offset[i % c];
    }
}

/// CPU reference of [`channel_affine`]'s input gradient; accumulates into `dinp`, as every
/// backward reference does.
pub fn channel_affine_backward_cpu(dinp: &mut [f32], dout: &[f32], scale: &[f32]) {
    let c = scale.len();
    for (i, (d, &g)) in dinp.iter_mut().zip(dout).enumerate() {
        *d += g * scale[i % c];
    }
}
