//! Optimizer updates, in place on the GPU, with Keras semantics and defaults: SGD
//! (momentum, Nesterov), Adam and AdamW (amsgrad), RMSprop (momentum, centered),
//! decoupled weight decay on any of them, gradient clipping (`clipvalue` in the update
//! kernels, `clipnorm` and `global_clipnorm` in [`super::clip`]'s passes before them), and
//! learning-rate schedules. The hyper-parameter uniform is shared by every parameter
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
    Sgd {
        /// Momentum of the velocity v (0 for plain SGD).
        momentum: f32,
        /// Whether to take Nesterov's step.
        nesterov: bool,
    },
    /// Keras' Adam (ε outside the square root, bias correction folded into the rate);
    /// with `amsgrad` the step divides by the running maximum of v.
    Adam {
        /// Decay rate β1 of the first moment m.
        beta1: f32,
        /// Decay rate β2 of the second moment v.
        beta2: f32,
        /// ε, added to √v.
        eps: f32,
        /// Whether to divide by the running maximum of v.
        #[serde(default)]
        amsgrad: bool,
    },
    /// Keras' RMSprop: `s ← ρ·s + (1 − ρ)·g²; m ← momentum·m + lr·g/√(s + ε); w ← w − m`;
    /// `centered` subtracts the square of a running mean gradient from s.
    RmsProp {
        /// Decay rate ρ of the mean square s.
        rho: f32,
        /// Momentum of the step m (0 for none).
        momentum: f32,
        /// ε, added to s under the square root.
        eps: f32,
        /// Whether to subtract the square of a running mean gradient from s.
        #[serde(default)]
        centered: bool,
    },
}

/// Keras' gradient clipping (at most one of them, as Keras requires).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Clip {
    /// No clipping.
    #[default]
    None,
    /// `clipvalue`: every element clipped to [−v, v].
    Value(f32),
    /// `clipnorm`: each gradient tensor scaled to an L2 norm of at most c.
    Norm(f32),
    /// `global_clipnorm`: all gradients scaled together to a global L2 norm of at most c.
    GlobalNorm(f32),
}

