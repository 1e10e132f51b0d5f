// UpSampling2D forward: out[n, y, x, c] = Σ w(y, i)·w(x, j)·inp[n, i, j, c] over the one
// (nearest) or four (bilinear) input pixels output pixel (y, x) samples. One invocation
// per output element.

@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn at(n: u32, y: u32, x: u32, c: u32) -> f32 {
    return inp[((n * p.in_h + y) * p.in_w + x) * p.c + c];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&out)) {
        return;
    }
    let out_h = p.in_h * p.scale_h;
    let out_w = p.in_w * p.scale_w;
    let pix_c = divmod(i, p.c);
    let row_x = divmod(pix_c.x, out_w);
    let n_y = divmod(row_x.x, out_h);
    let sy = source(n_y.y, p.scale_h, p.in_h);
    let sx = source(row_x.y, p.scale_w, p.in_w);
    let n = n_y.x;
    let c = pix_c.y;
    let top = (1.0 - sx.frac) * at(n, sy.i0, sx.i0, c) + sx.frac * at(n, sy.i0, sx.i1, c);
    let bottom = (1.0 - sx.frac) * at(n, sy.i1, sx.i0, c) + sx.frac * at(n, sy.i1, sx.i1, c);
    out[i] = (1.0 - sy.frac) * top + sy.frac * bottom;
}
