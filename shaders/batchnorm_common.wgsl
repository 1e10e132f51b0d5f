// Shared by the BatchNormalization passes (both bind x at binding 1): x is [rows, C4],
// C4 = C rounded up to a multiple of 4 (the launcher pads other channel counts), read as
// vec4 quads of channels. One workgroup per quad, 64 invocations striding over rows. The
// per-channel vectors are [C] tensors whose buffers hold whole vec4s.
//
// Written for cheap compiles on lavapipe (the first training step pays them): vec4 loads
// and stores only, no store under a per-element condition (Mesa 25.0: 700 + 615 ms for
// the two passes before, ~330 + 280 ms after).

struct Params {
    rows: u32,
    channels: u32, // C, not padded
    valid: u32, // rows of real samples in this batch
    training: u32, // 0 inference, 1 training, 2 a frozen layer in training
    momentum: f32,
    epsilon: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;

var<workgroup> part_a: array<vec4<f32>, 64>;
var<workgroup> part_b: array<vec4<f32>, 64>;

var<workgroup> sums: array<vec4<f32>, 2>;

// The 64 partial sums added by lane 0 (a loop NIR does not unroll) and shared through
// workgroup memory: call in uniform control flow, after the partials are written.
fn workgroup_sums(lid: u32) -> array<vec4<f32>, 2> {
    workgroupBarrier();
    if (lid == 0u) {
        var a = vec4<f32>(0.0);
        var b = vec4<f32>(0.0);
        for (var i = 0u; i < 64u; i++) {
            a += part_a[i];
            b += part_b[i];
        }
        sums[0] = a;
        sums[1] = b;
    }
    workgroupBarrier();
    return sums;
}
