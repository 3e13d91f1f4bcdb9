// SUR operators and Woodbury solves (reference: reprogls/kernels/reference/linalg.py).
// gemv is sur_matvec with one equation; gemv_t is sur_rmatvec with one equation.

// CRO_MAX_RANK, FUSED_ROWS, FUSED_COLS_PER_THREAD and FUSED_MAX_K are
// defined by sources.SHAPE_CONSTANTS (prepended by sources.source), the values the
// Python launchers in linalg.py use.

// The CRO-1 chunk partial of the terms fl(x[t] * b[t]), lo <= t < hi (one chunk at most),
// by the calling warp (every lane calls it): lane l adds t = lo + l, lo + l + 32, ...; after
// the warp tree the partial (s, c) is on lane 0.
__device__ __forceinline__ void warp_chunk_dot(const double *x, const double *b, long long lo,
                                               long long hi, bool cm, double &s, double &c) {
    s = -0.0;
    c = -0.0;
    for (long long t = lo + (threadIdx.x & (CRO_LANES - 1)); t < hi; t += CRO_LANES)
        cro_lane_add(s, c, __dmul_rn(x[t], b[t]), cm);
    cro_warp_tree(s, c, cm);
}

// U[i, j] = CRO-1 dot of X[i, o_j:o_{j+1}] and beta[o_j:o_{j+1}]: one warp per output.
// Segments longer than one chunk keep their chunk partials in scratch (n_slots per output).
extern "C" __global__ void sur_matvec(const double *__restrict__ X, const long long *offsets,
                                      const double *__restrict__ beta, long long N, int K,
                                      long long P, int comp, int n_slots,
                                      double *__restrict__ scratch_s,
                                      double *__restrict__ scratch_c,
                                      double *__restrict__ U) {
    const long long n_out = N * (long long)K;
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / CRO_LANES;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) / CRO_LANES;
    const int lane = threadIdx.x & (CRO_LANES - 1);
    const bool cm = comp != 0;
    for (long long o = warp; o < n_out; o += n_warps) {
        const long long i = o / K;
        const int j = (int)(o % K);
        const long long o0 = offsets[j], n = offsets[j + 1] - o0;
        const double *x = X + i * P + o0;
        const double *b = beta + o0;
        if (n == 0) {
            if (lane == 0) U[o] = 0.0;
            continue;
        }
        const long long chunks = (n + CRO_CHUNK - 1) / CRO_CHUNK;
        double root_s = 0.0, root_c = 0.0;
        for (long long ch = 0; ch < chunks; ++ch) {
            double s, c;
            warp_chunk_dot(x, b, ch * CRO_CHUNK, min(n, (ch + 1) * CRO_CHUNK), cm, s, c);
            if (chunks == 1) {
                root_s = s;
                root_c = c;
            } else if (lane == 0) {
                scratch_s[(long long)(warp % n_warps) * n_slots + ch] = s;
                scratch_c[(long long)(warp % n_warps) * n_slots + ch] = c;
            }
        }
        if (lane == 0) {
            if (chunks > 1) {  // serial chunk tree over this warp's partials
                double *ps = scratch_s + (long long)(warp % n_warps) * n_slots;
                double *pc = scratch_c + (long long)(warp % n_warps) * n_slots;
                long long m = chunks;
                while (m > 1) {
                    const long long pairs = m / 2;
                    for (long long q = 0; q < pairs; ++q) {
                        double a = ps[2 * q], ac = pc[2 * q];
                        cro_merge(a, ac, ps[2 * q + 1], pc[2 * q + 1], cm);
                        ps[q] = a;
                        pc[q] = ac;
                    }
                    if (m & 1) {
                        ps[pairs] = ps[m - 1];
                        pc[pairs] = pc[m - 1];
                    }
                    m = pairs + (m & 1);
                }
                root_s = ps[0];
                root_c = pc[0];
            }
            U[o] = cro_finalize(root_s, root_c, cm);
        }
        __syncwarp();  // lane 0's serial work done before the warp's next shuffles
    }
}

