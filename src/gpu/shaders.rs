//! The shader table: every kernel's WGSL, loaded with `include_str!`.
//!
//! GEMM-shaped ops (dense matmul and the conv passes) share one GEMM core per
//! [`Variant`]; the op's file supplies `gemm_dims()`, its loaders (`load_a4()`,
//! `load_b4()` and their `_unaligned` / `_aligned` forms) and `store()`, reading its two
//! operands through `gemm_operands_buffer.wgsl` or `gemm_operands_texture.wgsl`. The
//! source is: `divmod.wgsl` and the op's `*_common.wgsl` where it needs them, the operand
//! fragment, the op file, `gemm_common.wgsl`, the core. That is plain concatenation, not
//! templating: every piece is a valid WGSL fragment you can read.

/// The GEMM kernel family. The device's family (`Portable`, `Tiled`, `Subgroup` or
/// `Texture`) is chosen once from the adapter; a launcher then picks the aligned or narrow
/// form of the subgroup cores where the shape allows, and falls back from textures to
/// storage buffers for an operand past the device's texture size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Register-blocked GEMM without subgroups or workgroup memory: runs everywhere.
    Portable,
    /// Workgroup-memory tiled GEMM (64×64 tiles staged 16 k at a time): the family for
    /// real GPUs, whose on-chip memory serves the re-reads.
    Tiled,
    /// Subgroup-broadcast GEMM with a large register block (fast on lavapipe and on GPUs
    /// with subgroups), with the op's general loaders.
    Subgroup,
    /// The subgroup GEMM with the op's aligned vec4 loaders (shapes whose K and
    /// vec4-loaded axes are multiples of 4).
    SubgroupAligned,
    /// The subgroup core for narrow outputs (N ≤ 16, K % 4 == 0): B supplied transposed,
    /// 2 columns per lane (`gemm_subgroup_nt.wgsl`; matmul only).
    SubgroupNarrow,
    /// The subgroup core reading both operands from textures (the family for CPU
    /// adapters such as lavapipe, whose texel fetches are vectorised where storage-buffer
    /// loads are not), with the unaligned loaders; its narrow outputs use
    /// `SubgroupNarrow`.
    Texture,
    /// The texture core with the aligned loaders.
    TextureAligned,
    /// The texture core with the unaligned A loader and the aligned B loader: shapes
    /// whose B rows are whole texels but A's are not (a first conv layer on 1 or 3
    /// channels, a dense gradient with K = 10 classes).
    TextureAlignedB,
}

impl Variant {
    /// Whether this variant's kernels read their GEMM operands from textures.
    pub fn uses_textures(self) -> bool {
        matches!(
            self,
            Variant::Texture | Variant::TextureAligned | Variant::TextureAlignedB
        )
    }

    /// The same core and loaders reading storage buffers (for operands past the texture
    /// size).
    pub fn with_buffers(self) -> Variant {
        match self {
            Variant::Texture | Variant::TextureAlignedB => Variant::Subgroup,
            Variant::TextureAligned => Variant::SubgroupAligned,
            other => other,
        }
    }
}

macro_rules! shader {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/",
            $name,
            ".wgsl"
        ))
    };
}

const GEMM_COMMON: &str = shader!("gemm_common");
const GEMM_OPERANDS_BUFFER: &str = shader!("gemm_operands_buffer");
const GEMM_OPERANDS_TEXTURE: &str = shader!("gemm_operands_texture");
const GEMM_PORTABLE: &str = shader!("gemm_portable");
const GEMM_TILED: &str = shader!("gemm_tiled");
const GEMM_SUBGROUP: &str = shader!("gemm_subgroup");
const GEMM_SUBGROUP_NT: &str = shader!("gemm_subgroup_nt");
const GEMM_SUBGROUP_N32: &str = shader!("gemm_subgroup_n32");
const CONV2D_COMMON: &str = shader!("conv2d_common");
const POOL2D_COMMON: &str = shader!("pool2d_common");
const BATCHNORM_COMMON: &str = shader!("batchnorm_common");
const DEPTHWISE_COMMON: &str = shader!("depthwise_conv2d_common");
const DEPTHWISE_INPUT: &str = shader!("depthwise_conv2d_input");
const DIVMOD: &str = shader!("divmod");
const GATED_ACTIVATION_COMMON: &str = shader!("gated_activation_common");
const UPSAMPLING_COMMON: &str = shader!("upsampling2d_common");
const LAYERNORM_COMMON: &str = shader!("layernorm_common");
const LOSS_COMMON: &str = shader!("loss_common");
const SOFT_XENT_COMMON: &str = shader!("soft_xent_common");

