// Shared by the gated activations' passes, y = x·gate(x): kind 8 gelu (gate Φ, the
// normal CDF, erf form), 9 gelu (tanh form), 10 silu (gate sigmoid), 11 hard swish (gate
// hard sigmoid). Kernels apart from activation_forward/backward: the erf code would
// lengthen every model's first compile (Mesa 25.0: activation_backward 90 → 177 ms).

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
// Φ(x), the standard normal CDF, as 0.5·erfc(−x/√2). WGSL has no erf: Abramowitz &
// Stegun 7.1.26 (|error| ≤ 1.5e-7), evaluated on |z| so that the small tail, 0.5·erfc(|z|),
// comes without the cancellation of 1 + erf(z) for negative x.
fn normal_cdf(v: vec4<f32>) -> vec4<f32> {
    let z = abs(v) * 0.70710678;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let tail = 0.5 * poly * exp(-z * z);
    return select(1.0 - tail, tail, v < vec4<f32>(0.0));
}

// 0.5·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), the tanh GELU's stand-in for Φ,
// computed as sigmoid(2u), the same function: 1 + tanh(u) cancels for negative x.
fn gelu_tanh_cdf(v: vec4<f32>) -> vec4<f32> {
    let u = 0.7978845608 * (v + 0.044715 * v * v * v);
    return 1.0 / (1.0 + exp(-2.0 * u));
}

fn gate(v: vec4<f32>) -> vec4<f32> {
    switch p.kind {
        case 8u: { return normal_cdf(v); }
        case 9u: { return gelu_tanh_cdf(v); }
        case 10u: { return 1.0 / (1.0 + exp(-v)); }
        default: { return clamp((v + 3.0) / 6.0, vec4<f32>(0.0), vec4<f32>(1.0)); }
    }
}

// The derivative of x·gate(x): gate(x) + x·gate'(x).
fn slope(v: vec4<f32>) -> vec4<f32> {
    let s = gate(v);
    switch p.kind {
        case 8u: { return s + v * 0.3989422804 * exp(-0.5 * v * v); }
        // d/dx of sigmoid(2u) is 2s(1 − s)·u'.
        case 9u: { return s + v * 2.0 * s * (1.0 - s) * 0.7978845608 * (1.0 + 0.134145 * v * v); }
        case 10u: { return s * (1.0 + v * (1.0 - s)); }
        default: {
            let inside = v > vec4<f32>(-3.0) & v < vec4<f32>(3.0);
            return s + select(vec4<f32>(0.0), v / 6.0, inside);
        }
    }
}