// U[i, j] when no equation has more than 32 columns: one thread per output, the CRO-1
// dot in the thread (cro_dot_short: term t is lane t, then the lane tree over the live
// lanes, whose skipped merges with empty lanes change no bit; its lanes in registers,
// where cro_dot_serial's took 512 bytes of local memory per thread and the kernel ran at
// 30-37% of a copy on an H100); neighbouring threads read neighbouring segments of a row.
// Same bits as sur_matvec's warp per output.
template <int NMAX>
__device__ __forceinline__ void sur_matvec_short_body(const double *__restrict__ X,
                                                      const long long *__restrict__ offsets,
                                                      const double *__restrict__ beta,
                                                      long long N, int K, long long P,
                                                      int comp, double *__restrict__ U) {
    const bool cm = comp != 0;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < N * K;
         o += (long long)gridDim.x * blockDim.x) {
        const long long i = o / K;
        const int j = (int)(o % K);
        const long long o0 = offsets[j];
        U[o] = cro_dot_short<NMAX>(X + i * P + o0, 1, beta + o0, 1,
                                   (int)(offsets[j + 1] - o0), cm);
    }
}

// sur_matvec_short_8 / _16 / _32: for equations of at most 8, 16, 32 columns (the
// launcher takes the smallest that holds the widest), the dot's lanes in registers.
// (Written out, not generated by a macro: the host emulator reads the kernels' names and
// parameters from this text.)

extern "C" __global__ void sur_matvec_short_8(const double *__restrict__ X,
                                               const long long *__restrict__ offsets,
                                               const double *__restrict__ beta, long long N,
                                               int K, long long P, int comp,
                                               double *__restrict__ U) {
    sur_matvec_short_body<8>(X, offsets, beta, N, K, P, comp, U);
}

extern "C" __global__ void sur_matvec_short_16(const double *__restrict__ X,
                                               const long long *__restrict__ offsets,
                                               const double *__restrict__ beta, long long N,
                                               int K, long long P, int comp,
                                               double *__restrict__ U) {
    sur_matvec_short_body<16>(X, offsets, beta, N, K, P, comp, U);
}

extern "C" __global__ void sur_matvec_short_32(const double *__restrict__ X,
                                               const long long *__restrict__ offsets,
                                               const double *__restrict__ beta, long long N,
                                               int K, long long P, int comp,
                                               double *__restrict__ U) {
    sur_matvec_short_body<32>(X, offsets, beta, N, K, P, comp, U);
}

// Lane accumulators of g[m] = CRO-1 over rows of fl(X[r, m] * W[r, eq[m]]): block task
// (c * 32 + l) * n_tiles + tile is CRO-1 lane l of chunk c for the columns of one tile,
// thread j for column m = tile * blockDim + j, summing rows c * CHUNK + l + 32 t in order
// (the lane step). A warp reads 32 consecutive doubles of a row: coalesced. LS/LC are
// (n_chunks * 32, P); lane_tree_partials and column_chunk_tree finish.
extern "C" __global__ void sur_rmatvec_lanes(const double *__restrict__ X,
                                             const int *__restrict__ eq,
                                             const double *__restrict__ W, long long N,
                                             long long P, int K, int comp,
                                             double *__restrict__ LS,
                                             double *__restrict__ LC) {
    const bool cm = comp != 0;
    const long long n_chunks = (N + CRO_CHUNK - 1) / CRO_CHUNK;
    const long long n_tiles = (P + blockDim.x - 1) / blockDim.x;
    for (long long task = blockIdx.x; task < n_chunks * CRO_LANES * n_tiles;
         task += gridDim.x) {
        const long long cl = task / n_tiles, m = (task % n_tiles) * blockDim.x + threadIdx.x;
        if (m >= P) continue;
        const long long c = cl / CRO_LANES, stop = min(N, (c + 1) * CRO_CHUNK);
        const int j = eq[m];
        double s = -0.0, sc = -0.0;
        for (long long r = c * CRO_CHUNK + cl % CRO_LANES; r < stop; r += CRO_LANES)
            cro_lane_add(s, sc, __dmul_rn(X[r * P + m], W[r * K + j]), cm);
        LS[cl * P + m] = s;
        LC[cl * P + m] = sc;
    }
}

