// CRO-1 sum, dot and nrm2 pieces: one warp per chunk, lane tree as warp shuffles,
// chunk tree in a single block. Prepended with cro1.cuh by reprogls.kernels.cuda.sources.

// Term kinds: 0 sum v = x[i]; 1 dot v = x[i] * y[i]; 2 scaled square a * a with
// a = (x[i] * f1) * f2 (nrm2).
__device__ __forceinline__ double cro_term(const double *__restrict__ x,
                                           const double *__restrict__ y, long long i,
                                           int kind, double f1, double f2) {
    if (kind == 0) return x[i];
    if (kind == 1) return __dmul_rn(x[i], y[i]);
    double a = __dmul_rn(__dmul_rn(x[i], f1), f2);
    return __dmul_rn(a, a);
}

// Chunk partials: warp w of the grid handles chunks w, w + n_warps, ...
extern "C" __global__ void cro1_chunk_partials(const double *__restrict__ x,
                                               const double *__restrict__ y, long long n,
                                               int kind, int comp, double f1, double f2,
                                               double *__restrict__ ps,
                                               double *__restrict__ pc) {
    const CroWarpGrid g = cro_warp_grid(n);
    const int lane = g.lane;
    for (long long c = g.warp; c < g.n_chunks; c += g.n_warps) {
        const long long start = c * CRO_CHUNK;
        const long long stop = min(n, start + CRO_CHUNK);
        double s = -0.0, cc = -0.0;
        for (long long i = start + lane; i < stop; i += CRO_LANES)
            cro_lane_add(s, cc, cro_term(x, y, i, kind, f1, f2), comp != 0);
        cro_warp_tree(s, cc, comp != 0);
        if (lane == 0) {
            ps[c] = s;
            pc[c] = cc;
        }
    }
}

// Chunk tree over m partials; launch with one block. Scratch buffers are overwritten.
extern "C" __global__ void cro1_chunk_tree(double *s0, double *c0, double *s1, double *c1,
                                           long long m, int comp, double *out) {
    cro_chunk_tree(s0, c0, s1, c1, m, comp != 0, out);
}

// Per chunk: max |x_i| (exact, any order) and whether a NaN occurs (nrm2's first pass).
extern "C" __global__ void cro1_chunk_absmax(const double *__restrict__ x, long long n,
                                             double *__restrict__ chunk_max,
                                             int *__restrict__ chunk_nan) {
    const CroWarpGrid g = cro_warp_grid(n);
    const int lane = g.lane;
    for (long long c = g.warp; c < g.n_chunks; c += g.n_warps) {
        const long long start = c * CRO_CHUNK;
        const long long stop = min(n, start + CRO_CHUNK);
        double m = 0.0;
        int has_nan = 0;
        for (long long i = start + lane; i < stop; i += CRO_LANES) {
            double a = fabs(x[i]);
            has_nan |= (a != a);
            m = (a > m) ? a : m;
        }
        for (int w = CRO_LANES / 2; w >= 1; w >>= 1) {
            double other = __shfl_down_sync(CRO_FULL_MASK, m, w);
            m = (other > m) ? other : m;
        }
        has_nan = __any_sync(CRO_FULL_MASK, has_nan);
        if (lane == 0) {
            chunk_max[c] = m;
            chunk_nan[c] = has_nan;
        }
    }
}
