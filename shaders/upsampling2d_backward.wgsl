// UpSampling2D backward, gathered: dinp[n, i, j, c] (+)= Σ w(y, i)·w(x, j)·dout[n, y, x, c]
// over the output pixels near (i, j) (rows (i − 1)·scale up to (i + 2)·scale: every row
// that samples input row i, clamped edges included). One invocation per input element;
// no atomics, so the sum's order is fixed.

@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let e = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (e >= p.n || e >= arrayLength(&dinp)) {
        return;
    }
    let out_h = p.in_h * p.scale_h;
    let out_w = p.in_w * p.scale_w;
    let pix_c = divmod(e, p.c);
    let row_j = divmod(pix_c.x, p.in_w);
    let n_i = divmod(row_j.x, p.in_h);
    let n = n_i.x;
    let i = n_i.y;
    let j = row_j.y;
    let c = pix_c.y;
    let y_end = min(out_h, (i + 2u) * p.scale_h);
    let x_end = min(out_w, (j + 2u) * p.scale_w);
    var acc = 0.0;
    for (var y = (max(i, 1u) - 1u) * p.scale_h; y < y_end; y++) {
        let wy = weight(y, i, p.scale_h, p.in_h);
        if (wy == 0.0) {
            continue;
        }
        var row = 0.0;
        for (var x = (max(j, 1u) - 1u) * p.scale_w; x < x_end; x++) {
            row += weight(x, j, p.scale_w, p.in_w) * dout[((n * out_h + y) * out_w + x) * p.c + c];
        }
        acc += wy * row;
    }
    if (p.accumulate != 0u) {
        acc += dinp[e];
    }
    dinp[e] = acc;
}