// Chunk tree down the columns of PS/PC (n_chunks, P), in place; one thread per column.
extern "C" __global__ void column_chunk_tree(double *PS, double *PC, long long n_chunks,
                                             long long P, int comp, double *__restrict__ g) {
    const bool cm = comp != 0;
    for (long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x; m < P;
         m += (long long)gridDim.x * blockDim.x) {
        long long rows = n_chunks;
        while (rows > 1) {
            const long long pairs = rows / 2;
            for (long long q = 0; q < pairs; ++q) {
                double a = PS[2 * q * P + m], ac = PC[2 * q * P + m];
                cro_merge(a, ac, PS[(2 * q + 1) * P + m], PC[(2 * q + 1) * P + m], cm);
                PS[q * P + m] = a;
                PC[q * P + m] = ac;
            }
            if (rows & 1) {
                PS[pairs * P + m] = PS[(rows - 1) * P + m];
                PC[pairs * P + m] = PC[(rows - 1) * P + m];
            }
            rows = pairs + (rows & 1);
        }
        g[m] = cro_finalize(PS[m], PC[m], cm);
    }
}

// One row of R Sigma^-1 (reference.woodbury_solve), computed by the calling warp (every
// lane calls it): out[0..K) from r[0..K); out may be r (each lane reads r[j] last just
// before it writes out[j]). K <= CRO_CHUNK, k <= CRO_MAX_RANK. LT is L transposed (row i
// of LT is column i of L); u is k doubles of scratch shared by the warp.
__device__ void woodbury_row(const double *r, const double *__restrict__ G,
                             const double *__restrict__ d, const double *__restrict__ L,
                             const double *__restrict__ LT, int K, int k, bool cm, double *u,
                             double *out) {
    const int lane = threadIdx.x & (CRO_LANES - 1);
    double s[CRO_MAX_RANK], c[CRO_MAX_RANK];
    // t = G^T r: lane l accumulates j = l, l + 32, ... for every q
    if (K <= CRO_LANES) {
        // one term per lane: lanes >= K are the identity; the full warp tree merges
        // them, which changes no result bit
        for (int q = 0; q < k; ++q) {
            s[q] = lane < K ? __dmul_rn(r[lane], G[lane * k + q]) : -0.0;
            c[q] = lane < K ? 0.0 : -0.0;
        }
    } else {
        for (int q = 0; q < k; ++q) {
            s[q] = -0.0;
            c[q] = -0.0;
        }
        for (int j = lane; j < K; j += CRO_LANES)
            for (int q = 0; q < k; ++q) cro_lane_add(s[q], c[q], __dmul_rn(r[j], G[j * k + q]), cm);
    }
    for (int q = 0; q < k; ++q) cro_warp_tree(s[q], c[q], cm);
    if (lane == 0) {
        double t[CRO_MAX_RANK], z[CRO_MAX_RANK];
        for (int q = 0; q < k; ++q) t[q] = cro_finalize(s[q], c[q], cm);
        for (int a = 0; a < k; ++a)
            z[a] = __ddiv_rn(__dsub_rn(t[a], cro_dot_serial(L + a * k, 1, z, 1, a, cm)),
                             L[a * k + a]);
        for (int a = k - 1; a >= 0; --a)
            u[a] = __ddiv_rn(__dsub_rn(z[a], cro_dot_serial(LT + a * k + a + 1, 1, u + a + 1, 1,
                                                            k - 1 - a, cm)),
                             L[a * k + a]);
    }
    __syncwarp();
    for (int j = lane; j < K; j += CRO_LANES)
        out[j] = __dsub_rn(__ddiv_rn(r[j], d[j]), cro_dot_serial(G + j * k, 1, u, 1, k, cm));
    __syncwarp();
}

