//! Element-wise activations. Backward runs in place on the gradient and uses the forward
//! *output*, which every supported activation's derivative can be written in.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

/// Element-wise activations (softmax is separate: it couples a whole row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    Linear = 0,
    Relu = 1,
    Sigmoid = 2,
    Tanh = 3,
}

impl Act {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Linear => x,
            Act::Relu => x.max(0.0),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
        }
    }
    /// Derivative expressed through the output y = f(x).
    pub fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Act::Linear => 1.0,
            Act::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::Sigmoid => y * (1.0 - y),
            Act::Tanh => 1.0 - y * y,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    kind: u32,
    _pad: [u32; 2],
}

/// `out = act(inp)`; `out` and `inp` must be different tensors.
pub fn activation_forward(gpu: &Gpu, out: &Tensor, inp: &Tensor, act: Act) -> Result<Dispatch> {
    out.expect_len(inp.len(), "activation output")?;
    let params = Params {
        n: u32_of(inp.len(), "elements")?,
        kind: act as u32,
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        Kernel::ActivationForward,
        &params,
        &[&inp.buffer, &out.buffer],
        groups_for(inp.len().div_ceil(4), 256),
    )
}

/// In place: `grad *= act'(out)`.
pub fn activation_backward(gpu: &Gpu, grad: &Tensor, out: &Tensor, act: Act) -> Result<Dispatch> {
    grad.expect_len(out.len(), "activation gradient")?;
    let params = Params {
        n: u32_of(out.len(), "elements")?,
        kind: act as u32,
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        Kernel::ActivationBackward,
        &params,
        &[&out.buffer, &grad.buffer],
        groups_for(out.len().div_ceil(4), 256),
    )
}

pub fn activation_forward_cpu(out: &mut [f32], inp: &[f32], act: Act) {
    out.iter_mut()
        .zip(inp)
        .for_each(|(o, &x)| *o = act.apply(x));
}

pub fn activation_backward_cpu(grad: &mut [f32], out: &[f32], act: Act) {
    grad.iter_mut()
        .zip(out)
        .for_each(|(g, &y)| *g *= act.derivative_from_output(y));
}
