// Depthwise / grouped conv forward: y[n, oh, ow, o] = Σ_{kh, kw, ci}
// x[n, ih, iw, (o / M)·Cg + ci]·w[kh, kw, ci, o] + b[o] (relu fused on request),
// ih = oh·stride + kh·dilation − pad. One invocation per output quad of channels; taps in
// the padding add nothing.

// Operands (gemm_operands_*.wgsl): input1 = x, input2 = the kernel.
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

// Σ over taps and a group's input channels, x read per output channel (x_quad).
fn sum_quads(n: u32, oh: u32, ow: u32, q: u32, oq: u32) -> vec4<f32> {
    let o0 = q * 4u;
    var acc = vec4<f32>(0.0);
    for (var kh = 0u; kh < p.k_h; kh++) {
        let ih = in_coord(oh, kh, p.stride_h, p.dil_h, p.pad_top, p.in_h);
        for (var kw = 0u; kw < p.k_w; kw++) {
            let iw = in_coord(ow, kw, p.stride_w, p.dil_w, p.pad_left, p.in_w);
            if (ih >= 0 && iw >= 0) {
                let pix = (n * p.in_h + u32(ih)) * p.in_w + u32(iw);
                let row = (kh * p.k_w + kw) * p.group_in;
                for (var ci = 0u; ci < p.group_in; ci++) {
                    acc += x_quad(pix, o0, ci) * input2_texel((row + ci) * oq + q);
                }
            }
        }
    }
    return acc;
}

// The same with Cg and M multiples of 4: four input channels per texel, a 4×4 block of
// the kernel per step.
fn sum_aligned_groups(n: u32, oh: u32, ow: u32, q: u32, oq: u32) -> vec4<f32> {
    let group_first = q * 4u / p.mult * p.group_in;
    var acc = vec4<f32>(0.0);
    for (var kh = 0u; kh < p.k_h; kh++) {
        let ih = in_coord(oh, kh, p.stride_h, p.dil_h, p.pad_top, p.in_h);
        for (var kw = 0u; kw < p.k_w; kw++) {
            let iw = in_coord(ow, kw, p.stride_w, p.dil_w, p.pad_left, p.in_w);
            if (ih >= 0 && iw >= 0) {
                let first = ((n * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + group_first;
                let row = (kh * p.k_w + kw) * p.group_in;
                for (var ci = 0u; ci < p.group_in; ci += 4u) {
                    let xv = input1_texel((first + ci) >> 2u);
                    let r = (row + ci) * oq + q;
                    acc += xv.x * input2_texel(r) + xv.y * input2_texel(r + oq)
                        + xv.z * input2_texel(r + 2u * oq) + xv.w * input2_texel(r + 3u * oq);
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
    let oq = (p.in_c / p.group_in * p.mult) >> 2u; // output quads per pixel
    let i = linear_id(wid, nwg, lid);
    if (i >= p.batch * p.out_h * p.out_w * oq || i >= arrayLength(&y)) {
        return;
    }
    // divmod: lavapipe has no SIMD integer division.
    let pix_q = divmod(i, oq);
    let nh_w = divmod(pix_q.x, p.out_w);
    let n_h = divmod(nh_w.x, p.out_h);
    let q = pix_q.y;
    let ow = nh_w.y;
    let oh = n_h.y;
    let n = n_h.x;
    // ALIGNED_GROUPS (set by the shader table: the grouped kernels, for groups of whole
    // texels in and out) picks the nest; a run-time branch inside one nest slowed the
    // depthwise loop by 40 % on lavapipe, and compiling both cost ~170 ms (Mesa 25.0).
    var acc: vec4<f32>;
    if (ALIGNED_GROUPS) {
        acc = sum_aligned_groups(n, oh, ow, q, oq);
    } else {
        acc = sum_quads(n, oh, ow, q, oq);
    }
    let r = acc + bias[q];
    y[i] = select(r, max(r, vec4<f32>(0.0)), (p.flags & 1u) != 0u);
}
