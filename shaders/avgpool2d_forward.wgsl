// Average pooling forward; the mean is over the valid (unpadded) part of each window.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    let total = p.batch * p.out_h * p.out_w * p.c;
    if (i >= total || i >= arrayLength(&y)) {
        return;
    }
    let c = i % p.c;
    let ow = (i / p.c) % p.out_w;
    let oh = (i / (p.c * p.out_w)) % p.out_h;
    let n = i / (p.c * p.out_w * p.out_h);
    let hr = window(oh, p.stride_h, p.pad_top, p.pool_h, p.in_h);
    let wr = window(ow, p.stride_w, p.pad_left, p.pool_w, p.in_w);
    var s = 0.0;
    for (var ih = hr.x; ih < hr.y; ih++) {
        for (var iw = wr.x; iw < wr.y; iw++) {
            s += x[((n * p.in_h + ih) * p.in_w + iw) * p.c + c];
        }
    }
    let count = f32((hr.y - hr.x) * (wr.y - wr.x));
    y[i] = s / max(count, 1.0);
}