/// A learning rate: constant, or one of Keras' schedules, evaluated at the optimizer's
/// iteration count (0 for the first update, as Keras does).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f32),
    /// `initial · rate^(step / decay_steps)` (the exponent floored when `staircase`).
    ExponentialDecay {
        /// The rate at step 0.
        initial: f32,
        /// Steps over which the rate is multiplied by `decay_rate` once.
        decay_steps: u64,
        /// The factor per `decay_steps` steps.
        decay_rate: f32,
        /// Whether the exponent is floored (the rate changes in steps).
        staircase: bool,
    },
    /// Keras' `CosineDecay`: an optional linear warm-up from `initial` to `warmup_target`
    /// over `warmup_steps`, then `peak · ((1 − alpha)·½(1 + cos(π·t/decay_steps)) + alpha)`
    /// with `t` capped at `decay_steps` (peak = `warmup_target`, or `initial` without one).
    CosineDecay {
        /// The rate at step 0.
        initial: f32,
        /// Steps of the cosine decay (after the warm-up).
        decay_steps: u64,
        /// The floor of the decay, as a fraction of the peak, in [0, 1].
        alpha: f32,
        /// The rate at the end of the warm-up (None: no warm-up).
        warmup_target: Option<f32>,
        /// Steps of the linear warm-up.
        warmup_steps: u64,
    },
    /// `values[0]` up to and including step `boundaries[0]`, `values[1]` up to
    /// `boundaries[1]`, …, the last value after the last boundary.
    PiecewiseConstantDecay {
        /// Steps where the rate changes, increasing.
        boundaries: Vec<u64>,
        /// The rates: one more than the boundaries.
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
///
/// ```
/// use wgcnn::prelude::*;
/// // Keras' SGD(0.1, momentum=0.9) on a cosine schedule, clipped like clipnorm=1.0.
/// let sgd = Optimizer::sgd(0.1)
///     .momentum(0.9)
///     .learning_rate(LearningRate::cosine_decay(0.1, 10_000))
///     .clipnorm(1.0);
/// assert_eq!(sgd.name(), "SGD");
/// let adam = Optimizer::adam().beta_2(0.99).amsgrad(true);
/// assert_eq!(adam.name(), "Adam");
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Optimizer {
    /// The update rule and its hyper-parameters.
    pub rule: Rule,
    /// The learning rate or schedule.
    pub learning_rate: LearningRate,
    /// Keras' decoupled weight decay factor (0 for none).
    pub weight_decay: f32,
    /// Gradient clipping.
    #[serde(default)]
    pub clip: Clip,
    /// A builder call that does not apply (Adam's momentum, a second clipping): reported
    /// by [`Optimizer::validate`], at compile, rather than silently dropped.
    #[serde(skip)]
    misuse: Option<String>,
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
            clip: Clip::None,
            misuse: None,
        }
    }
    /// Keras' `Adam()` defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7, no amsgrad.
    pub fn adam() -> Optimizer {
        Optimizer {
            rule: Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                amsgrad: false,
            },
            learning_rate: 1e-3.into(),
            weight_decay: 0.0,
            clip: Clip::None,
            misuse: None,
        }
    }
    /// Keras' `AdamW()` defaults: Adam's, with weight decay 0.004.
    pub fn adamw() -> Optimizer {
        Optimizer {
            weight_decay: 0.004,
            ..Optimizer::adam()
        }
    }
    /// Keras' `RMSprop()` defaults: lr 1e-3, ρ 0.9, no momentum, ε 1e-7, uncentered.
    pub fn rmsprop() -> Optimizer {
        Optimizer {
            rule: Rule::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                eps: 1e-7,
                centered: false,
            },
            learning_rate: 1e-3.into(),
            weight_decay: 0.0,
            clip: Clip::None,
            misuse: None,
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
    /// Sets the decoupled weight decay factor (`w ← w − lr·wd·w` before each update).
    pub fn weight_decay(mut self, wd: f32) -> Optimizer {
        self.weight_decay = wd;
        self
    }
    /// Records a builder call that does not apply to this optimizer (the first one).
    fn misused(mut self, what: &str) -> Optimizer {
        let name = self.name();
        self.misuse
            .get_or_insert_with(|| format!("{name} has no {what} (Keras' {name} takes none)"));
        self
    }
    /// Momentum of SGD or RMSprop (Adam has none: an error at compile).
    pub fn momentum(mut self, m: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } => *momentum = m,
            Rule::Adam { .. } => return self.misused("momentum"),
        }
        self
    }
    /// Nesterov momentum for SGD (others: an error at compile).
    pub fn nesterov(mut self, on: bool) -> Optimizer {
        match &mut self.rule {
            Rule::Sgd { nesterov, .. } => *nesterov = on,
            _ => return self.misused("nesterov"),
        }
        self
    }
    /// Adam's `beta_1` (0.9).
    pub fn beta_1(mut self, b: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Adam { beta1, .. } => *beta1 = b,
            _ => return self.misused("beta_1"),
        }
        self
    }
    /// Adam's `beta_2` (0.999).
    pub fn beta_2(mut self, b: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Adam { beta2, .. } => *beta2 = b,
            _ => return self.misused("beta_2"),
        }
        self
    }
    /// Adam's `amsgrad`: divide by the running maximum of the second moment.
    pub fn amsgrad(mut self, on: bool) -> Optimizer {
        match &mut self.rule {
            Rule::Adam { amsgrad, .. } => *amsgrad = on,
            _ => return self.misused("amsgrad"),
        }
        self
    }
    /// RMSprop's `rho` (0.9).
    pub fn rho(mut self, r: f32) -> Optimizer {
        match &mut self.rule {
            Rule::RmsProp { rho, .. } => *rho = r,
            _ => return self.misused("rho"),
        }
        self
    }
    /// RMSprop's `centered`: normalise by the variance estimate, not the second moment.
    pub fn centered(mut self, on: bool) -> Optimizer {
        match &mut self.rule {
            Rule::RmsProp { centered, .. } => *centered = on,
            _ => return self.misused("centered"),
        }
        self
    }
    /// Adam's or RMSprop's `epsilon` (1e-7).
    pub fn epsilon(mut self, e: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Adam { eps, .. } | Rule::RmsProp { eps, .. } => *eps = e,
            Rule::Sgd { .. } => return self.misused("epsilon"),
        }
        self
    }
    fn clipping(mut self, clip: Clip) -> Optimizer {
        if self.clip != Clip::None {
            self.misuse.get_or_insert_with(|| {
                "only one of clipnorm, clipvalue and global_clipnorm can be set (Keras)".into()
            });
            return self;
        }
        self.clip = clip;
        self
    }
    /// Keras' `clipnorm`: each gradient tensor scaled down to an L2 norm of at most `c`.
    pub fn clipnorm(self, c: f32) -> Optimizer {
        self.clipping(Clip::Norm(c))
    }
    /// Keras' `clipvalue`: every gradient element clipped to [−v, v].
    pub fn clipvalue(self, v: f32) -> Optimizer {
        self.clipping(Clip::Value(v))
    }
    /// Keras' `global_clipnorm`: all gradients scaled down together to a global L2 norm of
    /// at most `c`.
    pub fn global_clipnorm(self, c: f32) -> Optimizer {
        self.clipping(Clip::GlobalNorm(c))
    }

    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        if let Some(why) = &self.misuse {
            anyhow::bail!("optimizer: {why}");
        }
        if let Clip::Value(c) | Clip::Norm(c) | Clip::GlobalNorm(c) = self.clip {
            ensure!(
                c.is_finite() && c > 0.0,
                "optimizer: a clipping threshold ({c}) must be positive"
            );
        }
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
            Rule::Adam {
                beta1, beta2, eps, ..
            } => ensure!(
                (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0,
                "Adam: beta_1 {beta1} and beta_2 {beta2} must be in [0, 1), epsilon {eps} positive"
            ),
            Rule::RmsProp {
                rho, momentum, eps, ..
            } => ensure!(
                (0.0..1.0).contains(&rho) && (0.0..=1.0).contains(&momentum) && eps > 0.0,
                "RMSprop: rho {rho} must be in [0, 1), momentum {momentum} in [0, 1], epsilon {eps} positive"
            ),
        }
        Ok(())
    }

    /// Number of state slots per parameter (velocity; m, v and amsgrad's max of v; mean
    /// square, momentum and the centered form's mean gradient).
    pub fn slots(&self) -> usize {
        match self.rule {
            Rule::Sgd { .. } => 1,
            Rule::Adam { amsgrad: true, .. } | Rule::RmsProp { centered: true, .. } => 3,
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
    /// `[rate, h1, h2, h3, lr·wd, clipvalue (0: none), 0, 0]`, where the rate is Adam's
    /// bias-corrected one.
    pub fn params(&self, t: u64) -> [f32; 8] {
        let lr = self.learning_rate.at(t.saturating_sub(1));
        let decay = lr * self.weight_decay;
        let clip = match self.clip {
            Clip::Value(v) => v,
            _ => 0.0,
        };
        match self.rule {
            Rule::Sgd { momentum, nesterov } => [
                lr,
                momentum,
                f32::from_bits(u32::from(nesterov)),
                0.0,
                decay,
                clip,
                0.0,
                0.0,
            ],
            Rule::Adam {
                beta1, beta2, eps, ..
            } => {
                let t = t.max(1) as f64;
                let lr_t = f64::from(lr) * (1.0 - f64::from(beta2).powf(t)).sqrt()
                    / (1.0 - f64::from(beta1).powf(t));
                [lr_t as f32, beta1, beta2, eps, decay, clip, 0.0, 0.0]
            }
            Rule::RmsProp {
                rho, momentum, eps, ..
            } => [lr, rho, momentum, eps, decay, clip, 0.0, 0.0],
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
            Rule::Adam { amsgrad: true, .. } => Kernel::AdamAmsgradUpdate,
            Rule::Adam { .. } => Kernel::AdamUpdate,
            Rule::RmsProp { centered: true, .. } => Kernel::RmsPropCenteredUpdate,
            Rule::RmsProp { .. } => Kernel::RmsPropUpdate,
        };
        let mut buffers = vec![&param.buffer, &grad.buffer];
        buffers.extend(state.iter().map(|s| &s.buffer));
        Dispatch::with_uniform(gpu, kernel, &uniform.buffer, &buffers, groups)
    }

    /// CPU reference of one update at step `t` (1-based), `grad` already clipped by norm
    /// where asked ([`super::clip::clip_gradients_cpu`]).
    pub fn update_cpu(&self, param: &mut [f32], grad: &[f32], state: &mut [Vec<f32>], t: u64) {
        let [rate, h1, h2, h3, decay, clip, ..] = self.params(t);
        for w in param.iter_mut() {
            *w -= decay * *w;
        }
        let clipped: Vec<f32>;
        let grad = if clip > 0.0 {
            clipped = grad.iter().map(|g| g.clamp(-clip, clip)).collect();
            &clipped[..]
        } else {
            grad
        };
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
            Rule::Adam { amsgrad, .. } => {
                let (lr_t, beta1, beta2, eps) = (rate, h1, h2, h3);
                let [m, v, rest @ ..] = state else {
                    panic!("Adam keeps m and v");
                };
                for i in 0..param.len() {
                    let g = grad[i];
                    m[i] += (1.0 - beta1) * (g - m[i]);
                    v[i] += (1.0 - beta2) * (g * g - v[i]);
                    let denom = if amsgrad {
                        rest[0][i] = rest[0][i].max(v[i]);
                        rest[0][i]
                    } else {
                        v[i]
                    };
                    param[i] -= lr_t * m[i] / (denom.sqrt() + eps);
                }
            }
            Rule::RmsProp { centered, .. } => {
                let (lr, rho, momentum, eps) = (rate, h1, h2, h3);
                let [s, m, rest @ ..] = state else {
                    panic!("RMSprop keeps s and m");
                };
                for i in 0..param.len() {
                    let g = grad[i];
                    s[i] = rho * s[i] + (1.0 - rho) * g * g;
                    let denom = if centered {
                        let mg = &mut rest[0][i];
                        *mg = rho * *mg + (1.0 - rho) * g;
                        s[i] - *mg * *mg + eps
                    } else {
                        s[i] + eps
                    };
                    let step = lr * g / denom.sqrt();
                    m[i] = momentum * m[i] + step;
                    param[i] -= m[i];
                }
            }
        }
    }
}
