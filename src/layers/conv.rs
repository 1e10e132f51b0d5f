//! Convolution layers.

use super::{ActivationFn, Initializer, Regularizer, yes};
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
    /// Whether the layer adds a bias (Keras' `use_bias`, on by default).
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    /// How the kernel starts (Keras' `kernel_initializer`).
    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }
    /// A penalty on the kernel (Keras' `kernel_regularizer`, e.g. `l2(1e-4)`).
    pub fn kernel_regularizer(mut self, r: Regularizer) -> Self {
        self.kernel_regularizer = Some(r);
        self
    }
}
