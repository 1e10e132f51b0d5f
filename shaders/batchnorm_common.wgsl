// Shared by the BatchNormalization passes (both bind x at binding 1): a quad of channels
// c0 .. c0+3 of one row of a [rows, C] tensor — one vec4 when C % 4 == 0, else element by
// element with zero past C — and the masks and padding rules for per-channel vectors,
// which are [C] tensors padded to whole vec4s.

struct Params {
    rows: u32,
    channels: u32,
    valid: u32, // rows of real samples in this batch
    training: u32,
    momentum: f32,
    epsilon: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;

fn quad_aligned() -> bool {
    return (p.channels & 3u) == 0u;
}

// Lanes j of the quad with c0 + j < C.
fn quad_mask(c0: u32) -> vec4<bool> {
    return vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u) < vec4<u32>(p.channels);
}

fn x_quad(r: u32, c0: u32) -> vec4<f32> {
    let i = r * p.channels + c0;
    if (quad_aligned()) {
        return x[i >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.channels) {
            v[j] = x[(i + j) >> 2u][(i + j) & 3u];
        }
    }
    return v;
}
