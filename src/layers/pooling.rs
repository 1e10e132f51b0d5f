//! Pooling layers: windows of max or mean, and their global forms.

use crate::ops::Padding;

/// `MaxPooling2D(pool_size, strides=None, padding='valid')`; strides default to the pool
/// size, as in Keras.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaxPooling2D {
    pub pool_size: (usize, usize),
    pub strides: Option<(usize, usize)>,
    pub padding: Padding,
    pub input_shape: Option<Vec<usize>>,
}

/// `AveragePooling2D(pool_size, strides=None, padding='valid')`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AveragePooling2D {
    pub pool_size: (usize, usize),
    pub strides: Option<(usize, usize)>,
    pub padding: Padding,
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
            pub fn strides(mut self, h: usize, w: usize) -> Self {
                self.strides = Some((h, w));
                self
            }
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
    pub input_shape: Option<Vec<usize>>,
}

/// `GlobalMaxPooling2D()`: (h, w, c) → (c), the maximum of each channel.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GlobalMaxPooling2D {
    pub input_shape: Option<Vec<usize>>,
}

macro_rules! unit_builders {
    ($($t:ident),*) => {$(
        impl $t {
            pub fn new() -> $t {
                $t { input_shape: None }
            }
        }
    )*};
}
unit_builders!(GlobalAveragePooling2D, GlobalMaxPooling2D);
