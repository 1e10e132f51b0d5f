//! Keras-style layer descriptions. A layer here is only configuration; `Sequential::add`
//! resolves it against its input shape (checking that it fits) into a [`Node`], which the
//! GPU graph and the CPU path both execute.

use crate::model::SymbolicTensor;
use crate::ops::Padding;
use crate::ops::activation::Act;
use crate::ops::conv2d::Conv2dShape;
use crate::ops::conv2d_transpose::Conv2dTransposeShape;
use crate::ops::depthwise_conv2d::DepthwiseShape;
use crate::ops::layernorm::LayerNormShape;
use crate::ops::merge::MergeOp;
use crate::ops::pad2d::Pad2dShape;
use crate::ops::pool2d::Pool2dShape;
use crate::ops::upsampling2d::{Interpolation, UpSampling2dShape};
use crate::tensor::checked_len;
use anyhow::{Result, bail, ensure};

mod activations;
mod conv;
mod core;
mod merge;
mod normalization;
mod pooling;
mod preprocessing;
mod reshaping;
mod summary;

pub use activations::{ELU, LeakyReLU, ReLU};
pub use conv::{Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D};
pub use core::{Activation, Dense, Dropout, Flatten, Input, Reshape};
pub use merge::{Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract};
pub use normalization::{BatchNormalization, LayerNormalization};
pub use pooling::{AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D};
pub use preprocessing::{Normalization, Rescaling};
pub use reshaping::{Cropping2D, UpSampling2D, ZeroPadding2D};
pub use summary::{functional_summary, summary, thousands};

/// Activation functions, as in Keras' `activation=` argument (the prelude exports the
/// variants: `.activation(Relu)`), with Keras 3's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ActivationFn {
    /// `x` unchanged (Keras' `linear`, the default: no activation).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// Row-wise softmax; supported as the model's last activation, where it is fused with
    /// the cross-entropy loss.
    Softmax,
    /// `min(max(x, 0), 6)` (MobileNet's).
    Relu6,
    /// Keras' `leaky_relu`: slope 0.2 below 0 (the `LeakyReLU` layer's default is 0.3).
    LeakyRelu,
    /// `x` above 0, `eˣ − 1` below.
    Elu,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `relu6(x + 3) / 6` (Keras 3).
    HardSigmoid,
    /// `x·Φ(x)`, Φ the normal CDF (Keras' `gelu`, whose default is this exact erf form).
    Gelu,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (Keras' `gelu(x, approximate=True)`).
    GeluApproximate,
    /// `x·sigmoid(x)` (Keras' `silu`; the prelude also names it `Swish`).
    Silu,
    /// `x·relu6(x + 3) / 6` (Keras' `hard_silu`; the prelude also names it `HardSwish`).
    HardSilu,
}

impl ActivationFn {
    /// The element-wise kernel for this activation (softmax is not element-wise).
    pub(crate) fn elementwise(self) -> Option<Act> {
        Some(match self {
            ActivationFn::Linear => Act::Linear,
            ActivationFn::Relu => Act::RELU,
            ActivationFn::Sigmoid => Act::Sigmoid,
            ActivationFn::Tanh => Act::Tanh,
            ActivationFn::Softmax => return None,
            ActivationFn::Relu6 => Act::RELU6,
            ActivationFn::LeakyRelu => Act::leaky_relu(0.2),
            ActivationFn::Elu => Act::Elu { alpha: 1.0 },
            ActivationFn::Softplus => Act::Softplus,
            ActivationFn::Softsign => Act::Softsign,
            ActivationFn::HardSigmoid => Act::HardSigmoid,
            ActivationFn::Gelu => Act::Gelu { approximate: false },
            ActivationFn::GeluApproximate => Act::Gelu { approximate: true },
            ActivationFn::Silu => Act::Silu,
            ActivationFn::HardSilu => Act::HardSwish,
        })
    }
}

/// Every layer a model accepts (each builder converts into one).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    /// An [`Input`]: the model's input declaration.
    Input(Input),
    /// A [`Conv2D`] layer.
    Conv2D(Conv2D),
    /// A [`Conv2DTranspose`] layer.
    Conv2DTranspose(Conv2DTranspose),
    /// A [`DepthwiseConv2D`] layer.
    DepthwiseConv2D(DepthwiseConv2D),
    /// A [`SeparableConv2D`] layer.
    SeparableConv2D(SeparableConv2D),
    /// A [`MaxPooling2D`] layer.
    MaxPooling2D(MaxPooling2D),
    /// An [`AveragePooling2D`] layer.
    AveragePooling2D(AveragePooling2D),
    /// A [`GlobalAveragePooling2D`] layer.
    GlobalAveragePooling2D(GlobalAveragePooling2D),
    /// A [`GlobalMaxPooling2D`] layer.
    GlobalMaxPooling2D(GlobalMaxPooling2D),
    /// A [`Flatten`] layer.
    Flatten(Flatten),
    /// A [`Reshape`] layer.
    Reshape(Reshape),
    /// A [`ZeroPadding2D`] layer.
    ZeroPadding2D(ZeroPadding2D),
    /// A [`Cropping2D`] layer.
    Cropping2D(Cropping2D),
    /// An [`UpSampling2D`] layer.
    UpSampling2D(UpSampling2D),
    /// A [`Dense`] layer.
    Dense(Dense),
    /// An [`Activation`] layer.
    Activation(Activation),
    /// A [`ReLU`] layer.
    ReLU(ReLU),
    /// A [`LeakyReLU`] layer.
    LeakyReLU(LeakyReLU),
    /// An [`ELU`] layer.
    ELU(ELU),
    /// A [`Dropout`] layer.
    Dropout(Dropout),
    /// A [`BatchNormalization`] layer.
    BatchNormalization(BatchNormalization),
    /// A [`LayerNormalization`] layer.
    LayerNormalization(LayerNormalization),
    /// An [`Add`] merge layer.
    Add(Add),
    /// A [`Subtract`] merge layer.
    Subtract(Subtract),
    /// A [`Multiply`] merge layer.
    Multiply(Multiply),
    /// An [`Average`] merge layer.
    Average(Average),
    /// A [`Maximum`] merge layer.
    Maximum(Maximum),
    /// A [`Minimum`] merge layer.
    Minimum(Minimum),
    /// A [`Concatenate`] merge layer.
    Concatenate(Concatenate),
    /// A [`Rescaling`] layer.
    Rescaling(Rescaling),
    /// A [`Normalization`] layer.
    Normalization(Normalization),
}

/// Every layer converts into a [`Layer`], and every one but [`Input`] takes the model's
/// per-sample input shape the same way, as Keras' `input_shape=` on any first layer.
macro_rules! layers {
    ($($t:ident),*) => {
        impl From<Input> for Layer {
            fn from(l: Input) -> Layer {
                Layer::Input(l)
            }
        }
        $(
            impl From<$t> for Layer {
                fn from(l: $t) -> Layer {
                    Layer::$t(l)
                }
            }
            impl $t {
                /// The model's per-sample input shape, on the first layer (Keras'
                /// `input_shape=`; or add [`Input`] first).
                pub fn input_shape(mut self, shape: &[usize]) -> Self {
                    self.input_shape = Some(shape.to_vec());
                    self
                }
                /// Applies the layer to `x` in a functional model (Keras' `layer(x)`):
                /// checks that it fits and returns its output.
                pub fn apply(self, x: &SymbolicTensor) -> Result<SymbolicTensor> {
                    crate::model::apply_layer(self.into(), &[x])
                }
            }
        )*
    };
}
layers!(
    Conv2D,
    Conv2DTranspose,
    DepthwiseConv2D,
    SeparableConv2D,
    MaxPooling2D,
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Flatten,
    Reshape,
    ZeroPadding2D,
    Cropping2D,
    UpSampling2D,
    Dense,
    Activation,
    ReLU,
    LeakyReLU,
    ELU,
    Dropout,
    BatchNormalization,
    LayerNormalization,
    Rescaling,
    Normalization
);

