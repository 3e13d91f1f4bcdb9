// CRO-1 building blocks for CUDA (see reprogls/kernels/reference.py for the spec).
// Every floating-point operation is an explicit round-to-nearest intrinsic
// (__dadd_rn, __dsub_rn, __dmul_rn), which the compiler never contracts into an FMA;
// the module is also compiled with --fmad=false. No atomics on floating point.
#pragma once

#define CRO_LANES 32
#define CRO_CHUNK 8192
#define CRO_FULL_MASK 0xffffffffu

// Where a warp stands in a grid-stride loop over the CRO-1 chunks of n terms:
// warp w handles chunks w, w + n_warps, ...; lane is the thread's CRO-1 lane.
struct CroWarpGrid {
    long long n_chunks, warp, n_warps;
    int lane;
};

__device__ __forceinline__ CroWarpGrid cro_warp_grid(long long n) {
    CroWarpGrid g;
    g.n_chunks = (n + CRO_CHUNK - 1) / CRO_CHUNK;
    g.warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / CRO_LANES;
    g.n_warps = ((long long)gridDim.x * blockDim.x) / CRO_LANES;
    g.lane = threadIdx.x & (CRO_LANES - 1);
    return g;
}

// Knuth's TwoSum: s = fl(a + b) and its exact rounding error e.
__device__ __forceinline__ void cro_two_sum(double a, double b, double &s, double &e) {
    double sum = __dadd_rn(a, b);
    double t = __dsub_rn(sum, a);
    e = __dadd_rn(__dsub_rn(a, __dsub_rn(sum, t)), __dsub_rn(b, t));
    s = sum;
}

// CRO-1 step 2: add the term v to one lane's accumulator (s, c).
__device__ __forceinline__ void cro_lane_add(double &s, double &c, double v, bool comp) {
    if (comp) {
        double e;
        cro_two_sum(s, v, s, e);
        c = __dadd_rn(c, e);
    } else {
        s = __dadd_rn(s, v);
    }
}

// CRO-1 merge of partial (sb, cb) into (sa, ca).
__device__ __forceinline__ void cro_merge(double &sa, double &ca, double sb, double cb,
                                          bool comp) {
    if (comp) {
        double t, e;
        cro_two_sum(sa, sb, t, e);
        ca = __dadd_rn(__dadd_rn(ca, cb), e);
        sa = t;
    } else {
        sa = __dadd_rn(sa, sb);
    }
}

// CRO-1 step 3 as warp shuffles: for w = 16, 8, 4, 2, 1, lane l < w merges lane l + w.
// Every lane of the warp must call it; lane 0 ends with the chunk's partial.
__device__ __forceinline__ void cro_warp_tree(double &s, double &c, bool comp) {
    const unsigned lane = threadIdx.x & (CRO_LANES - 1);
    for (int w = CRO_LANES / 2; w >= 1; w >>= 1) {
        double sb = __shfl_down_sync(CRO_FULL_MASK, s, w);
        double cb = __shfl_down_sync(CRO_FULL_MASK, c, w);
        if (lane < (unsigned)w) cro_merge(s, c, sb, cb, comp);
    }
}

// CRO-1 step 4 in one block: pairs (2i, 2i+1) level by level, an odd last one passes
// up unchanged. Ping-pongs between (s0, c0) and (s1, c1); writes the root to out[0..1].
__device__ void cro_chunk_tree(double *s0, double *c0, double *s1, double *c1,
                               long long m, bool comp, double *out) {
    while (m > 1) {
        const long long pairs = m / 2;
        for (long long i = threadIdx.x; i < pairs; i += blockDim.x) {
            double s = s0[2 * i], c = c0[2 * i];
            cro_merge(s, c, s0[2 * i + 1], c0[2 * i + 1], comp);
            s1[i] = s;
            c1[i] = c;
        }
        if ((m & 1) && threadIdx.x == 0) {
            s1[pairs] = s0[m - 1];
            c1[pairs] = c0[m - 1];
        }
        __syncthreads();
        double *ts = s0, *tc = c0;
        s0 = s1; c0 = c1; s1 = ts; c1 = tc;
        m = pairs + (m & 1);
    }
    if (threadIdx.x == 0) {
        out[0] = s0[0];
        out[1] = c0[0];
    }
}

