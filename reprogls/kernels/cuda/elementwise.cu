// Portable log/exp (fdlibm; line-by-line port of reference/elementary.py) and the
// soft-thresholding family (reference/prox.py). One thread per element, grid-stride.

#define CRO_NAN __longlong_as_double(0x7ff8000000000000LL)

__device__ double port_log(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    if (x != x) return CRO_NAN;
    if (x < 0.0) return CRO_NAN;
    if (x == 0.0) return -__longlong_as_double(0x7ff0000000000000LL);
    if (x == __longlong_as_double(0x7ff0000000000000LL)) return x;
    int k;
    double m = frexp(x, &k);
    if (m < 0.70710678118654752440) {
        m = __dmul_rn(m, 2.0);
        k = k - 1;
    }
    const double f = __dsub_rn(m, 1.0);
    const double s = __ddiv_rn(f, __dadd_rn(2.0, f));
    const double dk = (double)k;
    const double z = __dmul_rn(s, s);
    const double w = __dmul_rn(z, z);
    const double t1 = __dmul_rn(w, __dadd_rn(Lg2, __dmul_rn(w, __dadd_rn(Lg4, __dmul_rn(w, Lg6)))));
    const double t2 = __dmul_rn(z, __dadd_rn(Lg1, __dmul_rn(w, __dadd_rn(Lg3, __dmul_rn(w, __dadd_rn(Lg5, __dmul_rn(w, Lg7)))))));
    const double R = __dadd_rn(t2, t1);
    const double hfsq = __dmul_rn(__dmul_rn(0.5, f), f);
    return __dsub_rn(__dmul_rn(dk, ln2_hi),
                     __dsub_rn(__dsub_rn(hfsq, __dadd_rn(__dmul_rn(s, __dadd_rn(hfsq, R)),
                                                         __dmul_rn(dk, ln2_lo))),
                               f));
}

__device__ double port_exp(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double inv_ln2 = 1.44269504088896338700e+00;
    const double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03,
                 P3 = 6.61375632143793436117e-05, P4 = -1.65339022054652515390e-06,
                 P5 = 4.13813679705723846039e-08;
    if (x != x) return CRO_NAN;
    if (x > 7.09782712893383973096e+02) return __longlong_as_double(0x7ff0000000000000LL);
    if (x < -7.45133219101941108420e+02) return 0.0;
    const double ax = fabs(x);
    int k = 0;
    double hi = 0.0, lo = 0.0;
    if (ax > 0.34657359027997264) {
        if (ax < 1.0397207708399179) {
            if (x > 0.0) {
                hi = __dsub_rn(x, ln2_hi);
                lo = ln2_lo;
                k = 1;
            } else {
                hi = __dadd_rn(x, ln2_hi);
                lo = -ln2_lo;
                k = -1;
            }
        } else {
            k = (int)__dadd_rn(__dmul_rn(inv_ln2, x), x > 0.0 ? 0.5 : -0.5);
            const double t = (double)k;
            hi = __dsub_rn(x, __dmul_rn(t, ln2_hi));
            lo = __dmul_rn(t, ln2_lo);
        }
        x = __dsub_rn(hi, lo);
    } else if (ax < 3.725290298461914e-09) {
        return __dadd_rn(1.0, x);
    }
    const double t = __dmul_rn(x, x);
    const double c = __dsub_rn(x, __dmul_rn(t, __dadd_rn(P1, __dmul_rn(t, __dadd_rn(P2,
                         __dmul_rn(t, __dadd_rn(P3, __dmul_rn(t, __dadd_rn(P4, __dmul_rn(t, P5))))))))));
    if (k == 0)
        return __dsub_rn(1.0, __dsub_rn(__ddiv_rn(__dmul_rn(x, c), __dsub_rn(c, 2.0)), x));
    const double y = __dsub_rn(1.0, __dsub_rn(__dsub_rn(lo, __ddiv_rn(__dmul_rn(x, c),
                                                                      __dsub_rn(2.0, c))), hi));
    if (k > 1000) return __dmul_rn(__dmul_rn(y, ldexp(1.0, 1000)), ldexp(1.0, k - 1000));
    if (k < -1000) return __dmul_rn(__dmul_rn(y, ldexp(1.0, k + 1000)), ldexp(1.0, -1000));
    return __dmul_rn(y, ldexp(1.0, k));
}

extern "C" __global__ void log_kernel(const double *__restrict__ x, long long n,
                                      double *__restrict__ out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = port_log(x[i]);
}

extern "C" __global__ void exp_kernel(const double *__restrict__ x, long long n,
                                      double *__restrict__ out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = port_exp(x[i]);
}

__device__ __forceinline__ double soft(double v, double lam) {
    if (v > lam) return __dsub_rn(v, lam);
    if (v < -lam) return __dadd_rn(v, lam);
    if (v != v) return CRO_NAN;
    return 0.0;
}

__device__ __forceinline__ double clip(double v, double lo, double hi) {
    if (v < lo) return lo;
    if (v > hi) return hi;
    return v;
}

__device__ __forceinline__ double prox(double v, double lam, double l1_ratio, double step,
                                       double lo, double hi) {
    const double a = __dmul_rn(step, lam);
    const double r = clip(__ddiv_rn(soft(v, __dmul_rn(a, l1_ratio)),
                                    __dadd_rn(1.0, __dmul_rn(a, __dsub_rn(1.0, l1_ratio)))),
                          lo, hi);
    return r != r ? CRO_NAN : r;
}

// Parameters that may be scalar or per element come as (pointer, stride): stride 0
// repeats element 0.
extern "C" __global__ void soft_threshold_kernel(const double *__restrict__ x, long long n,
                                                 const double *lam, long long lam_inc,
                                                 double *__restrict__ out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = soft(x[i], lam[i * lam_inc]);
}

extern "C" __global__ void soft_threshold_box_kernel(const double *__restrict__ x, long long n,
                                                     const double *lam, long long lam_inc,
                                                     const double *lo, long long lo_inc,
                                                     const double *hi, long long hi_inc,
                                                     double *__restrict__ out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const double r = clip(soft(x[i], lam[i * lam_inc]), lo[i * lo_inc], hi[i * hi_inc]);
        out[i] = r != r ? CRO_NAN : r;
    }
}

extern "C" __global__ void prox_elastic_net_kernel(const double *__restrict__ x, long long n,
                                                   const double *lam, long long lam_inc,
                                                   double l1_ratio, double step,
                                                   const double *lo, long long lo_inc,
                                                   const double *hi, long long hi_inc,
                                                   double *__restrict__ out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = prox(x[i], lam[i * lam_inc], l1_ratio, step, lo[i * lo_inc], hi[i * hi_inc]);
}

extern "C" __global__ void fista_step_kernel(const double *__restrict__ z,
                                             const double *__restrict__ grad, long long n,
                                             double step, const double *__restrict__ x_prev,
                                             double momentum, const double *lam,
                                             long long lam_inc, double l1_ratio,
                                             const double *lo, long long lo_inc,
                                             const double *hi, long long hi_inc,
                                             double *__restrict__ x_new,
                                             double *__restrict__ z_next) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const double xn = prox(__dsub_rn(z[i], __dmul_rn(step, grad[i])), lam[i * lam_inc],
                               l1_ratio, step, lo[i * lo_inc], hi[i * hi_inc]);
        x_new[i] = xn;
        const double zn = __dadd_rn(xn, __dmul_rn(momentum, __dsub_rn(xn, x_prev[i])));
        z_next[i] = zn != zn ? CRO_NAN : zn;
    }
}
