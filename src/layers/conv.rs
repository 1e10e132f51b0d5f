//! Convolution layers.

use super::{ActivationFn, Initializer, Regularizer, kernel_builders, yes};

/// The window options both convolutions share: kernel size, strides, padding,
/// activation.
macro_rules! window_builders {
    ($($t:ident),*) => {$(
        impl $t {
            /// A `h × w` kernel (Keras' `kernel_size`).
            pub fn kernel_size(mut self, h: usize, w: usize) -> Self {
                self.kernel_size = (h, w);
                self
            }
            /// The step between windows (Keras' `strides`, 1 by default).
            pub fn strides(mut self, h: usize, w: usize) -> Self {
                self.strides = (h, w);
                self
            }
            /// 'valid' (the default) or 'same' (Keras' `padding`).
            pub fn padding(mut self, padding: Padding) -> Self {
                self.padding = padding;
                self
            }
            /// The activation after the convolution (Keras' `activation`, linear by
            /// default).
            pub fn activation(mut self, activation: ActivationFn) -> Self {
                self.activation = activation;
                self
            }
        }
    )*};
}
use crate::ops::Padding;

/// `Conv2D(filters, kernel_size, strides=1, padding='valid', dilation_rate=1, groups=1,
/// activation=None, use_bias=True, kernel_initializer='glorot_uniform',
/// kernel_regularizer=None)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv2D {
    /// Output channels (Keras' `filters`).
    pub filters: usize,
    /// The kernel's (height, width) (Keras' `kernel_size`).
    pub kernel_size: (usize, usize),
    /// The step between windows: (rows, columns) (Keras' `strides`, 1 by default).
    pub strides: (usize, usize),
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// The spacing of the kernel's taps (Keras' `dilation_rate`, 1 by default).
    #[serde(default = "one_by_one")]
    pub dilation_rate: (usize, usize),
    /// Channel groups (Keras' `groups`, 1 by default).
    #[serde(default = "one")]
    pub groups: usize,
    /// The activation after the convolution (Keras' `activation`, linear by default).
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