impl Layer {
    /// The input shape given with this layer (an [`Input`], or `.input_shape(..)`).
    pub(crate) fn input_shape(&self) -> Option<&[usize]> {
        match self {
            Layer::Input(i) => Some(&i.shape),
            Layer::Conv2D(l) => l.input_shape.as_deref(),
            Layer::Conv2DTranspose(l) => l.input_shape.as_deref(),
            Layer::DepthwiseConv2D(l) => l.input_shape.as_deref(),
            Layer::SeparableConv2D(l) => l.input_shape.as_deref(),
            Layer::MaxPooling2D(l) => l.input_shape.as_deref(),
            Layer::AveragePooling2D(l) => l.input_shape.as_deref(),
            Layer::GlobalAveragePooling2D(l) => l.input_shape.as_deref(),
            Layer::GlobalMaxPooling2D(l) => l.input_shape.as_deref(),
            Layer::Flatten(l) => l.input_shape.as_deref(),
            Layer::Reshape(l) => l.input_shape.as_deref(),
            Layer::ZeroPadding2D(l) => l.input_shape.as_deref(),
            Layer::Cropping2D(l) => l.input_shape.as_deref(),
            Layer::UpSampling2D(l) => l.input_shape.as_deref(),
            Layer::Dense(l) => l.input_shape.as_deref(),
            Layer::Activation(l) => l.input_shape.as_deref(),
            Layer::ReLU(l) => l.input_shape.as_deref(),
            Layer::LeakyReLU(l) => l.input_shape.as_deref(),
            Layer::ELU(l) => l.input_shape.as_deref(),
            Layer::Dropout(l) => l.input_shape.as_deref(),
            Layer::BatchNormalization(l) => l.input_shape.as_deref(),
            Layer::LayerNormalization(l) => l.input_shape.as_deref(),
            Layer::Rescaling(l) => l.input_shape.as_deref(),
            Layer::Normalization(l) => l.input_shape.as_deref(),
            Layer::Add(_)
            | Layer::Subtract(_)
            | Layer::Multiply(_)
            | Layer::Average(_)
            | Layer::Maximum(_)
            | Layer::Minimum(_)
            | Layer::Concatenate(_) => None,
        }
    }
    /// Keras' class name: `Conv2D`, `InputLayer`, …
    pub(crate) fn keras_type(&self) -> &'static str {
        match self {
            Layer::Input(_) => "InputLayer",
            Layer::Conv2D(_) => "Conv2D",
            Layer::Conv2DTranspose(_) => "Conv2DTranspose",
            Layer::DepthwiseConv2D(_) => "DepthwiseConv2D",
            Layer::SeparableConv2D(_) => "SeparableConv2D",
            Layer::MaxPooling2D(_) => "MaxPooling2D",
            Layer::AveragePooling2D(_) => "AveragePooling2D",
            Layer::GlobalAveragePooling2D(_) => "GlobalAveragePooling2D",
            Layer::GlobalMaxPooling2D(_) => "GlobalMaxPooling2D",
            Layer::Flatten(_) => "Flatten",
            Layer::Reshape(_) => "Reshape",
            Layer::ZeroPadding2D(_) => "ZeroPadding2D",
            Layer::Cropping2D(_) => "Cropping2D",
            Layer::UpSampling2D(_) => "UpSampling2D",
            Layer::Dense(_) => "Dense",
            Layer::Activation(_) => "Activation",
            Layer::ReLU(_) => "ReLU",
            Layer::LeakyReLU(_) => "LeakyReLU",
            Layer::ELU(_) => "ELU",
            Layer::Dropout(_) => "Dropout",
            Layer::BatchNormalization(_) => "BatchNormalization",
            Layer::LayerNormalization(_) => "LayerNormalization",
            Layer::Add(_) => "Add",
            Layer::Subtract(_) => "Subtract",
            Layer::Multiply(_) => "Multiply",
            Layer::Average(_) => "Average",
            Layer::Maximum(_) => "Maximum",
            Layer::Minimum(_) => "Minimum",
            Layer::Concatenate(_) => "Concatenate",
            Layer::Rescaling(_) => "Rescaling",
            Layer::Normalization(_) => "Normalization",
        }
    }
    /// Keras' automatic name stem: `conv2d`, `max_pooling2d`, …
    pub(crate) fn name_stem(&self) -> &'static str {
        match self {
            Layer::Input(_) => "input_layer",
            Layer::Conv2D(_) => "conv2d",
            Layer::Conv2DTranspose(_) => "conv2d_transpose",
            Layer::DepthwiseConv2D(_) => "depthwise_conv2d",
            Layer::SeparableConv2D(_) => "separable_conv2d",
            Layer::MaxPooling2D(_) => "max_pooling2d",
            Layer::AveragePooling2D(_) => "average_pooling2d",
            Layer::GlobalAveragePooling2D(_) => "global_average_pooling2d",
            Layer::GlobalMaxPooling2D(_) => "global_max_pooling2d",
            Layer::Flatten(_) => "flatten",
            Layer::Reshape(_) => "reshape",
            Layer::ZeroPadding2D(_) => "zero_padding2d",
            Layer::Cropping2D(_) => "cropping2d",
            Layer::UpSampling2D(_) => "up_sampling2d",
            Layer::Dense(_) => "dense",
            Layer::Activation(_) => "activation",
            Layer::ReLU(_) => "re_lu",
            Layer::LeakyReLU(_) => "leaky_re_lu",
            Layer::ELU(_) => "elu",
            Layer::Dropout(_) => "dropout",
            Layer::BatchNormalization(_) => "batch_normalization",
            Layer::LayerNormalization(_) => "layer_normalization",
            Layer::Add(_) => "add",
            Layer::Subtract(_) => "subtract",
            Layer::Multiply(_) => "multiply",
            Layer::Average(_) => "average",
            Layer::Maximum(_) => "maximum",
            Layer::Minimum(_) => "minimum",
            Layer::Concatenate(_) => "concatenate",
            Layer::Rescaling(_) => "rescaling",
            Layer::Normalization(_) => "normalization",
        }
    }
}

