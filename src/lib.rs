//! wgcnn: convolutional neural networks trained on any GPU wgpu reaches.
//!
//! Every forward and backward pass is a WGSL compute shader (`shaders/`) with a plain-Rust
//! reference of the same maths beside its launcher (`src/ops/`). Activations are NHWC
//! (channels last, as Keras), conv kernels HWIO, dense kernels `[in, out]`.

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
        MaxPooling2D, Maximum, Minimum, Multiply, ReLU, Reshape, SeparableConv2D, Subtract,
        UpSampling2D, ZeroPadding2D,
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
