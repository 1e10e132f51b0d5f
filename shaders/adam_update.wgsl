// Adam (Keras semantics), in place, one invocation per vec4, after Keras' decoupled weight
// decay w ← w − lr·wd·w (AdamW). The host folds the bias correction into
// lr_t = lr·sqrt(1 − β2ᵗ)/(1 − β1ᵗ) and rewrites this uniform every step:
//   m ← m + (1 − β1)(g − m);  v ← v + (1 − β2)(g² − v);  w ← w − lr_t·m / (sqrt(v) + ε)
// amsgrad (its own kernel: adam_amsgrad.wgsl supplies second_moment() and a third state
// tensor) divides by v̂ ← max(v̂, v) instead. g is clipped to [−clip, clip] first where
// clip > 0 (Keras' clipvalue). Padding lanes of the last vec4 have g = 0 and stay 0.

struct Params {
    lr_t: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32, // lr·wd, with the scheduled (not bias-corrected) rate
    clip: f32, // clipvalue, 0 for none
    _pad1: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;

fn clip_value(x: vec4<f32>) -> vec4<f32> {
    return select(x, clamp(x, vec4<f32>(-p.clip), vec4<f32>(p.clip)), p.clip > 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= arrayLength(&w) || i >= arrayLength(&m) || i >= arrayLength(&v) || i >= arrayLength(&g)) {
        return;
    }
    let gi = clip_value(g[i]);
    let mi = m[i] + (1.0 - p.beta1) * (gi - m[i]);
    let vi = v[i] + (1.0 - p.beta2) * (gi * gi - v[i]);
    m[i] = mi;
    v[i] = vi;
    let denom = second_moment(i, vi);
    let wi = w[i] - p.decay * w[i];
    w[i] = wi - p.lr_t * mi / (sqrt(denom) + p.eps);
}