/// Every compute kernel wgcnn dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Dense matmul on the GEMM cores: C = A·B (+ bias) (relu) (+ C).
    Matmul,
    /// Small dense matmul, one invocation per output element, operands read in place.
    MatmulSmall,
    /// Sums the partial results of a split-K GEMM (+ bias) (relu) (+ out).
    SplitKReduce,
    /// Batched transpose of the last two axes.
    Transpose,
    /// conv2d as the GEMM im2col(x)·w (NHWC input, HWIO kernel): the forward pass, and
    /// the input gradient (dY with the transposed kernel walked flipped, phase by phase).
    Conv2dForward,
    /// conv2d gradient w.r.t. the kernel, the GEMM doutᵀ·im2col(x).
    Conv2dBackwardWeight,
    /// Depthwise / grouped conv forward.
    DepthwiseConv2dForward,
    /// Depthwise / grouped conv gradient w.r.t. the input, gather-style.
    DepthwiseConv2dBackwardInput,
    /// Depthwise / grouped conv kernel gradient, partial sums per chunk of output pixels.
    DepthwiseConv2dBackwardWeight,
    /// [`Kernel::DepthwiseConv2dForward`] for groups of whole texels (Cg, M multiples of 4).
    GroupedConv2dForward,
    /// [`Kernel::DepthwiseConv2dBackwardInput`] for groups of whole texels.
    GroupedConv2dBackwardInput,
    /// [`Kernel::DepthwiseConv2dBackwardWeight`] for groups of whole texels.
    GroupedConv2dBackwardWeight,
    /// Adds a bias to every row, in place.
    BiasForward,
    /// Bias gradient: column sums of the output gradient, in chunks of rows.
    BiasBackward,
    /// Max pooling forward, recording the input index of each maximum.
    MaxPool2dForward,
    /// Max pooling backward, gather-style (any windows).
    MaxPool2dBackward,
    /// Max pooling backward for windows that tile the input, one invocation per window.
    MaxPool2dBackwardWindows,
    /// Average pooling forward over the valid part of each window.
    AvgPool2dForward,
    /// Average pooling backward, gather-style.
    AvgPool2dBackward,
    /// Average pooling over whole images (GlobalAveragePooling2D), both directions.
    GlobalAvgPool2d,
    /// Element-wise activation y = f(x).
    ActivationForward,
    /// Activation backward, in place on the gradient, from the forward output.
    ActivationBackward,
    /// Gated activation forward: y = x·gate(x).
    GatedActivationForward,
    /// Gated activation backward, in place on the gradient, from the forward input.
    GatedActivationBackward,
    /// Row-wise softmax (inference).
    Softmax,
    /// Fused softmax + sparse categorical cross-entropy, forward.
    SoftmaxXentForward,
    /// Fused softmax + sparse categorical cross-entropy, backward.
    SoftmaxXentBackward,
    /// Adds a batch's loss sum and correct-prediction count to the totals.
    LossMetrics,
    /// SGD (with momentum) update, in place.
    SgdUpdate,
    /// Adam update, in place.
    AdamUpdate,
    /// Adam update with amsgrad, in place.
    AdamAmsgradUpdate,
    /// RMSprop update, in place.
    RmsPropUpdate,
    /// Centered RMSprop update, in place.
    RmsPropCenteredUpdate,
    /// Squared L2 norm of one gradient tensor.
    GradNorm,
    /// Gradient clipping by norm, in place.
    GradClip,
    /// Inverted dropout forward.
    DropoutForward,
    /// Dropout backward, recomputing the mask from the seed.
    DropoutBackward,
    /// BatchNormalization forward (training or inference).
    BatchNormForward,
    /// BatchNormalization backward (training mode).
    BatchNormBackward,
    /// Element-wise merge of two same-shape tensors.
    MergeForward,
    /// Gradients of an element-wise merge w.r.t. both inputs.
    MergeBackward,
    /// Copies a block of columns between two row-major matrices.
    CopyColumns,
    /// Adds an L2 weight penalty to the loss total.
    L2Penalty,
    /// Zero-padding or cropping of an NHWC image.
    Pad2d,
    /// UpSampling2D forward (nearest or bilinear).
    UpSampling2dForward,
    /// UpSampling2D backward, gathered.
    UpSampling2dBackward,
    /// LayerNormalization forward.
    LayerNormForward,
    /// LayerNormalization backward.
    LayerNormBackward,
    /// Element-wise loss forward: per-sample loss and metric.
    LossForward,
    /// Element-wise loss backward.
    LossBackward,
    /// Adds a batch's sums of per-sample losses and metrics to the totals.
    LossTotals,
    /// Fused softmax + categorical cross-entropy forward.
    SoftXentForward,
    /// Fused softmax + categorical cross-entropy backward.
    SoftXentBackward,
    /// Adds each valid row's (label, predicted class) to a confusion matrix.
    Confusion,
    /// Bytes (four per u32) to floats through a 256-entry table: a batch uploaded as bytes.
    BytesToUnit,
    /// A fixed affine map per channel (Rescaling, Normalization) and its input gradient.
    ChannelAffine,
}

