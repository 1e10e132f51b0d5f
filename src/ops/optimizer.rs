//! Optimizer updates, in place on the GPU, with Keras semantics and defaults: SGD
//! (momentum, Nesterov), Adam, AdamW and RMSprop, decoupled weight decay on any of them,
//! and learning-rate schedules. The hyper-parameter uniform is shared by every parameter
//! tensor and rewritten once per step with the batch (the scheduled learning rate and
//! Adam's bias correction change with the step): no extra submission, no read-back.

use super::groups_for;
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// The update rule and its own hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Rule {
    /// `v ← momentum·v − lr·g; w ← w + v` (Nesterov: `w ← w + momentum·v − lr·g`).
    Sgd { momentum: f32, nesterov: bool },
    /// Keras' Adam (ε outside the square root, bias correction folded into the rate).
    Adam { beta1: f32, beta2: f32, eps: f32 },
    /// Keras' RMSprop, uncentered: `s ← ρ·s + (1 − ρ)·g²;
    /// m ← momentum·m + lr·g/√(s + ε); w ← w − m`.
    RmsProp { rho: f32, momentum: f32, eps: f32 },
}

/// A learning rate: constant, or one of Keras' schedules, evaluated at the optimizer's
/// iteration count (0 for the first update, as Keras does).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LearningRate {
    Constant(f32),
    /// `initial · rate^(step / decay_steps)` (the exponent floored when `staircase`).
    ExponentialDecay {
        initial: f32,
        decay_steps: u64,
        decay_rate: f32,
        staircase: bool,
    },
    /// Keras' `CosineDecay`: an optional linear warm-up from `initial` to `warmup_target`
    /// over `warmup_steps`, then `peak · ((1 − alpha)·½(1 + cos(π·t/decay_steps)) + alpha)`
    /// with `t` capped at `decay_steps` (peak = `warmup_target`, or `initial` without one).
    CosineDecay {
        initial: f32,
        decay_steps: u64,
        alpha: f32,
        warmup_target: Option<f32>,
        warmup_steps: u64,
    },
    /// `values[0]` up to and including step `boundaries[0]`, `values[1]` up to
    /// `boundaries[1]`, …, the last value after the last boundary.
    PiecewiseConstantDecay {
        boundaries: Vec<u64>,
        values: Vec<f32>,
    },
}

impl From<f32> for LearningRate {
    fn from(lr: f32) -> LearningRate {
        LearningRate::Constant(lr)
    }
}

impl LearningRate {
    /// Keras' `ExponentialDecay(initial, decay_steps, decay_rate)`.
    pub fn exponential_decay(initial: f32, decay_steps: u64, decay_rate: f32) -> LearningRate {
        LearningRate::ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase: false,
        }
    }

    /// Keras' `CosineDecay(initial, decay_steps)` (alpha 0, no warm-up).
    pub fn cosine_decay(initial: f32, decay_steps: u64) -> LearningRate {
        LearningRate::CosineDecay {
            initial,
            decay_steps,
            alpha: 0.0,
            warmup_target: None,
            warmup_steps: 0,
        }
    }

    /// Keras' `PiecewiseConstantDecay(boundaries, values)`.
    pub fn piecewise_constant(boundaries: &[u64], values: &[f32]) -> LearningRate {
        LearningRate::PiecewiseConstantDecay {
            boundaries: boundaries.to_vec(),
            values: values.to_vec(),
        }
    }

    /// Checks the schedule's arguments (Keras raises for the same mistakes).
    pub fn validate(&self) -> Result<()> {
        match self {
            LearningRate::Constant(lr) => {
                ensure!(
                    lr.is_finite() && *lr >= 0.0,
                    "learning rate {lr} must be ≥ 0"
                )
            }
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                ..
            } => {
                ensure!(
                    *decay_steps > 0,
                    "ExponentialDecay: decay_steps must be positive"
                );
                ensure!(
                    initial.is_finite() && decay_rate.is_finite() && *decay_rate > 0.0,
                    "ExponentialDecay: initial rate {initial} and decay rate {decay_rate} must be finite, the decay rate positive"
                );
            }
            LearningRate::CosineDecay {
                decay_steps, alpha, ..
            } => {
                ensure!(
                    *decay_steps > 0,
                    "CosineDecay: decay_steps must be positive"
                );
                ensure!(
                    (0.0..=1.0).contains(alpha),
                    "CosineDecay: alpha {alpha} must be in [0, 1]"
                );
            }
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                ensure!(
                    values.len() == boundaries.len() + 1,
                    "PiecewiseConstantDecay: {} values for {} boundaries (it needs one more value than boundaries)",
                    values.len(),
                    boundaries.len()
                );
                ensure!(
                    boundaries.windows(2).all(|w| w[0] < w[1]),
                    "PiecewiseConstantDecay: boundaries {boundaries:?} must increase"
                );
            }
        }
        Ok(())
    }

    /// The rate at optimizer iteration `step` (0-based: the first update uses step 0).
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRate::Constant(lr) => *lr,
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f64 / *decay_steps as f64;
                if *staircase {
                    p = p.floor();
                }
                (f64::from(*initial) * f64::from(*decay_rate).powf(p)) as f32
            }
            LearningRate::CosineDecay {
                initial,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let decay = |t: u64, from: f32| {
                    let done = t.min(*decay_steps) as f64 / *decay_steps as f64;
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                    (f64::from(from) * ((1.0 - f64::from(*alpha)) * cosine + f64::from(*alpha)))
                        as f32
                };
                match warmup_target {
                    None => decay(step, *initial),
                    Some(target) if step < *warmup_steps => {
                        let done = step as f64 / *warmup_steps as f64;
                        (f64::from(*initial) + (f64::from(*target) - f64::from(*initial)) * done)
                            as f32
                    }
                    Some(target) => decay(step - warmup_steps, *target),
                }
            }
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries.iter().take_while(|&&b| step > b).count();
                values.get(i).or(values.last()).copied().unwrap_or(0.0)
            }
        }
    }
}

