// Batch normalisation per channel over x (M, C) rows, as kernels/cpu/normalization.py does it
// (the maths and its reference: minicnn/ops/normalization.py).
//
// Each reduction runs in two kernels. First, thread (p, ch) sums channel ch over slice p of the
// rows in double (neighbouring threads read neighbouring channels of one row: coalesced); then
// one block per channel adds the slices' partial sums, partial[p, 0 or 1, ch], and finishes.
// Forward: both moments in one pass, of deviations from row 0 (a value of each channel's own
// distribution, so the sums do not cancel as raw E[x^2] - mean^2 can), then the output, with the
// ReLU fused in where a ReLU layer follows. Backward: the two gradient sums, then the input
// gradient, through the ReLU's mask, which is recomputed from x by the forward's own expression.

#define FINISH_THREADS 256  // the block size cuda.py launches the finishing kernels with

// xhat = (x - mean) * inv_std and the pre-activation xhat * gamma + beta, one expression for
// forward and backward (the fma is written out: both kernels must round it alike)
template <typename T>
__device__ __forceinline__ T bn_pre(T x, T mean, T inv_std, T gamma, T beta, T* xhat) {
    *xhat = (x - mean) * inv_std;
    return fma(*xhat, gamma, beta);
}

// Thread 0 of the block gets sum over p of partial[p, 0, ch] and of partial[p, 1, ch]
__device__ void block_sums(const double* __restrict__ partial, int c, int parts, int ch,
                           double* a, double* b) {
    __shared__ double s[2][FINISH_THREADS];
    double u = 0, v = 0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) {
        u += partial[(2LL * p) * c + ch];
        v += partial[(2LL * p + 1) * c + ch];
    }
    s[0][threadIdx.x] = u;
    s[1][threadIdx.x] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            s[0][threadIdx.x] += s[0][threadIdx.x + half];
            s[1][threadIdx.x] += s[1][threadIdx.x + half];
        }
        __syncthreads();
    }
    *a = s[0][0];
    *b = s[1][0];
    __syncthreads();  // s is read before the next channel's sums overwrite it
}

// partial[p, 0, ch] = sum of (x - x[0, ch]) over slice p of the rows; partial[p, 1, ch]: squares
template <typename T, typename I>
__global__ void batchnorm_sums(const T* __restrict__ x, double* __restrict__ partial,
                               long long m, int c, int parts) {
    GRID_STRIDE(k, (I)parts * c) {
        const int ch = k % c, p = k / c;
        const double shift = m > 0 ? (double)x[ch] : 0.0;
        const I lo = (long long)m * p / parts, hi = (long long)m * (p + 1) / parts;
        double s = 0, s2 = 0;
        for (I r = lo; r < hi; ++r) {
            const double d = (double)x[r * c + ch] - shift;
            s += d;
            s2 += d * d;
        }
        partial[(2LL * p) * c + ch] = s;
        partial[(2LL * p + 1) * c + ch] = s2;
    }
}

// One block per channel: mean, biased variance and 1 / sqrt(var + eps), rounded to T at the end
template <typename T, typename I>
__global__ void batchnorm_moments(const T* __restrict__ x, const double* __restrict__ partial,
                                  long long m, int c, int parts, double eps, T* __restrict__ mean,
                                  T* __restrict__ var, T* __restrict__ inv_std) {
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double s, s2;
        block_sums(partial, c, parts, ch, &s, &s2);
        if (threadIdx.x == 0) {
            const double d_mean = s / m;
            double v = s2 / m - d_mean * d_mean;
            v = v < 0 ? 0 : v;  // rounding can leave it just below 0 (NaN passes)
            mean[ch] = T((m > 0 ? (double)x[ch] : 0.0) + d_mean);
            var[ch] = T(v);
            inv_std[ch] = T(1 / sqrt(v + eps));
        }
    }
}

// y = act(xhat * gamma + beta), act ReLU where relu (NaN passes, as max(y, 0) lets it)
template <typename T, typename I>
__global__ void batchnorm_normalize(const T* __restrict__ x, const T* __restrict__ mean,
                                    const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                    const T* __restrict__ beta, T* __restrict__ y, I total,
                                    int c, int has_gamma, int has_beta, int relu) {
    GRID_STRIDE(k, total) {
        const int ch = k % c;
        T xhat;
        const T pre = bn_pre(x[k], mean[ch], inv_std[ch], has_gamma ? gamma[ch] : T(1),
                             has_beta ? beta[ch] : T(0), &xhat);
        y[k] = (relu && pre < T(0)) ? T(0) : pre;
    }
}

