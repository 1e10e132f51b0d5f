// Depthwise / grouped conv kernel gradient, split over output pixels:
// partial[s, kh, kw, ci, o] = Σ over output pixels of chunk s of
// dy[n, oh, ow, o]·x[n, ih, iw, (o / M)·Cg + ci] (split_k_reduce adds the chunks). One
// invocation per (chunk, tap, ci, output quad); with Cg and M multiples of 4, per
// (chunk, tap, four ci, output quad), x read as one texel for sixteen products.

// Operands (gemm_operands_*.wgsl): input1 = x, input2 = dy.
@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>;

// Where a chunk's pixels start, stepped along without dividing.
struct Walk {
    n: u32,
    oh: u32,
    ow: u32,
}

fn walk_from(pix: u32) -> Walk {
    let nh_w = divmod(pix, p.out_w);
    let n_h = divmod(nh_w.x, p.out_h);
    return Walk(n_h.x, n_h.y, nh_w.y);
}

fn step(w: Walk) -> Walk {
    var r = w;
    r.ow += 1u;
    let row_done = r.ow == p.out_w;
    r.ow = select(r.ow, 0u, row_done);
    r.oh += select(0u, 1u, row_done);
    let image_done = r.oh == p.out_h;
    r.oh = select(r.oh, 0u, image_done);
    r.n += select(0u, 1u, image_done);
    return r;
}

// The input pixel tap (kh, kw) of output pixel `w` reads, or -1 in the padding.
fn tap_pixel(w: Walk, kh: u32, kw: u32) -> i32 {
    let ih = in_coord(w.oh, kh, p.stride_h, p.dil_h, p.pad_top, p.in_h);
    let iw = in_coord(w.ow, kw, p.stride_w, p.dil_w, p.pad_left, p.in_w);
    return select(-1, i32((w.n * p.in_h + u32(ih)) * p.in_w + u32(iw)), ih >= 0 && iw >= 0);
}

// One kernel row (kh, kw, ci) for output quad q over pixels begin .. end.
fn sum_row(begin: u32, end: u32, kh: u32, kw: u32, ci: u32, q: u32, oq: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    var w = walk_from(begin);
    for (var pix = begin; pix < end; pix++) {
        let at = tap_pixel(w, kh, kw);
        if (at >= 0) {
            acc += input2_texel(pix * oq + q) * x_quad(u32(at), q * 4u, ci);
        }
        w = step(w);
    }
    return acc;
}

// Four kernel rows (kh, kw, ci .. ci+3) for output quad q, Cg and M multiples of 4.
fn sum_four_rows(begin: u32, end: u32, kh: u32, kw: u32, ci: u32, q: u32, oq: u32) -> mat4x4<f32> {
    let first = q * 4u / p.mult * p.group_in + ci;
    var acc = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var w = walk_from(begin);
    for (var pix = begin; pix < end; pix++) {
        let at = tap_pixel(w, kh, kw);
        if (at >= 0) {
            let g = input2_texel(pix * oq + q);
            let xv = input1_texel((u32(at) * p.in_c + first) >> 2u);
            acc[0] += g * xv.x;
            acc[1] += g * xv.y;
            acc[2] += g * xv.z;
            acc[3] += g * xv.w;
        }
        w = step(w);
    }
    return acc;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let oq = (p.in_c / p.group_in * p.mult) >> 2u;
    let aligned = ALIGNED_GROUPS;
    let ci_step = select(1u, 4u, aligned);
    let blocks = p.k_h * p.k_w * p.group_in / ci_step; // (kh, kw, ci block)
    let pixels = p.batch * p.out_h * p.out_w;
    let splits = divmod(pixels + p.chunk - 1u, p.chunk).x;
    let i = linear_id(wid, nwg, lid);
    if (i >= splits * blocks * oq) {
        return;
    }
    // divmod: lavapipe has no SIMD integer division.
    let sb_q = divmod(i, oq);
    let split_block = divmod(sb_q.x, blocks);
    let tap_cb = divmod(split_block.y, p.group_in / ci_step);
    let kh_kw = divmod(tap_cb.x, p.k_w);
    let q = sb_q.y;
    let ci = tap_cb.y * ci_step;
    let begin = split_block.x * p.chunk;
    let end = min(pixels, begin + p.chunk);
    // partial is [splits, kh, kw, Cg, O]: row (split, kh, kw, ci).
    let row = (split_block.x * p.k_h * p.k_w + tap_cb.x) * p.group_in + ci;
    if (aligned) {
        if ((row + 3u) * oq + q >= arrayLength(&partial)) {
            return;
        }
        let acc = sum_four_rows(begin, end, kh_kw.x, kh_kw.y, ci, q, oq);
        for (var j = 0u; j < 4u; j++) {
            partial[(row + j) * oq + q] = acc[j];
        }
    } else {
        if (row * oq + q >= arrayLength(&partial)) {
            return;
        }
        partial[row * oq + q] = sum_row(begin, end, kh_kw.x, kh_kw.y, ci, q, oq);
    }
}
