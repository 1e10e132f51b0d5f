//! The shader table: every kernel's WGSL, loaded with `include_str!`.
//!
//! GEMM-shaped ops (dense matmul and the conv passes) share one GEMM core per
//! [`Variant`]; the op's file supplies `gemm_dims()`, `load_a4()`, `load_b4()` and
//! `store()`, and the source is the op file followed by `gemm_common.wgsl` and the core.
//! Kernels that split indices get `divmod.wgsl` first, and conv and pooling kernels their
//! `*_common.wgsl`. That is plain concatenation, not templating: every piece is a valid
//! WGSL fragment you can read.

/// The GEMM kernel family. The device's family is chosen once from its features; a
/// launcher falls back to `Portable` for a shape the subgroup core cannot take (an axis
/// it loads as vec4 that is not a multiple of 4).
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
const GEMM_PORTABLE: &str = shader!("gemm_portable");
const GEMM_TILED: &str = shader!("gemm_tiled");
const GEMM_SUBGROUP: &str = shader!("gemm_subgroup");
const GEMM_SUBGROUP_NT: &str = shader!("gemm_subgroup_nt");
const CONV2D_COMMON: &str = shader!("conv2d_common");
const POOL2D_COMMON: &str = shader!("pool2d_common");
const DIVMOD: &str = shader!("divmod");

/// Every compute kernel wgcnn dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    SplitKReduce,
    Transpose,
    Conv2dForward,
    Conv2dBackwardInput,
    Conv2dBackwardWeight,
    Conv2dBackwardWeightTaps,
    BiasBackward,
    MaxPool2dForward,
    MaxPool2dBackward,
    MaxPool2dBackwardWindows,
    AvgPool2dForward,
    AvgPool2dBackward,
    ActivationForward,
    ActivationBackward,
    Softmax,
    SoftmaxXentForward,
    SoftmaxXentBackward,
    LossMetrics,
    SgdUpdate,
    AdamUpdate,
    DropoutForward,
    DropoutBackward,
}

