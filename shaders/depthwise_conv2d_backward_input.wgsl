// Depthwise / grouped conv input gradient, gather-style: dx[n, ih, iw, c] (+)= Σ over
// the taps (kh, kw) whose window at some output pixel (oh, ow) covers (ih, iw) and over
// m < M of dy[n, oh, ow, o]·w[kh, kw, c % Cg, o], o = (c / Cg)·M + m, the output channels
// of c's group. One invocation per input quad of channels.

// Operands (gemm_operands_*.wgsl): input1 = dy, input2 = the kernel.
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;

// Output channel (c / Cg)·M + m for c = c0 .. c0+3.
fn out_channels(c0: u32, m: u32) -> vec4<u32> {
    return (vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u)) / vec4<u32>(p.group_in) * p.mult + vec4<u32>(m);
}

// dy at offset `at` for c0 .. c0+3's m-th output channels: one vec4 when M = Cg = 1.
fn dy_quad(at: u32, c0: u32, m: u32) -> vec4<f32> {
    if (p.mult == 1u && p.group_in == 1u) {
        return input1_texel((at + c0) >> 2u);
    }
    let i = vec4<u32>(at) + out_channels(c0, m);
    return vec4<f32>(input1_elem(i.x), input1_elem(i.y), input1_elem(i.z), input1_elem(i.w));
}

// The kernel at tap offset `at` (row (kh, kw, 0)) for the same channels: row c % Cg.
fn w_quad(at: u32, c0: u32, m: u32, oc: u32) -> vec4<f32> {
    if (p.mult == 1u && p.group_in == 1u) {
        return input2_texel((at + c0) >> 2u);
    }
    let ci = (vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u)) % vec4<u32>(p.group_in);
    let i = vec4<u32>(at) + ci * oc + out_channels(c0, m);
    return vec4<f32>(input2_elem(i.x), input2_elem(i.y), input2_elem(i.z), input2_elem(i.w));
}

// The output row (column) whose tap `k` reads input row `i`, or -1 if none does.
fn out_coord(i: u32, k: u32, stride: u32, dil: u32, pad: u32, size: u32) -> i32 {
    let t = i32(i + pad) - i32(k * dil);
    let o = divmod(u32(max(t, 0)), stride);
    return select(-1, i32(o.x), t >= 0 && o.y == 0u && o.x < size);
}

// Σ over the taps that reach (ih, iw) and the m-th outputs of the channels' groups.
fn sum_quads(n: u32, ih: u32, iw: u32, c0: u32, oc: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var kh = 0u; kh < p.k_h; kh++) {
        let oh = out_coord(ih, kh, p.stride_h, p.dil_h, p.pad_top, p.out_h);
        for (var kw = 0u; kw < p.k_w; kw++) {
            let ow = out_coord(iw, kw, p.stride_w, p.dil_w, p.pad_left, p.out_w);
            if (oh >= 0 && ow >= 0) {
                let at_dy = ((n * p.out_h + u32(oh)) * p.out_w + u32(ow)) * oc;
                let at_w = (kh * p.k_w + kw) * p.group_in * oc;
                for (var m = 0u; m < p.mult; m++) {
                    acc += dy_quad(at_dy, c0, m) * w_quad(at_w, c0, m, oc);
                }
            }
        }
    }
    return acc;
}

// The same with Cg and M multiples of 4: the quad's four channels share a group, whose
// outputs load four at a time, against four kernel rows.
fn sum_aligned_groups(n: u32, ih: u32, iw: u32, c0: u32, oc: u32) -> vec4<f32> {
    let o_first = c0 / p.group_in * p.mult;
    let row = (c0 % p.group_in) * oc + o_first;
    var acc = vec4<f32>(0.0);
    for (var kh = 0u; kh < p.k_h; kh++) {
        let oh = out_coord(ih, kh, p.stride_h, p.dil_h, p.pad_top, p.out_h);
        for (var kw = 0u; kw < p.k_w; kw++) {
            let ow = out_coord(iw, kw, p.stride_w, p.dil_w, p.pad_left, p.out_w);
            if (oh >= 0 && ow >= 0) {
                let at_dy = ((n * p.out_h + u32(oh)) * p.out_w + u32(ow)) * oc + o_first;
                let w0 = (kh * p.k_w + kw) * p.group_in * oc + row;
                for (var m = 0u; m < p.mult; m += 4u) {
                    let g = input1_texel((at_dy + m) >> 2u);
                    let w = w0 + m;
                    acc += vec4<f32>(dot(g, input2_texel(w >> 2u)), dot(g, input2_texel((w + oc) >> 2u)),
                                     dot(g, input2_texel((w + 2u * oc) >> 2u)), dot(g, input2_texel((w + 3u * oc) >> 2u)));
                }
            }
        }
    }
    return acc;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let cq = p.in_c >> 2u;
    let oc = p.in_c / p.group_in * p.mult;
    let i = linear_id(wid, nwg, lid);
    if (i >= p.batch * p.in_h * p.in_w * cq || i >= arrayLength(&dx)) {
        return;
    }
    // divmod: lavapipe has no SIMD integer division.
    let pix_q = divmod(i, cq);
    let nh_w = divmod(pix_q.x, p.in_w);
    let n_h = divmod(nh_w.x, p.in_h);
    let q = pix_q.y;
    let iw = nh_w.y;
    let ih = n_h.y;
    let n = n_h.x;
    // ALIGNED_GROUPS picks the nest (see the forward pass).
    var acc: vec4<f32>;
    if (ALIGNED_GROUPS) {
        acc = sum_aligned_groups(n, ih, iw, q * 4u, oc);
    } else {
        acc = sum_quads(n, ih, iw, q * 4u, oc);
    }
    dx[i] = acc + select(vec4<f32>(0.0), dx[i], (p.flags & 2u) != 0u);
}
