//! Activation layers with parameters (Keras' `ReLU`, `LeakyReLU`, `ELU`); the plain ones
//! are [`super::Activation`] with an [`super::ActivationFn`].

use crate::ops::activation::Act;
use anyhow::{Result, ensure};

/// `ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`: `x` from `threshold` up,
/// capped at `max_value`, `negative_slope·(x − threshold)` below (`ReLU::new().max_value(6.0)`
/// is MobileNet's ReLU6).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReLU {
    /// The cap (Keras' `max_value`, none by default).
    pub max_value: Option<f32>,
    /// The slope below the threshold (Keras' `negative_slope`, 0 by default).
    pub negative_slope: f32,
    /// Where the identity starts (Keras' `threshold`, 0 by default).
    pub threshold: f32,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl ReLU {
    /// `max(x, 0)`.
    pub fn new() -> ReLU {
        ReLU {
            max_value: None,
            negative_slope: 0.0,
            threshold: 0.0,
            input_shape: None,
        }
    }
    /// The cap (Keras' `max_value`, none by default; ≥ 0).
    pub fn max_value(mut self, v: f32) -> Self {
        self.max_value = Some(v);
        self
    }
    /// The slope below the threshold (Keras' `negative_slope`, 0 by default; ≥ 0).
    pub fn negative_slope(mut self, v: f32) -> Self {
        self.negative_slope = v;
        self
    }
    /// Where the identity starts (Keras' `threshold`, 0 by default; ≥ 0).
    pub fn threshold(mut self, v: f32) -> Self {
        self.threshold = v;
        self
    }
    pub(crate) fn act(&self) -> Result<Act> {
        let max_value = self.max_value.unwrap_or(f32::INFINITY);
        ensure!(
            max_value >= 0.0 && self.negative_slope >= 0.0 && self.threshold >= 0.0,
            "max_value ({max_value}), negative_slope ({}) and threshold ({}) must be ≥ 0",
            self.negative_slope,
            self.threshold
        );
        ensure!(
            self.negative_slope.is_finite() && self.threshold.is_finite(),
            "negative_slope and threshold must be finite"
        );
        Ok(Act::Relu {
            negative_slope: self.negative_slope,
            max_value,
            threshold: self.threshold,
        })
    }
}

impl Default for ReLU {
    fn default() -> Self {
        ReLU::new()
    }
}

/// `LeakyReLU(negative_slope=0.3)`: `x` above 0, `negative_slope·x` below.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeakyReLU {
    /// The slope below 0 (Keras' `negative_slope`, 0.3 by default).
    pub negative_slope: f32,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl LeakyReLU {
    /// Slope 0.3 below 0 (Keras' layer default; the `leaky_relu` activation's is 0.2).
    pub fn new() -> LeakyReLU {
        LeakyReLU {
            negative_slope: 0.3,
            input_shape: None,
        }
    }
    /// The slope below 0 (≥ 0).
    pub fn negative_slope(mut self, v: f32) -> Self {
        self.negative_slope = v;
        self
    }
    pub(crate) fn act(&self) -> Result<Act> {
        ensure!(
            self.negative_slope >= 0.0 && self.negative_slope.is_finite(),
            "negative_slope ({}) must be finite and ≥ 0",
            self.negative_slope
        );
        Ok(Act::leaky_relu(self.negative_slope))
    }
}

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU::new()
    }
}

/// `ELU(alpha=1.0)`: `x` above 0, `alpha·(eˣ − 1)` below.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ELU {
    /// The scale of the negative part (Keras' `alpha`, 1 by default).
    pub alpha: f32,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl ELU {
    /// alpha 1.
    pub fn new() -> ELU {
        ELU {
            alpha: 1.0,
            input_shape: None,
        }
    }
    /// The scale of the negative part (> 0 here: the backward pass reads the derivative
    /// from the output, which needs it).
    pub fn alpha(mut self, v: f32) -> Self {
        self.alpha = v;
        self
    }
    pub(crate) fn act(&self) -> Result<Act> {
        ensure!(
            self.alpha > 0.0 && self.alpha.is_finite(),
            "alpha ({}) must be finite and > 0",
            self.alpha
        );
        Ok(Act::Elu { alpha: self.alpha })
    }
}

impl Default for ELU {
    fn default() -> Self {
        ELU::new()
    }
}