// CRO-1 lane tree in one thread when only lanes 0..live-1 of (s, c) hold data; lanes
// past live are the identity and their merges change no result bit (see cpu/_cro.py).
__device__ __forceinline__ void cro_tree_live(double *s, double *c, int live, bool comp) {
    for (int w = CRO_LANES / 2; w >= 1; w >>= 1) {
        for (int l = 0; l < w && l + w < live; ++l) cro_merge(s[l], c[l], s[l + w], c[l + w], comp);
        if (live > w) live = w;
    }
}

// CRO-1 finalize (reference.cro.finalize): s + c unless s is not finite or c == 0;
// a NaN result is the canonical quiet NaN.
__device__ __forceinline__ double cro_finalize(double s, double c, bool comp) {
    double r = s;
    if (comp && fabs(s) <= 1.7976931348623157e308 && c != 0.0) r = __dadd_rn(s, c);
    if (r != r) r = __longlong_as_double(0x7ff8000000000000LL);
    return r;
}

// Finalized CRO-1 dot product of n <= CRO_CHUNK terms x[i*incx] * y[i*incy], computed by
// one thread (32 lane accumulators in local memory).
__device__ double cro_dot_serial(const double *x, long long incx, const double *y,
                                 long long incy, int n, bool comp) {
    if (n == 0) return 0.0;
    double s[CRO_LANES], c[CRO_LANES];
    if (n <= CRO_LANES) {
        for (int l = 0; l < n; ++l) {
            s[l] = __dmul_rn(x[l * incx], y[l * incy]);
            c[l] = 0.0;
        }
        cro_tree_live(s, c, n, comp);
        return cro_finalize(s[0], c[0], comp);
    }
    for (int l = 0; l < CRO_LANES; ++l) {
        s[l] = -0.0;
        c[l] = -0.0;
    }
    for (int i = 0; i < n; ++i)
        cro_lane_add(s[i % CRO_LANES], c[i % CRO_LANES], __dmul_rn(x[i * incx], y[i * incy]), comp);
    cro_tree_live(s, c, CRO_LANES, comp);
    return cro_finalize(s[0], c[0], comp);
}

// One level of the CRO-1 lane tree over the live lanes (cro_tree_live's level W) on
// register arrays: lane l < W merges lane l + W where that lane is live. The loop has a
// constant trip count, so it unrolls and every index is a constant.
template <int NMAX, int W>
__device__ __forceinline__ void cro_short_level(double (&s)[NMAX], double (&c)[NMAX],
                                                int &live, bool comp) {
#pragma unroll
    for (int l = 0; l < W; ++l) {
        constexpr int last = NMAX - 1;
        const int m = l + W <= last ? l + W : last;  // (a constant after unrolling)
        if (l + W < NMAX && l + W < live) cro_merge(s[l], c[l], s[m], c[m], comp);
    }
    if (live > W) live = W;
}

// cro_dot_serial for n <= NMAX <= CRO_LANES terms, the lane accumulators in registers: its
// n <= 32 case (term t in lane t, then the lane tree over the live lanes) with every loop
// unrolled over the compile-time bound, so that every array index is a constant and the
// arrays need no local memory (cro_dot_serial's 32-entry arrays take 512 bytes of stack
// per thread). The same operations in the same order: the same bits.
template <int NMAX>
__device__ __forceinline__ double cro_dot_short(const double *x, long long incx,
                                                const double *y, long long incy, int n,
                                                bool comp) {
    static_assert(NMAX >= 1 && NMAX <= CRO_LANES, "cro_dot_short needs 1 <= NMAX <= 32");
    if (n == 0) return 0.0;
    double s[NMAX], c[NMAX];
#pragma unroll
    for (int l = 0; l < NMAX; ++l) {
        s[l] = 0.0;
        c[l] = 0.0;
        if (l < n) s[l] = __dmul_rn(x[l * incx], y[l * incy]);
    }
    int live = n;
    cro_short_level<NMAX, 16>(s, c, live, comp);
    cro_short_level<NMAX, 8>(s, c, live, comp);
    cro_short_level<NMAX, 4>(s, c, live, comp);
    cro_short_level<NMAX, 2>(s, c, live, comp);
    cro_short_level<NMAX, 1>(s, c, live, comp);
    return cro_finalize(s[0], c[0], comp);
}
