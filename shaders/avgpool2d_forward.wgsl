// Average pooling forward; the mean is over the valid (unpadded) part of each window.
// `lanes()` channels per invocation.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = linear_id(wid, nwg, lid);
    if (i >= p.batch * p.out_h * p.out_w * p.c / lanes()) {
        return;
    }
    let q = coords(i, p.out_h, p.out_w);
    let hr = window(q.y, p.stride_h, p.pad_top, p.pool_h, p.in_h);
    let wr = window(q.z, p.stride_w, p.pad_left, p.pool_w, p.in_w);
    let count = max(f32((hr.y - hr.x) * (wr.y - wr.x)), 1.0);
    let o = ((q.x * p.out_h + q.y) * p.out_w + q.z) * p.c + q.w;
    if ((o >> 2u) >= arrayLength(&y)) {
        return;
    }
    if (lanes() == 4u) {
        var s = vec4<f32>(0.0);
        for (var ih = hr.x; ih < hr.y; ih++) {
            for (var iw = wr.x; iw < wr.y; iw++) {
                s += x[(((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w) >> 2u];
            }
        }
        y[o >> 2u] = s / count;
        return;
    }
    var s = 0.0;
    for (var ih = hr.x; ih < hr.y; ih++) {
        for (var iw = wr.x; iw < wr.y; iw++) {
            let j = ((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w;
            s += x[j >> 2u][j & 3u];
        }
    }
    y[o >> 2u][o & 3u] = s / count;
}