// woodbury_row for k <= KMAX <= 32, without local memory: the k accumulators of t = G^T r
// in registers (loops unrolled over KMAX), the triangular solves done in place in u
// (lane 0 writes t there, overwrites it with z going forward -- z[a] reads z[0..a) and
// t[a] -- and z with u going back -- u[a] reads z[a] and u[a+1..k)), every short dot by
// cro_dot_short. The same operations in the same order as woodbury_row: the same bits.
// (woodbury_row's s, c, t and z arrays took 2560 bytes of local memory per thread, and
// woodbury_solve ran at 6-8% of a copy on an H100.) Here out and r must not overlap.
template <int KMAX>
__device__ void woodbury_row_short(const double *__restrict__ r, const double *__restrict__ G,
                                   const double *__restrict__ d, const double *__restrict__ L,
                                   const double *__restrict__ LT, int K, int k, bool cm,
                                   double *u, double *__restrict__ out) {
    const int lane = threadIdx.x & (CRO_LANES - 1);
    double s[KMAX], c[KMAX];
    if (K <= CRO_LANES) {  // one term per lane, as woodbury_row
#pragma unroll
        for (int q = 0; q < KMAX; ++q)
            if (q < k) {
                s[q] = lane < K ? __dmul_rn(r[lane], G[lane * k + q]) : -0.0;
                c[q] = lane < K ? 0.0 : -0.0;
            }
    } else {
#pragma unroll
        for (int q = 0; q < KMAX; ++q) {
            s[q] = -0.0;
            c[q] = -0.0;
        }
        for (int j = lane; j < K; j += CRO_LANES) {
            const double rj = r[j];
#pragma unroll
            for (int q = 0; q < KMAX; ++q)
                if (q < k) cro_lane_add(s[q], c[q], __dmul_rn(rj, G[j * k + q]), cm);
        }
    }
#pragma unroll
    for (int q = 0; q < KMAX; ++q)
        if (q < k) cro_warp_tree(s[q], c[q], cm);  // (k is the same on every lane)
    if (lane == 0) {
#pragma unroll
        for (int q = 0; q < KMAX; ++q)
            if (q < k) u[q] = cro_finalize(s[q], c[q], cm);
        for (int a = 0; a < k; ++a)
            u[a] = __ddiv_rn(__dsub_rn(u[a], cro_dot_short<KMAX>(L + a * k, 1, u, 1, a, cm)),
                             L[a * k + a]);
        for (int a = k - 1; a >= 0; --a)
            u[a] = __ddiv_rn(__dsub_rn(u[a], cro_dot_short<KMAX>(LT + a * k + a + 1, 1,
                                                                 u + a + 1, 1, k - 1 - a, cm)),
                             L[a * k + a]);
    }
    __syncwarp();
    for (int j = lane; j < K; j += CRO_LANES)
        out[j] = __dsub_rn(__ddiv_rn(r[j], d[j]), cro_dot_short<KMAX>(G + j * k, 1, u, 1, k, cm));
    __syncwarp();
}

// out = R Sigma^-1, one warp per row: woodbury_solve for any rank up to CRO_MAX_RANK,
// woodbury_solve_4 / _8 / _16 / _32 for ranks up to 4, 8, 16, 32 (the launcher takes
// the smallest that holds k), without local memory. (Their entry points are written out
// below, as sur_matvec_short_*'s are: the host emulator reads them from this text.)
template <int KMAX>
__device__ __forceinline__ void woodbury_solve_body(const double *__restrict__ R,
                                                    const double *__restrict__ G,
                                                    const double *__restrict__ d,
                                                    const double *__restrict__ L,
                                                    const double *__restrict__ LT,
                                                    long long N, int K, int k, int comp,
                                                    double *__restrict__ out) {
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / CRO_LANES;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) / CRO_LANES;
    __shared__ double u_shared[32][CRO_MAX_RANK];  // one row of u per warp of the block
    double *u = u_shared[(threadIdx.x / CRO_LANES) % 32];
    for (long long i = warp; i < N; i += n_warps)
        woodbury_row_short<KMAX>(R + i * K, G, d, L, LT, K, k, comp != 0, u, out + i * K);
}

