// minicnn's window and elementwise kernels: im2col/col2im, max pooling, bias + ReLU, softmax
// cross-entropy, Adam, the weights' moving average, Dropout (see cuda.py, which launches them).
//
// Layout is channels-last: images (N, H, W, C); the im2col matrix (N, oH, oW, kh, kw, C).
// Backward kernels *gather* (each output element sums what it receives) rather than scatter with
// atomics, so results are deterministic.

struct Geometry {       // one window op: kernel or pool (kh, kw), strides, padding, sizes
    int n, h, w, c;     // input
    int oh, ow;         // output
    int kh, kw, sy, sx;
    int top, left;      // padding before (after is implied by oh, ow)
};

// Kernels take the geometry as 12 ints (portable across CuPy versions) and rebuild the struct
#define GEOMETRY_ARGS int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sy, int sx, \
                      int top, int left
#define GEOMETRY const Geometry g{n, h, w, c, oh, ow, kh, kw, sy, sx, top, left}

// -infinity without host headers (NVRTC compiles without <cmath> or <limits>)
template <typename T> __device__ T neg_inf();
template <> __device__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ double neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }

// col[n, p, q, i, j, ch] = x[n, p*sy + i - top, q*sx + j - left, ch], or 0 in the padding
template <typename T, typename I>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, GEOMETRY_ARGS) {
    GEOMETRY;
    const I total = (long long)g.n * g.oh * g.ow * g.kh * g.kw * g.c;
    GRID_STRIDE(k, total) {
        I r = k;
        const int ch = r % g.c; r /= g.c;
        const int j = r % g.kw; r /= g.kw;
        const int i = r % g.kh; r /= g.kh;
        const int q = r % g.ow; r /= g.ow;
        const int p = r % g.oh;
        const int n = r / g.oh;
        const int y = p * g.sy + i - g.top, xx = q * g.sx + j - g.left;
        col[k] = (y >= 0 && y < g.h && xx >= 0 && xx < g.w)
                     ? x[(((I)n * g.h + y) * g.w + xx) * g.c + ch]
                     : T(0);
    }
}

// gx[n, y, x, ch] = sum of gcol[n, p, q, i, j, ch] over every (p, q, i, j) that read (y, x)
template <typename T, typename I>
__global__ void col2im(const T* __restrict__ gcol, T* __restrict__ gx, GEOMETRY_ARGS) {
    GEOMETRY;
    const I total = (long long)g.n * g.h * g.w * g.c;
    GRID_STRIDE(k, total) {
        I r = k;
        const int ch = r % g.c; r /= g.c;
        const int xx = r % g.w; r /= g.w;
        const int y = r % g.h;
        const int n = r / g.h;
        T acc = 0;
        for (int i = 0; i < g.kh; ++i) {
            const int py = y + g.top - i;  // = p * sy for the output row p that used tap i here
            if (py < 0 || py % g.sy) continue;
            const int p = py / g.sy;
            if (p >= g.oh) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int qx = xx + g.left - j;
                if (qx < 0 || qx % g.sx) continue;
                const int q = qx / g.sx;
                if (q >= g.ow) continue;
                acc += gcol[((((I)n * g.oh + p) * g.ow + q) * g.kh + i) * g.kw * g.c + j * g.c + ch];
            }
        }
        gx[k] = acc;
    }
}

// In place on y (M, F): y += b (if has_bias), then max(y, 0) (if relu)
template <typename T, typename I>
__global__ void bias_relu(T* __restrict__ y, const T* __restrict__ b, I total, int f,
                          int has_bias, int relu) {
    GRID_STRIDE(k, total) {
        T v = y[k] + (has_bias ? b[k % f] : T(0));
        y[k] = (relu && v < T(0)) ? T(0) : v;
    }
}

// gx = gy where the ReLU's output y was positive, else 0
template <typename T, typename I>
__global__ void relu_backward(const T* __restrict__ gy, const T* __restrict__ y, T* __restrict__ gx,
                              I total) {
    GRID_STRIDE(k, total) { gx[k] = y[k] > T(0) ? gy[k] : T(0); }
}

// One thread per row of logits z (N, K) against target rows t (N, K):
// row_loss[r] = -sum t * log_softmax(z);  gz = (softmax(z) * sum(t) - t) / N
template <typename T, typename I>
__global__ void softmax_cross_entropy(const T* __restrict__ z, const T* __restrict__ t,
                                      T* __restrict__ gz, T* __restrict__ row_loss, int n, int kk) {
    GRID_STRIDE(r, (I)n) {
        const T* zr = z + r * kk;
        const T* tr = t + r * kk;
        T m = zr[0];
        for (int k = 1; k < kk; ++k) m = fmax(m, zr[k]);
        T s = 0, tsum = 0;
        for (int k = 0; k < kk; ++k) { s += exp(zr[k] - m); tsum += tr[k]; }
        const T log_s = log(s);
        T loss = 0;
        for (int k = 0; k < kk; ++k) {
            const T shifted = zr[k] - m;
            loss -= tr[k] * (shifted - log_s);
            gz[r * kk + k] = (exp(shifted - log_s) * tsum - tr[k]) / T(n);
        }
        row_loss[r] = loss;
    }
}

