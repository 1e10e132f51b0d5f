//! The core layers: the input declaration, dense, flatten, activation and dropout.

use super::{ActivationFn, Initializer, Regularizer, kernel_builders, yes};

/// Keras' `Input(shape=…)`: declares the model's per-sample input shape, so that any
/// layer (a pooling, a normalisation) may come first. It adds no layer to the summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Input {
    pub shape: Vec<usize>,
}

impl Input {
    pub fn new(shape: &[usize]) -> Input {
        Input {
            shape: shape.to_vec(),
        }
    }
}

/// `Flatten()`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flatten {
    pub input_shape: Option<Vec<usize>>,
}

impl Flatten {
    pub fn new() -> Flatten {
        Flatten { input_shape: None }
    }
}

/// `Dense(units, activation=None, use_bias=True, kernel_initializer='glorot_uniform',
/// kernel_regularizer=None)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    pub units: usize,
    pub activation: ActivationFn,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub kernel_initializer: Initializer,
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    pub input_shape: Option<Vec<usize>>,
}

impl Dense {
    pub fn new(units: usize) -> Dense {
        Dense {
            units,
            activation: ActivationFn::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            kernel_regularizer: None,
            input_shape: None,
        }
    }
    pub fn activation(mut self, activation: ActivationFn) -> Self {
        self.activation = activation;
        self
    }
}

kernel_builders!(Dense);

/// `Activation(fn)`: an activation as a layer of its own.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activation {
    pub activation: ActivationFn,
    pub input_shape: Option<Vec<usize>>,
}

impl Activation {
    pub fn new(activation: ActivationFn) -> Activation {
        Activation {
            activation,
            input_shape: None,
        }
    }
}

/// `Dropout(rate)`: zeroes each input with probability `rate` in training and scales the
/// others by 1/(1 − rate); the identity in evaluate and predict.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dropout {
    pub rate: f32,
    pub input_shape: Option<Vec<usize>>,
}

impl Dropout {
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            rate,
            input_shape: None,
        }
    }
}
