//! The core layers: the input declaration, dense, flatten, activation and dropout.

use super::{ActivationFn, Initializer, Regularizer, kernel_builders, yes};

/// Keras' `Input(shape=…)`: declares the model's per-sample input shape, so that any
/// layer (a pooling, a normalisation) may come first. It adds no layer to the summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Input {
    /// The per-sample input shape, batch excluded (Keras' `shape`).
    pub shape: Vec<usize>,
}

impl Input {
    /// An input of per-sample shape `shape` (Keras' `Input(shape=…)`).
    pub fn new(shape: &[usize]) -> Input {
        Input {
            shape: shape.to_vec(),
        }
    }
}

/// `Flatten()`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flatten {
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Flatten {
    /// Flattens each sample into one axis.
    pub fn new() -> Flatten {
        Flatten { input_shape: None }
    }
}

/// `Reshape(target_shape)`: the same values per sample in another shape; one dimension
/// may be −1, worked out from the others (`Reshape::new(&[7, 7, -1])`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reshape {
    /// The per-sample output shape (Keras' `target_shape`); one entry may be −1.
    pub target_shape: Vec<isize>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Reshape {
    /// Reshapes each sample to `target_shape` (one entry may be −1).
    pub fn new(target_shape: &[isize]) -> Reshape {
        Reshape {
            target_shape: target_shape.to_vec(),
            input_shape: None,
        }
    }

    /// The per-sample output shape for `len` values per sample.
    pub(crate) fn out_shape(&self, len: usize) -> anyhow::Result<Vec<usize>> {
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        anyhow::ensure!(
            !self.target_shape.is_empty()
                && unknown <= 1
                && self.target_shape.iter().all(|&d| d > 0 || d == -1),
            "target shape {:?}: sizes must be positive, with at most one −1",
            self.target_shape
        );
        let known = self
            .target_shape
            .iter()
            .filter(|&&d| d > 0)
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .ok_or_else(|| anyhow::anyhow!("target shape {:?} overflows", self.target_shape))?;
        anyhow::ensure!(
            len.is_multiple_of(known) && (unknown == 1 || known == len),
            "target shape {:?} does not hold the {len} values of a sample",
            self.target_shape
        );
        Ok(self
            .target_shape
            .iter()
            .map(|&d| if d == -1 { len / known } else { d as usize })
            .collect())
    }
}

/// `Dense(units, activation=None, use_bias=True, kernel_initializer='glorot_uniform',
/// kernel_regularizer=None)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    /// Output features (Keras' `units`).
    pub units: usize,
    /// The activation after the layer (Keras' `activation`, linear by default).
    pub activation: ActivationFn,
    /// Whether the layer adds a bias (Keras' `use_bias`, on by default).
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// How the kernel starts (Keras' `kernel_initializer`, Glorot uniform by default).
    #[serde(default)]
    pub kernel_initializer: Initializer,
    /// A penalty on the kernel (Keras' `kernel_regularizer`, none by default).
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Dense {
    /// `units` outputs: linear, with a bias, a Glorot uniform kernel.
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
    /// The activation after the layer (Keras' `activation`, linear by default).
    pub fn activation(mut self, activation: ActivationFn) -> Self {
        self.activation = activation;
        self
    }
}

kernel_builders!(Dense);

/// `Activation(fn)`: an activation as a layer of its own.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activation {
    /// The activation function it applies.
    pub activation: ActivationFn,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Activation {
    /// A layer that applies `activation`.
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
    /// The fraction of inputs dropped in training (Keras' `rate`, in [0, 1)).
    pub rate: f32,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Dropout {
    /// Drops a fraction `rate` of the inputs in training.
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            rate,
            input_shape: None,
        }
    }
}
