// A fixed affine map per channel (the last axis): out = x·scale[c] + offset[c] (Keras'
// Rescaling, and Normalization with its mean and variance folded in), or with `backward`
// the input gradient out = dy·scale[c]. One invocation per element.

struct Params {
    n: u32,
    channels: u32,
    backward: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> offset: array<f32>;
@group(0) @binding(3) var<storage, read> inp: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&out)) {
        return;
    }
    let c = i % p.channels;
    out[i] = inp[i] * scale[c] + select(offset[c], 0.0, p.backward != 0u);
}
