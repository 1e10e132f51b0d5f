// Adds this batch's loss sum and correct-prediction count over the `valid` rows to
// totals[0] and totals[1]. top_k 0: correct when the label is the argmax (the first
// maximum, Keras' accuracy); top_k k ≥ 1: when fewer than k classes are strictly more
// probable than the label (Keras' in_top_k: ties at the boundary count). The totals stay on
// the GPU across steps; the host reads them only when it reports progress.

struct Params {
    rows: u32,
    cols: u32,
    valid: u32,
    top_k: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> totals: array<f32>;

var<workgroup> loss_part: array<f32, 64>;
var<workgroup> hit_part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    p = params;
    var l = 0.0;
    var hits = 0.0;
    for (var r = lid; r < min(p.valid, p.rows); r += 64u) {
        l += loss[r];
        let base = r * p.cols;
        let l = min(labels[r], p.cols - 1u);
        let pl = probs[base + l];
        // Accuracy also ranks the equally probable classes before the label.
        let first = p.top_k == 0u;
        var rank = 0u;
        for (var j = 0u; j < p.cols; j++) {
            let v = probs[base + j];
            rank += select(0u, 1u, v > pl || (first && v == pl && j < l));
        }
        hits += select(0.0, 1.0, rank < max(p.top_k, 1u));
    }
    loss_part[lid] = l;
    hit_part[lid] = hits;
    workgroupBarrier();
    // One invocation adds the 64 partial sums: a loop (64 trips, which NIR does not unroll)
    // where a tree reduction was six unrolled rounds of workgroup loads and stores, the
    // larger part of this small kernel's compile time on lavapipe.
    if (lid == 0u && arrayLength(&totals) >= 2u) {
        var ls = 0.0;
        var hs = 0.0;
        for (var i = 0u; i < 64u; i++) {
            ls += loss_part[i];
            hs += hit_part[i];
        }
        totals[0] += ls;
        totals[1] += hs;
    }
}
