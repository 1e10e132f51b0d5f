// (n / d, n % d) for any u32 n and 0 < d < 2^31, through f32 divides: lavapipe has no SIMD
// integer division (each `/` or `%` becomes eight scalar divides); a float divide is one
// instruction. Shared by the kernels whose index maths divides by run-time sizes.
fn divmod(n: u32, d: u32) -> vec2<u32> {
    let fd = f32(d);
    // First estimate: off by at most ~768/d + 1, so the remainder fits an i32.
    var q = u32(f32(n) / fd);
    var r = bitcast<i32>(n - q * d);
    // Second estimate from the (small) remainder, then at most one step either way.
    q = u32(i32(q) + i32(floor(f32(r) / fd)));
    r = bitcast<i32>(n - q * d);
    q = select(q, q - 1u, r < 0);
    q = select(q, q + 1u, r >= i32(d));
    return vec2<u32>(q, n - q * d);
}
