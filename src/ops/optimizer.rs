//! Optimizer updates, in place on the GPU, with Keras semantics and defaults. The
//! hyper-parameter uniform is shared by every parameter tensor and rewritten once per
//! step (Adam's bias correction changes with the step count).

use super::groups_for;
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::Result;

/// An optimizer and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
    },
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
}

impl Optimizer {
    /// Keras' `SGD()` defaults: lr 0.01, no momentum.
    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer::Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
        }
    }
    /// Keras' `Adam()` defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7.
    pub fn adam() -> Optimizer {
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }
    pub fn with_lr(self, lr: f32) -> Optimizer {
        match self {
            Optimizer::Sgd {
                momentum, nesterov, ..
            } => Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
            },
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            },
        }
    }
    /// Number of state slots per parameter (velocity; or m and v).
    pub fn slots(&self) -> usize {
        match self {
            Optimizer::Sgd { .. } => 1,
            Optimizer::Adam { .. } => 2,
        }
    }

    /// The uniform for step `t` (1-based).
    pub fn params(&self, t: u64) -> [f32; 4] {
        match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
            } => [lr, momentum, f32::from_bits(u32::from(nesterov)), 0.0],
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let t = t as f64;
                let lr_t = f64::from(lr) * (1.0 - f64::from(beta2).powf(t)).sqrt()
                    / (1.0 - f64::from(beta1).powf(t));
                [lr_t as f32, beta1, beta2, eps]
            }
        }
    }

    /// The dispatch updating `param` from `grad` with `state` (slots() tensors).
    pub fn update(
        &self,
        gpu: &Gpu,
        uniform: &Uniform<[f32; 4]>,
        param: &Tensor,
        grad: &Tensor,
        state: &[Tensor],
    ) -> Result<Dispatch> {
        grad.expect_len(param.len(), "gradient")?;
        for s in state {
            s.expect_len(param.len(), "optimizer state")?;
        }
        anyhow::ensure!(
            state.len() == self.slots(),
            "optimizer needs {} state tensors",
            self.slots()
        );
        let groups = groups_for(param.len().div_ceil(4), 256);
        match self {
            Optimizer::Sgd { .. } => Dispatch::with_uniform(
                gpu,
                Kernel::SgdUpdate,
                &uniform.buffer,
                &[&param.buffer, &grad.buffer, &state[0].buffer],
                groups,
            ),
            Optimizer::Adam { .. } => Dispatch::with_uniform(
                gpu,
                Kernel::AdamUpdate,
                &uniform.buffer,
                &[
                    &param.buffer,
                    &grad.buffer,
                    &state[0].buffer,
                    &state[1].buffer,
                ],
                groups,
            ),
        }
    }

    /// CPU reference of one update at step `t` (1-based).
    pub fn update_cpu(&self, param: &mut [f32], grad: &[f32], state: &mut [Vec<f32>], t: u64) {
        match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
            } => {
                let v = &mut state[0];
                for i in 0..param.len() {
                    let vel = momentum * v[i] - lr * grad[i];
                    v[i] = vel;
                    param[i] += if nesterov {
                        momentum * vel - lr * grad[i]
                    } else {
                        vel
                    };
                }
            }
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                let lr_t = self.params(t)[0];
                let (m, rest) = state.split_at_mut(1);
                let (m, v) = (&mut m[0], &mut rest[0]);
                for i in 0..param.len() {
                    let g = grad[i];
                    m[i] += (1.0 - beta1) * (g - m[i]);
                    v[i] += (1.0 - beta2) * (g * g - v[i]);
                    param[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
                }
            }
        }
    }
}
