// SGD with momentum (Keras semantics), in place, one invocation per vec4, after Keras'
// decoupled weight decay w ← w − lr·wd·w:
//   v ← momentum·v − lr·g;  w ← w + v            (plain)
//   w ← w + momentum·v − lr·g                     (Nesterov, with the updated v)
// With momentum 0 this is w ← w − lr·g; g clipped to [−clip, clip] first where clip > 0
// (Keras' clipvalue). Padding lanes of the last vec4 stay 0.

struct Params {
    lr: f32,
    momentum: f32,
    nesterov: u32,
    _pad0: f32,
    decay: f32, // lr·wd
    clip: f32, // clipvalue, 0 for none
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4<f32>>;

fn clip_value(x: vec4<f32>) -> vec4<f32> {
    return select(x, clamp(x, vec4<f32>(-p.clip), vec4<f32>(p.clip)), p.clip > 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= arrayLength(&w) || i >= arrayLength(&v) || i >= arrayLength(&g)) {
        return;
    }
    let gi = clip_value(g[i]);
    let wi = w[i] - p.decay * w[i];
    let vel = p.momentum * v[i] - p.lr * gi;
    v[i] = vel;
    w[i] = wi + select(vel, p.momentum * vel - p.lr * gi, p.nesterov != 0u);
}