extern "C" __global__ void woodbury_solve_4(const double *__restrict__ R,
                                             const double *__restrict__ G,
                                             const double *__restrict__ d,
                                             const double *__restrict__ L,
                                             const double *__restrict__ LT, long long N,
                                             int K, int k, int comp,
                                             double *__restrict__ out) {
    woodbury_solve_body<4>(R, G, d, L, LT, N, K, k, comp, out);
}

extern "C" __global__ void woodbury_solve_8(const double *__restrict__ R,
                                             const double *__restrict__ G,
                                             const double *__restrict__ d,
                                             const double *__restrict__ L,
                                             const double *__restrict__ LT, long long N,
                                             int K, int k, int comp,
                                             double *__restrict__ out) {
    woodbury_solve_body<8>(R, G, d, L, LT, N, K, k, comp, out);
}

extern "C" __global__ void woodbury_solve_16(const double *__restrict__ R,
                                             const double *__restrict__ G,
                                             const double *__restrict__ d,
                                             const double *__restrict__ L,
                                             const double *__restrict__ LT, long long N,
                                             int K, int k, int comp,
                                             double *__restrict__ out) {
    woodbury_solve_body<16>(R, G, d, L, LT, N, K, k, comp, out);
}

extern "C" __global__ void woodbury_solve_32(const double *__restrict__ R,
                                             const double *__restrict__ G,
                                             const double *__restrict__ d,
                                             const double *__restrict__ L,
                                             const double *__restrict__ LT, long long N,
                                             int K, int k, int comp,
                                             double *__restrict__ out) {
    woodbury_solve_body<32>(R, G, d, L, LT, N, K, k, comp, out);
}

extern "C" __global__ void woodbury_solve(const double *__restrict__ R,
                                          const double *__restrict__ G,
                                          const double *__restrict__ d,
                                          const double *__restrict__ L,
                                          const double *__restrict__ LT, long long N, int K,
                                          int k, int comp, double *__restrict__ out) {
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / CRO_LANES;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) / CRO_LANES;
    __shared__ double u_shared[32][CRO_MAX_RANK];  // one row of u per warp of the block
    double *u = u_shared[(threadIdx.x / CRO_LANES) % 32];
    for (long long i = warp; i < N; i += n_warps)
        woodbury_row(R + i * K, G, d, L, LT, K, k, comp != 0, u, out + i * K);
}

// --- The fused normal operator X^T [(X v) Sigma^-1], reading each row of X once ----------
//
// Block task (c, l) owns CRO-1 lane l of chunk c: rows c * CHUNK + l + 32 t. It takes them
// in batches of one row per warp (rows t0 .. t0 + n_warps - 1): warp w computes its row's
// U = per-equation CRO-1 dots with v (with short_rows, when no equation has more than 32
// columns, lane j takes equations j, j + 32, ..., as sur_matvec_short; else the warp
// takes each equation in turn, as sur_matvec: the same bits either way) and W = U
// Sigma^-1 over it (woodbury_row). Then every thread adds, for the batch's rows in
// order, fl(x[m] * W[eq(m)]) to lane l's accumulators of its columns
// m = j + blockDim * q: the sur_rmatvec lane step. A row is read from device memory by
// its warp and read again by the block right after, from the cache (a batch is n_warps
// rows, 128 KiB at P = 2000). The Woodbury solves of a batch run side by side, one per
// warp (a solve is a chain of warp trees and triangular solves: one per block at a time
// would leave the block waiting on it).
//
// Where things live, chosen by the launcher (the bits are the same either way: each
// column's terms are added in row order by the one thread that owns the column):
// * acc_in_registers (P <= blockDim * FUSED_COLS_PER_THREAD): a thread's accumulators
//   in registers, written to LS/LC (n_chunks * 32, P) at the end of the task; otherwise
//   they live in LS/LC themselves (row `task`), read and written once per batch;
// * uw_in_shared (K <= FUSED_MAX_K): U and W of a warp's row in shared memory; otherwise
//   in uw_global, FUSED_ROWS * K doubles per block of the grid.
// lane_tree_partials and column_chunk_tree finish as sur_rmatvec does. Limits (the
// launcher composes the three kernels beyond them): equations <= CRO_CHUNK columns,
// K <= CRO_CHUNK, k <= CRO_MAX_RANK.

