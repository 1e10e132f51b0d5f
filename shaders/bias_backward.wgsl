// Bias gradient = column sums of dout[rows, cols] (dense: rows = batch; conv: rows =
// batch·OH·OW). One workgroup per column: 64 lanes stride over the rows, then a tree
// reduction in workgroup memory. Used by both Dense and Conv2D.

struct Params {
    rows: u32,
    cols: u32,
    flags: u32, // 1: accumulate into db
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let col = wid.x + wid.y * nwg.x;
    var s = 0.0;
    if (col < p.cols) {
        for (var r = lid; r < p.rows; r += 64u) {
            s += dout[r * p.cols + col];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var width = 32u; width > 0u; width >>= 1u) {
        if (lid < width) {
            partial[lid] += partial[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u && col < p.cols && col < arrayLength(&db)) {
        if ((p.flags & 1u) != 0u) {
            db[col] += partial[0];
        } else {
            db[col] = partial[0];
        }
    }
}
