// Gradient clipping by norm, in place (Keras' clipnorm and global_clipnorm): with
// n = √norms[slot] (or √Σ norms over every trainable tensor, global), g ← g·c/max(n, c).
// One invocation per vec4.

struct Params {
    slot: u32,
    count: u32, // tensors in norms
    global: u32, // 1: the norm of all of them
    clipnorm: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> norms: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= arrayLength(&g)) {
        return;
    }
    var sq = norms[min(p.slot, arrayLength(&norms) - 1u)];
    if (p.global != 0u) {
        sq = 0.0;
        for (var k = 0u; k < min(p.count, arrayLength(&norms)); k++) {
            sq += norms[k];
        }
    }
    let n = sqrt(sq);
    g[i] = g[i] * select(1.0, p.clipnorm / n, n > p.clipnorm);
}
