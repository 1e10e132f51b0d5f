//! Element-wise activations. Backward runs in place on the gradient; it reads the forward
//! *output* where the derivative is written in it (relu family, sigmoid, tanh, …: this
//! keeps the kinks' gradients exactly where the forward pass put them), and the *input*
//! for the gated ones, `x·gate(x)` (GELU, SiLU, hard swish), which run on kernels of
//! their own (`gated_activation_*.wgsl`) so that the others' stay small to compile.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

/// Element-wise activations (softmax is separate: it couples a whole row), with Keras'
/// formulas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// The identity, `x`.
    Linear,
    /// Keras' `ReLU` layer: `x` for `threshold ≤ x`, capped at `max_value`, and
    /// `negative_slope·(x − threshold)` below the threshold. relu, relu6 and leaky relu
    /// are its special cases; `negative_slope` and `threshold` are ≥ 0 (as Keras asks).
    Relu {
        /// Slope below the threshold.
        negative_slope: f32,
        /// The cap on the output (`f32::INFINITY` for none).
        max_value: f32,
        /// Where the linear part starts.
        threshold: f32,
    },
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x` above 0, `alpha·(eˣ − 1)` below (alpha > 0).
    Elu {
        /// The scale of the negative part.
        alpha: f32,
    },
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// Keras 3's `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x·Φ(x)` with Φ the normal CDF (`approximate: false`, Keras' default: the erf form),
    /// or `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (`approximate: true`).
    Gelu {
        /// Whether to use the tanh approximation instead of the erf form.
        approximate: bool,
    },
    /// `x·sigmoid(x)` (Keras' `silu`, also called `swish`).
    Silu,
    /// `x·relu6(x + 3) / 6` (Keras' `hard_silu`, also called `hard_swish`).
    HardSwish,
}

impl Act {
    /// `max(x, 0)`.
    pub const RELU: Act = Act::Relu {
        negative_slope: 0.0,
        max_value: f32::INFINITY,
        threshold: 0.0,
    };
    /// `min(max(x, 0), 6)`.
    pub const RELU6: Act = Act::Relu {
        negative_slope: 0.0,
        max_value: 6.0,
        threshold: 0.0,
    };

    /// Keras' `leaky_relu` with slope `negative_slope` below 0.
    pub fn leaky_relu(negative_slope: f32) -> Act {
        Act::Relu {
            negative_slope,
            max_value: f32::INFINITY,
            threshold: 0.0,
        }
    }

    /// The shaders' kind and its three parameters.
    fn encode(self) -> (u32, [f32; 3]) {
        match self {
            Act::Linear => (0, [0.0; 3]),
            Act::Relu {
                negative_slope,
                max_value,
                threshold,
            } => (1, [negative_slope, max_value, threshold]),
            Act::Sigmoid => (2, [0.0; 3]),
            Act::Tanh => (3, [0.0; 3]),
            Act::Elu { alpha } => (4, [alpha, 0.0, 0.0]),
            Act::Softplus => (5, [0.0; 3]),
            Act::Softsign => (6, [0.0; 3]),
            Act::HardSigmoid => (7, [0.0; 3]),
            Act::Gelu { approximate: false } => (8, [0.0; 3]),
            Act::Gelu { approximate: true } => (9, [0.0; 3]),
            Act::Silu => (10, [0.0; 3]),
            Act::HardSwish => (11, [0.0; 3]),
        }
    }

    /// Whether the derivative needs the input x (else the output y determines it).
    pub fn needs_input(self) -> bool {
        matches!(self, Act::Gelu { .. } | Act::Silu | Act::HardSwish)
    }

