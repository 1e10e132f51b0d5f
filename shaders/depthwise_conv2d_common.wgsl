// Shared by the depthwise and grouped convolution passes. NHWC tensors; groups of Cg
// input channels (Cg = 1: depthwise) and M output channels; the kernel is
// [KH, KW, Cg, O], O = (C / Cg)·M (Keras' depthwise [KH, KW, C, M] flattened is the case
// Cg = 1): output channel o reads input channels (o / M)·Cg + ci, ci < Cg. C and O are
// multiples of 4 (the launcher pads depthwise channel counts with zeros), so x, dx, y, dy,
// the kernel and the bias are read and written as whole vec4s; unless M = Cg = 1 the
// four output channels of a quad read their input channels element by element.

struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32, // C, a multiple of 4
    out_h: u32,
    out_w: u32,
    mult: u32, // M, the depth multiplier
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32, // 1: relu (forward), 2: accumulate into the output (backward input)
    chunk: u32, // output pixels per workgroup row of the kernel gradient's split
    group_in: u32, // Cg, input channels per group
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 64u + lid;
}

// Input row (or column) of output row `o` and kernel tap `k`, or -1 in the padding.
fn in_coord(o: u32, k: u32, stride: u32, dil: u32, pad: u32, size: u32) -> i32 {
    let i = i32(o * stride + k * dil) - i32(pad);
    return select(-1, i, i >= 0 && i < i32(size));
}

// The first input channel of each output channel o0 .. o0+3's group: (o / M)·Cg.
fn in_channels(o0: u32) -> vec4<u32> {
    return (vec4<u32>(o0) + vec4<u32>(0u, 1u, 2u, 3u)) / vec4<u32>(p.mult) * p.group_in;
}
