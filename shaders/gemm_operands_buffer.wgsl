// ---- GEMM operands at bindings 1 and 2, read from storage buffers ----
// The op file reads its two operands only through these functions, so the same loaders
// serve the buffer and the texture kernel families (gemm_operands_texture.wgsl).
// Texel t of an operand is its elements 4t .. 4t+3.

@group(0) @binding(1) var<storage, read> input1: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> input2: array<vec4<f32>>;

fn input1_texel(t: u32) -> vec4<f32> {
    return input1[t];
}

fn input2_texel(t: u32) -> vec4<f32> {
    return input2[t];
}

// Element i alone: a scalar load (a whole texel and a select would load four).
fn input1_elem(i: u32) -> f32 {
    return input1[i >> 2u][i & 3u];
}

fn input2_elem(i: u32) -> f32 {
    return input2[i >> 2u][i & 3u];
}

// Elements the operand can hold (a bound for index checks, not its logical length).
fn input1_len() -> u32 {
    return arrayLength(&input1) * 4u;
}

fn input2_len() -> u32 {
    return arrayLength(&input2) * 4u;
}
