//! Convolution layers.

use super::{ActivationFn, Initializer, Regularizer, kernel_builders, yes};
use crate::ops::Padding;

/// `Conv2D(filters, kernel_size, strides=1, padding='valid', activation=None,
/// use_bias=True, kernel_initializer='glorot_uniform', kernel_regularizer=None)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
    pub activation: ActivationFn,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub kernel_initializer: Initializer,
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    pub input_shape: Option<Vec<usize>>,
}

impl Conv2D {
    /// `filters` square `kernel × kernel` filters, stride 1, 'valid', linear.
    pub fn new(filters: usize, kernel: usize) -> Conv2D {
        Conv2D {
            filters,
            kernel_size: (kernel, kernel),
            strides: (1, 1),
            padding: Padding::Valid,
            activation: ActivationFn::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            kernel_regularizer: None,
            input_shape: None,
        }
    }
    pub fn kernel_size(mut self, h: usize, w: usize) -> Self {
        self.kernel_size = (h, w);
        self
    }
    pub fn strides(mut self, h: usize, w: usize) -> Self {
        self.strides = (h, w);
        self
    }
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    pub fn activation(mut self, activation: ActivationFn) -> Self {
        self.activation = activation;
        self
    }
}

kernel_builders!(Conv2D);
