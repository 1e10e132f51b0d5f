//! wgcnn: convolutional neural networks trained on any GPU wgpu reaches.
//!
//! Every forward and backward pass is a WGSL compute shader (`shaders/`) with a plain-Rust
//! reference of the same maths beside its launcher (`src/ops/`). Activations are NHWC
//! (channels last, as Keras), conv kernels HWIO, dense kernels `[in, out]`.
//!
//! # Quick start
//!
//! Keras' `Sequential`, compiled and trained, here on the CPU reference path
//! (`Device::gpu()?` or no `set_device` at all trains on the GPU):
//!
//! ```
//! use wgcnn::prelude::*;
//! # fn main() -> anyhow::Result<()> {
//! let mut model = Sequential::new();
//! model.add(Input::new(&[8, 8, 1]))?;
//! model.add(Conv2D::new(4, 3).padding(Same).activation(Relu))?;
//! model.add(MaxPooling2D::new(2))?;
//! model.add(Flatten::new())?;
//! model.add(Dense::new(3).activation(Softmax))?;
//! model.set_device(Device::Cpu).set_seed(1);
//! model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
//! // 64 grey 8×8 images, labelled 0–2 by their brightest third.
//! let (x, y) = wgcnn::testing::brightest_third(64, 1);
//! let fit = FitConfig { epochs: 3, batch_size: 16, verbose: false, ..Default::default() };
//! let history = model.fit(&x, &y, &fit)?;
//! assert_eq!(history.loss.len(), 3);
//! let (loss, accuracy) = model.evaluate(&x, &y)?;
//! assert!(loss.is_finite() && (0.0..=1.0).contains(&accuracy));
//! let probabilities = model.predict(&x[..64], 1)?; // one image: three class probabilities
//! assert_eq!(probabilities.len(), 3);
//! # Ok(()) }
//! ```
//!
//! The functional API (`input`, `Layer::apply`, `Model::new`), data sets read from disk
//! ([`data::Source`]), training over MPI ([`distributed`]) and the lecture's experiments
//! ([`experiments`], [`report`]) build on the same `Model`.

#![warn(missing_docs)]

pub mod callbacks;
pub mod data;
pub mod distributed;
pub mod experiments;
pub mod gpu;
pub mod io;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod report;
pub mod tensor;
pub mod testing;
pub mod viz;

pub use gpu::Gpu;
pub use tensor::Tensor;

/// Everything a model definition needs, Keras-style.
pub mod prelude {
    pub use crate::distributed::Distributed;
    pub use crate::layers::ActivationFn::{
        self, Elu, Gelu, GeluApproximate, HardSigmoid, HardSilu, HardSilu as HardSwish, LeakyRelu,
        Linear, Relu, Relu6, Sigmoid, Silu, Silu as Swish, Softmax, Softplus, Softsign, Tanh,
    };
    pub use crate::layers::{
        Activation, Add, Average, AveragePooling2D, BatchNormalization, Concatenate, Conv2D,
        Conv2DTranspose, Cropping2D, Dense, DepthwiseConv2D, Dropout, ELU, Flatten,
        GlobalAveragePooling2D, GlobalMaxPooling2D, Input, Layer, LayerNormalization, LeakyReLU,
        MaxPooling2D, Maximum, Minimum, Multiply, Normalization, ReLU, Rescaling, Reshape,
        SeparableConv2D, Subtract, UpSampling2D, ZeroPadding2D,
    };
    pub use crate::layers::{Initializer, Regularizer, l2};
    pub use crate::model::{
        Device, FitConfig, History, Loss, Metric, Model, NamedTensor, Sequential, StepMemory,
        SymbolicTensor, input,
    };
    pub use crate::ops::Padding::{self, Same, Valid};
    pub use crate::ops::optimizer::{LearningRate, Optimizer};
    pub use crate::ops::upsampling2d::Interpolation::{self, Bilinear, Nearest};
}
