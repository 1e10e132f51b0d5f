//! Pooling layers: windows of max or mean, and their global forms.

use crate::ops::Padding;

/// `MaxPooling2D(pool_size, strides=None, padding='valid')`; strides default to the pool
/// size, as in Keras.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaxPooling2D {
    /// The window's (height, width) (Keras' `pool_size`).
    pub pool_size: (usize, usize),
    /// The step between windows (Keras' `strides`; None for the pool size).
    pub strides: Option<(usize, usize)>,
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

/// `AveragePooling2D(pool_size, strides=None, padding='valid')`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AveragePooling2D {
    /// The window's (height, width) (Keras' `pool_size`).
    pub pool_size: (usize, usize),
    /// The step between windows (Keras' `strides`; None for the pool size).
    pub strides: Option<(usize, usize)>,
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

macro_rules! pooling_builders {
    ($($t:ident),*) => {$(
        impl $t {
            /// A square `pool × pool` window.
            pub fn new(pool: usize) -> $t {
                $t {
                    pool_size: (pool, pool),
                    strides: None,
                    padding: Padding::Valid,
                    input_shape: None,
                }
            }
            /// A rectangular `h × w` window.
            pub fn pool_size(mut self, h: usize, w: usize) -> Self {
                self.pool_size = (h, w);
                self
            }
            /// The step between windows (Keras' `strides`, the pool size by default).
            pub fn strides(mut self, h: usize, w: usize) -> Self {
                self.strides = Some((h, w));
                self
            }
            /// 'valid' (the default) or 'same' (Keras' `padding`).
            pub fn padding(mut self, padding: Padding) -> Self {
                self.padding = padding;
                self
            }
        }
    )*};
}
pooling_builders!(MaxPooling2D, AveragePooling2D);

/// `GlobalAveragePooling2D()`: (h, w, c) → (c), the mean of each channel.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GlobalAveragePooling2D {
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

/// `GlobalMaxPooling2D()`: (h, w, c) → (c), the maximum of each channel.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GlobalMaxPooling2D {
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

macro_rules! unit_builders {
    ($($t:ident),*) => {$(
        impl $t {
            /// The layer (it takes no arguments).
            pub fn new() -> $t {
                $t { input_shape: None }
            }
        }
    )*};
}
unit_builders!(GlobalAveragePooling2D, GlobalMaxPooling2D);
