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
    let gv = g[i];
    // One store after the switch, not one per case: stores under a per-lane condition
    // are what lavapipe compiles slowly (Mesa 25.0: 121 → 63 ms for this kernel).
    var out = gv;
    switch p.kind {
        case 1u: { out = select(vec4<f32>(0.0), gv, v > vec4<f32>(0.0)); }
        case 2u: { out = gv * v * (1.0 - v); }
        case 3u: { out = gv * (1.0 - v * v); }
        default: {}
    }
    g[i] = out;
}