// y[n, p, q, ch] = max over the window; arg = i * kw + j of the first maximum (padding is -inf);
// a NaN is the maximum of its window (the first NaN), as NumPy's max and PyTorch's pooling give
template <typename T, typename I>
__global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y, signed char* __restrict__ arg,
                                GEOMETRY_ARGS) {
    GEOMETRY;
    const I total = (long long)g.n * g.oh * g.ow * g.c;
    GRID_STRIDE(k, total) {
        I r = k;
        const int ch = r % g.c; r /= g.c;
        const int q = r % g.ow; r /= g.ow;
        const int p = r % g.oh;
        const int n = r / g.oh;
        T best = neg_inf<T>();
        int best_at = 0;
        for (int i = 0; i < g.kh; ++i) {
            const int yy = p * g.sy + i - g.top;
            for (int j = 0; j < g.kw; ++j) {
                const int xx = q * g.sx + j - g.left;
                const T v = (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w)
                                ? x[(((I)n * g.h + yy) * g.w + xx) * g.c + ch]
                                : neg_inf<T>();
                if (v > best || (v != v && best == best)) { best = v; best_at = i * g.kw + j; }  // a NaN wins
            }
        }
        y[k] = best;
        arg[k] = (signed char)best_at;
    }
}

// gx[n, y, x, ch] = sum of gy over the windows whose winner was (y, x)
template <typename T, typename I>
__global__ void maxpool_backward(const T* __restrict__ gy, const signed char* __restrict__ arg,
                                 T* __restrict__ gx, GEOMETRY_ARGS) {
    GEOMETRY;
    const I total = (long long)g.n * g.h * g.w * g.c;
    GRID_STRIDE(k, total) {
        I r = k;
        const int ch = r % g.c; r /= g.c;
        const int xx = r % g.w; r /= g.w;
        const int y = r % g.h;
        const int n = r / g.h;
        T acc = 0;
        for (int i = 0; i < g.kh; ++i) {
            const int py = y + g.top - i;
            if (py < 0 || py % g.sy || py / g.sy >= g.oh) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int qx = xx + g.left - j;
                if (qx < 0 || qx % g.sx || qx / g.sx >= g.ow) continue;
                const I o = (((I)n * g.oh + py / g.sy) * g.ow + qx / g.sx) * g.c + ch;
                if (arg[o] == i * g.kw + j) acc += gy[o];
            }
        }
        gx[k] = acc;
    }
}

// Adam, in place, one pass: m, v <- moving averages of g, g^2; p -= alpha * m / (sqrt(v) + eps)
template <typename T, typename I>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                            T* __restrict__ v, I total, T alpha, T b1, T b2, T eps) {
    GRID_STRIDE(k, total) {
        const T gk = g[k];
        const T mk = m[k] + (T(1) - b1) * (gk - m[k]);
        const T vk = v[k] + (T(1) - b2) * (gk * gk - v[k]);
        m[k] = mk;
        v[k] = vk;
        p[k] -= alpha * mk / (sqrt(vk) + eps);
    }
}

// The weights' moving average, in place: ema <- m * ema + (1 - m) * p
template <typename T, typename I>
__global__ void ema_update(T* __restrict__ ema, const T* __restrict__ p, I total, T m,
                           T one_minus_m) {
    GRID_STRIDE(k, total) { ema[k] = ema[k] * m + p[k] * one_minus_m; }
}

// Inverted dropout from 32 raw bits per element: keep where bits >= threshold (a probability
// within 2^-33 of 1 - rate), y = x * scale where kept, else 0
template <typename T, typename I>
__global__ void dropout(const T* __restrict__ x, const unsigned int* __restrict__ bits,
                        T* __restrict__ y, bool* __restrict__ keep, I total,
                        unsigned int threshold, T scale) {
    GRID_STRIDE(k, total) {
        const bool kept = bits[k] >= threshold;
        keep[k] = kept;
        y[k] = kept ? x[k] * scale : T(0);
    }
}

// Dropout's gradient: gy * scale where the forward kept the element, else 0
template <typename T, typename I>
__global__ void dropout_backward(const T* __restrict__ gy, const bool* __restrict__ keep,
                                 T* __restrict__ gx, I total, T scale) {
    GRID_STRIDE(k, total) { gx[k] = keep[k] ? gy[k] * scale : T(0); }
}