/// A layer resolved against its input: what the engine runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A model input: its tensor is the batch loaded for a step.
    Input,
    /// Element-wise merge of the inputs, folded pairwise; the last fold is scaled by
    /// `scale` (1/n for Average, else 1).
    Merge {
        /// The pairwise function folded over the inputs.
        op: MergeOp,
        /// The factor on the last fold (1/n for Average, else 1).
        scale: f32,
    },
    /// Concatenation: per sample, `rows` rows of each input's `widths[i]` columns side by
    /// side (see [`crate::ops::concat`]).
    Concat {
        /// Rows per sample: the product of the axes before the joined one.
        rows: usize,
        /// Each input's columns: its length on the axis times the axes after it.
        widths: Vec<usize>,
    },
    /// Shapes per sample (batch set at run time).
    Conv {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// Output channels (Keras' `filters`).
        filters: usize,
        /// The kernel's (height, width).
        kernel: (usize, usize),
        /// The step between windows: (rows, columns).
        strides: (usize, usize),
        /// The spacing of the kernel's taps: (rows, columns).
        dilation: (usize, usize),
        /// 'valid' or 'same'.
        padding: Padding,
        /// Kernel options: bias, initializer, L2 factor (0 for none).
        options: KernelOptions,
    },
    /// A transposed convolution to `filters` channels.
    ConvTranspose {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// Output channels (Keras' `filters`).
        filters: usize,
        /// The kernel's (height, width).
        kernel: (usize, usize),
        /// The up-sampling step: (rows, columns).
        strides: (usize, usize),
        /// 'valid' or 'same'.
        padding: Padding,
        /// Kernel options: bias, initializer, L2 factor (0 for none).
        options: KernelOptions,
    },
    /// Normalises each row of `channels` (the last axis) on its own.
    LayerNorm {
        /// The length of the normalised last axis.
        channels: usize,
        /// The small constant added to the variance.
        epsilon: f32,
        /// Whether it has the trainable shift `beta` (Keras' `center`).
        center: bool,
        /// Whether it has the trainable factor `gamma` (Keras' `scale`).
        scale: bool,
    },
    /// A depthwise convolution (`group_in` 1): `mult` filters per input channel; or a
    /// grouped Conv2D: groups of `group_in` input channels, `mult` filters each.
    DepthwiseConv {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// Filters per group (the depth multiplier of a depthwise convolution).
        mult: usize,
        /// Input channels per group (1 for a depthwise convolution).
        group_in: usize,
        /// The kernel's (height, width).
        kernel: (usize, usize),
        /// The step between windows: (rows, columns).
        strides: (usize, usize),
        /// The spacing of the kernel's taps: (rows, columns).
        dilation: (usize, usize),
        /// 'valid' or 'same'.
        padding: Padding,
        /// Kernel options: bias, initializer, L2 factor (0 for none).
        options: KernelOptions,
    },
    /// A depthwise convolution (no bias) into a 1×1 convolution to `filters`.
    SeparableConv {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// Depthwise filters per input channel (Keras' `depth_multiplier`).
        mult: usize,
        /// The depthwise kernel's (height, width).
        kernel: (usize, usize),
        /// The depthwise stage's step between windows: (rows, columns).
        strides: (usize, usize),
        /// The spacing of the depthwise kernel's taps: (rows, columns).
        dilation: (usize, usize),
        /// The depthwise stage's padding: 'valid' or 'same'.
        padding: Padding,
        /// Output channels of the 1×1 convolution (Keras' `filters`).
        filters: usize,
        /// Whether the 1×1 convolution adds a bias.
        use_bias: bool,
        /// How the depthwise kernel starts.
        depthwise_init: Initializer,
        /// How the pointwise (1×1) kernel starts.
        pointwise_init: Initializer,
        /// L2 factors of the depthwise and pointwise kernels (0 for none).
        l2: (f32, f32),
    },
    /// The maximum over each window (MaxPooling2D; GlobalMaxPooling2D as one window).
    MaxPool {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// The window's (height, width).
        pool: (usize, usize),
        /// The step between windows: (rows, columns).
        strides: (usize, usize),
        /// 'valid' or 'same'.
        padding: Padding,
    },
    /// The mean over each window (AveragePooling2D; GlobalAveragePooling2D as one window).
    AvgPool {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// The window's (height, width).
        pool: (usize, usize),
        /// The step between windows: (rows, columns).
        strides: (usize, usize),
        /// 'valid' or 'same'.
        padding: Padding,
    },
    /// A view of the input in another shape (Flatten, Reshape): no kernel runs.
    Flatten,
    /// ZeroPadding2D (`crop` false) or Cropping2D: `sides` = ((top, bottom), (left, right)).
    Pad {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// Rows and columns added or cut: ((top, bottom), (left, right)).
        sides: [[usize; 2]; 2],
        /// Whether it cuts (Cropping2D) rather than pads (ZeroPadding2D).
        crop: bool,
    },
    /// Up-sampling by whole factors (UpSampling2D).
    UpSampling {
        /// The per-sample input shape: (height, width, channels).
        in_hwc: [usize; 3],
        /// The factors for rows and columns.
        size: (usize, usize),
        /// How new pixels are filled: nearest (repeated) or bilinear.
        interpolation: Interpolation,
    },
    /// A fully connected layer: `n_in` inputs to `units` outputs.
    Dense {
        /// Input features per sample.
        n_in: usize,
        /// Output features (Keras' `units`).
        units: usize,
        /// Kernel options: bias, initializer, L2 factor (0 for none).
        options: KernelOptions,
    },
    /// An activation layer: no op of its own, only the node's `act` on its input.
    Activation,
    /// A fixed affine map per channel (Rescaling, Normalization): `x·scale[c] + offset[c]`.
    ChannelAffine {
        /// One factor per channel (the last axis).
        scale: Vec<f32>,
        /// One offset per channel.
        offset: Vec<f32>,
    },
    /// Zeroes each value with probability `rate` in training; the identity otherwise.
    Dropout {
        /// The fraction of values dropped, in [0, 1).
        rate: f32,
    },
    /// Normalises `channels` (the last axis) over the batch and every other axis.
    BatchNorm {
        /// The length of the normalised last axis.
        channels: usize,
        /// The moving averages' momentum: `m ← momentum·m + (1 − momentum)·x`.
        momentum: f32,
        /// The small constant added to the variance.
        epsilon: f32,
        /// Whether it has `beta` (Keras' `center`) and `gamma` (`scale`).
        center: bool,
        /// Whether it has the trainable factor `gamma` (Keras' `scale`).
        scale: bool,
    },
}

/// A Conv2D's, DepthwiseConv2D's or Dense layer's kernel options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelOptions {
    /// Whether the layer adds a bias (Keras' `use_bias`).
    pub use_bias: bool,
    /// How the kernel starts (Keras' `kernel_initializer`).
    pub init: Initializer,
    /// The L2 factor (0 for none).
    pub l2: f32,
}

impl KernelOptions {
    fn of(use_bias: bool, init: Initializer, r: Option<Regularizer>) -> KernelOptions {
        KernelOptions {
            use_bias,
            init,
            l2: l2_factor(r),
        }
    }
}

/// A regularizer's L2 factor (0 for none).
fn l2_factor(r: Option<Regularizer>) -> f32 {
    match r {
        Some(Regularizer::L2(f)) => f,
        None => 0.0,
    }
}

impl Op {
    /// The kernel options of a layer with a kernel.
    pub fn kernel_options(&self) -> Option<KernelOptions> {
        match self {
            Op::Conv { options, .. }
            | Op::ConvTranspose { options, .. }
            | Op::DepthwiseConv { options, .. }
            | Op::Dense { options, .. } => Some(*options),
            _ => None,
        }
    }

