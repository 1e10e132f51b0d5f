//! Gradient clipping by norm (Keras' `clipnorm`, `global_clipnorm`), in place before the
//! optimizer update: one pass writes each trainable tensor's squared norm, a second scales
//! each tensor by `c / max(norm, c)`, its own norm or the global one. (`clipvalue` is
//! element-wise and lives in the update kernels.)

use super::groups_for;
use super::optimizer::Clip;
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, bail, ensure};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    slot: u32,
    count: u32,
    global: u32,
    clipnorm: f32,
}

/// The clipping of `grads` (every trainable tensor, in order) by `clip` (a norm form):
/// the norm passes, then the scaling ones. `norms` holds one float per tensor.
pub fn clip_gradients(
    gpu: &Gpu,
    grads: &[&Tensor],
    norms: &Tensor,
    clip: Clip,
) -> Result<Vec<Dispatch>> {
    let (clipnorm, global) = match clip {
        Clip::Norm(c) => (c, false),
        Clip::GlobalNorm(c) => (c, true),
        Clip::None | Clip::Value(_) => bail!("clip_gradients clips by norm only"),
    };
    norms.expect_len(grads.len(), "gradient norms")?;
    ensure!(!grads.is_empty(), "no gradients to clip");
    let count = u32::try_from(grads.len())?;
    let params = |slot: usize| -> Result<Params> {
        Ok(Params {
            slot: u32::try_from(slot)?,
            count,
            global: u32::from(global),
            clipnorm,
        })
    };
    let mut out = Vec::new();
    for (k, g) in grads.iter().enumerate() {
        let d = Dispatch::new(
            gpu,
            Kernel::GradNorm,
            &params(k)?,
            &[&g.buffer, &norms.buffer],
            1,
        )?;
        out.push(d);
    }
    for (k, g) in grads.iter().enumerate() {
        let groups = groups_for(g.len().div_ceil(4), 256);
        out.push(Dispatch::new(
            gpu,
            Kernel::GradClip,
            &params(k)?,
            &[&norms.buffer, &g.buffer],
            groups,
        )?);
    }
    Ok(out)
}

/// CPU reference: scales `grads` in place as [`clip_gradients`] does (no-op for `None` and
/// `Value`, which the update applies).
pub fn clip_gradients_cpu(grads: &mut [&mut [f32]], clip: Clip) {
    let sq = |g: &[f32]| g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    let scale = |n: f64, c: f32| {
        if n > f64::from(c) {
            f64::from(c) / n
        } else {
            1.0
        }
    };
    match clip {
        Clip::Norm(c) => {
            for g in grads.iter_mut() {
                let s = scale(sq(g).sqrt(), c) as f32;
                g.iter_mut().for_each(|v| *v *= s);
            }
        }
        Clip::GlobalNorm(c) => {
            let total: f64 = grads.iter().map(|g| sq(g)).sum();
            let s = scale(total.sqrt(), c) as f32;
            for g in grads.iter_mut() {
                g.iter_mut().for_each(|v| *v *= s);
            }
        }
        Clip::None | Clip::Value(_) => {}
    }
}
