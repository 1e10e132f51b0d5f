// Average pooling backward, gather-style: each input element collects dy / count from
// every window that contains it. `lanes()` channels per invocation.

@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = linear_id(wid, nwg, lid);
    if (i >= p.batch * p.in_h * p.in_w * p.c / lanes()) {
        return;
    }
    let q = coords(i, p.in_h, p.in_w);
    let hs = windows_of(q.y, p.stride_h, p.pad_top, p.pool_h, p.out_h);
    let ws = windows_of(q.z, p.stride_w, p.pad_left, p.pool_w, p.out_w);
    let j = ((q.x * p.in_h + q.y) * p.in_w + q.z) * p.c + q.w;
    if ((j >> 2u) >= arrayLength(&dx)) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var oh = hs.x; oh <= hs.y; oh++) {
        let hr = window(oh, p.stride_h, p.pad_top, p.pool_h, p.in_h);
        for (var ow = ws.x; ow <= ws.y; ow++) {
            let wr = window(ow, p.stride_w, p.pad_left, p.pool_w, p.in_w);
            let count = max(f32((hr.y - hr.x) * (wr.y - wr.x)), 1.0);
            let o = ((q.x * p.out_h + oh) * p.out_w + ow) * p.c + q.w;
            if (lanes() == 4u) {
                s += dy[o >> 2u] / count;
            } else {
                s.x += dy[o >> 2u][o & 3u] / count;
            }
        }
    }
    // One store of each width, the accumulation folded in by a select: stores under
    // per-flag branches compiled slowly on lavapipe.
    let acc = (p.flags & 1u) != 0u;
    if (lanes() == 4u) {
        dx[j >> 2u] = s + select(vec4<f32>(0.0), dx[j >> 2u], acc);
    } else {
        dx[j >> 2u][j & 3u] = s.x + select(0.0, dx[j >> 2u][j & 3u], acc);
    }
}
