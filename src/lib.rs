//! wgcnn: convolutional neural networks trained on any GPU wgpu reaches.
//!
//! Every forward and backward pass is a WGSL compute shader (`shaders/`) with a plain-Rust
//! reference of the same maths beside its launcher (`src/ops/`). Activations are NHWC
//! (channels last, as Keras), conv kernels HWIO, dense kernels `[in, out]`.

pub mod gpu;
pub mod ops;
pub mod tensor;
pub mod testing;

pub use gpu::Gpu;
pub use tensor::Tensor;
