// What every minicnn .cu file shares. Defines no kernel: cuda_sources.source() puts this text in
// front of each of the others before NVRTC compiles it (one file per cupy.RawModule).
//
// Every kernel is templated on the float type T (float or double) and the index type I: int
// when every index fits (32-bit division is several times cheaper than 64-bit, and im2col does
// six per element), long long otherwise. Most are written as a grid-stride loop over their
// output, one thread per element.

#define GRID_STRIDE(i, total) \
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < (total); i += (I)blockDim.x * gridDim.x)
