// RMSprop's centered form (appended to rmsprop_update.wgsl): a running mean gradient
// ḡ ← ρ·ḡ + (1 − ρ)·g in a third state tensor; the denominator loses ḡ².

@group(0) @binding(5) var<storage, read_write> mean_g: array<vec4<f32>>;

fn centering(i: u32, g: vec4<f32>) -> vec4<f32> {
    let j = min(i, arrayLength(&mean_g) - 1u);
    let m = p.rho * mean_g[j] + (1.0 - p.rho) * g;
    mean_g[j] = m;
    return m * m;
}
