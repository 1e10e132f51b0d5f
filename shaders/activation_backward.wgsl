// Activation backward, in place on the gradient and in terms of the forward *output* y
// (every activation here has a derivative y determines): relu family g·(1 for 0 < y < max,
// 0 at or past max, the negative slope at or below 0), sigmoid g·y(1−y), tanh g·(1−y²),
// elu g·(1 above 0, y + alpha below), softplus g·(1 − e^−y), softsign g·(1 − |y|)²,
// hard sigmoid g/6 for 0 < y < 1. kind and parameters as in activation_forward.
// One invocation per vec4.

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
    let zero = vec4<f32>(0.0);
    let one = vec4<f32>(1.0);
    switch p.kind {
        case 1u: {
            let inside = select(zero, one, v < vec4<f32>(p.b));
            out = gv * select(vec4<f32>(p.a), inside, v > zero);
        }
        case 2u: { out = gv * v * (1.0 - v); }
        case 3u: { out = gv * (1.0 - v * v); }
        case 4u: { out = gv * select(v + p.a, one, v > zero); }
        case 5u: { out = gv * (1.0 - exp(-v)); }
        case 6u: { out = gv * (1.0 - abs(v)) * (1.0 - abs(v)); }
        case 7u: { out = select(zero, gv / 6.0, v > zero & v < one); }
        default: {}
    }
    g[i] = out;
}
