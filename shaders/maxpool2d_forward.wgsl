// Max pooling forward; also records the flat input index of each maximum (first maximum
// on ties) so that the backward pass can route gradients without atomics. Each
// invocation handles `lanes()` channels (a vec4 when C % 4 == 0).

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> argmax: array<vec4<u32>>;

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
    let o = ((q.x * p.out_h + q.y) * p.out_w + q.z) * p.c + q.w;
    if (lanes() == 4u) {
        var best = vec4<f32>(-3.0e38);
        var arg = vec4<u32>(0xffffffffu);
        for (var ih = hr.x; ih < hr.y; ih++) {
            for (var iw = wr.x; iw < wr.y; iw++) {
                let j = ((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w;
                let v = x[j >> 2u];
                let better = v > best | arg == vec4<u32>(0xffffffffu);
                best = select(best, v, better);
                arg = select(arg, vec4<u32>(j, j + 1u, j + 2u, j + 3u), better);
            }
        }
        if ((o >> 2u) < arrayLength(&y) && (o >> 2u) < arrayLength(&argmax)) {
            y[o >> 2u] = best;
            argmax[o >> 2u] = arg;
        }
        return;
    }
    var best = -3.0e38;
    var arg = 0xffffffffu;
    for (var ih = hr.x; ih < hr.y; ih++) {
        for (var iw = wr.x; iw < wr.y; iw++) {
            let j = ((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w;
            let v = x[j >> 2u][j & 3u];
            if (arg == 0xffffffffu || v > best) {
                best = v;
                arg = j;
            }
        }
    }
    if ((o >> 2u) < arrayLength(&y) && (o >> 2u) < arrayLength(&argmax)) {
        y[o >> 2u][o & 3u] = best;
        argmax[o >> 2u][o & 3u] = arg;
    }
}