    /// The conv2d shapes of this op at `batch` (None unless it is a convolution).
    pub fn conv_shape(&self, batch: usize) -> Option<Conv2dShape> {
        match *self {
            Op::Conv {
                in_hwc,
                filters,
                kernel,
                strides,
                dilation,
                padding,
                ..
            } => Some(Conv2dShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                in_c: in_hwc[2],
                out_c: filters,
                k_h: kernel.0,
                k_w: kernel.1,
                stride_h: strides.0,
                stride_w: strides.1,
                dilation_h: dilation.0,
                dilation_w: dilation.1,
                padding,
            }),
            _ => None,
        }
    }

    /// The L2 penalties of its kernels: (parameter index, factor), factors > 0 only.
    pub fn l2_penalties(&self) -> Vec<(usize, f32)> {
        let all = match self {
            Op::SeparableConv { l2, .. } => vec![(0, l2.0), (1, l2.1)],
            _ => self
                .kernel_options()
                .map(|o| (0, o.l2))
                .into_iter()
                .collect(),
        };
        all.into_iter().filter(|&(_, f)| f > 0.0).collect()
    }

    /// The transposed convolution's shapes at `batch` (None unless it is one).
    pub fn conv_transpose_shape(&self, batch: usize) -> Option<Conv2dTransposeShape> {
        match *self {
            Op::ConvTranspose {
                in_hwc,
                filters,
                kernel,
                strides,
                padding,
                ..
            } => Some(Conv2dTransposeShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                in_c: in_hwc[2],
                filters,
                k_h: kernel.0,
                k_w: kernel.1,
                stride_h: strides.0,
                stride_w: strides.1,
                padding,
            }),
            _ => None,
        }
    }

    /// The depthwise shapes of this op at `batch` (None unless it is one).
    pub fn depthwise_shape(&self, batch: usize) -> Option<DepthwiseShape> {
        match *self {
            Op::DepthwiseConv {
                in_hwc,
                mult,
                group_in,
                kernel,
                strides,
                dilation,
                padding,
                ..
            } => Some(DepthwiseShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                in_c: in_hwc[2],
                mult,
                group_in,
                k_h: kernel.0,
                k_w: kernel.1,
                stride_h: strides.0,
                stride_w: strides.1,
                dilation_h: dilation.0,
                dilation_w: dilation.1,
                padding,
            }),
            Op::SeparableConv {
                in_hwc,
                mult,
                kernel,
                strides,
                dilation,
                padding,
                ..
            } => Some(DepthwiseShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                in_c: in_hwc[2],
                mult,
                group_in: 1,
                k_h: kernel.0,
                k_w: kernel.1,
                stride_h: strides.0,
                stride_w: strides.1,
                dilation_h: dilation.0,
                dilation_w: dilation.1,
                padding,
            }),
            _ => None,
        }
    }

    /// The 1×1 convolution of a separable convolution at `batch`, over the depthwise
    /// stage's output (None unless it is one).
    pub fn pointwise_shape(&self, batch: usize) -> Option<Conv2dShape> {
        let Op::SeparableConv { filters, .. } = *self else {
            return None;
        };
        let d = self.depthwise_shape(batch)?;
        Some(Conv2dShape {
            batch,
            in_h: d.out_h(),
            in_w: d.out_w(),
            in_c: d.out_c(),
            out_c: filters,
            k_h: 1,
            k_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            padding: Padding::Valid,
        })
    }

    /// Where a batch normalization's tensors sit among its parameters: (gamma, beta,
    /// moving mean, moving variance), gamma and beta absent without `scale` / `center`.
    pub fn batchnorm_slots(&self) -> Option<(Option<usize>, Option<usize>, usize, usize)> {
        let Op::BatchNorm { center, scale, .. } = *self else {
            return None;
        };
        let beta = usize::from(scale);
        let mean = beta + usize::from(center);
        Some((scale.then_some(0), center.then_some(beta), mean, mean + 1))
    }

    /// The padding or cropping window of this op at `batch` (None unless it is one).
    pub fn pad_shape(&self, batch: usize) -> Option<Pad2dShape> {
        match *self {
            Op::Pad {
                in_hwc,
                sides,
                crop: false,
            } => Some(Pad2dShape::padding(batch, in_hwc, sides)),
            Op::Pad {
                in_hwc,
                sides,
                crop: true,
            } => Some(Pad2dShape::cropping(batch, in_hwc, sides)),
            _ => None,
        }
    }

    /// The up-sampling shapes of this op at `batch` (None unless it is one).
    pub fn upsampling_shape(&self, batch: usize) -> Option<UpSampling2dShape> {
        match *self {
            Op::UpSampling {
                in_hwc,
                size,
                interpolation,
            } => Some(UpSampling2dShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                c: in_hwc[2],
                scale_h: size.0,
                scale_w: size.1,
                interpolation,
            }),
            _ => None,
        }
    }

    /// Where a layer normalization's tensors sit among its parameters: (gamma, beta), each
    /// absent without `scale` / `center`.
    pub fn layernorm_slots(&self) -> Option<(Option<usize>, Option<usize>)> {
        let Op::LayerNorm { center, scale, .. } = *self else {
            return None;
        };
        let beta = usize::from(scale);
        Some((scale.then_some(0), center.then_some(beta)))
    }

    /// The layer normalization's shape over `elements` values (None unless it is one).
    pub fn layernorm_shape(&self, elements: usize) -> Option<LayerNormShape> {
        let Op::LayerNorm {
            channels, epsilon, ..
        } = *self
        else {
            return None;
        };
        Some(LayerNormShape {
            rows: elements / channels.max(1),
            cols: channels,
            epsilon,
        })
    }

    /// The pooling shapes of this op at `batch` (None unless it is a pooling layer).
    pub fn pool_shape(&self, batch: usize) -> Option<Pool2dShape> {
        match *self {
            Op::MaxPool {
                in_hwc,
                pool,
                strides,
                padding,
            }
            | Op::AvgPool {
                in_hwc,
                pool,
                strides,
                padding,
            } => Some(Pool2dShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                c: in_hwc[2],
                pool_h: pool.0,
                pool_w: pool.1,
                stride_h: strides.0,
                stride_w: strides.1,
                padding,
            }),
            _ => None,
        }
    }
}

/// One resolved layer: its Keras name, the op, the activation that follows it, and the
/// per-sample output shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The layer's name: given, or Keras' automatic one (`conv2d`, `dense_1`, …).
    pub name: String,
    /// Keras' class name of the layer: `Conv2D`, `InputLayer`, …
    pub keras_type: &'static str,
    /// The resolved operation the engine runs.
    pub op: Op,
    /// The layer's `activation` argument (linear for none).
    pub activation: ActivationFn,
    /// The element-wise activation it applies after its op: `activation`'s, or an
    /// activation layer's with its parameters (linear for none, and for softmax, which
    /// the loss applies).
    pub act: Act,
    /// The tensors it reads: the outputs of these nodes of its model (none for an input).
    pub inputs: Vec<usize>,
    /// The per-sample shape of its first input (its own shape for an input).
    pub in_shape: Vec<usize>,
    /// The per-sample shape of its output.
    pub out_shape: Vec<usize>,
    /// Whether training updates its parameters (Keras' `layer.trainable`). A frozen
    /// layer's parameters count as non-trainable, get no update and no regularizer
    /// penalty, and a frozen BatchNormalization normalises with its moving statistics
    /// (Keras' inference mode) in training too.
    pub trainable: bool,
}