extern "C" __global__ void sur_normal_lanes(const double *__restrict__ X,
                                            const long long *__restrict__ offsets,
                                            const int *__restrict__ eq,
                                            const double *__restrict__ v,
                                            const double *__restrict__ G,
                                            const double *__restrict__ d,
                                            const double *__restrict__ L,
                                            const double *__restrict__ LT, long long N,
                                            long long P, int K, int k, int comp,
                                            int short_rows, int acc_in_registers,
                                            int uw_in_shared, double *uw_global,
                                            double *__restrict__ LS,
                                            double *__restrict__ LC) {
    __shared__ double uw_shared[FUSED_ROWS][FUSED_MAX_K];  // per warp: U of its row, then W
    __shared__ double u[FUSED_ROWS][CRO_MAX_RANK];
    const bool cm = comp != 0;
    const int tid = threadIdx.x, lane = tid & (CRO_LANES - 1), warp = tid / CRO_LANES;
    const int n_warps = blockDim.x / CRO_LANES;
    const long long n_chunks = (N + CRO_CHUNK - 1) / CRO_CHUNK;
    // row b of the batch's U/W: uw(b)[j]
    double *uw_block = uw_in_shared ? &uw_shared[0][0]
                                    : uw_global + (long long)blockIdx.x * FUSED_ROWS * K;
    const long long uw_stride = uw_in_shared ? FUSED_MAX_K : K;
    for (long long task = blockIdx.x; task < n_chunks * CRO_LANES; task += gridDim.x) {
        const long long c = task / CRO_LANES, stop = min(N, (c + 1) * CRO_CHUNK);
        double *ls = LS + task * P, *lc = LC + task * P;
        double acc_s[FUSED_COLS_PER_THREAD], acc_c[FUSED_COLS_PER_THREAD];
        for (int q = 0; q < FUSED_COLS_PER_THREAD; ++q) {
            acc_s[q] = -0.0;
            acc_c[q] = -0.0;
        }
        if (!acc_in_registers)
            for (long long m = tid; m < P; m += blockDim.x) {
                ls[m] = -0.0;
                lc[m] = -0.0;
            }
        for (long long r0 = c * CRO_CHUNK + task % CRO_LANES; r0 < stop;
             r0 += (long long)CRO_LANES * n_warps) {
            const long long r = r0 + (long long)CRO_LANES * warp;  // this warp's row
            if (r < stop) {
                const double *x = X + r * P;
                double *w = uw_block + warp * uw_stride;
                if (short_rows) {
                    for (int j = lane; j < K; j += CRO_LANES) {
                        const long long o0 = offsets[j];
                        w[j] = cro_dot_serial(x + o0, 1, v + o0, 1, (int)(offsets[j + 1] - o0),
                                              cm);
                    }
                } else {
                    for (int j = 0; j < K; ++j) {
                        const long long o0 = offsets[j], n = offsets[j + 1] - o0;
                        double s, sc;
                        warp_chunk_dot(x + o0, v + o0, 0, n, cm, s, sc);
                        if (lane == 0) w[j] = n == 0 ? 0.0 : cro_finalize(s, sc, cm);
                    }
                }
                __syncwarp();
                woodbury_row(w, G, d, L, LT, K, k, cm, u[warp], w);  // W over U
            }
            __syncthreads();
            const int batch = (int)min((long long)n_warps, (stop - r0 + CRO_LANES - 1) / CRO_LANES);
            if (acc_in_registers) {
                for (int b = 0; b < batch; ++b) {  // the batch's rows, in order
                    const double *x = X + (r0 + (long long)CRO_LANES * b) * P;
                    const double *w = uw_block + b * uw_stride;
                    for (int q = 0; q < FUSED_COLS_PER_THREAD; ++q) {
                        const long long m = tid + (long long)q * blockDim.x;
                        if (m < P) cro_lane_add(acc_s[q], acc_c[q], __dmul_rn(x[m], w[eq[m]]), cm);
                    }
                }
            } else {
                for (long long m = tid; m < P; m += blockDim.x) {
                    double s = ls[m], sc = lc[m];
                    const double *w = uw_block + eq[m];
                    for (int b = 0; b < batch; ++b)  // the batch's rows, in order
                        cro_lane_add(s, sc,
                                     __dmul_rn(X[(r0 + (long long)CRO_LANES * b) * P + m],
                                               w[b * uw_stride]),
                                     cm);
                    ls[m] = s;
                    lc[m] = sc;
                }
            }
            __syncthreads();  // U/W is rewritten by the next batch
        }
        if (acc_in_registers)
            for (int q = 0; q < FUSED_COLS_PER_THREAD; ++q) {
                const long long m = tid + (long long)q * blockDim.x;
                if (m < P) {
                    ls[m] = acc_s[q];
                    lc[m] = acc_c[q];
                }
            }
    }
}

