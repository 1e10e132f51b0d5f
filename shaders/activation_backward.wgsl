// Activation backward, in place on the gradient and in terms of the forward *output* y
// (all supported activations have derivatives expressible through y):
// relu: g·[y > 0], sigmoid: g·y(1−y), tanh: g·(1−y²). kind as in activation_forward.
// One invocation per vec4.

struct Params {
    n: u32,
    kind: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> g: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&g)) {
        return;
    }
    let v = y[i];
    switch p.kind {
        case 1u: { g[i] = select(vec4<f32>(0.0), g[i], v > vec4<f32>(0.0)); }
        case 2u: { g[i] = g[i] * v * (1.0 - v); }
        case 3u: { g[i] = g[i] * (1.0 - v * v); }
        default: {}
    }
}