/// How a parameter tensor starts: Keras' initializers (`kernel_initializer=`), drawn
/// from the model's seed. With fan_in = kernel height · width · input channels (a Dense
/// layer's inputs) and fan_out likewise with the filters: `GlorotUniform` (Keras'
/// default) U(±√(6/(fan_in + fan_out))); `HeUniform` U(±√(6/fan_in)); `LecunUniform`
/// U(±√(3/fan_in)); `GlorotNormal`, `HeNormal` and `LecunNormal` a normal truncated at
/// two standard deviations whose spread is √(2/(fan_in + fan_out)), √(2/fan_in) and
/// √(1/fan_in) (Keras draws N(0, 1) cut to [−2, 2] times stddev/0.8796…).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Initializer {
    /// U(±√(6/(fan_in + fan_out))) (Keras' `glorot_uniform`, the default).
    #[default]
    GlorotUniform,
    /// A truncated normal of spread √(2/(fan_in + fan_out)) (Keras' `glorot_normal`).
    GlorotNormal,
    /// A truncated normal of spread √(2/fan_in) (Keras' `he_normal`).
    HeNormal,
    /// U(±√(6/fan_in)) (Keras' `he_uniform`).
    HeUniform,
    /// A truncated normal of spread √(1/fan_in) (Keras' `lecun_normal`).
    LecunNormal,
    /// U(±√(3/fan_in)) (Keras' `lecun_uniform`).
    LecunUniform,
    /// All 0 (Keras' `zeros`).
    Zeros,
    /// All 1 (Keras' `ones`).
    Ones,
}

impl Initializer {
    /// `len` values for a kernel of fans (`fan_in`, `fan_out`).
    pub(crate) fn draw(
        self,
        len: usize,
        (fan_in, fan_out): (usize, usize),
        rng: &mut impl rand::Rng,
    ) -> Vec<f32> {
        let (fan_in, fan_out) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let avg = (fan_in + fan_out) / 2.0;
        let uniform = |rng: &mut dyn rand::RngCore, scale: f64, fan: f64| -> Vec<f32> {
            let limit = (3.0 * scale / fan).sqrt() as f32;
            (0..len)
                .map(|_| rand::Rng::random_range(rng, -limit..limit))
                .collect()
        };
        // Keras' truncated normal: N(0, 1) redrawn outside [−2, 2] (Box–Muller), scaled
        // so that the truncated spread is √(scale/fan).
        let normal = |rng: &mut dyn rand::RngCore, scale: f64, fan: f64| -> Vec<f32> {
            let stddev = (scale / fan).sqrt() / 0.879_625_661_034_239_8;
            (0..len)
                .map(|_| {
                    loop {
                        let u1: f64 = rand::Rng::random_range(rng, f64::EPSILON..1.0);
                        let u2: f64 = rand::Rng::random_range(rng, 0.0..1.0);
                        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                        if z.abs() <= 2.0 {
                            break (z * stddev) as f32;
                        }
                    }
                })
                .collect()
        };
        match self {
            Initializer::GlorotUniform => uniform(rng, 1.0, avg),
            Initializer::GlorotNormal => normal(rng, 1.0, avg),
            Initializer::HeNormal => normal(rng, 2.0, fan_in),
            Initializer::HeUniform => uniform(rng, 2.0, fan_in),
            Initializer::LecunNormal => normal(rng, 1.0, fan_in),
            Initializer::LecunUniform => uniform(rng, 1.0, fan_in),
            Initializer::Zeros => vec![0.0; len],
            Initializer::Ones => vec![1.0; len],
        }
    }
}

/// A penalty on a layer's kernel, added to the loss and its gradient inside the
/// training step (Keras' `kernel_regularizer=`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Regularizer {
    /// `factor·Σw²` (Keras' `l2`; its default factor is 0.01).
    L2(f32),
}

/// Keras' `regularizers.l2(factor)`.
pub fn l2(factor: f32) -> Regularizer {
    Regularizer::L2(factor)
}

/// The kernel options every layer with a kernel has (Conv2D, Dense).
macro_rules! kernel_builders {
    ($($t:ident),*) => {$(
        impl $t {
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
    )*};
}
pub(crate) use kernel_builders;

/// serde's default for `use_bias`.
fn yes() -> bool {
    true
}

/// One parameter tensor of a node, as Keras names it (`kernel`, `bias`, `gamma`, `beta`,
/// `moving_mean`, `moving_variance`). Trainable tensors come first.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Keras' name of the tensor: `kernel`, `bias`, `gamma`, …
    pub suffix: &'static str,
    /// Its shape, in Keras' layout.
    pub shape: Vec<usize>,
    /// Whether training updates it (not the moving statistics, nor a frozen layer's).
    pub trainable: bool,
    /// How it starts.
    pub init: Initializer,
}

impl Param {
    /// Keras' fans of a tensor of this shape (`compute_fans`): a matrix's rows and
    /// columns; a convolution kernel `[..., in, out]`'s in and out channels times its
    /// window.
    pub fn fans(&self) -> (usize, usize) {
        match self.shape[..] {
            [] => (1, 1),
            [n] => (n, n),
            [a, b] => (a, b),
            [ref window @ .., i, o] => {
                let rf: usize = window.iter().product();
                (i * rf, o * rf)
            }
        }
    }
}

impl Node {
    /// Every parameter tensor, trainable ones first.
    pub fn params(&self) -> Vec<Param> {
        let p = |suffix, shape, learned: bool, init| Param {
            suffix,
            shape,
            trainable: learned && self.trainable,
            init,
        };
        let kernel_and_bias = |shape: Vec<usize>, out: usize, o: &KernelOptions| {
            let mut v = vec![p("kernel", shape, true, o.init)];
            if o.use_bias {
                v.push(p("bias", vec![out], true, Initializer::Zeros));
            }
            v
        };
        match &self.op {
            Op::Conv {
                in_hwc,
                filters,
                kernel,
                options,
                ..
            } => kernel_and_bias(
                vec![kernel.0, kernel.1, in_hwc[2], *filters],
                *filters,
                options,
            ),
            Op::ConvTranspose {
                in_hwc,
                filters,
                kernel,
                options,
                ..
            } => kernel_and_bias(
                vec![kernel.0, kernel.1, *filters, in_hwc[2]],
                *filters,
                options,
            ),
            // Keras' layouts: [kh, kw, channels, multiplier] (depthwise) and
            // [kh, kw, channels per group, filters] (grouped): the same order in memory.
            Op::DepthwiseConv {
                in_hwc,
                mult,
                group_in,
                kernel,
                options,
                ..
            } => {
                let filters = in_hwc[2] / group_in * mult;
                let shape = if self.keras_type == "DepthwiseConv2D" {
                    vec![kernel.0, kernel.1, in_hwc[2], *mult]
                } else {
                    vec![kernel.0, kernel.1, *group_in, filters]
                };
                kernel_and_bias(shape, filters, options)
            }
            Op::SeparableConv {
                in_hwc,
                mult,
                kernel,
                filters,
                use_bias,
                depthwise_init,
                pointwise_init,
                ..
            } => {
                let mid = in_hwc[2] * mult;
                let mut v = vec![
                    p(
                        "depthwise_kernel",
                        vec![kernel.0, kernel.1, in_hwc[2], *mult],
                        true,
                        *depthwise_init,
                    ),
                    p(
                        "pointwise_kernel",
                        vec![1, 1, mid, *filters],
                        true,
                        *pointwise_init,
                    ),
                ];
                if *use_bias {
                    v.push(p("bias", vec![*filters], true, Initializer::Zeros));
                }
                v
            }
            Op::Dense {
                n_in,
                units,
                options,
            } => kernel_and_bias(vec![*n_in, *units], *units, options),
            Op::LayerNorm {
                channels,
                center,
                scale,
                ..
            }
            | Op::BatchNorm {
                channels,
                center,
                scale,
                ..
            } => {
                let c = vec![*channels];
                let mut v = Vec::new();
                if *scale {
                    v.push(p("gamma", c.clone(), true, Initializer::Ones));
                }
                if *center {
                    v.push(p("beta", c.clone(), true, Initializer::Zeros));
                }
                if matches!(self.op, Op::BatchNorm { .. }) {
                    v.push(p("moving_mean", c.clone(), false, Initializer::Zeros));
                    v.push(p("moving_variance", c, false, Initializer::Ones));
                }
                v
            }
            _ => Vec::new(),
        }
    }
    /// (suffix, shape) of every parameter tensor.
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        self.params()
            .into_iter()
            .map(|p| (p.suffix, p.shape))
            .collect()
    }
    /// Parameters, trainable or not (Keras' "Param #").
    pub fn param_count(&self) -> usize {
        self.params()
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }
    /// Trainable parameters.
    pub fn trainable_count(&self) -> usize {
        self.params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }
    /// Number of trainable tensors (they come first in [`Node::params`]).
    pub fn trainable_tensors(&self) -> usize {
        self.params().iter().filter(|p| p.trainable).count()
    }
}