// --- X^T X: the lower triangle's chunk partials, a tile pair per block ---------------------
//
// G[m, a] (m >= a) = CRO-1 over rows of fl(X[r, m] * X[r, a]), the bits of
// gemv_t(X, X[:, a])[m]. Columns are cut into tiles of TILE (gram_tile_partials_8 and
// _16: the launcher's GRAM_TILE); a block task is (tile pair, chunk c), the tile pairs
// (mt >= at) numbered row by row of the lower triangle from first_pair on. Warp w owns
// column m = mt * TILE + w and lane l the CRO-1 lane l of the chunk: rows
// c * CHUNK + l + 32 t, in order, with one accumulator pair per column a of the a-tile
// (TILE pairs in registers). Each step the block stages 32 rows of both tiles in shared
// memory (lane l reads row l of the step). The warp tree gives each pair's chunk
// partial, written to PS/PC[c, pair], pair = (tile pair - first_pair) * TILE^2 +
// w * TILE + q (entries of the upper half of a diagonal tile, and past P, are computed
// and left to the caller to ignore); column_chunk_tree finishes. blockDim = 32 * TILE.
// Every tile size gives every entry the same terms in the same order: the same bits. A
// larger tile reads X fewer times (once per tile pair: N * P^2 / TILE doubles in all,
// 80 GB at the size M with 8, 40 GB with 16) with fewer blocks and more registers per
// thread; an H100 measured 141 ms with 8 and bank-conflicted rows (below), nothing yet
// with 16.