impl Kernel {
    /// Every kernel, in the order of the enum.
    pub const ALL: [Kernel; 56] = [
        Kernel::Matmul,
        Kernel::MatmulSmall,
        Kernel::SplitKReduce,
        Kernel::Transpose,
        Kernel::Conv2dForward,
        Kernel::Conv2dBackwardWeight,
        Kernel::DepthwiseConv2dForward,
        Kernel::DepthwiseConv2dBackwardInput,
        Kernel::DepthwiseConv2dBackwardWeight,
        Kernel::GroupedConv2dForward,
        Kernel::GroupedConv2dBackwardInput,
        Kernel::GroupedConv2dBackwardWeight,
        Kernel::BiasForward,
        Kernel::BiasBackward,
        Kernel::MaxPool2dForward,
        Kernel::MaxPool2dBackward,
        Kernel::MaxPool2dBackwardWindows,
        Kernel::AvgPool2dForward,
        Kernel::AvgPool2dBackward,
        Kernel::GlobalAvgPool2d,
        Kernel::ActivationForward,
        Kernel::ActivationBackward,
        Kernel::GatedActivationForward,
        Kernel::GatedActivationBackward,
        Kernel::Softmax,
        Kernel::SoftmaxXentForward,
        Kernel::SoftmaxXentBackward,
        Kernel::LossMetrics,
        Kernel::SgdUpdate,
        Kernel::AdamUpdate,
        Kernel::AdamAmsgradUpdate,
        Kernel::RmsPropUpdate,
        Kernel::RmsPropCenteredUpdate,
        Kernel::GradNorm,
        Kernel::GradClip,
        Kernel::DropoutForward,
        Kernel::DropoutBackward,
        Kernel::BatchNormForward,
        Kernel::BatchNormBackward,
        Kernel::MergeForward,
        Kernel::MergeBackward,
        Kernel::CopyColumns,
        Kernel::L2Penalty,
        Kernel::Pad2d,
        Kernel::UpSampling2dForward,
        Kernel::UpSampling2dBackward,
        Kernel::LayerNormForward,
        Kernel::LayerNormBackward,
        Kernel::LossForward,
        Kernel::LossBackward,
        Kernel::LossTotals,
        Kernel::SoftXentForward,
        Kernel::SoftXentBackward,
        Kernel::Confusion,
        Kernel::BytesToUnit,
        Kernel::ChannelAffine,
    ];

