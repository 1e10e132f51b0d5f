// Adds each valid row's (label, predicted class) to a confusion matrix of counts,
// confusion[label·C + argmax p] (first maximum), for MeanIoU. Integer atomics: the counts
// are exact and the same whatever the order of the additions.

struct Rows {
    rows: u32,
    cols: u32,
    valid: u32,
    top_k: u32,
}

@group(0) @binding(0) var<storage, read> params: Rows;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> confusion: array<atomic<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    let r = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (r >= min(p.valid, p.rows) || (r + 1u) * p.cols > arrayLength(&probs) || r >= arrayLength(&labels)) {
        return;
    }
    let base = r * p.cols;
    var best = 0u;
    for (var j = 1u; j < p.cols; j++) {
        best = select(best, j, probs[base + j] > probs[base + best]);
    }
    let cell = min(labels[r], p.cols - 1u) * p.cols + best;
    if (cell < arrayLength(&confusion)) {
        atomicAdd(&confusion[cell], 1u);
    }
}