/// An optimizer: an update rule, a learning rate (or schedule) and Keras' decoupled
/// weight decay (`w ← w − lr·wd·w` before each update, on every trainable tensor).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Optimizer {
    pub rule: Rule,
    pub learning_rate: LearningRate,
    pub weight_decay: f32,
}

impl Optimizer {
    /// Keras' `SGD(learning_rate)`: no momentum, no weight decay.
    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer {
            rule: Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            learning_rate: lr.into(),
            weight_decay: 0.0,
        }
    }
    /// Keras' `Adam()` defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7.
    pub fn adam() -> Optimizer {
        Optimizer {
            rule: Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
            },
            learning_rate: 1e-3.into(),
            weight_decay: 0.0,
        }
    }
    /// Keras' `AdamW()` defaults: Adam's, with weight decay 0.004.
    pub fn adamw() -> Optimizer {
        Optimizer {
            weight_decay: 0.004,
            ..Optimizer::adam()
        }
    }
    /// Keras' `RMSprop()` defaults: lr 1e-3, ρ 0.9, no momentum, ε 1e-7.
    pub fn rmsprop() -> Optimizer {
        Optimizer {
            rule: Rule::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                eps: 1e-7,
            },
            learning_rate: 1e-3.into(),
            weight_decay: 0.0,
        }
    }
    /// A constant learning rate or a schedule in place of the current one.
    pub fn learning_rate(mut self, lr: impl Into<LearningRate>) -> Optimizer {
        self.learning_rate = lr.into();
        self
    }
    /// A constant learning rate in place of the current one (or schedule).
    pub fn with_lr(self, lr: f32) -> Optimizer {
        self.learning_rate(lr)
    }
    pub fn weight_decay(mut self, wd: f32) -> Optimizer {
        self.weight_decay = wd;
        self
    }
    /// Momentum of SGD or RMSprop (Adam has none).
    pub fn momentum(mut self, m: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } => *momentum = m,
            Rule::Adam { .. } => {}
        }
        self
    }
    /// Nesterov momentum for SGD.
    pub fn nesterov(mut self, on: bool) -> Optimizer {
        if let Rule::Sgd { nesterov, .. } = &mut self.rule {
            *nesterov = on;
        }
        self
    }

    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        self.learning_rate.validate()?;
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight decay {} must be ≥ 0",
            self.weight_decay
        );
        match self.rule {
            Rule::Sgd { momentum, .. } => {
                ensure!(
                    (0.0..=1.0).contains(&momentum),
                    "SGD momentum {momentum} must be in [0, 1]"
                )
            }
            Rule::Adam { beta1, beta2, eps } => ensure!(
                (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0,
                "Adam: beta_1 {beta1} and beta_2 {beta2} must be in [0, 1), epsilon {eps} positive"
            ),
            Rule::RmsProp { rho, momentum, eps } => ensure!(
                (0.0..1.0).contains(&rho) && (0.0..=1.0).contains(&momentum) && eps > 0.0,
                "RMSprop: rho {rho} must be in [0, 1), momentum {momentum} in [0, 1], epsilon {eps} positive"
            ),
        }
        Ok(())
    }

    /// Number of state slots per parameter (velocity; m and v; mean square and momentum).
    pub fn slots(&self) -> usize {
        match self.rule {
            Rule::Sgd { .. } => 1,
            Rule::Adam { .. } | Rule::RmsProp { .. } => 2,
        }
    }

    /// Keras' name of the rule, with AdamW for Adam with weight decay.
    pub fn name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "SGD",
            Rule::Adam { .. } if self.weight_decay > 0.0 => "AdamW",
            Rule::Adam { .. } => "Adam",
            Rule::RmsProp { .. } => "RMSprop",
        }
    }

    /// The uniform for step `t` (1-based; the schedule sees iteration t − 1):
    /// `[rate, h1, h2, h3, lr·wd, 0, 0, 0]`, where the rate is Adam's bias-corrected one.
    pub fn params(&self, t: u64) -> [f32; 8] {
        let lr = self.learning_rate.at(t.saturating_sub(1));
        let decay = lr * self.weight_decay;
        match self.rule {
            Rule::Sgd { momentum, nesterov } => [
                lr,
                momentum,
                f32::from_bits(u32::from(nesterov)),
                0.0,
                decay,
                0.0,
                0.0,
                0.0,
            ],
            Rule::Adam { beta1, beta2, eps } => {
                let t = t.max(1) as f64;
                let lr_t = f64::from(lr) * (1.0 - f64::from(beta2).powf(t)).sqrt()
                    / (1.0 - f64::from(beta1).powf(t));
                [lr_t as f32, beta1, beta2, eps, decay, 0.0, 0.0, 0.0]
            }
            Rule::RmsProp { rho, momentum, eps } => [lr, rho, momentum, eps, decay, 0.0, 0.0, 0.0],
        }
    }

    /// The dispatch updating `param` from `grad` with `state` (slots() tensors).
    pub fn update(
        &self,
        gpu: &Gpu,
        uniform: &Uniform<[f32; 8]>,
        param: &Tensor,
        grad: &Tensor,
        state: &[Tensor],
    ) -> Result<Dispatch> {
        grad.expect_len(param.len(), "gradient")?;
        for s in state {
            s.expect_len(param.len(), "optimizer state")?;
        }
        ensure!(
            state.len() == self.slots(),
            "optimizer needs {} state tensors",
            self.slots()
        );
        let groups = groups_for(param.len().div_ceil(4), 256);
        let kernel = match self.rule {
            Rule::Sgd { .. } => Kernel::SgdUpdate,
            Rule::Adam { .. } => Kernel::AdamUpdate,
            Rule::RmsProp { .. } => Kernel::RmsPropUpdate,
        };
        let mut buffers = vec![&param.buffer, &grad.buffer];
        buffers.extend(state.iter().map(|s| &s.buffer));
        Dispatch::with_uniform(gpu, kernel, &uniform.buffer, &buffers, groups)
    }

    /// CPU reference of one update at step `t` (1-based).
    pub fn update_cpu(&self, param: &mut [f32], grad: &[f32], state: &mut [Vec<f32>], t: u64) {
        let [rate, h1, h2, h3, decay, ..] = self.params(t);
        for w in param.iter_mut() {
            *w -= decay * *w;
        }
        match self.rule {
            Rule::Sgd { nesterov, .. } => {
                let (lr, momentum) = (rate, h1);
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
            Rule::Adam { .. } => {
                let (lr_t, beta1, beta2, eps) = (rate, h1, h2, h3);
                let (m, rest) = state.split_at_mut(1);
                let (m, v) = (&mut m[0], &mut rest[0]);
                for i in 0..param.len() {
                    let g = grad[i];
                    m[i] += (1.0 - beta1) * (g - m[i]);
                    v[i] += (1.0 - beta2) * (g * g - v[i]);
                    param[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
                }
            }
            Rule::RmsProp { .. } => {
                let (lr, rho, momentum, eps) = (rate, h1, h2, h3);
                let (s, rest) = state.split_at_mut(1);
                let (s, m) = (&mut s[0], &mut rest[0]);
                for i in 0..param.len() {
                    let g = grad[i];
                    s[i] = rho * s[i] + (1.0 - rho) * g * g;
                    let step = lr * g / (s[i] + eps).sqrt();
                    m[i] = momentum * m[i] + step;
                    param[i] -= m[i];
                }
            }
        }
    }
}
