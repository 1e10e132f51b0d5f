// Element-wise activation y = f(x), Keras' formulas. kind: 0 linear, 1 relu family
// (a = negative slope, b = max value, c = threshold: relu, relu6, leaky relu, the ReLU
// layer), 2 sigmoid, 3 tanh, 4 elu (a = alpha), 5 softplus, 6 softsign, 7 hard sigmoid.
// One invocation per vec4 (lavapipe loads a vec4 for the price of a scalar).

struct Params {
    n: u32,
    kind: u32,
    a: f32,
    b: f32,
    c: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

fn f(v: vec4<f32>) -> vec4<f32> {
    switch p.kind {
        case 1u: {
            let t = vec4<f32>(p.c);
            return select(p.a * (v - t), min(v, vec4<f32>(p.b)), v >= t);
        }
        case 2u: { return 1.0 / (1.0 + exp(-v)); }
        case 3u: { return tanh(v); }
        case 4u: { return select(p.a * (exp(v) - 1.0), v, v > vec4<f32>(0.0)); }
        case 5u: { return max(v, vec4<f32>(0.0)) + log(1.0 + exp(-abs(v))); }
        case 6u: { return v / (1.0 + abs(v)); }
        case 7u: { return clamp((v + 3.0) / 6.0, vec4<f32>(0.0), vec4<f32>(1.0)); }
        default: { return v; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&y)) {
        return;
    }
    // Buffers are whole vec4s; lanes past n in the last vec4 are padding, never read.
    y[i] = f(x[i]);
}