impl Conv2D {
    /// `filters` square `kernel × kernel` filters, stride 1, 'valid', linear.
    pub fn new(filters: usize, kernel: usize) -> Conv2D {
        Conv2D {
            filters,
            kernel_size: (kernel, kernel),
            strides: (1, 1),
            padding: Padding::Valid,
            dilation_rate: (1, 1),
            groups: 1,
            activation: ActivationFn::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            kernel_regularizer: None,
            input_shape: None,
        }
    }
    /// Gaps between the kernel's taps (Keras' `dilation_rate`; as in Keras, only with
    /// strides of 1).
    pub fn dilation_rate(mut self, h: usize, w: usize) -> Self {
        self.dilation_rate = (h, w);
        self
    }
    /// Splits the channels into `groups` groups, each convolved on its own (Keras'
    /// `groups`: input channels and filters must divide by it; a kernel of
    /// `[kh, kw, channels / groups, filters]`). Grouped convolutions run on kernels of
    /// their own and need channel counts that are multiples of 4.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// serde's default for the dilation rate of files written before it existed.
fn one_by_one() -> (usize, usize) {
    (1, 1)
}

/// serde's default for the groups of files written before they existed.
fn one() -> usize {
    1
}

kernel_builders!(Conv2D, Conv2DTranspose);
window_builders!(Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D);

/// `Conv2DTranspose(filters, kernel_size, strides=1, padding='valid', activation=None,
/// use_bias=True, kernel_initializer='glorot_uniform', kernel_regularizer=None)`: the
/// gradient of a convolution used as a layer (learned up-sampling). Output size as
/// Keras: `in·stride` ('same'), `in·stride + max(kernel − stride, 0)` ('valid'). Its
/// kernel is `[kh, kw, filters, input channels]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv2DTranspose {
    /// Output channels (Keras' `filters`).
    pub filters: usize,
    /// The kernel's (height, width) (Keras' `kernel_size`).
    pub kernel_size: (usize, usize),
    /// The step between windows: (rows, columns) (Keras' `strides`, 1 by default).
    pub strides: (usize, usize),
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// The activation after the convolution (Keras' `activation`, linear by default).
    pub activation: ActivationFn,
    /// Whether the layer adds a bias (Keras' `use_bias`, on by default).
    pub use_bias: bool,
    /// How the kernel starts (Keras' `kernel_initializer`, Glorot uniform by default).
    pub kernel_initializer: Initializer,
    /// A penalty on the kernel (Keras' `kernel_regularizer`, none by default).
    pub kernel_regularizer: Option<Regularizer>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Conv2DTranspose {
    /// `filters` square `kernel × kernel` filters, stride 1, 'valid', linear.
    pub fn new(filters: usize, kernel: usize) -> Conv2DTranspose {
        Conv2DTranspose {
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
}

/// `DepthwiseConv2D(kernel_size, strides=1, padding='valid', depth_multiplier=1,
/// dilation_rate=1, activation=None, use_bias=True,
/// depthwise_initializer='glorot_uniform', depthwise_regularizer=None)`: each input
/// channel convolved with `depth_multiplier` filters of its own; output channel
/// `c·depth_multiplier + m`. Its kernel is `[kh, kw, channels, depth_multiplier]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepthwiseConv2D {
    /// The kernel's (height, width) (Keras' `kernel_size`).
    pub kernel_size: (usize, usize),
    /// The step between windows: (rows, columns) (Keras' `strides`, 1 by default).
    pub strides: (usize, usize),
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// Filters per input channel (Keras' `depth_multiplier`, 1 by default).
    pub depth_multiplier: usize,
    /// The spacing of the kernel's taps (Keras' `dilation_rate`, 1 by default).
    pub dilation_rate: (usize, usize),
    /// The activation after the convolution (Keras' `activation`, linear by default).
    pub activation: ActivationFn,
    /// Whether the layer adds a bias (Keras' `use_bias`, on by default).
    pub use_bias: bool,
    /// How the kernel starts (Keras' `depthwise_initializer`, Glorot uniform by default).
    pub depthwise_initializer: Initializer,
    /// A penalty on the kernel (Keras' `depthwise_regularizer`, none by default).
    pub depthwise_regularizer: Option<Regularizer>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl DepthwiseConv2D {
    /// A square `kernel × kernel` depthwise convolution, stride 1, 'valid', linear.
    pub fn new(kernel: usize) -> DepthwiseConv2D {
        DepthwiseConv2D {
            kernel_size: (kernel, kernel),
            strides: (1, 1),
            padding: Padding::Valid,
            depth_multiplier: 1,
            dilation_rate: (1, 1),
            activation: ActivationFn::Linear,
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            depthwise_regularizer: None,
            input_shape: None,
        }
    }
    /// Filters per input channel (Keras' `depth_multiplier`, 1 by default).
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }
    /// Spacing of the kernel's taps (Keras' `dilation_rate`, 1 by default).
    pub fn dilation_rate(mut self, h: usize, w: usize) -> Self {
        self.dilation_rate = (h, w);
        self
    }
    /// Whether the layer adds a bias (Keras' `use_bias`, on by default).
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    /// How the kernel starts (Keras' `depthwise_initializer`).
    pub fn depthwise_initializer(mut self, init: Initializer) -> Self {
        self.depthwise_initializer = init;
        self
    }
    /// A penalty on the kernel (Keras' `depthwise_regularizer`, e.g. `l2(1e-4)`).
    pub fn depthwise_regularizer(mut self, r: Regularizer) -> Self {
        self.depthwise_regularizer = Some(r);
        self
    }
}

/// `SeparableConv2D(filters, kernel_size, strides=1, padding='valid', depth_multiplier=1,
/// dilation_rate=1, activation=None, use_bias=True, depthwise_initializer='glorot_uniform',
/// pointwise_initializer='glorot_uniform', depthwise_regularizer=None,
/// pointwise_regularizer=None)`: a depthwise convolution (no bias) followed by
/// a 1×1 convolution to `filters` with the bias. Weights `depthwise_kernel`
/// `[kh, kw, channels, depth_multiplier]`, `pointwise_kernel`
/// `[1, 1, channels·depth_multiplier, filters]`, `bias`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeparableConv2D {
    /// Output channels of the pointwise (1×1) stage (Keras' `filters`).
    pub filters: usize,
    /// The depthwise kernel's (height, width) (Keras' `kernel_size`).
    pub kernel_size: (usize, usize),
    /// The depthwise stage's step: (rows, columns) (Keras' `strides`, 1 by default).
    pub strides: (usize, usize),
    /// 'valid' (the default) or 'same' (Keras' `padding`).
    pub padding: Padding,
    /// Depthwise filters per input channel (Keras' `depth_multiplier`, 1 by default).
    pub depth_multiplier: usize,
    /// The spacing of the depthwise kernel's taps (Keras' `dilation_rate`, 1 by default).
    pub dilation_rate: (usize, usize),
    /// The activation after the convolution (Keras' `activation`, linear by default).
    pub activation: ActivationFn,
    /// Whether a bias follows the pointwise stage (Keras' `use_bias`, on by default).
    pub use_bias: bool,
    /// How the depthwise kernel starts (Keras' `depthwise_initializer`, Glorot uniform).
    pub depthwise_initializer: Initializer,
    /// How the pointwise kernel starts (Keras' `pointwise_initializer`, Glorot uniform).
    pub pointwise_initializer: Initializer,
    /// A penalty on the depthwise kernel (Keras' `depthwise_regularizer`, none by default).
    #[serde(default)]
    pub depthwise_regularizer: Option<Regularizer>,
    /// A penalty on the pointwise kernel (Keras' `pointwise_regularizer`, none by default).
    #[serde(default)]
    pub pointwise_regularizer: Option<Regularizer>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl SeparableConv2D {
    /// `filters` outputs of a square `kernel × kernel` depthwise stage, stride 1, 'valid',
    /// linear.
    pub fn new(filters: usize, kernel: usize) -> SeparableConv2D {
        SeparableConv2D {
            filters,
            kernel_size: (kernel, kernel),
            strides: (1, 1),
            padding: Padding::Valid,
            depth_multiplier: 1,
            dilation_rate: (1, 1),
            activation: ActivationFn::Linear,
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            pointwise_initializer: Initializer::GlorotUniform,
            depthwise_regularizer: None,
            pointwise_regularizer: None,
            input_shape: None,
        }
    }
    /// A penalty on the depthwise kernel (Keras' `depthwise_regularizer`).
    pub fn depthwise_regularizer(mut self, r: Regularizer) -> Self {
        self.depthwise_regularizer = Some(r);
        self
    }
    /// A penalty on the pointwise kernel (Keras' `pointwise_regularizer`).
    pub fn pointwise_regularizer(mut self, r: Regularizer) -> Self {
        self.pointwise_regularizer = Some(r);
        self
    }
    /// Depthwise filters per input channel (Keras' `depth_multiplier`, 1 by default).
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }
    /// Spacing of the depthwise kernel's taps (Keras' `dilation_rate`, 1 by default).
    pub fn dilation_rate(mut self, h: usize, w: usize) -> Self {
        self.dilation_rate = (h, w);
        self
    }
    /// Whether the layer adds a bias after the pointwise stage (on by default).
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    /// How the depthwise kernel starts (Keras' `depthwise_initializer`).
    pub fn depthwise_initializer(mut self, init: Initializer) -> Self {
        self.depthwise_initializer = init;
        self
    }
    /// How the pointwise kernel starts (Keras' `pointwise_initializer`).
    pub fn pointwise_initializer(mut self, init: Initializer) -> Self {
        self.pointwise_initializer = init;
        self
    }
}