pub(crate) fn shape_str(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("(None, {})", dims.join(", "))
}

/// Resolves `layer` against the per-sample input shape `input`, naming it `name`.
/// Resolves `layer` against the per-sample shapes of its inputs (`shapes`, read from the
/// tensors `inputs`), naming it `name`: checks that it fits and works out its op and
/// output shape. An [`Input`] takes no inputs.
pub(crate) fn resolve(
    layer: &Layer,
    shapes: &[&[usize]],
    inputs: Vec<usize>,
    name: String,
) -> Result<Node> {
    let kind = layer.keras_type();
    let (op, activation, out_shape) = match layer {
        Layer::Input(i) => {
            ensure!(
                shapes.is_empty(),
                "layer '{name}' (InputLayer) reads no tensor"
            );
            ensure!(
                !i.shape.is_empty() && i.shape.iter().all(|&d| d > 0),
                "Input shape {:?} must be non-empty with positive sizes",
                i.shape
            );
            ensure!(
                checked_len(&i.shape).is_some(),
                "Input shape {:?} has more elements than can be counted",
                i.shape
            );
            (Op::Input, ActivationFn::Linear, i.shape.clone())
        }
        Layer::Concatenate(c) => {
            let (_, rows, widths, out) = merge::concat_plan(c, &name, shapes)?;
            (Op::Concat { rows, widths }, ActivationFn::Linear, out)
        }
        _ => match merge::merge_op(layer) {
            Some(op) => {
                let out = merge::elementwise_shape(layer, &name, shapes)?;
                let scale = if matches!(layer, Layer::Average(_)) {
                    1.0 / shapes.len() as f32
                } else {
                    1.0
                };
                (Op::Merge { op, scale }, ActivationFn::Linear, out)
            }
            None => {
                let [input] = shapes else {
                    bail!(
                        "layer '{name}' ({kind}) takes one input, got {}",
                        shapes.len()
                    );
                };
                resolve_one(layer, input, &name)?
            }
        },
    };
    ensure!(
        checked_len(&out_shape).is_some(),
        "layer '{name}' ({kind}): its output shape {} has more elements than can be counted",
        shape_str(&out_shape)
    );
    let act = match layer {
        Layer::ReLU(l) => l.act(),
        Layer::LeakyReLU(l) => l.act(),
        Layer::ELU(l) => l.act(),
        _ => Ok(activation.elementwise().unwrap_or(Act::Linear)),
    }
    .map_err(|e| anyhow::anyhow!("layer '{name}' ({kind}): {e}"))?;
    Ok(Node {
        name,
        keras_type: kind,
        op,
        activation,
        act,
        inputs,
        in_shape: shapes
            .first()
            .map_or_else(|| out_shape.clone(), |s| s.to_vec()),
        out_shape,
        trainable: true,
    })
}

