// RMSprop (Keras semantics), in place, one invocation per vec4, after Keras' decoupled
// weight decay w ← w − lr·wd·w:
//   s ← ρ·s + (1 − ρ)·g²;  m ← momentum·m + lr·g/√(s + ε);  w ← w − m
// (with momentum 0 Keras keeps no m and subtracts lr·g/√(s + ε): the same numbers).
// centered (its own kernel: rmsprop_centered.wgsl supplies centering() and a third state
// tensor) keeps ḡ ← ρ·ḡ + (1 − ρ)·g and divides by √(s − ḡ² + ε). g is clipped to [−clip, clip] first
// where clip > 0 (Keras' clipvalue).
// Padding lanes of the last vec4 have g = 0 and stay 0.

struct Params {
    lr: f32,
    rho: f32,
    momentum: f32,
    eps: f32,
    decay: f32, // lr·wd
    clip: f32, // clipvalue, 0 for none
    _pad1: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> s: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;

fn clip_value(x: vec4<f32>) -> vec4<f32> {
    return select(x, clamp(x, vec4<f32>(-p.clip), vec4<f32>(p.clip)), p.clip > 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= arrayLength(&w) || i >= arrayLength(&s) || i >= arrayLength(&m) || i >= arrayLength(&g)) {
        return;
    }
    let gi = clip_value(g[i]);
    let si = p.rho * s[i] + (1.0 - p.rho) * gi * gi;
    let denom = si + vec4<f32>(p.eps) - centering(i, gi);
    let mi = p.momentum * m[i] + p.lr * gi / sqrt(denom);
    s[i] = si;
    m[i] = mi;
    w[i] = w[i] - p.decay * w[i] - mi;
}
