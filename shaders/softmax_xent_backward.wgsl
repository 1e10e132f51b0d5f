// Fused softmax + cross-entropy backward: dz = (p − onehot(label)) / valid, the gradient
// of the mean loss over the `valid` rows; padding rows get 0.

struct Params {
    rows: u32,
    cols: u32,
    valid: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.rows * p.cols || i >= arrayLength(&dlogits)) {
        return;
    }
    let r = i / p.cols;
    let j = i % p.cols;
    if (r >= p.valid) {
        dlogits[i] = 0.0;
        return;
    }
    let onehot = select(0.0, 1.0, labels[r] == j);
    dlogits[i] = (probs[i] - onehot) / f32(p.valid);
}
