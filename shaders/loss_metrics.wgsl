// Adds this batch's loss sum and correct-prediction count (argmax == label, first
// maximum on ties) over the `valid` rows to totals[0] and totals[1]. The totals stay on
// the GPU across steps; the host reads them only when it reports progress.

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
        var best = 0u;
        var best_p = probs[base];
        for (var j = 1u; j < p.cols; j++) {
            let v = probs[base + j];
            if (v > best_p) {
                best = j;
                best_p = v;
            }
        }
        hits += select(0.0, 1.0, best == labels[r]);
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
