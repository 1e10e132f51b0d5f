// Average pooling backward, gather-style: each input element collects dy / count from
// every window that contains it.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    let total = p.batch * p.in_h * p.in_w * p.c;
    if (i >= total || i >= arrayLength(&dx)) {
        return;
    }
    let c = i % p.c;
    let iw = (i / p.c) % p.in_w;
    let ih = (i / (p.c * p.in_w)) % p.in_h;
    let n = i / (p.c * p.in_w * p.in_h);
    let hs = windows_of(ih, p.stride_h, p.pad_top, p.pool_h, p.out_h);
    let ws = windows_of(iw, p.stride_w, p.pad_left, p.pool_w, p.out_w);
    var s = 0.0;
    for (var oh = hs.x; oh <= hs.y; oh++) {
        let hr = window(oh, p.stride_h, p.pad_top, p.pool_h, p.in_h);
        for (var ow = ws.x; ow <= ws.y; ow++) {
            let wr = window(ow, p.stride_w, p.pad_left, p.pool_w, p.in_w);
            let count = f32((hr.y - hr.x) * (wr.y - wr.x));
            s += dy[((n * p.out_h + oh) * p.out_w + ow) * p.c + c] / max(count, 1.0);
        }
    }
    if ((p.flags & 1u) != 0u) {
        dx[i] += s;
    } else {
        dx[i] = s;
    }
}