// partial[p, 0, ch] = sum of g, partial[p, 1, ch] = sum of g * xhat over slice p, where g is gy
// through the fused ReLU's mask (pre > 0, recomputed from x)
template <typename T, typename I>
__global__ void batchnorm_grad_sums(const T* __restrict__ gy, const T* __restrict__ x,
                                    const T* __restrict__ mean, const T* __restrict__ inv_std,
                                    const T* __restrict__ gamma, const T* __restrict__ beta,
                                    double* __restrict__ partial, long long m, int c, int parts,
                                    int has_gamma, int has_beta, int relu) {
    GRID_STRIDE(k, (I)parts * c) {
        const int ch = k % c, p = k / c;
        const T mu = mean[ch], is = inv_std[ch];
        const T ga = has_gamma ? gamma[ch] : T(1), be = has_beta ? beta[ch] : T(0);
        const I lo = (long long)m * p / parts, hi = (long long)m * (p + 1) / parts;
        double s = 0, sx = 0;
        for (I r = lo; r < hi; ++r) {
            T xhat;
            const T pre = bn_pre(x[r * c + ch], mu, is, ga, be, &xhat);
            const T g = (relu && !(pre > T(0))) ? T(0) : gy[r * c + ch];
            s += (double)g;
            sx += (double)g * (double)xhat;
        }
        partial[(2LL * p) * c + ch] = s;
        partial[(2LL * p + 1) * c + ch] = sx;
    }
}

// One block per channel: ggamma = sum(g * xhat), gbeta = sum(g) in T, and their means over the
// m rows (gbeta_m, ggamma_m) for the input gradient
template <typename T, typename I>
__global__ void batchnorm_grad_finish(const double* __restrict__ partial, long long m, int c,
                                      int parts, T* __restrict__ ggamma, T* __restrict__ gbeta,
                                      T* __restrict__ gbeta_m, T* __restrict__ ggamma_m) {
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double s, sx;
        block_sums(partial, c, parts, ch, &s, &sx);
        if (threadIdx.x == 0) {
            gbeta[ch] = T(s);
            ggamma[ch] = T(sx);
            gbeta_m[ch] = T(s / m);
            ggamma_m[ch] = T(sx / m);
        }
    }
}

// gx = gamma * inv_std * (g - mean(g) - xhat * mean(g * xhat)), g as in batchnorm_grad_sums
template <typename T, typename I>
__global__ void batchnorm_grad_input(const T* __restrict__ gy, const T* __restrict__ x,
                                     const T* __restrict__ mean, const T* __restrict__ inv_std,
                                     const T* __restrict__ gamma, const T* __restrict__ beta,
                                     const T* __restrict__ gbeta_m,
                                     const T* __restrict__ ggamma_m, T* __restrict__ gx,
                                     I total, int c, int has_gamma, int has_beta, int relu) {
    GRID_STRIDE(k, total) {
        const int ch = k % c;
        const T ga = has_gamma ? gamma[ch] : T(1);
        T xhat;
        const T pre = bn_pre(x[k], mean[ch], inv_std[ch], ga, has_beta ? beta[ch] : T(0), &xhat);
        const T g = (relu && !(pre > T(0))) ? T(0) : gy[k];
        const T g_scale = has_gamma ? ga * inv_std[ch] : inv_std[ch];
        gx[k] = g_scale * (g - gbeta_m[ch] - xhat * ggamma_m[ch]);
    }
}

// Inference's affine map per channel: y = act(x * scale + shift)
template <typename T, typename I>
__global__ void channel_affine(const T* __restrict__ x, const T* __restrict__ scale,
                               const T* __restrict__ shift, T* __restrict__ y, I total, int c,
                               int relu) {
    GRID_STRIDE(k, total) {
        const int ch = k % c;
        const T v = x[k] * scale[ch] + shift[ch];
        y[k] = (relu && v < T(0)) ? T(0) : v;
    }
}