    /// The activation `f(x)`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Linear => x,
            Act::Relu {
                negative_slope,
                max_value,
                threshold,
            } => {
                if x >= threshold {
                    x.min(max_value)
                } else {
                    negative_slope * (x - threshold)
                }
            }
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
            Act::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            Act::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Act::Softsign => x / (1.0 + x.abs()),
            Act::HardSigmoid => ((x + 3.0) / 6.0).clamp(0.0, 1.0),
            Act::Gelu { approximate } => {
                let x = f64::from(x);
                let cdf = if approximate {
                    0.5 * (1.0 + (GELU_C * (x + 0.044715 * x * x * x)).tanh())
                } else {
                    normal_cdf(x)
                };
                (x * cdf) as f32
            }
            Act::Silu => {
                let x = f64::from(x);
                (x / (1.0 + (-x).exp())) as f32
            }
            Act::HardSwish => x * ((x + 3.0) / 6.0).clamp(0.0, 1.0),
        }
    }

    /// The derivative at input `x`, whose output was `y = f(x)`: the backward pass's
    /// formula (from y where y determines it, else from x).
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        let x64 = f64::from(x);
        match self {
            Act::Gelu { approximate: false } => {
                let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (normal_cdf(x64) + x64 * pdf) as f32
            }
            Act::Gelu { approximate: true } => {
                let t = (GELU_C * (x64 + 0.044715 * x64 * x64 * x64)).tanh();
                let du = GELU_C * (1.0 + 3.0 * 0.044715 * x64 * x64);
                (0.5 * (1.0 + t) + 0.5 * x64 * (1.0 - t * t) * du) as f32
            }
            Act::Silu => {
                let s = 1.0 / (1.0 + (-x64).exp());
                (s * (1.0 + x64 * (1.0 - s))) as f32
            }
            Act::HardSwish => {
                let slope = if x > -3.0 && x < 3.0 { x / 6.0 } else { 0.0 };
                ((x + 3.0) / 6.0).clamp(0.0, 1.0) + slope
            }
            _ => self.derivative_from_output(y),
        }
    }

    /// Derivative expressed through the output y = f(x) (the activations that
    /// [`Act::needs_input`] is false for).
    fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Act::Linear => 1.0,
            // y > 0 exactly where x passed the threshold (above 0), and below the cap
            // the slope is 1; at or below 0 it is the negative slope (TensorFlow's
            // gradients at the kinks: relu 0, leaky relu the slope, relu6 0 at 6).
            Act::Relu {
                negative_slope,
                max_value,
                ..
            } => {
                if y > 0.0 {
                    if y < max_value { 1.0 } else { 0.0 }
                } else {
                    negative_slope
                }
            }
            Act::Sigmoid => y * (1.0 - y),
            Act::Tanh => 1.0 - y * y,
            Act::Elu { alpha } => {
                if y > 0.0 {
                    1.0
                } else {
                    y + alpha
                }
            }
            Act::Softplus => -(-y).exp_m1(),
            Act::Softsign => (1.0 - y.abs()).powi(2),
            Act::HardSigmoid => {
                if y > 0.0 && y < 1.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
            Act::Gelu { .. } | Act::Silu | Act::HardSwish => f32::NAN,
        }
    }
}

/// √(2/π), the tanh GELU's constant.
const GELU_C: f64 = 0.797_884_560_802_865_4;

/// Φ(x), the standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    kind: u32,
    a: f32,
    b: f32,
    c: f32,
    _pad: [u32; 3],
}

impl Params {
    fn new(n: usize, act: Act) -> Result<Params> {
        let (kind, [a, b, c]) = act.encode();
        Ok(Params {
            n: u32_of(n, "elements")?,
            kind,
            a,
            b,
            c,
            _pad: [0; 3],
        })
    }
}

/// `out = act(inp)`; `out` and `inp` must be different tensors.
pub fn activation_forward(gpu: &Gpu, out: &Tensor, inp: &Tensor, act: Act) -> Result<Dispatch> {
    out.expect_len(inp.len(), "activation output")?;
    let params = Params::new(inp.len(), act)?;
    let kernel = if act.needs_input() {
        Kernel::GatedActivationForward
    } else {
        Kernel::ActivationForward
    };
    Dispatch::new(
        gpu,
        kernel,
        &params,
        &[&inp.buffer, &out.buffer],
        groups_for(inp.len().div_ceil(4), 256),
    )
}

/// In place: `grad *= act'(inp)`, from the forward pass's input `inp` and output `out`
/// (the gated activations read the one, the others the other).
pub fn activation_backward(
    gpu: &Gpu,
    grad: &Tensor,
    out: &Tensor,
    inp: &Tensor,
    act: Act,
) -> Result<Dispatch> {
    grad.expect_len(out.len(), "activation gradient")?;
    inp.expect_len(out.len(), "activation input")?;
    let params = Params::new(out.len(), act)?;
    let (kernel, read) = if act.needs_input() {
        (Kernel::GatedActivationBackward, inp)
    } else {
        (Kernel::ActivationBackward, out)
    };
    Dispatch::new(
        gpu,
        kernel,
        &params,
        &[&read.buffer, &grad.buffer],
        groups_for(out.len().div_ceil(4), 256),
    )
}

/// CPU reference of [`activation_forward`].
pub fn activation_forward_cpu(out: &mut [f32], inp: &[f32], act: Act) {
    out.iter_mut()
        .zip(inp)
        .for_each(|(o, &x)| *o = act.apply(x));
}

/// CPU reference of [`activation_backward`].
pub fn activation_backward_cpu(grad: &mut [f32], out: &[f32], inp: &[f32], act: Act) {
    grad.iter_mut()
        .zip(out.iter().zip(inp))
        .for_each(|(g, (&y, &x))| *g *= act.derivative(x, y));
}
