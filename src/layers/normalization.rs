//! Normalization layers.

/// `BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True)`:
/// normalises each channel
/// (the last axis) over the batch — over N·H·W after a Conv2D, over N after a Dense —
/// with the batch's mean and biased variance in training, and with moving averages of
/// them in evaluate and predict; then scales by `gamma` and shifts by `beta` (trainable,
/// 1 and 0 at first). The moving mean and variance (0 and 1 at first) are
/// non-trainable parameters, updated in training as `m ← momentum·m + (1 − momentum)·x`.
/// Without `center` there is no `beta` (no shift), without `scale` no `gamma`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNormalization {
    /// The moving averages' momentum (Keras' `momentum`, 0.99 by default).
    pub momentum: f32,
    /// The small constant added to the variance (Keras' `epsilon`, 1e-3 by default).
    pub epsilon: f32,
    /// Whether to add the trainable shift `beta` (Keras' `center`, on by default).
    #[serde(default = "super::yes")]
    pub center: bool,
    /// Whether to multiply by the trainable `gamma` (Keras' `scale`, on by default).
    #[serde(default = "super::yes")]
    pub scale: bool,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    /// Keras' defaults: momentum 0.99, epsilon 1e-3, with `beta` and `gamma`.
    pub fn new() -> BatchNormalization {
        BatchNormalization {
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            input_shape: None,
        }
    }
    /// The moving averages' momentum (Keras' `momentum`, 0.99 by default; in [0, 1]).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }
}

/// The options both normalizations share.
macro_rules! normalization_builders {
    ($($t:ident),*) => {$(
        impl $t {
            /// The small constant added to the variance (Keras' `epsilon`, 1e-3).
            pub fn epsilon(mut self, epsilon: f32) -> Self {
                self.epsilon = epsilon;
                self
            }
            /// Whether to add the trainable shift `beta` (Keras' `center`, on by default).
            pub fn center(mut self, on: bool) -> Self {
                self.center = on;
                self
            }
            /// Whether to multiply by the trainable `gamma` (Keras' `scale`, on by
            /// default).
            pub fn scale(mut self, on: bool) -> Self {
                self.scale = on;
                self
            }
        }
    )*};
}
normalization_builders!(BatchNormalization, LayerNormalization);

/// `LayerNormalization(axis=-1, epsilon=1e-3, center=True, scale=True)`: normalises each
/// sample's last axis on its own (each pixel's channels after a Conv2D, the features
/// after a Dense) with its mean and biased variance, the same in training and
/// inference; then scales by `gamma` and shifts by `beta` (trainable, 1 and 0 at first).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerNormalization {
    /// The small constant added to the variance (Keras' `epsilon`, 1e-3 by default).
    pub epsilon: f32,
    /// Whether to add the trainable shift `beta` (Keras' `center`, on by default).
    pub center: bool,
    /// Whether to multiply by the trainable `gamma` (Keras' `scale`, on by default).
    pub scale: bool,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerNormalization {
    /// Keras' defaults: epsilon 1e-3, with `beta` and `gamma`.
    pub fn new() -> LayerNormalization {
        LayerNormalization {
            epsilon: 1e-3,
            center: true,
            scale: true,
            input_shape: None,
        }
    }
}