impl Kernel {
    /// Every kernel, in the order of the enum.
    pub const ALL: [Kernel; 23] = [
        Kernel::Matmul,
        Kernel::SplitKReduce,
        Kernel::Transpose,
        Kernel::Conv2dForward,
        Kernel::Conv2dBackwardInput,
        Kernel::Conv2dBackwardWeight,
        Kernel::Conv2dBackwardWeightTaps,
        Kernel::BiasBackward,
        Kernel::MaxPool2dForward,
        Kernel::MaxPool2dBackward,
        Kernel::MaxPool2dBackwardWindows,
        Kernel::AvgPool2dForward,
        Kernel::AvgPool2dBackward,
        Kernel::ActivationForward,
        Kernel::ActivationBackward,
        Kernel::Softmax,
        Kernel::SoftmaxXentForward,
        Kernel::SoftmaxXentBackward,
        Kernel::LossMetrics,
        Kernel::SgdUpdate,
        Kernel::AdamUpdate,
        Kernel::DropoutForward,
        Kernel::DropoutBackward,
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
            ],
            k if k.is_gemm() => &[
                Variant::Portable,
                Variant::Tiled,
                Variant::Subgroup,
                Variant::SubgroupAligned,
            ],
            _ => &[Variant::Portable],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul",
            Kernel::SplitKReduce => "split_k_reduce",
            Kernel::Transpose => "transpose",
            Kernel::Conv2dForward => "conv2d_forward",
            Kernel::Conv2dBackwardInput => "conv2d_backward_input",
            Kernel::Conv2dBackwardWeight => "conv2d_backward_weight",
            Kernel::Conv2dBackwardWeightTaps => "conv2d_backward_weight_taps",
            Kernel::BiasBackward => "bias_backward",
            Kernel::MaxPool2dForward => "maxpool2d_forward",
            Kernel::MaxPool2dBackward => "maxpool2d_backward",
            Kernel::MaxPool2dBackwardWindows => "maxpool2d_backward_windows",
            Kernel::AvgPool2dForward => "avgpool2d_forward",
            Kernel::AvgPool2dBackward => "avgpool2d_backward",
            Kernel::ActivationForward => "activation_forward",
            Kernel::ActivationBackward => "activation_backward",
            Kernel::Softmax => "softmax",
            Kernel::SoftmaxXentForward => "softmax_xent_forward",
            Kernel::SoftmaxXentBackward => "softmax_xent_backward",
            Kernel::LossMetrics => "loss_metrics",
            Kernel::SgdUpdate => "sgd_update",
            Kernel::AdamUpdate => "adam_update",
            Kernel::DropoutForward => "dropout_forward",
            Kernel::DropoutBackward => "dropout_backward",
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
            Kernel::Matmul
                | Kernel::Conv2dForward
                | Kernel::Conv2dBackwardInput
                | Kernel::Conv2dBackwardWeight
                | Kernel::Conv2dBackwardWeightTaps
        )
    }

    /// True for the kernels that split indices with `divmod` (exact below 2^24; their
    /// launchers check the sizes).
    fn uses_divmod(self) -> bool {
        matches!(
            self,
            Kernel::Conv2dForward
                | Kernel::Conv2dBackwardInput
                | Kernel::Conv2dBackwardWeight
                | Kernel::Conv2dBackwardWeightTaps
                | Kernel::MaxPool2dForward
                | Kernel::MaxPool2dBackward
                | Kernel::MaxPool2dBackwardWindows
                | Kernel::AvgPool2dForward
                | Kernel::AvgPool2dBackward
                | Kernel::Transpose
                | Kernel::SplitKReduce
        )
    }

    /// Rows × columns of the output tile one workgroup of a GEMM kernel computes.
    pub fn gemm_tile(variant: Variant) -> (u32, u32) {
        match variant {
            Variant::Portable => (32, 32),
            Variant::Tiled => (64, 64),
            Variant::Subgroup | Variant::SubgroupAligned => (SUBGROUP_TILE_M, SUBGROUP_TILE_N),
            Variant::SubgroupNarrow => (32, 16),
        }
    }

    /// The complete WGSL source for this kernel on `variant`.
    pub fn source(self, variant: Variant) -> String {
        let body = match self {
            Kernel::Matmul => shader!("matmul"),
            Kernel::SplitKReduce => shader!("split_k_reduce"),
            Kernel::Transpose => shader!("transpose"),
            Kernel::Conv2dForward => shader!("conv2d_forward"),
            Kernel::Conv2dBackwardInput => shader!("conv2d_backward_input"),
            Kernel::Conv2dBackwardWeight => shader!("conv2d_backward_weight"),
            Kernel::Conv2dBackwardWeightTaps => shader!("conv2d_backward_weight_taps"),
            Kernel::BiasBackward => shader!("bias_backward"),
            Kernel::MaxPool2dForward => shader!("maxpool2d_forward"),
            Kernel::MaxPool2dBackward => shader!("maxpool2d_backward"),
            Kernel::MaxPool2dBackwardWindows => shader!("maxpool2d_backward_windows"),
            Kernel::AvgPool2dForward => shader!("avgpool2d_forward"),
            Kernel::AvgPool2dBackward => shader!("avgpool2d_backward"),
            Kernel::ActivationForward => shader!("activation_forward"),
            Kernel::ActivationBackward => shader!("activation_backward"),
            Kernel::Softmax => shader!("softmax"),
            Kernel::SoftmaxXentForward => shader!("softmax_xent_forward"),
            Kernel::SoftmaxXentBackward => shader!("softmax_xent_backward"),
            Kernel::LossMetrics => shader!("loss_metrics"),
            Kernel::SgdUpdate => shader!("sgd_update"),
            Kernel::AdamUpdate => shader!("adam_update"),
            Kernel::DropoutForward => shader!("dropout_forward"),
            Kernel::DropoutBackward => shader!("dropout_backward"),
        };
        let mut src = String::new();
        if self.uses_divmod() {
            src.push_str(DIVMOD);
        }
        match self {
            Kernel::Conv2dForward
            | Kernel::Conv2dBackwardInput
            | Kernel::Conv2dBackwardWeight
            | Kernel::Conv2dBackwardWeightTaps => src.push_str(CONV2D_COMMON),
            Kernel::MaxPool2dForward
            | Kernel::MaxPool2dBackward
            | Kernel::MaxPool2dBackwardWindows
            | Kernel::AvgPool2dForward
            | Kernel::AvgPool2dBackward => src.push_str(POOL2D_COMMON),
            _ => {}
        }
        src.push_str(body);
        if self.is_gemm() {
            src.push_str(GEMM_COMMON);
            match variant {
                Variant::Portable => src.push_str(GEMM_PORTABLE),
                Variant::Tiled => src.push_str(GEMM_TILED),
                // The core loads through sg_load_a4/sg_load_b4: bind them to the op's general
                // or aligned loaders by name (a run-time `if` between them was 2× slower).
                Variant::Subgroup => src.push_str(&GEMM_SUBGROUP.replace("sg_load_", "load_")),
                Variant::SubgroupAligned => src.push_str(
                    &GEMM_SUBGROUP
                        .replace("sg_load_a4", "load_a4_aligned")
                        .replace("sg_load_b4", "load_b4_aligned"),
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
