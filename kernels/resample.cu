// Affine resampling of a batch of images x (N, H, W, C), each by its own transform t (N, 6), for
// the augmentation layers, as kernels/cpu/resample.py (the maths and its reference:
// minicnn/ops/resample.py). Output pixel (row, col) of image b reads the input point
//     xs = t0 col + t1 row + t2,  ys = t3 col + t4 row + t5   (in double, as the CPU kernel)
// by bilinear (4 taps) or nearest (1 tap) interpolation, outside points through the fill mode.
//
// The backward pass *scatters*: each output element adds its weighted gradient to the input
// pixels it read, with atomicAdd (a gather would have to invert the transform and every fold
// of it). Float atomics add in no fixed order, so gx may differ in its last bits run to run.

// fill modes, numbered as cuda.py's FILL_MODES: constant, nearest, reflect, mirror, wrap
#define FILL_CONSTANT 0

__device__ __forceinline__ long long positive_mod(long long i, long long n) {
    const long long r = i % n;
    return r < 0 ? r + n : r;
}

// Coordinate i mapped into [0, n) by the fill mode; -1 where "constant" reads the fill value
__device__ __forceinline__ int fold(long long i, int n, int mode) {
    switch (mode) {
    case FILL_CONSTANT: return (i >= 0 && i < n) ? (int)i : -1;
    case 1: return (int)(i < 0 ? 0 : (i >= n ? n - 1 : i));  // nearest: a a | a b c d | d d
    case 2: {  // reflect: d c b a | a b c d | d c b a
        const long long r = positive_mod(i, 2LL * n);
        return (int)(r >= n ? 2LL * n - 1 - r : r);
    }
    case 3: {  // mirror: d c b | a b c d | c b a
        if (n == 1) return 0;
        const long long r = positive_mod(i, 2LL * n - 2);
        return (int)(r >= n ? 2LL * n - 2 - r : r);
    }
    default: return (int)positive_mod(i, n);  // wrap: a b c d | a b c d
    }
}

// The taps output pixel (row, col) of image b reads: their rows, columns (-1: the fill value)
// and weights, in T as the CPU kernel rounds them. -> the number of taps (1 or 4)
template <typename T>
__device__ __forceinline__ int taps(const double* __restrict__ t, int b, int row, int col, int h,
                                    int w, int bilinear, int mode, int* r, int* q, T* wgt) {
    const double* tb = t + 6LL * b;
    const double xs = tb[0] * col + tb[1] * row + tb[2];
    const double ys = tb[3] * col + tb[4] * row + tb[5];
    if (!bilinear) {
        r[0] = fold((long long)rint(ys), h, mode);
        q[0] = fold((long long)rint(xs), w, mode);
        wgt[0] = T(1);
        return 1;
    }
    const double fx = floor(xs), fy = floor(ys);
    const long long q0 = (long long)fx, r0 = (long long)fy;
    const double ax = xs - fx, ay = ys - fy;
    r[0] = r[1] = fold(r0, h, mode);
    r[2] = r[3] = fold(r0 + 1, h, mode);
    q[0] = q[2] = fold(q0, w, mode);
    q[1] = q[3] = fold(q0 + 1, w, mode);
    wgt[0] = T((1 - ay) * (1 - ax));
    wgt[1] = T((1 - ay) * ax);
    wgt[2] = T(ay * (1 - ax));
    wgt[3] = T(ay * ax);
    return 4;
}

// y[b, row, col, ch] = sum over the taps of weight * x[b, r, q, ch] (fill_value where r or q < 0)
template <typename T, typename I>
__global__ void affine_resample(const T* __restrict__ x, const double* __restrict__ t,
                                T* __restrict__ y, int n, int h, int w, int c, int bilinear,
                                int mode, T fill) {
    const I total = (long long)n * h * w * c;
    GRID_STRIDE(k, total) {
        I rest = k;
        const int ch = rest % c; rest /= c;
        const int col = rest % w; rest /= w;
        const int row = rest % h;
        const int b = rest / h;
        int r[4], q[4];
        T wgt[4];
        const int count = taps(t, b, row, col, h, w, bilinear, mode, r, q, wgt);
        T acc = 0;
        for (int j = 0; j < count; ++j) {
            const T v = (r[j] < 0 || q[j] < 0) ? fill : x[(((I)b * h + r[j]) * w + q[j]) * c + ch];
            acc += wgt[j] * v;
        }
        y[k] = acc;
    }
}

// atomicAdd on double exists from compute capability 6.0; before that, a compare-and-swap loop
template <typename T>
__device__ __forceinline__ void atomic_add(T* at, T v) { atomicAdd(at, v); }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
template <>
__device__ __forceinline__ void atomic_add<double>(double* at, double v) {
    unsigned long long* bits = (unsigned long long*)at;
    unsigned long long seen = *bits, expected;
    do {
        expected = seen;
        seen = atomicCAS(bits, expected,
                         __double_as_longlong(v + __longlong_as_double(expected)));
    } while (seen != expected);
}
#endif

// The adjoint in x: gx (zeroed by the caller) += weight * gy[b, row, col, ch] at every tap that
// read an input pixel (the fill value takes nothing)
template <typename T, typename I>
__global__ void affine_resample_backward(const T* __restrict__ gy, const double* __restrict__ t,
                                         T* __restrict__ gx, int n, int h, int w, int c,
                                         int bilinear, int mode) {
    const I total = (long long)n * h * w * c;
    GRID_STRIDE(k, total) {
        I rest = k;
        const int ch = rest % c; rest /= c;
        const int col = rest % w; rest /= w;
        const int row = rest % h;
        const int b = rest / h;
        int r[4], q[4];
        T wgt[4];
        const int count = taps(t, b, row, col, h, w, bilinear, mode, r, q, wgt);
        const T g = gy[k];
        for (int j = 0; j < count; ++j) {
            if (r[j] >= 0 && q[j] >= 0)
                atomic_add(&gx[(((I)b * h + r[j]) * w + q[j]) * c + ch], wgt[j] * g);
        }
    }
}
