// Fused softmax + categorical cross-entropy backward (see soft_xent_common.wgsl):
// dz = (p·Σt' − t') / valid rows, 0 for the rows past them. One invocation per row.

@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> truth: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    r = shape;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    let end = (i + 1u) * r.cols;
    if (i >= r.rows || end > arrayLength(&dlogits) || end > arrayLength(&probs) || end > arrayLength(&truth)) {
        return;
    }
    let base = i * r.cols;
    let k = 1.0 - p.smoothing;
    let u = p.smoothing / f32(r.cols);
    var total = 0.0;
    for (var j = 0u; j < r.cols; j++) {
        total += truth[base + j] * k + u;
    }
    let scale = select(0.0, 1.0 / f32(max(r.valid, 1u)), i < r.valid);
    for (var j = 0u; j < r.cols; j++) {
        dlogits[base + j] = (probs[base + j] * total - (truth[base + j] * k + u)) * scale;
    }
}