template <int TILE>
__device__ __forceinline__ void gram_tile_body(const double *__restrict__ X, long long N,
                                               long long P, long long first_pair,
                                               long long n_pairs, int comp,
                                               double *__restrict__ PS,
                                               double *__restrict__ PC) {
    // (a row of TILE + 1 doubles: lane l reads row l, and with rows of 8 doubles (16
    // banks of 4 bytes) the even lanes of a half-warp all read bank 2q and the odd ones
    // bank 16 + 2q -- an 8-way bank conflict on every read of the inner loop; with 9,
    // row l starts at bank 18 l mod 32, with 17 at 34 l mod 32: distinct for the 16
    // lanes of a half-warp)
    __shared__ double xm[CRO_LANES][TILE + 1], xa[CRO_LANES][TILE + 1];
    const bool cm = comp != 0;
    const int tid = threadIdx.x, lane = tid & (CRO_LANES - 1), warp = tid / CRO_LANES;
    const long long n_chunks = (N + CRO_CHUNK - 1) / CRO_CHUNK;
    const long long width = n_pairs * TILE * TILE;  // columns of PS/PC
    for (long long task = blockIdx.x; task < n_pairs * n_chunks; task += gridDim.x) {
        const long long tp = task / n_chunks, c = task % n_chunks;
        // tile pair idx is (mt, at) with idx = mt (mt + 1) / 2 + at, at <= mt (row mt of
        // the triangle holds mt + 1 pairs): mt from the square root, made exact
        const long long idx = first_pair + tp;
        long long mt = (long long)((sqrt(8.0 * (double)idx + 1.0) - 1.0) * 0.5);
        while ((mt + 1) * (mt + 2) / 2 <= idx) ++mt;
        while (mt * (mt + 1) / 2 > idx) --mt;
        const long long at = idx - mt * (mt + 1) / 2;
        const long long stop = min(N, (c + 1) * CRO_CHUNK);
        double s[TILE], sc[TILE];
#pragma unroll
        for (int q = 0; q < TILE; ++q) {
            s[q] = -0.0;
            sc[q] = -0.0;
        }
        for (long long r0 = c * CRO_CHUNK; r0 < stop; r0 += CRO_LANES) {
            __syncthreads();  // the previous step's rows are read
            for (int e = tid; e < 2 * CRO_LANES * TILE; e += blockDim.x) {
                const int half = e / (CRO_LANES * TILE), rem = e % (CRO_LANES * TILE);
                const int row = rem / TILE, col = rem % TILE;
                const long long m = (half ? at : mt) * TILE + col, r = r0 + row;
                const double value = (r < stop && m < P) ? X[r * P + m] : 0.0;
                if (half) xa[row][col] = value;
                else xm[row][col] = value;
            }
            __syncthreads();
            if (r0 + lane < stop) {
                const double x = xm[lane][warp];
#pragma unroll
                for (int q = 0; q < TILE; ++q)
                    cro_lane_add(s[q], sc[q], __dmul_rn(x, xa[lane][q]), cm);
            }
        }
#pragma unroll
        for (int q = 0; q < TILE; ++q) {
            cro_warp_tree(s[q], sc[q], cm);
            if (lane == 0) {
                const long long col = tp * TILE * TILE + warp * TILE + q;
                PS[c * width + col] = s[q];
                PC[c * width + col] = sc[q];
            }
        }
    }  // (the next task's first step waits at its barrier before staging new rows)
}

// (The entry points are written out, as woodbury_solve_*'s are: the host emulator reads
// them from this text.)
extern "C" __global__ void gram_tile_partials_8(const double *__restrict__ X, long long N,
                                                long long P, long long first_pair,
                                                long long n_pairs, int comp,
                                                double *__restrict__ PS,
                                                double *__restrict__ PC) {
    gram_tile_body<8>(X, N, P, first_pair, n_pairs, comp, PS, PC);
}

extern "C" __global__ void gram_tile_partials_16(const double *__restrict__ X, long long N,
                                                 long long P, long long first_pair,
                                                 long long n_pairs, int comp,
                                                 double *__restrict__ PS,
                                                 double *__restrict__ PC) {
    gram_tile_body<16>(X, N, P, first_pair, n_pairs, comp, PS, PC);
}

// Chunk partials from lane accumulators LS/LC (n_chunks, 32, P): per (chunk, column) the
// CRO-1 lane tree (the warp tree's merges, in one thread) into PS/PC (n_chunks, P).
extern "C" __global__ void lane_tree_partials(const double *__restrict__ LS,
                                              const double *__restrict__ LC,
                                              long long n_chunks, long long P, int comp,
                                              double *__restrict__ PS,
                                              double *__restrict__ PC) {
    const bool cm = comp != 0;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n_chunks * P;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long c = idx / P, m = idx % P;
        double s[CRO_LANES], sc[CRO_LANES];
        for (int l = 0; l < CRO_LANES; ++l) {
            s[l] = LS[(c * CRO_LANES + l) * P + m];
            sc[l] = LC[(c * CRO_LANES + l) * P + m];
        }
        cro_tree_live(s, sc, CRO_LANES, cm);
        PS[idx] = s[0];
        PC[idx] = sc[0];
    }
}
