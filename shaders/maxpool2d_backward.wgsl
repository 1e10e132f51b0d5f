// Max pooling backward, gather-style: each input element sums the gradients of the
// windows whose recorded maximum is this element. `lanes()` channels per invocation.
// Flag 2 fuses the backward of a relu before the pooling: a window's gradient passes only
// where its pooled output (= the relu output at the argmax) is positive.

@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> argmax: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> y: array<vec4<f32>>; // pooled output (flag 2)
@group(0) @binding(4) var<storage, read_write> dx: array<vec4<f32>>;

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
    let j = ((q.x * p.in_h + q.y) * p.in_w + q.z) * p.c + q.w; // this element's flat index
    if ((j >> 2u) >= arrayLength(&dx)) {
        return;
    }
    let relu_off = vec4<bool>((p.flags & 2u) == 0u);
    if (lanes() == 4u) {
        let mine = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
        var s = vec4<f32>(0.0);
        for (var oh = hs.x; oh <= hs.y; oh++) {
            for (var ow = ws.x; ow <= ws.y; ow++) {
                let o = (((q.x * p.out_h + oh) * p.out_w + ow) * p.c + q.w) >> 2u;
                let routed = argmax[o] == mine & (y[o] > vec4<f32>(0.0) | relu_off);
                s += select(vec4<f32>(0.0), dy[o], routed);
            }
        }
        if ((p.flags & 1u) != 0u) {
            dx[j >> 2u] += s;
        } else {
            dx[j >> 2u] = s;
        }
        return;
    }
    var s = 0.0;
    for (var oh = hs.x; oh <= hs.y; oh++) {
        for (var ow = ws.x; ow <= ws.y; ow++) {
            let o = ((q.x * p.out_h + oh) * p.out_w + ow) * p.c + q.w;
            if (argmax[o >> 2u][o & 3u] == j && (y[o >> 2u][o & 3u] > 0.0 || relu_off.x)) {
                s += dy[o >> 2u][o & 3u];
            }
        }
    }
    if ((p.flags & 1u) != 0u) {
        dx[j >> 2u][j & 3u] += s;
    } else {
        dx[j >> 2u][j & 3u] = s;
    }
}