    /// The kernel families this kernel is built for (one source each).
    pub fn variants(self) -> &'static [Variant] {
        match self {
            Kernel::Matmul => &[
                Variant::Portable,
                Variant::Tiled,
                Variant::Subgroup,
                Variant::SubgroupAligned,
                Variant::SubgroupNarrow,
                Variant::Texture,
                Variant::TextureAligned,
                Variant::TextureAlignedB,
            ],
            // Both operands (the input, the kernel) are always channel-aligned, padded if
            // need be (conv2d.rs), so only the aligned forms run.
            Kernel::Conv2dForward => &[
                Variant::Portable,
                Variant::Tiled,
                Variant::SubgroupAligned,
                Variant::TextureAligned,
            ],
            // Its B operand is always aligned (in_c % 4 == 0), so the unaligned texture
            // form never runs.
            Kernel::Conv2dBackwardWeight => &[
                Variant::Portable,
                Variant::Tiled,
                Variant::Subgroup,
                Variant::SubgroupAligned,
                Variant::TextureAligned,
                Variant::TextureAlignedB,
            ],
            Kernel::DepthwiseConv2dForward
            | Kernel::DepthwiseConv2dBackwardInput
            | Kernel::DepthwiseConv2dBackwardWeight
            | Kernel::GroupedConv2dForward
            | Kernel::GroupedConv2dBackwardInput
            | Kernel::GroupedConv2dBackwardWeight => &[Variant::Portable, Variant::Texture],
            k if k.is_gemm() => &[
                Variant::Portable,
                Variant::Tiled,
                Variant::Subgroup,
                Variant::SubgroupAligned,
                Variant::Texture,
                Variant::TextureAligned,
                Variant::TextureAlignedB,
            ],
            _ => &[Variant::Portable],
        }
    }

    /// The kernel's name, used as the label of its shader module and pipeline.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul",
            Kernel::MatmulSmall => "matmul_small",
            Kernel::SplitKReduce => "split_k_reduce",
            Kernel::Transpose => "transpose",
            Kernel::Conv2dForward => "conv2d_forward",
            Kernel::Conv2dBackwardWeight => "conv2d_backward_weight",
            Kernel::DepthwiseConv2dForward => "depthwise_conv2d_forward",
            Kernel::DepthwiseConv2dBackwardInput => "depthwise_conv2d_backward_input",
            Kernel::DepthwiseConv2dBackwardWeight => "depthwise_conv2d_backward_weight",
            Kernel::GroupedConv2dForward => "grouped_conv2d_forward",
            Kernel::GroupedConv2dBackwardInput => "grouped_conv2d_backward_input",
            Kernel::GroupedConv2dBackwardWeight => "grouped_conv2d_backward_weight",
            Kernel::BiasForward => "bias_forward",
            Kernel::BiasBackward => "bias_backward",
            Kernel::MaxPool2dForward => "maxpool2d_forward",
            Kernel::MaxPool2dBackward => "maxpool2d_backward",
            Kernel::MaxPool2dBackwardWindows => "maxpool2d_backward_windows",
            Kernel::AvgPool2dForward => "avgpool2d_forward",
            Kernel::AvgPool2dBackward => "avgpool2d_backward",
            Kernel::GlobalAvgPool2d => "global_avgpool2d",
            Kernel::ActivationForward => "activation_forward",
            Kernel::ActivationBackward => "activation_backward",
            Kernel::GatedActivationForward => "gated_activation_forward",
            Kernel::GatedActivationBackward => "gated_activation_backward",
            Kernel::Softmax => "softmax",
            Kernel::SoftmaxXentForward => "softmax_xent_forward",
            Kernel::SoftmaxXentBackward => "softmax_xent_backward",
            Kernel::LossMetrics => "loss_metrics",
            Kernel::SgdUpdate => "sgd_update",
            Kernel::AdamUpdate => "adam_update",
            Kernel::AdamAmsgradUpdate => "adam_amsgrad_update",
            Kernel::RmsPropUpdate => "rmsprop_update",
            Kernel::RmsPropCenteredUpdate => "rmsprop_centered_update",
            Kernel::GradNorm => "grad_norm",
            Kernel::GradClip => "grad_clip",
            Kernel::DropoutForward => "dropout_forward",
            Kernel::DropoutBackward => "dropout_backward",
            Kernel::BatchNormForward => "batchnorm_forward",
            Kernel::BatchNormBackward => "batchnorm_backward",
            Kernel::MergeForward => "merge_forward",
            Kernel::MergeBackward => "merge_backward",
            Kernel::CopyColumns => "copy_columns",
            Kernel::L2Penalty => "l2_penalty",
            Kernel::Pad2d => "pad2d",
            Kernel::UpSampling2dForward => "upsampling2d_forward",
            Kernel::UpSampling2dBackward => "upsampling2d_backward",
            Kernel::LayerNormForward => "layernorm_forward",
            Kernel::LayerNormBackward => "layernorm_backward",
            Kernel::LossForward => "loss_forward",
            Kernel::LossBackward => "loss_backward",
            Kernel::LossTotals => "loss_totals",
            Kernel::SoftXentForward => "soft_xent_forward",
            Kernel::SoftXentBackward => "soft_xent_backward",
            Kernel::Confusion => "confusion",
            Kernel::BytesToUnit => "bytes_to_unit",
            Kernel::ChannelAffine => "channel_affine",
        }
    }

    /// Every kernel's entry point is `main`.
    pub fn entry(self) -> &'static str {
        "main"
    }

    /// True for the kernels built on the shared GEMM core.
    pub fn is_gemm(self) -> bool {
        matches!(
            self,
            Kernel::Matmul | Kernel::Conv2dForward | Kernel::Conv2dBackwardWeight
        )
    }

    /// True for the kernels that read two operands through `input1_*`/`input2_*` (the
    /// GEMM kernels and the depthwise convolutions), from textures on the texture family
    /// and from storage buffers otherwise.
    pub fn reads_operands(self) -> bool {
        self.is_gemm()
            || matches!(
                self,
                Kernel::DepthwiseConv2dForward
                    | Kernel::DepthwiseConv2dBackwardInput
                    | Kernel::DepthwiseConv2dBackwardWeight
                    | Kernel::GroupedConv2dForward
                    | Kernel::GroupedConv2dBackwardInput
                    | Kernel::GroupedConv2dBackwardWeight
            )
    }

    /// True for the kernels that split indices with `divmod` (exact below 2^24; their
    /// launchers check the sizes).
    fn uses_divmod(self) -> bool {
        matches!(
            self,
            Kernel::Conv2dForward
                | Kernel::Conv2dBackwardWeight
                | Kernel::DepthwiseConv2dForward
                | Kernel::DepthwiseConv2dBackwardInput
                | Kernel::DepthwiseConv2dBackwardWeight
                | Kernel::GroupedConv2dForward
                | Kernel::GroupedConv2dBackwardInput
                | Kernel::GroupedConv2dBackwardWeight
                | Kernel::MaxPool2dForward
                | Kernel::MaxPool2dBackward
                | Kernel::MaxPool2dBackwardWindows
                | Kernel::AvgPool2dForward
                | Kernel::AvgPool2dBackward
                | Kernel::GlobalAvgPool2d
                | Kernel::Transpose
                | Kernel::SplitKReduce
                | Kernel::Pad2d
                | Kernel::LossBackward
                | Kernel::BiasForward
                | Kernel::UpSampling2dForward
                | Kernel::UpSampling2dBackward
        )
    }

    /// Rows × columns of the output tile one workgroup of this GEMM kernel computes.
    pub fn gemm_tile(self, variant: Variant) -> (u32, u32) {
        match variant {
            Variant::Portable => (32, 32),
            Variant::Tiled => (64, 64),
            Variant::SubgroupNarrow => (32, 16),
            // The subgroup and texture cores: 32×32 for matmul, 32×64 for the conv passes.
            _ if self == Kernel::Matmul => (32, 32),
            _ => (SUBGROUP_TILE_M, SUBGROUP_TILE_N),
        }
    }

    /// The subgroup core this kernel builds on (gemm_subgroup_n32.wgsl for matmul).
    fn subgroup_core(self) -> &'static str {
        if self == Kernel::Matmul {
            GEMM_SUBGROUP_N32
        } else {
            GEMM_SUBGROUP
        }
    }

    /// The complete WGSL source for this kernel on `variant`.
    pub fn source(self, variant: Variant) -> String {
        let body = match self {
            Kernel::Matmul => shader!("matmul"),
            Kernel::MatmulSmall => shader!("matmul_small"),
            Kernel::SplitKReduce => shader!("split_k_reduce"),
            Kernel::Transpose => shader!("transpose"),
            Kernel::Conv2dForward => shader!("conv2d_forward"),
            Kernel::Conv2dBackwardWeight => shader!("conv2d_backward_weight"),
            // The grouped kernels are the depthwise files with ALIGNED_GROUPS set (below).
            Kernel::DepthwiseConv2dForward | Kernel::GroupedConv2dForward => {
                shader!("depthwise_conv2d_forward")
            }
            Kernel::DepthwiseConv2dBackwardInput | Kernel::GroupedConv2dBackwardInput => {
                shader!("depthwise_conv2d_backward_input")
            }
            Kernel::DepthwiseConv2dBackwardWeight | Kernel::GroupedConv2dBackwardWeight => {
                shader!("depthwise_conv2d_backward_weight")
            }
            Kernel::BiasForward => shader!("bias_forward"),
            Kernel::BiasBackward => shader!("bias_backward"),
            Kernel::MaxPool2dForward => shader!("maxpool2d_forward"),
            Kernel::MaxPool2dBackward => shader!("maxpool2d_backward"),
            Kernel::MaxPool2dBackwardWindows => shader!("maxpool2d_backward_windows"),
            Kernel::AvgPool2dForward => shader!("avgpool2d_forward"),
            Kernel::AvgPool2dBackward => shader!("avgpool2d_backward"),
            Kernel::GlobalAvgPool2d => shader!("global_avgpool2d"),
            Kernel::ActivationForward => shader!("activation_forward"),
            Kernel::ActivationBackward => shader!("activation_backward"),
            Kernel::GatedActivationForward => shader!("gated_activation_forward"),
            Kernel::GatedActivationBackward => shader!("gated_activation_backward"),
            Kernel::Softmax => shader!("softmax"),
            Kernel::SoftmaxXentForward => shader!("softmax_xent_forward"),
            Kernel::SoftmaxXentBackward => shader!("softmax_xent_backward"),
            Kernel::LossMetrics => shader!("loss_metrics"),
            Kernel::SgdUpdate => shader!("sgd_update"),
            Kernel::AdamUpdate | Kernel::AdamAmsgradUpdate => shader!("adam_update"),
            Kernel::RmsPropUpdate | Kernel::RmsPropCenteredUpdate => shader!("rmsprop_update"),
            Kernel::GradNorm => shader!("grad_norm"),
            Kernel::GradClip => shader!("grad_clip"),
            Kernel::DropoutForward => shader!("dropout_forward"),
            Kernel::DropoutBackward => shader!("dropout_backward"),
            Kernel::BatchNormForward => shader!("batchnorm_forward"),
            Kernel::BatchNormBackward => shader!("batchnorm_backward"),
            Kernel::MergeForward => shader!("merge_forward"),
            Kernel::MergeBackward => shader!("merge_backward"),
            Kernel::CopyColumns => shader!("copy_columns"),
            Kernel::L2Penalty => shader!("l2_penalty"),
            Kernel::Pad2d => shader!("pad2d"),
            Kernel::UpSampling2dForward => shader!("upsampling2d_forward"),
            Kernel::UpSampling2dBackward => shader!("upsampling2d_backward"),
            Kernel::LayerNormForward => shader!("layernorm_forward"),
            Kernel::LayerNormBackward => shader!("layernorm_backward"),
            Kernel::LossForward => shader!("loss_forward"),
            Kernel::LossBackward => shader!("loss_backward"),
            Kernel::LossTotals => shader!("loss_totals"),
            Kernel::SoftXentForward => shader!("soft_xent_forward"),
            Kernel::SoftXentBackward => shader!("soft_xent_backward"),
            Kernel::Confusion => shader!("confusion"),
            Kernel::BytesToUnit => shader!("bytes_to_unit"),
            Kernel::ChannelAffine => shader!("channel_affine"),
        };
        let mut src = String::new();
        // The depthwise and grouped kernels share their files; this constant picks the
        // loop nest each compiles (the other is dead code, dropped before codegen).
        match self {
            Kernel::DepthwiseConv2dForward
            | Kernel::DepthwiseConv2dBackwardInput
            | Kernel::DepthwiseConv2dBackwardWeight => {
                src.push_str("const ALIGNED_GROUPS: bool = false;\n")
            }
            Kernel::GroupedConv2dForward
            | Kernel::GroupedConv2dBackwardInput
            | Kernel::GroupedConv2dBackwardWeight => {
                src.push_str("const ALIGNED_GROUPS: bool = true;\n")
            }
            _ => {}
        }
        if self.uses_divmod() {
            src.push_str(DIVMOD);
        }
        match self {
            Kernel::Conv2dForward | Kernel::Conv2dBackwardWeight => src.push_str(CONV2D_COMMON),
            Kernel::MaxPool2dForward
            | Kernel::MaxPool2dBackward
            | Kernel::MaxPool2dBackwardWindows
            | Kernel::AvgPool2dForward
            | Kernel::AvgPool2dBackward => src.push_str(POOL2D_COMMON),
            Kernel::BatchNormForward | Kernel::BatchNormBackward => src.push_str(BATCHNORM_COMMON),
            Kernel::GatedActivationForward | Kernel::GatedActivationBackward => {
                src.push_str(GATED_ACTIVATION_COMMON)
            }
            Kernel::UpSampling2dForward | Kernel::UpSampling2dBackward => {
                src.push_str(UPSAMPLING_COMMON)
            }
            Kernel::LayerNormForward | Kernel::LayerNormBackward => src.push_str(LAYERNORM_COMMON),
            Kernel::LossForward | Kernel::LossBackward => src.push_str(LOSS_COMMON),
            Kernel::SoftXentForward | Kernel::SoftXentBackward => src.push_str(SOFT_XENT_COMMON),
            Kernel::DepthwiseConv2dBackwardInput | Kernel::GroupedConv2dBackwardInput => {
                src.push_str(DEPTHWISE_COMMON)
            }
            Kernel::DepthwiseConv2dForward
            | Kernel::DepthwiseConv2dBackwardWeight
            | Kernel::GroupedConv2dForward
            | Kernel::GroupedConv2dBackwardWeight => {
                src.push_str(DEPTHWISE_COMMON);
                src.push_str(DEPTHWISE_INPUT);
            }
            _ => {}
        }
        if self.reads_operands() {
            src.push_str(if variant.uses_textures() {
                GEMM_OPERANDS_TEXTURE
            } else {
                GEMM_OPERANDS_BUFFER
            });
        }
        src.push_str(body);
        // The optional state of Adam's amsgrad and RMSprop's centered form: their kernels
        // append its binding and function; the plain forms, the function's identity.
        match self {
            Kernel::AdamUpdate => src.push_str(
                "fn second_moment(i: u32, v: vec4<f32>) -> vec4<f32> {\n    return v;\n}\n",
            ),
            Kernel::AdamAmsgradUpdate => src.push_str(shader!("adam_amsgrad")),
            Kernel::RmsPropUpdate => src.push_str(
                "fn centering(i: u32, g: vec4<f32>) -> vec4<f32> {\n    return vec4<f32>(0.0);\n}\n",
            ),
            Kernel::RmsPropCenteredUpdate => src.push_str(shader!("rmsprop_centered")),
            _ => {}
        }
        if self.is_gemm() {
            src.push_str(GEMM_COMMON);
            match variant {
                Variant::Portable => src.push_str(GEMM_PORTABLE),
                Variant::Tiled => src.push_str(GEMM_TILED),
                // The core loads through sg_load_a4/sg_load_b4: bind them to the op's
                // unaligned or aligned loaders by name (a run-time `if` between them was 2×
                // slower, and compiling both paths cost more than either).
                Variant::Subgroup | Variant::Texture => src.push_str(
                    &self
                        .subgroup_core()
                        .replace("sg_load_a4", "load_a4_unaligned")
                        .replace("sg_load_b4", "load_b4_unaligned"),
                ),
                Variant::SubgroupAligned | Variant::TextureAligned => src.push_str(
                    &self
                        .subgroup_core()
                        .replace("sg_load_a4", "load_a4_aligned")
                        .replace("sg_load_b4", "load_b4_aligned"),
                ),
                Variant::TextureAlignedB => src.push_str(
                    &self
                        .subgroup_core()
                        .replace("sg_load_a4", "load_a4_unaligned")
                        .replace("sg_load_b4", "load_b4_aligned_k"),
                ),
                Variant::SubgroupNarrow => src.push_str(
                    &GEMM_SUBGROUP_NT
                        .replace("sg_load_a4", "load_a4_aligned")
                        .replace("sg_load_bt4", "load_bt4_aligned"),
                ),
            }
        }
        src
    }
}

/// Output tile of the subgroup GEMM (rows, columns); kept in sync with gemm_subgroup.wgsl.
const SUBGROUP_TILE_M: u32 = 32;
const SUBGROUP_TILE_N: u32 = 64;
