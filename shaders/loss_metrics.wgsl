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
        for (var j = 1u; j < p.cols; j++) {
            if (probs[base + j] > probs[base + best]) {
                best = j;
            }
        }
        hits += select(0.0, 1.0, best == labels[r]);
    }
    loss_part[lid] = l;
    hit_part[lid] = hits;
    workgroupBarrier();
    for (var width = 32u; width > 0u; width >>= 1u) {
        if (lid < width) {
            loss_part[lid] += loss_part[lid + width];
            hit_part[lid] += hit_part[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u && arrayLength(&totals) >= 2u) {
        totals[0] += loss_part[0];
        totals[1] += hit_part[0];
    }
}