/// A one-input layer's op, activation and output shape.
fn resolve_one(
    layer: &Layer,
    input: &[usize],
    name: &str,
) -> Result<(Op, ActivationFn, Vec<usize>)> {
    let fail = |why: String| -> Result<(Op, ActivationFn, Vec<usize>)> {
        bail!(
            "layer '{name}' ({}) does not fit its input {}: {why}",
            layer.keras_type(),
            shape_str(input)
        )
    };
    let image = |what: &str| -> Result<[usize; 3]> {
        match input {
            [h, w, c] => Ok([*h, *w, *c]),
            _ => bail!(
                "layer '{name}' ({what}) needs a 3-D input (height, width, channels) but gets {}",
                shape_str(input)
            ),
        }
    };
    // Overflow first: a wrapped product could look like a zero dimension.
    ensure!(
        checked_len(input).is_some(),
        "layer '{name}': input shape {} has more elements than can be counted",
        shape_str(input)
    );
    ensure!(
        input.iter().all(|&d| d > 0),
        "layer '{name}': input shape {} has a zero dimension",
        shape_str(input)
    );
    let pooling = |pool_size: (usize, usize),
                   strides: Option<(usize, usize)>,
                   padding: Padding,
                   max: bool|
     -> Result<(Op, Vec<usize>)> {
        let in_hwc = image(layer.keras_type())?;
        ensure!(
            pool_size.0 > 0 && pool_size.1 > 0,
            "layer '{name}' ({}): the pool size must be positive",
            layer.keras_type()
        );
        let strides = strides.unwrap_or(pool_size);
        let oh = padding.out_len(in_hwc[0], pool_size.0, strides.0);
        let ow = padding.out_len(in_hwc[1], pool_size.1, strides.1);
        let (oh, ow) = match (oh, ow) {
            (Ok(h), Ok(w)) => (h, w),
            (Err(e), _) | (_, Err(e)) => bail!(
                "layer '{name}' ({}) does not fit its input {}: {e}",
                layer.keras_type(),
                shape_str(input)
            ),
        };
        let op = if max {
            Op::MaxPool {
                in_hwc,
                pool: pool_size,
                strides,
                padding,
            }
        } else {
            Op::AvgPool {
                in_hwc,
                pool: pool_size,
                strides,
                padding,
            }
        };
        Ok((op, vec![oh, ow, in_hwc[2]]))
    };
    // Global pooling is the pooling kernels with one window the size of the input, the
    // output viewed as (channels).
    let global = |max: bool| -> Result<(Op, Vec<usize>)> {
        let [h, w, c] = image(layer.keras_type())?;
        let (op, _) = pooling((h, w), None, Padding::Valid, max)?;
        Ok((op, vec![c]))
    };
    let (op, activation, out_shape) = match layer {
        Layer::Input(_)
        | Layer::Add(_)
        | Layer::Subtract(_)
        | Layer::Multiply(_)
        | Layer::Average(_)
        | Layer::Maximum(_)
        | Layer::Minimum(_)
        | Layer::Concatenate(_) => unreachable!("resolved by resolve"),
        Layer::Conv2D(c) => {
            let in_hwc = image("Conv2D")?;
            let positive = [
                c.filters,
                c.kernel_size.0,
                c.kernel_size.1,
                c.strides.0,
                c.strides.1,
                c.dilation_rate.0,
                c.dilation_rate.1,
            ];
            if positive.contains(&0) {
                return fail(
                    "filters, kernel size, strides and dilation rate must be positive".into(),
                );
            }
            if c.dilation_rate != (1, 1) && c.strides != (1, 1) {
                return fail("as in Keras, a dilation rate above 1 needs strides of 1".into());
            }
            if let Some(Regularizer::L2(f)) = c.kernel_regularizer
                && !(f.is_finite() && f >= 0.0)
            {
                return fail(format!("the L2 factor {f} must be finite and ≥ 0"));
            }
            let options = KernelOptions::of(c.use_bias, c.kernel_initializer, c.kernel_regularizer);
            if c.groups > 1 {
                // A grouped convolution runs on the depthwise kernels, generalised.
                if c.groups == 0
                    || !in_hwc[2].is_multiple_of(c.groups)
                    || !c.filters.is_multiple_of(c.groups)
                {
                    return fail(format!(
                        "{} input channels and {} filters must both divide into {} groups",
                        in_hwc[2], c.filters, c.groups
                    ));
                }
                let op = Op::DepthwiseConv {
                    in_hwc,
                    mult: c.filters / c.groups,
                    group_in: in_hwc[2] / c.groups,
                    kernel: c.kernel_size,
                    strides: c.strides,
                    dilation: c.dilation_rate,
                    padding: c.padding,
                    options,
                };
                let s = op.depthwise_shape(1).expect("grouped op");
                if let Err(e) = s.validate() {
                    return fail(format!("{e}"));
                }
                return Ok((op, c.activation, vec![s.out_h(), s.out_w(), c.filters]));
            }
            let op = Op::Conv {
                in_hwc,
                filters: c.filters,
                kernel: c.kernel_size,
                strides: c.strides,
                dilation: c.dilation_rate,
                padding: c.padding,
                options,
            };
            let s = op.conv_shape(1).expect("conv op");
            if let Err(e) = s.validate() {
                return fail(format!("{e}"));
            }
            (op, c.activation, vec![s.out_h(), s.out_w(), c.filters])
        }
        Layer::Conv2DTranspose(c) => {
            let in_hwc = image("Conv2DTranspose")?;
            let positive = [
                c.filters,
                c.kernel_size.0,
                c.kernel_size.1,
                c.strides.0,
                c.strides.1,
            ];
            if positive.contains(&0) {
                return fail("filters, kernel size and strides must be positive".into());
            }
            if let Some(Regularizer::L2(f)) = c.kernel_regularizer
                && !(f.is_finite() && f >= 0.0)
            {
                return fail(format!("the L2 factor {f} must be finite and ≥ 0"));
            }
            let (h, w) = (
                in_hwc[0].checked_mul(c.strides.0 + c.kernel_size.0),
                in_hwc[1].checked_mul(c.strides.1 + c.kernel_size.1),
            );
            if h.is_none() || w.is_none() {
                return fail("the output size overflows".into());
            }
            let op = Op::ConvTranspose {
                in_hwc,
                filters: c.filters,
                kernel: c.kernel_size,
                strides: c.strides,
                padding: c.padding,
                options: KernelOptions::of(c.use_bias, c.kernel_initializer, c.kernel_regularizer),
            };
            let s = op.conv_transpose_shape(1).expect("transposed conv op");
            if let Err(e) = s.validate() {
                return fail(format!("{e}"));
            }
            (op, c.activation, vec![s.out_h(), s.out_w(), c.filters])
        }
        Layer::DepthwiseConv2D(d) => {
            let in_hwc = image("DepthwiseConv2D")?;
            let positive = [
                d.depth_multiplier,
                d.kernel_size.0,
                d.kernel_size.1,
                d.strides.0,
                d.strides.1,
                d.dilation_rate.0,
                d.dilation_rate.1,
            ];
            if positive.contains(&0) {
                return fail(
                    "depth multiplier, kernel size, strides and dilation rate must be positive"
                        .into(),
                );
            }
            if let Some(Regularizer::L2(f)) = d.depthwise_regularizer
                && !(f.is_finite() && f >= 0.0)
            {
                return fail(format!("the L2 factor {f} must be finite and ≥ 0"));
            }
            let op = Op::DepthwiseConv {
                in_hwc,
                mult: d.depth_multiplier,
                group_in: 1,
                kernel: d.kernel_size,
                strides: d.strides,
                dilation: d.dilation_rate,
                padding: d.padding,
                options: KernelOptions::of(
                    d.use_bias,
                    d.depthwise_initializer,
                    d.depthwise_regularizer,
                ),
            };
            let s = op.depthwise_shape(1).expect("depthwise op");
            if let Err(e) = s.validate() {
                return fail(format!("{e}"));
            }
            let out_c = in_hwc[2].checked_mul(d.depth_multiplier);
            let Some(out_c) = out_c else {
                return fail("channels × depth multiplier overflows".into());
            };
            (op, d.activation, vec![s.out_h(), s.out_w(), out_c])
        }
        Layer::SeparableConv2D(c) => {
            let in_hwc = image("SeparableConv2D")?;
            let positive = [
                c.filters,
                c.depth_multiplier,
                c.kernel_size.0,
                c.kernel_size.1,
                c.strides.0,
                c.strides.1,
                c.dilation_rate.0,
                c.dilation_rate.1,
            ];
            if positive.contains(&0) {
                return fail(
                    "filters, depth multiplier, kernel size, strides and dilation rate must be \
                     positive"
                        .into(),
                );
            }
            if in_hwc[2].checked_mul(c.depth_multiplier).is_none() {
                return fail("channels × depth multiplier overflows".into());
            }
            for r in [c.depthwise_regularizer, c.pointwise_regularizer] {
                let f = l2_factor(r);
                if !(f.is_finite() && f >= 0.0) {
                    return fail(format!("the L2 factor {f} must be finite and ≥ 0"));
                }
            }
            let op = Op::SeparableConv {
                in_hwc,
                mult: c.depth_multiplier,
                kernel: c.kernel_size,
                strides: c.strides,
                dilation: c.dilation_rate,
                padding: c.padding,
                filters: c.filters,
                use_bias: c.use_bias,
                depthwise_init: c.depthwise_initializer,
                pointwise_init: c.pointwise_initializer,
                l2: (
                    l2_factor(c.depthwise_regularizer),
                    l2_factor(c.pointwise_regularizer),
                ),
            };
            let s = op.depthwise_shape(1).expect("separable op");
            if let Err(e) = s.validate() {
                return fail(format!("{e}"));
            }
            (op, c.activation, vec![s.out_h(), s.out_w(), c.filters])
        }
        Layer::MaxPooling2D(p) => {
            let (op, out) = pooling(p.pool_size, p.strides, p.padding, true)?;
            (op, ActivationFn::Linear, out)
        }
        Layer::AveragePooling2D(p) => {
            let (op, out) = pooling(p.pool_size, p.strides, p.padding, false)?;
            (op, ActivationFn::Linear, out)
        }
        Layer::GlobalMaxPooling2D(_) => {
            let (op, out) = global(true)?;
            (op, ActivationFn::Linear, out)
        }
        Layer::GlobalAveragePooling2D(_) => {
            let (op, out) = global(false)?;
            (op, ActivationFn::Linear, out)
        }
        Layer::Flatten(_) => (
            Op::Flatten,
            ActivationFn::Linear,
            vec![input.iter().product()],
        ),
        Layer::Reshape(r) => match r.out_shape(input.iter().product()) {
            Ok(out) => (Op::Flatten, ActivationFn::Linear, out),
            Err(e) => return fail(format!("{e}")),
        },
        Layer::ZeroPadding2D(z) => {
            let in_hwc = image("ZeroPadding2D")?;
            let [[t, b], [l, r]] = z.padding;
            let h = in_hwc[0].checked_add(t).and_then(|v| v.checked_add(b));
            let w = in_hwc[1].checked_add(l).and_then(|v| v.checked_add(r));
            let (Some(h), Some(w)) = (h, w) else {
                return fail("the padded size overflows".into());
            };
            let op = Op::Pad {
                in_hwc,
                sides: z.padding,
                crop: false,
            };
            (op, ActivationFn::Linear, vec![h, w, in_hwc[2]])
        }
        Layer::Cropping2D(c) => {
            let in_hwc = image("Cropping2D")?;
            let [[t, b], [l, r]] = c.cropping;
            let h = in_hwc[0]
                .checked_sub(t.saturating_add(b))
                .filter(|&v| v > 0);
            let w = in_hwc[1]
                .checked_sub(l.saturating_add(r))
                .filter(|&v| v > 0);
            let (Some(h), Some(w)) = (h, w) else {
                return fail(format!(
                    "cropping {:?} leaves no rows or columns",
                    c.cropping
                ));
            };
            let op = Op::Pad {
                in_hwc,
                sides: c.cropping,
                crop: true,
            };
            (op, ActivationFn::Linear, vec![h, w, in_hwc[2]])
        }
        Layer::UpSampling2D(u) => {
            let in_hwc = image("UpSampling2D")?;
            if u.size.0 == 0 || u.size.1 == 0 {
                return fail("the size must be positive".into());
            }
            let h = in_hwc[0].checked_mul(u.size.0);
            let w = in_hwc[1].checked_mul(u.size.1);
            let (Some(h), Some(w)) = (h, w) else {
                return fail("the up-sampled size overflows".into());
            };
            let op = Op::UpSampling {
                in_hwc,
                size: u.size,
                interpolation: u.interpolation,
            };
            (op, ActivationFn::Linear, vec![h, w, in_hwc[2]])
        }
        Layer::Dense(d) => {
            let [n_in] = input else {
                return fail("Dense takes a 1-D input; add Flatten() before it".into());
            };
            if d.units == 0 {
                return fail("units must be positive".into());
            }
            if let Some(Regularizer::L2(f)) = d.kernel_regularizer
                && !(f.is_finite() && f >= 0.0)
            {
                return fail(format!("the L2 factor {f} must be finite and ≥ 0"));
            }
            (
                Op::Dense {
                    n_in: *n_in,
                    units: d.units,
                    options: KernelOptions::of(
                        d.use_bias,
                        d.kernel_initializer,
                        d.kernel_regularizer,
                    ),
                },
                d.activation,
                vec![d.units],
            )
        }
        Layer::Activation(a) => (Op::Activation, a.activation, input.to_vec()),
        Layer::ReLU(_) | Layer::LeakyReLU(_) | Layer::ELU(_) => {
            (Op::Activation, ActivationFn::Linear, input.to_vec())
        }
        Layer::Rescaling(r) => {
            let c = *input.last().unwrap_or(&1);
            let scale = match preprocessing::per_channel(&r.scale, c, "scale") {
                Ok(v) => v,
                Err(e) => return fail(format!("{e:#}")),
            };
            let offset = match preprocessing::per_channel(&r.offset, c, "offset") {
                Ok(v) => v,
                Err(e) => return fail(format!("{e:#}")),
            };
            (
                Op::ChannelAffine { scale, offset },
                ActivationFn::Linear,
                input.to_vec(),
            )
        }
        Layer::Normalization(n) => {
            let c = *input.last().unwrap_or(&1);
            let (mean, variance) = match (
                preprocessing::per_channel(&n.mean, c, "mean"),
                preprocessing::per_channel(&n.variance, c, "variance"),
            ) {
                (Ok(m), Ok(v)) => (m, v),
                (Err(e), _) | (_, Err(e)) => return fail(format!("{e:#}")),
            };
            if let Some(v) = variance.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
                return fail(format!("variance {v} must be finite and not negative"));
            }
            // Keras: (x − mean) / max(√variance, epsilon), epsilon 1e-7.
            let scale: Vec<f32> = variance.iter().map(|v| 1.0 / v.sqrt().max(1e-7)).collect();
            let offset = mean.iter().zip(&scale).map(|(m, s)| -m * s).collect();
            (
                Op::ChannelAffine { scale, offset },
                ActivationFn::Linear,
                input.to_vec(),
            )
        }
        Layer::Dropout(d) => {
            if !(0.0..1.0).contains(&d.rate) {
                return fail(format!("rate {} must be in [0, 1)", d.rate));
            }
            (
                Op::Dropout { rate: d.rate },
                ActivationFn::Linear,
                input.to_vec(),
            )
        }
        Layer::LayerNormalization(l) => {
            if !(l.epsilon > 0.0 && l.epsilon.is_finite()) {
                return fail(format!("epsilon {} must be positive", l.epsilon));
            }
            let op = Op::LayerNorm {
                channels: *input.last().unwrap_or(&0),
                epsilon: l.epsilon,
                center: l.center,
                scale: l.scale,
            };
            (op, ActivationFn::Linear, input.to_vec())
        }
        Layer::BatchNormalization(b) => {
            if !((0.0..=1.0).contains(&b.momentum) && b.epsilon > 0.0 && b.epsilon.is_finite()) {
                return fail(format!(
                    "momentum {} must be in [0, 1] and epsilon {} positive",
                    b.momentum, b.epsilon
                ));
            }
            let channels = *input.last().unwrap_or(&0);
            (
                Op::BatchNorm {
                    channels,
                    momentum: b.momentum,
                    epsilon: b.epsilon,
                    center: b.center,
                    scale: b.scale,
                },
                ActivationFn::Linear,
                input.to_vec(),
            )
        }
    };
    Ok((op, activation, out_shape))
}

/// Keras' automatic layer name: the stem, then `_1`, `_2`, … for repeats.
pub(crate) fn auto_name(layer: &Layer, existing: &[Node]) -> String {
    let stem = layer.name_stem();
    let n = existing
        .iter()
        .filter(|n| n.name == stem || n.name.starts_with(&format!("{stem}_")))
        .count();
    if n == 0 {
        stem.to_string()
    } else {
        format!("{stem}_{n}")
    }
}
