// An L2 weight penalty in the loss total: totals[0] += valid · factor · Σ w². The totals
// hold the sum of per-sample losses, so a step adds its penalty once per sample and the
// reported mean loss is the data loss plus the penalty, as Keras reports it. One
// workgroup; the lanes' partial sums are added in lane order (reproducible).

struct Rows {
    rows: u32,
    cols: u32,
    valid: u32,
    _pad: u32,
}

struct Params {
    n: u32,
    factor: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> rows: Rows;
@group(0) @binding(1) var<storage, read> params: Params;
var<private> p: Params;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> totals: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    p = params;
    var s = 0.0;
    for (var i = lid; i < p.n; i += 64u) {
        s += w[i] * w[i];
    }
    part[lid] = s;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var j = 0u; j < 64u; j++) {
            total += part[j];
        }
        totals[0] = totals[0] + f32(min(rows.valid, rows.rows)) * p.factor * total;
    }
}
