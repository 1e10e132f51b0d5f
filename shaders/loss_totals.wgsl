// Adds this batch's sums of per-sample losses and metrics over the `valid` rows to
// totals[0] and totals[1] (value targets; loss_metrics does it for class labels). The
// totals stay on the GPU across steps; the host reads them only when it reports.

struct Rows {
    rows: u32,
    cols: u32,
    valid: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Rows;
@group(0) @binding(1) var<storage, read> sample_loss: array<f32>;
@group(0) @binding(2) var<storage, read> sample_metric: array<f32>;
@group(0) @binding(3) var<storage, read_write> totals: array<f32>;

var<workgroup> loss_part: array<f32, 64>;
var<workgroup> metric_part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    let n = min(min(p.valid, p.rows), min(arrayLength(&sample_loss), arrayLength(&sample_metric)));
    var l = 0.0;
    var m = 0.0;
    for (var r = lid; r < n; r += 64u) {
        l += sample_loss[r];
        m += sample_metric[r];
    }
    loss_part[lid] = l;
    metric_part[lid] = m;
    workgroupBarrier();
    // One invocation adds the partial sums in a fixed order (see loss_metrics.wgsl).
    if (lid == 0u && arrayLength(&totals) >= 2u) {
        var ls = 0.0;
        var ms = 0.0;
        for (var i = 0u; i < 64u; i++) {
            ls += loss_part[i];
            ms += metric_part[i];
        }
        totals[0] += ls;
        totals[1] += ms;
    }
}
