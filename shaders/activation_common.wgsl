// Shared by activation_forward and activation_backward: the parameters and the CDFs of
// the two GELU forms.

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
fn normal_cdf(x: vec4<f32>) -> vec4<f32> {
    let z = abs(x) * 0.70710678;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let tail = 0.5 * poly * exp(-z * z);
    return select(1.0 - tail, tail, x < vec4<f32>(0.0));
}

// 0.5·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), the tanh GELU's stand-in for Φ,
// computed as sigmoid(2u), the same function: 1 + tanh(u) cancels for negative x.
fn gelu_tanh_cdf(x: vec4<f32>) -> vec4<f32> {
    let u = 0.7978845608 * (x + 0.044715 * x * x * x);
    return 1.0 / (1.0 + exp(-2.0 * u));
}
