// Depthwise / grouped conv kernel gradient, split over output pixels:
// partial[s, kh, kw, ci, o] = Σ over output pixels of chunk s of
// dy[n, oh, ow, o]·x[n, ih, iw, (o / M)·Cg + ci] (split_k_reduce adds the chunks). One
// invocation per (chunk, tap, ci, output quad).

// Operands (gemm_operands_*.wgsl): input1 = x, input2 = dy.
@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let oq = (p.in_c / p.group_in * p.mult) >> 2u;
    let taps = p.k_h * p.k_w * p.group_in; // kernel rows: (kh, kw, ci)
    let pixels = p.batch * p.out_h * p.out_w;
    let splits = divmod(pixels + p.chunk - 1u, p.chunk).x;
    let i = linear_id(wid, nwg, lid);
    if (i >= splits * taps * oq || i >= arrayLength(&partial)) {
        return;
    }
    // divmod: lavapipe has no SIMD integer division.
    let st_q = divmod(i, oq);
    let split_tap = divmod(st_q.x, taps);
    let tap_ci = divmod(split_tap.y, p.group_in);
    let kh_kw = divmod(tap_ci.x, p.k_w);
    let ci = tap_ci.y;
    let q = st_q.y;
    let split = split_tap.x;
    let kh = kh_kw.x;
    let kw = kh_kw.y;
    let o0 = q * 4u;
    let begin = split * p.chunk;
    let end = min(pixels, begin + p.chunk);
    var acc = vec4<f32>(0.0);
    // The chunk's first pixel as (n, oh, ow), then stepped along without dividing.
    let nh_w = divmod(begin, p.out_w);
    let n_h = divmod(nh_w.x, p.out_h);
    var ow = nh_w.y;
    var oh = n_h.y;
    var n = n_h.x;
    for (var pix = begin; pix < end; pix++) {
        let ih = in_coord(oh, kh, p.stride_h, p.dil_h, p.pad_top, p.in_h);
        let iw = in_coord(ow, kw, p.stride_w, p.dil_w, p.pad_left, p.in_w);
        if (ih >= 0 && iw >= 0) {
            let xin = x_quad((n * p.in_h + u32(ih)) * p.in_w + u32(iw), o0, ci);
            acc += input2_texel(pix * oq + q) * xin;
        }
        ow += 1u;
        let row_done = ow == p.out_w;
        ow = select(ow, 0u, row_done);
        oh += select(0u, 1u, row_done);
        let image_done = oh == p.out_h;
        oh = select(oh, 0u, image_done);
        n += select(0u, 1u, image_done);
    }
    partial[i] = acc;
}
