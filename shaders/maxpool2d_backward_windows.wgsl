// Max pooling backward when the windows tile the input (stride == pool size, the usual
// 2×2/2): one invocation per window writes its whole region of dx, the gradient at the
// argmax and zero elsewhere. Nothing is gathered and each input element is written once;
// the last window of a row or column also owns the input rows or columns no window
// covers ('valid' pooling of an odd size) and writes them zero. Overlapping windows use
// the gather kernel (maxpool2d_backward.wgsl). Flag 2 fuses the backward of a relu before
// the pooling: the gradient passes only where the pooled output (= the relu output at the
// argmax) is positive.

@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> argmax: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> y: array<vec4<f32>>; // pooled output (flag 2)
@group(0) @binding(4) var<storage, read_write> dx: array<vec4<f32>>;

// Input rows (or columns) [lo, hi) that output position o owns.
fn region(o: u32, stride: u32, pad: u32, out_len: u32, in_len: u32) -> vec2<u32> {
    let start = i32(o * stride) - i32(pad);
    let lo = u32(max(start, 0));
    let hi = select(u32(clamp(start + i32(stride), 0, i32(in_len))), in_len, o + 1u == out_len);
    return vec2<u32>(lo, max(hi, lo));
}

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
    let hr = region(q.y, p.stride_h, p.pad_top, p.out_h, p.in_h);
    let wr = region(q.z, p.stride_w, p.pad_left, p.out_w, p.in_w);
    let o = ((q.x * p.out_h + q.y) * p.out_w + q.z) * p.c + q.w;
    let accumulate = (p.flags & 1u) != 0u;
    let n = arrayLength(&dx);
    if (lanes() == 4u) {
        var g = dy[o >> 2u];
        if ((p.flags & 2u) != 0u) {
            g = select(vec4<f32>(0.0), g, y[o >> 2u] > vec4<f32>(0.0));
        }
        let a = argmax[o >> 2u];
        for (var ih = hr.x; ih < hr.y; ih++) {
            for (var iw = wr.x; iw < wr.y; iw++) {
                let j = ((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w;
                let v = select(vec4<f32>(0.0), g, a == vec4<u32>(j, j + 1u, j + 2u, j + 3u));
                if ((j >> 2u) < n) {
                    dx[j >> 2u] = v + select(vec4<f32>(0.0), dx[j >> 2u], accumulate);
                }
            }
        }
        return;
    }
    var g = dy[o >> 2u][o & 3u];
    if ((p.flags & 2u) != 0u) {
        g = select(0.0, g, y[o >> 2u][o & 3u] > 0.0);
    }
    let a = argmax[o >> 2u][o & 3u];
    for (var ih = hr.x; ih < hr.y; ih++) {
        for (var iw = wr.x; iw < wr.y; iw++) {
            let j = ((q.x * p.in_h + ih) * p.in_w + iw) * p.c + q.w;
            if ((j >> 2u) < n) {
                dx[j >> 2u][j & 3u] = select(0.0, g, a == j) + select(0.0, dx[j >> 2u][j & 3u], accumulate);
            }
        }
    }
}
