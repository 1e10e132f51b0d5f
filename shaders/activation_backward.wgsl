// Activation backward, in place on the gradient. In terms of the forward *output* y
// where y determines the derivative: relu family g·(1 for 0 < y < max,
// 0 at or past max, the negative slope at or below 0), sigmoid g·y(1−y), tanh g·(1−y²),
// elu g·(1 above 0, y + alpha below), softplus g·(1 − e^−y), softsign g·(1 − |y|)²,
// hard sigmoid g/6 for 0 < y < 1; in terms of the *input* x for the rest: gelu
// g·(Φ(x) + x·φ(x)), tanh gelu g·(c + x·c'), silu g·s(1 + x(1 − s)) with s = sigmoid(x),
// hard swish g·(hard_sigmoid(x) + x/6 on −3 < x < 3). kind and parameters as in
// activation_forward.
// One invocation per vec4.

@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> g: array<vec4<f32>>;

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
        case 8u: {
            let u = x[i];
            out = gv * (normal_cdf(u) + u * 0.3989422804 * exp(-0.5 * u * u));
        }
        case 9u: {
            let u = x[i];
            let c = gelu_tanh_cdf(u);
            // d/dx of 0.5(1 + tanh(w)) is 2c(1 − c)·w'.
            out = gv * (c + u * 2.0 * c * (1.0 - c) * 0.7978845608 * (1.0 + 0.134145 * u * u));
        }
        case 10u: {
            let u = x[i];
            let s = 1.0 / (1.0 + exp(-u));
            out = gv * s * (1.0 + u * (1.0 - s));
        }
        case 11u: {
            let u = x[i];
            let inside = u > vec4<f32>(-3.0) & u < vec4<f32>(3.0);
            out = gv * (clamp((u + 3.0) / 6.0, zero, one) + select(zero, u / 6.0, inside));
        }
        default: {}
    }
    g[i] = out;
}
