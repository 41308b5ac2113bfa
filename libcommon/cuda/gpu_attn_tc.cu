// gpu_attn_tc: the fused attention of gpu_attn.cu on tensor cores (warp matrix products, nvcuda::wmma), under the
// precisions GPU_BF16 (bf16 operands, products 16 x 16 x 16) and GPU_TF32 (TF32 operands, 16 x 16 x 8), with
// float32 accumulation, softmax, row statistics and gradients. The tiling, the skew as indexing, the dropout bits
// and the kernels' split are gpu_attn.cu's (read it first); what changes is that every product over the head
// dimension or over a tile's rows is a tensor-core product of tiles in shared memory:
//   scores    S = Q K^T (TB x TB) and the relative term R = Q Es^T (TB x 2 TB: the 2 TB - 1 rows of Er that the
//             tile's distances use, and one more, unused), then entry (r, c) is S[r, c] + R[r, r - c + TB - 1];
//             of R each warp computes and keeps only the band of columns its rows read (TC_BAND: 5 of 8 tiles);
//   forward   O += P V, P the dropped probabilities rounded to the operand type (FlashAttention's choice); O lives
//             in shared memory in float32, since the running max rescales it by rows;
//   backward  dP = dO V^T; dS and the dropped P per entry in float32, rounded to the operand type; dK += dS^T Q,
//             dV += P^T dO (per key tile), dQ += dS K + dS' Es (per query tile; dS' the skew of dS: dS'[r, e] =
//             dS[r, r + TB - 1 - e]), dEr's partials += dS^T Q per tile of distances (the keys of a query tile
//             at those distances: 2 TB rows). These sums stay in the warps' accumulators across tiles.
//             dS is computed once: the dK, dV kernel stores its tiles, rounded, in the workspace (FaArgs.dsw: a
//             chunk of heads at a time, so it stays bounded), and the dQ and dEr kernels read them. That is 8
//             products per pair of tiles instead of 14, and one exp and dropout draw per entry instead of three.
//             Without the room (HMT_GPU_FA_DS_MIB=0) the dQ and dEr kernels compute S, dP and R again themselves.
// Each block has TC_THREADS = 4 warps; warp w computes rows 16 w .. 16 w + 15 of every product (TB = 64 rows). For
// the softmax and the gradients two threads take a row r = tid / 2 and its columns c = tid % 2 + 2 u.
// Accuracy: the operands' rounding (8 or 11 significant bits); the tests state the tolerances against the CPU.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <type_traits>

#ifndef GPU_EMU
#include <cuda_bf16.h>
#include <mma.h>
#endif
#include "gpu_attn.cuh"
#include "gpu_mma.cuh"

namespace wmma = nvcuda::wmma;

#define TB 64 // rows of a query, key or distance tile
#define TC_THREADS 128

// the two operand types: S in shared memory, E the fragments' element type, K the product's depth
struct TcBf16 {
    typedef __nv_bfloat16 S;
    typedef __nv_bfloat16 E;
    enum { K = 16 };
    __device__ static S cvt(float x) { return __float2bfloat16_rn(x); }
};
struct TcTf32 {
    typedef float S;
    typedef wmma::precision::tf32 E;
    enum { K = 8 };
    __device__ static S cvt(float x) { return wmma::__float_to_tf32(x); }
};
template <class P> using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, P::K, float>;

// Shared memory pitches: operand rows of n elements padded by 16 bytes (wmma wants ldm a multiple of 16 bytes and
// tiles 32-byte aligned; the pad staggers the banks), float32 rows of n by 4 floats.
template <class P> __host__ __device__ constexpr int tc_ld(int n) { return n + 16 / (int)sizeof(typename P::S); }
__host__ __device__ constexpr int tc_ldf(int n) { return n + 4; }

// four operands at o as one store (8 bytes in bf16, 16 in TF32: o is that aligned, as every operand row of the
// kernels' tiles is 16-byte aligned and the four start at a multiple of 4)
template <class P> struct alignas(4 * sizeof(typename P::S)) TcFour {
    typename P::S e[4];
};
template <class P> __device__ static inline void tc_put4(typename P::S *o, float4 v)
{
    TcFour<P> f;
    f.e[0] = P::cvt(v.x), f.e[1] = P::cvt(v.y), f.e[2] = P::cvt(v.z), f.e[3] = P::cvt(v.w);
    *(TcFour<P> *)o = f;
}

// rows row0 .. row0+n-1 of src (row stride ld, HS columns) into dst (pitch ldd) as operands; zero rows outside
// [0, limit). Four floats per load (fa_tc_takes: rows 16-byte aligned), so more bytes are in flight per thread.
template <class P>
__device__ static void tc_load(typename P::S *dst, int ldd, const float *src, int ld, int row0, int n, int limit,
                               int HS)
{
    const int H4 = HS / 4;
    for (int x = threadIdx.x; x < n * H4; x += blockDim.x) {
        int r = x / H4, d = 4 * (x - r * H4), row = row0 + r;
        float4 v = {0.0f, 0.0f, 0.0f, 0.0f};
        if (row >= 0 && row < limit) v = *(const float4 *)(src + (size_t)row * ld + d);
        tc_put4<P>(dst + r * ldd + d, v);
    }
}

// One head's rows of q, k or v: float32 (f), or bfloat16 (h: FaArgs.q16, k16, v16) in their place
struct TcRows {
    const float *f;
    const uint16_t *h;
};
__device__ static inline TcRows tc_rows(const float *f, const uint16_t *h, size_t at)
{
    return TcRows{f ? f + at : NULL, h ? h + at : NULL};
}
struct alignas(16) TcBf16x8 {
    uint16_t e[8];
};

// tc_load from either: bfloat16 rows eight values a load (fa_tc_takes: 16-byte aligned; FaArgs.q16, k16, v16, and
// the copy of dout, dout16, all set under GPU_BF16 only, so the TF32 kernels are compiled without that path), stored
// as they are: the operands of their float32 values (P::cvt would give the same bits), one 16-byte store
template <class P>
__device__ static void tc_load(typename P::S *dst, int ldd, TcRows src, int ld, int row0, int n, int limit, int HS)
{
    if constexpr (std::is_same<P, TcBf16>::value) {
        if (src.h) {
            const int H8 = HS / 8;
            for (int x = threadIdx.x; x < n * H8; x += blockDim.x) {
                int r = x / H8, d = 8 * (x - r * H8), row = row0 + r;
                TcBf16x8 v = {};
                if (row >= 0 && row < limit) v = *(const TcBf16x8 *)(src.h + (size_t)row * ld + d);
                *(TcBf16x8 *)(dst + r * ldd + d) = v;
            }
            return;
        }
    }
    tc_load<P>(dst, ldd, src.f, ld, row0, n, limit, HS);
}

// the Er rows of distances m0 .. m0+n-1 (a.ers: distance m at row Tq-1-m) into dst as operands; zero where no
// query-key pair has the distance. In TF32 four floats per load, as tc_load; in bf16 from a.ers16, Er's bfloat16
// copy (gpu_attn.cu makes it whenever a bf16 kernel has Er), eight values per load.
template <class P>
__device__ static void tc_load_er(typename P::S *dst, int ldd, const FaArgs &a, int m0, int n, int HS)
{
    const int Tq = a.Tq;
    if constexpr (std::is_same<P, TcBf16>::value) {
        const int H8 = HS / 8;
        for (int x = threadIdx.x; x < n * H8; x += blockDim.x) {
            int e = x / H8, d = 8 * (x - e * H8), m = m0 + e;
            TcBf16x8 v = {};
            if (m >= 0 && m < Tq) v = *(const TcBf16x8 *)(a.ers16 + (size_t)(Tq - 1 - m) * HS + d);
            *(TcBf16x8 *)(dst + e * ldd + d) = v;
        }
        return;
    }
    const int H4 = HS / 4;
    for (int x = threadIdx.x; x < n * H4; x += blockDim.x) {
        int e = x / H4, d = 4 * (x - e * H4), m = m0 + e;
        float4 v = {0.0f, 0.0f, 0.0f, 0.0f};
        if (m >= 0 && m < Tq) v = *(const float4 *)(a.ers + (size_t)(Tq - 1 - m) * HS + d);
        tc_put4<P>(dst + e * ldd + d, v);
    }
}

// acc[n] += A B over depth K for the warp's 16 rows and NT column tiles: A (rows x K) row-major at pitch lda, or
// with AT stored transposed (K x rows, row-major); B (K x 16 NT) row-major at pitch ldb, or with BT stored
// transposed (16 NT x K, row-major: B = X^T)
template <class P, bool AT, bool BT, int NT>
__device__ static void tc_strip(FragAcc<P> (&acc)[NT], const typename P::S *A, int lda, const typename P::S *B,
                                int ldb, int K)
{
    typedef typename std::conditional<AT, wmma::col_major, wmma::row_major>::type LA;
    typedef typename std::conditional<BT, wmma::col_major, wmma::row_major>::type LB;
    const int w16 = (threadIdx.x >> 5) * 16;
    for (int k = 0; k < K; k += P::K) {
        wmma::fragment<wmma::matrix_a, 16, 16, P::K, typename P::E, LA> a;
        wmma::load_matrix_sync(a, AT ? A + (size_t)k * lda + w16 : A + (size_t)w16 * lda + k, lda);
        UNROLL for (int n = 0; n < NT; n++) {
            wmma::fragment<wmma::matrix_b, 16, 16, P::K, typename P::E, LB> b;
            wmma::load_matrix_sync(b, BT ? B + (size_t)16 * n * ldb + k : B + (size_t)k * ldb + 16 * n, ldb);
            wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

template <class P, int NT> __device__ static void tc_zero(FragAcc<P> (&acc)[NT])
{
    UNROLL for (int n = 0; n < NT; n++) wmma::fill_fragment(acc[n], 0.0f);
}

// the warp's rows of acc to (or from) the float32 matrix C at pitch ldc
template <class P, int NT> __device__ static void tc_store(float *C, int ldc, const FragAcc<P> (&acc)[NT])
{
    const int w16 = (threadIdx.x >> 5) * 16;
    UNROLL for (int n = 0; n < NT; n++)
        wmma::store_matrix_sync(C + (size_t)w16 * ldc + 16 * n, acc[n], ldc, wmma::mem_row_major);
}
template <class P, int NT> __device__ static void tc_load_acc(FragAcc<P> (&acc)[NT], const float *C, int ldc)
{
    const int w16 = (threadIdx.x >> 5) * 16;
    UNROLL for (int n = 0; n < NT; n++)
        wmma::load_matrix_sync(acc[n], C + (size_t)w16 * ldc + 16 * n, ldc, wmma::mem_row_major);
}

// C (TB x 16 NT, float32, pitch ldc) = A B^T: A and X (B = X^T) operand tiles at pitch ld, depth K
template <class P, int NT>
__device__ static void tc_product_t(float *C, int ldc, const typename P::S *A, const typename P::S *X, int ld, int K)
{
    FragAcc<P> acc[NT];
    tc_zero<P>(acc);
    tc_strip<P, false, true>(acc, A, ld, X, ld, K);
    tc_store<P>(C, ldc, acc);
}

// A skewed product's band: row r of a tile reads column r - c + TB - 1 (c < TB) of a TB x 2 TB product (R = Q Es^T,
// or the der kernel's scores over 2 TB keys), so the rows 16 w .. 16 w + 15 of warp w read only the TC_BAND columns
// from 16 w on. Each warp computes and stores just those (5 of the 8 column tiles), at band column
// tc_band(r, c) = (r % 16) - c + TB - 1 of its rows.
#define TC_BAND (TB + 16)
__device__ static inline int tc_band(int r, int c) { return (r & 15) - c + TB - 1; }

// Cb (TB x TC_BAND, float32, pitch tc_ldf(TC_BAND)): the warp's rows of A X^T over X's rows 16 w .. 16 w + TC_BAND - 1
template <class P>
__device__ static void tc_band_t(float *Cb, const typename P::S *A, const typename P::S *X, int ld, int K)
{
    tc_product_t<P, TC_BAND / 16>(Cb, tc_ldf(TC_BAND), A, X + (size_t)16 * (threadIdx.x >> 5) * ld, ld, K);
}

// the most keys any row of the query tile at i0 sees (the same in every thread)
__device__ static int tc_tile_keys(const int *n_keys, int i0, int Tq)
{
    int nk = 0;
    for (int i = i0; i < i0 + TB && i < Tq; i++) nk = n_keys[i] > nk ? n_keys[i] : nk;
    return nk;
}

// dS of entry (i, j) from its score s (before the scale) and dP = dout_i . v_j, and in *pd the dropped probability
// P * keep where kept (0 where the row does not see the key): as gpu_attn.cu's fa_grad_entries
__device__ static inline float tc_ds(const FaArgs &a, uint64_t key, int i, int j, bool valid, float s, float dp,
                                     float lse_i, float D_i, float *pd)
{
    float p = valid ? expf(s * a.scale - lse_i) : 0.0f;
    bool kept = valid && (!a.drop || drop_keep(key, a.thr, (size_t)i * a.Tk + j));
    float g = kept ? dp * a.keep : 0.0f;
    *pd = kept ? p * a.keep : 0.0f;
    return p * (g - D_i);
}

__device__ static void tc_row_stats(const FaArgs &a, int bh, int i, float *lse_i, float *D_i)
{
    *lse_i = i < a.Tq ? a.lse[(size_t)bh * a.Tq + i] : 0.0f;
    *D_i = i < a.Tq ? a.D[(size_t)bh * a.Tq + i] : 0.0f;
}

// A key tile's scores and gradients for a query tile, both loaded (Qs, Gs = dout; Ks, Vs; Es with Er): S = Q K^T,
// dP = dO V^T and R = Q Es^T (its band; R stays as it is without Er: zero), then the thread's entries of row r (query i, nk
// keys seen; keys j0 + c for its columns c = half + 2 u): ds[u], and pd[u] the dropped probability
template <class P, int HS>
__device__ static void tc_grads(float *ds, float *pd, float *Ss, float *dPs, float *Rs, const typename P::S *Qs,
                                const typename P::S *Gs, const typename P::S *Ks, const typename P::S *Vs,
                                const typename P::S *Es, const FaArgs &a, uint64_t key, int i, int j0, int nk,
                                float lse_i, float D_i)
{
    constexpr int LO = tc_ld<P>(HS), LS = tc_ldf(TB), LB = tc_ldf(TC_BAND);
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    tc_product_t<P, TB / 16>(Ss, LS, Qs, Ks, LO, HS);
    tc_product_t<P, TB / 16>(dPs, LS, Gs, Vs, LO, HS);
    if (a.ers) tc_band_t<P>(Rs, Qs, Es, LO, HS);
    __syncthreads();
    UNROLL for (int u = 0; u < TB / 2; u++) {
        int c = half + 2 * u, j = j0 + c;
        float s = Ss[r * LS + c] + Rs[r * LB + tc_band(r, c)];
        ds[u] = tc_ds(a, key, i, j, j < nk, s, dPs[r * LS + c], lse_i, D_i, &pd[u]);
    }
}

__device__ static void tc_fill0(float *x, int n)
{
    for (int t = threadIdx.x; t < n; t += blockDim.x) x[t] = 0.0f;
}

// dst[row0 + r, h HS + d] += scale * src[r, d] (src float32 at pitch lds) for the rows r < TB below `limit`; fresh:
// dst taken as zeros (FaArgs.fresh), not read
__device__ static void tc_add_rows(float *dst, int ld, int row0, int limit, const float *src, int lds, int HS,
                                   float scale, int fresh)
{
    for (int x = threadIdx.x; x < TB * HS; x += blockDim.x) {
        int r = x / HS, d = x - r * HS;
        float *o = dst + (size_t)(row0 + r) * ld + d;
        if (row0 + r < limit) *o = (fresh ? 0.0f : *o) + scale * src[r * lds + d];
    }
}

// the head of a block (the backward runs its heads a chunk at a time: FaArgs.bh0)
__device__ static inline int tc_bh(const FaArgs &a) { return a.bh0 + (int)blockIdx.x; }

// The dS tiles of one head: every query tile's row of key tiles (Tq and Tk padded to whole tiles), or with the
// causal promise only the tiles jt <= it, row after row (query tile it's from tile it (it + 1) / 2 on)
__host__ __device__ static inline size_t tc_ds_tiles(const FaArgs &a)
{
    const size_t nqt = (size_t)(a.Tq + TB - 1) / TB, nkt = (size_t)(a.Tk + TB - 1) / TB;
    return a.causal ? nqt * (nqt + 1) / 2 : nqt * nkt;
}

// The dS tile of query tile it and key tile jt of the block's head in FaArgs.dsw: TB x TB operands, rows of TB.
// Only the tiles the dK, dV kernel visits are written: those of key tiles below the query tile's tc_tile_keys
// (with the causal promise, jt <= it).
template <class P> __device__ static typename P::S *tc_ds_tile(const FaArgs &a, int it, int jt)
{
    const size_t row = a.causal ? (size_t)it * (it + 1) / 2 : (size_t)it * ((a.Tk + TB - 1) / TB);
    return (typename P::S *)a.dsw + ((size_t)blockIdx.x * tc_ds_tiles(a) + row + jt) * (TB * TB);
}

// a TB x TB tile of operands from src (pitch lds) to dst (pitch ldd), 16 bytes a load (both pitches and bases
// 16-byte aligned); src NULL writes zeros
struct alignas(16) Tc16B {
    uint32_t w[4];
};
template <class P> __device__ static void tc_copy_tile(typename P::S *dst, int ldd, const typename P::S *src, int lds)
{
    constexpr int PER = 16 / (int)sizeof(typename P::S), RW = TB / PER;
    for (int x = threadIdx.x; x < TB * RW; x += blockDim.x) {
        int r = x / RW, c = (x - r * RW) * PER;
        Tc16B v = {};
        if (src) v = *(const Tc16B *)(src + (size_t)r * lds + c);
        *(Tc16B *)(dst + (size_t)r * ldd + c) = v;
    }
}

// ---- forward ---------------------------------------------------------------------------------------------------

// a kernel's shared memory: `rows` operand rows of HS (pitch tc_ld), then TB float32 rows of `fpitch` floats (the
// sum of its float32 buffers' pitches)
template <class P, int HS> static size_t tc_smem(int rows, int fpitch)
{
    return (size_t)rows * tc_ld<P>(HS) * sizeof(typename P::S) + (size_t)TB * fpitch * sizeof(float);
}

// Q, K, V, Es (2 TB rows); S, R's bands, O
template <class P, int HS> static size_t tc_fwd_smem(void)
{
    return tc_smem<P, HS>(5 * TB, tc_ldf(TB) + tc_ldf(TC_BAND) + tc_ldf(HS));
}

// block (b*NH + h, query tile): o rows of the tile and their lse, as gpu_attn.cu's fa_fwd_k
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_fwd_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LS = tc_ldf(TB), LB = tc_ldf(TC_BAND), LF = tc_ldf(HS), LP = tc_ld<P>(TB);
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *Ks = Qs + TB * LO, *Vs = Ks + TB * LO, *Es = Vs + TB * LO; // Es: 2 TB rows
    float *Ss = (float *)(Es + 2 * TB * LO), *Rs = Ss + TB * LS, *Os = Rs + TB * LB; // Rs: R's bands
    S *Ps = (S *)Ss; // the tile's dropped probabilities, over the scores once they are read
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, i0 = fa_last_first() * TB, i = i0 + r;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const TcRows vh = tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS);
    tc_load<P>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
    tc_fill0(Os, TB * LF);
    if (!a.ers) tc_fill0(Rs, TB * LB); // no relative term: R stays zero
    const int nk = i < a.Tq ? a.n_keys[i] : 0, nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
    const uint64_t key = fa_key(a, bh);
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 < nkt; j0 += TB) {
        __syncthreads(); // the last tile's K, V, Es and P are read
        tc_load<P>(Ks, LO, kh, a.ldk, j0, TB, a.Tk, HS);
        tc_load<P>(Vs, LO, vh, a.ldv, j0, TB, a.Tk, HS);
        if (a.ers) tc_load_er<P>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        __syncthreads();
        tc_product_t<P, TB / 16>(Ss, LS, Qs, Ks, LO, HS);
        if (a.ers) tc_band_t<P>(Rs, Qs, Es, LO, HS);
        __syncthreads();
        float s[TB / 2], mx = -INFINITY;
        UNROLL for (int u = 0; u < TB / 2; u++) {
            int c = half + 2 * u;
            float v = Ss[r * LS + c] + Rs[r * LB + tc_band(r, c)];
            s[u] = j0 + c < nk ? v * a.scale : -INFINITY;
            mx = fmaxf(mx, s[u]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)); // the row's two threads
        float mn = fmaxf(m, mx), corr = mn == -INFINITY ? 1.0f : expf(m - mn), sum = 0.0f;
        UNROLL for (int u = 0; u < TB / 2; u++) {
            int j = j0 + half + 2 * u;
            float p = s[u] == -INFINITY ? 0.0f : expf(s[u] - mn);
            sum += p;
            int kept = a.drop ? drop_keep(key, a.thr, (size_t)i * a.Tk + j) : 1;
            s[u] = kept ? p * a.keep : 0.0f;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum, m = mn;
        for (int d = half; d < HS; d += 2) Os[r * LF + d] *= corr;
        __syncthreads(); // every score is read: P goes over them
        UNROLL for (int u = 0; u < TB / 2; u++) Ps[r * LP + half + 2 * u] = P::cvt(s[u]);
        __syncthreads();
        FragAcc<P> o[HS / 16];
        tc_load_acc<P>(o, Os, LF);
        tc_strip<P, false, false>(o, Ps, LP, Vs, LO, TB);
        tc_store<P>(Os, LF, o);
    }
    __syncthreads(); // O is stored
    if (i < a.Tq) {
        float *orow = a.o + ((size_t)b * a.Tq + i) * a.C + h * HS;
        for (int d = half; d < HS; d += 2) orow[d] = Os[r * LF + d] / l;
        if (half == 0) a.lse[(size_t)bh * a.Tq + i] = m + logf(l);
    }
}

// ---- forward on fragments in registers (mma.sync; bf16; HMT_GPU_FA_MMA=1) ---------------------------------------
// The same tiles, skew and dropout bits as tc_fwd_k, but each warp keeps its 16 rows' scores, probabilities and
// output in registers across the key tiles (gpu_mma.cuh's layout), as FlashAttention 2 does: S = Q K^T straight
// into the accumulators; the relative term's band (16 x TC_BAND) through the warp's own shared memory, since the
// skew moves entries across lanes; the online softmax on the lanes' rows (each row lives in the 4 lanes of a
// group: two shuffles make its maximum and sum); P, rounded and paired, is the A operand of P V without a store;
// O is rescaled in registers. Only the block's Q, K, V and Er rows go through shared memory, and one barrier pair
// per key tile orders them. Per block: Q, K, V, Es as tc_fwd_k, and 4 x 16 x
// tc_ldf(TC_BAND) floats of bands (66 KiB at head size 64: three blocks per H100 SM, against tc_fwd_k's two).

template <int HS> static size_t mma_fwd_smem(void)
{
    return tc_smem<TcBf16, HS>(5 * TB, tc_ldf(TC_BAND));
}

// Fragments from operand tiles in shared memory by ldmatrix (gpu_mma.cuh mma_ldm; every row address 16-byte
// aligned: pitches tc_ld of 16, 32, 48, 64 and TB elements are multiples of 8, and r0, k0, n0 multiples of 8).
// Lane l addresses row l % 8 of 8 x 8 tile l / 8.
// A (16 x 16) of a row-major tile at rows r0, columns k0 (pitch ld): tiles (r0, k0), (r0 + 8, k0), (r0, k0 + 8),
// (r0 + 8, k0 + 8)
__device__ static inline void mma_ld_a(uint32_t f[4], const __nv_bfloat16 *p, int ld, int r0, int k0)
{
    const int lane = threadIdx.x & 31;
    mma_ldm<false>(f, p + (size_t)(r0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * ld + k0 + 8 * (lane >> 4));
}
// A of the transpose of a tile, A[r][k] = p[(k0 + k) * ld + r0 + r]: the stored tiles (k0, r0), (k0, r0 + 8),
// (k0 + 8, r0), (k0 + 8, r0 + 8), transposed
__device__ static inline void mma_ld_at(uint32_t f[4], const __nv_bfloat16 *p, int ld, int r0, int k0)
{
    const int lane = threadIdx.x & 31;
    mma_ldm<true>(f, p + (size_t)(k0 + (lane & 7) + 8 * (lane >> 4)) * ld + r0 + 8 * ((lane >> 3) & 1));
}
// B (16 x 8) of column tiles n0 and n0 + 8 (f[0], f[1]) of a tile stored as B^T, row n holding column n:
// B[k][n] = p[(n0 + n) * ld + k0 + k]: the stored tiles (n0, k0), (n0, k0 + 8), (n0 + 8, k0), (n0 + 8, k0 + 8)
__device__ static inline void mma_ld_bt2(uint32_t f[2][2], const __nv_bfloat16 *p, int ld, int n0, int k0)
{
    const int lane = threadIdx.x & 31;
    uint32_t r[4];
    mma_ldm<false>(r, p + (size_t)(n0 + (lane & 7) + 8 * (lane >> 4)) * ld + k0 + 8 * ((lane >> 3) & 1));
    f[0][0] = r[0], f[0][1] = r[1], f[1][0] = r[2], f[1][1] = r[3];
}
// B of column tiles n0 and n0 + 8 of a row-major tile, B[k][n] = p[(k0 + k) * ld + n0 + n]: the stored tiles
// (k0, n0), (k0 + 8, n0), (k0, n0 + 8), (k0 + 8, n0 + 8), transposed
__device__ static inline void mma_ld_b2(uint32_t f[2][2], const __nv_bfloat16 *p, int ld, int n0, int k0)
{
    const int lane = threadIdx.x & 31;
    uint32_t r[4];
    mma_ldm<true>(r, p + (size_t)(k0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * ld + n0 + 8 * (lane >> 4));
    f[0][0] = r[0], f[0][1] = r[1], f[1][0] = r[2], f[1][1] = r[3];
}

template <int N> __device__ static inline void mma_zero(float (&c)[N][4])
{
    UNROLL for (int n = 0; n < N; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
}

// The warp's scores before the scale, S + R with R = Q Es^T skewed: keys 8 n + 2 t (+1) of its query rows 16 w + g
// (+ 8) against a key tile. S = Q K^T and R's band (Es rows from 16 w on) share Q's fragments; the band goes
// through the warp's 16 rows of Rw, since the skew moves entries across lanes: entry (r, c) reads band column
// tc_band(r, c). Es NULL: no relative term. Qs, Ks (TB rows) and Es (2 TB) are operand tiles at pitch tc_ld(HS).
template <int HS>
__device__ static void mma_scores(float (&s)[TB / 8][4], const __nv_bfloat16 *Qs, const __nv_bfloat16 *Ks,
                                  const __nv_bfloat16 *Es, float *Rw)
{
    constexpr int LO = tc_ld<TcBf16>(HS), LB = tc_ldf(TC_BAND);
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w16 = 16 * (threadIdx.x >> 5);
    float rb[TC_BAND / 8][4];
    mma_zero(s), mma_zero(rb);
    UNROLL for (int kk = 0; kk < HS / 16; kk++) {
        uint32_t qa[4];
        mma_ld_a(qa, Qs, LO, w16, 16 * kk);
        UNROLL for (int n = 0; n < TB / 8; n += 2) {
            uint32_t kb[2][2];
            mma_ld_bt2(kb, Ks, LO, 8 * n, 16 * kk);
            mma_bf16(s[n], qa, kb[0], s[n]), mma_bf16(s[n + 1], qa, kb[1], s[n + 1]);
        }
        if (Es)
            UNROLL for (int n = 0; n < TC_BAND / 8; n += 2) {
                uint32_t eb[2][2];
                mma_ld_bt2(eb, Es, LO, w16 + 8 * n, 16 * kk);
                mma_bf16(rb[n], qa, eb[0], rb[n]), mma_bf16(rb[n + 1], qa, eb[1], rb[n + 1]);
            }
    }
    if (!Es) return;
    __syncwarp(); // the last tile's band is read
    UNROLL for (int n = 0; n < TC_BAND / 8; n++)
        UNROLL for (int q = 0; q < 4; q++) Rw[(g + 8 * (q >> 1)) * LB + 8 * n + 2 * t + (q & 1)] = rb[n][q];
    __syncwarp();
    UNROLL for (int n = 0; n < TB / 8; n++)
        UNROLL for (int q = 0; q < 4; q++) {
            int r = g + 8 * (q >> 1), c = 8 * n + 2 * t + (q & 1);
            s[n][q] += Rw[r * LB + r - c + TB - 1];
        }
}

// block (b*NH + h, query tile): o rows of the tile and their lse, as tc_fwd_k (bf16 operands)
template <int HS> __global__ __launch_bounds__(TC_THREADS) static void mma_fwd_k(FaArgs a)
{
    typedef __nv_bfloat16 S;
    constexpr int LO = tc_ld<TcBf16>(HS), LB = tc_ldf(TC_BAND), NO = HS / 8;
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *Ks = Qs + TB * LO, *Vs = Ks + TB * LO, *Es = Vs + TB * LO; // Es: 2 TB rows
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w16 = 16 * warp;
    float *Rw = (float *)(Es + 2 * TB * LO) + w16 * LB; // the warp's 16 rows of R's band
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, i0 = fa_last_first() * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const TcRows vh = tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS);
    tc_load<TcBf16>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
    __syncthreads();
    int irow[2], nk[2]; // the lane's two rows: w16 + g and w16 + g + 8 of the tile
    UNROLL for (int x = 0; x < 2; x++) irow[x] = i0 + w16 + g + 8 * x, nk[x] = irow[x] < a.Tq ? a.n_keys[irow[x]] : 0;
    const int nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
    const uint64_t key = fa_key(a, bh);
    float o[NO][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // l: this lane's share of the row sums
    mma_zero(o);
    for (int j0 = 0; j0 < nkt; j0 += TB) {
        __syncthreads(); // the last tile's K, V and Es are read
        tc_load<TcBf16>(Ks, LO, kh, a.ldk, j0, TB, a.Tk, HS);
        tc_load<TcBf16>(Vs, LO, vh, a.ldv, j0, TB, a.Tk, HS);
        if (a.ers) tc_load_er<TcBf16>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        __syncthreads();
        float s[TB / 8][4]; // keys 8 n + 2 t (+1) of rows g, g + 8
        mma_scores<HS>(s, Qs, Ks, a.ers ? Es : NULL, Rw);
        UNROLL for (int x = 0; x < 2; x++) { // the online softmax of row x (entries q = 2 x, 2 x + 1)
            float mx = -INFINITY;
            UNROLL for (int n = 0; n < TB / 8; n++)
                UNROLL for (int e = 0; e < 2; e++) {
                    float &v = s[n][2 * x + e];
                    v = j0 + 8 * n + 2 * t + e < nk[x] ? v * a.scale : -INFINITY;
                    mx = fmaxf(mx, v);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mn = fmaxf(m[x], mx), corr = mn == -INFINITY ? 1.0f : expf(m[x] - mn), sum = 0.0f;
            UNROLL for (int n = 0; n < TB / 8; n++)
                UNROLL for (int e = 0; e < 2; e++) {
                    float &v = s[n][2 * x + e];
                    float p = v == -INFINITY ? 0.0f : expf(v - mn);
                    sum += p;
                    int kept = a.drop ? drop_keep(key, a.thr, (size_t)irow[x] * a.Tk + j0 + 8 * n + 2 * t + e) : 1;
                    v = kept ? p * a.keep : 0.0f;
                }
            l[x] = l[x] * corr + sum, m[x] = mn;
            UNROLL for (int n = 0; n < NO; n++) o[n][2 * x] *= corr, o[n][2 * x + 1] *= corr;
        }
        UNROLL for (int kk = 0; kk < TB / 16; kk++) { // O += P V over keys 16 kk .. 16 kk + 15
            uint32_t pa[4] = {mma_pack(s[2 * kk][0], s[2 * kk][1]), mma_pack(s[2 * kk][2], s[2 * kk][3]),
                              mma_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              mma_pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            UNROLL for (int n = 0; n < NO; n += 2) {
                uint32_t vb[2][2];
                mma_ld_b2(vb, Vs, LO, 8 * n, 16 * kk);
                mma_bf16(o[n], pa, vb[0], o[n]), mma_bf16(o[n + 1], pa, vb[1], o[n + 1]);
            }
        }
    }
    UNROLL for (int x = 0; x < 2; x++) {
        float lx = l[x] + __shfl_xor_sync(0xffffffffu, l[x], 1);
        lx += __shfl_xor_sync(0xffffffffu, lx, 2);
        if (irow[x] >= a.Tq) continue;
        float *orow = a.o + ((size_t)b * a.Tq + irow[x]) * a.C + h * HS;
        UNROLL for (int n = 0; n < NO; n++)
            orow[8 * n + 2 * t] = o[n][2 * x] / lx, orow[8 * n + 2 * t + 1] = o[n][2 * x + 1] / lx;
        if (t == 0) a.lse[(size_t)bh * a.Tq + irow[x]] = m[x] + logf(lx);
    }
}

// one warp's product through the fragments (gpu.h gpu_mma_check): mode 0 the instruction and 1 its shuffle reference
// on fragments loaded from row-major a, b, c as gpu_mma.cuh lays them out; 2 the instruction on fragments that
// ldmatrix loads from row-major copies in shared memory (mma_ld_a, mma_ld_b2), 3 from transposed copies (mma_ld_at,
// mma_ld_bt2): tiles of 16 x 16 at a pitch of 24, the second column tile of B zero
__global__ static void mma_check_k(float *d, const float *a, const float *b, const float *c, int mode)
{
    alignas(16) __shared__ __nv_bfloat16 sa[16 * 24], sb[16 * 24];
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint32_t af[4], bf[2];
    float cf[4], df[4];
    for (int q = 0; q < 4; q++) {
        int row = g + 8 * (q & 1), col = 2 * t + 8 * (q >> 1);
        af[q] = mma_pack(a[row * 16 + col], a[row * 16 + col + 1]);
        cf[q] = c[(g + 8 * (q >> 1)) * 8 + 2 * t + (q & 1)];
    }
    for (int q = 0; q < 2; q++) bf[q] = mma_pack(b[(2 * t + 8 * q) * 8 + g], b[(2 * t + 8 * q + 1) * 8 + g]);
    if (mode >= 2) {
        for (int x = lane; x < 16 * 16; x += 32) {
            int r = x / 16, k = x % 16; // a[r][k]; b[k][n] for n = k here read as b[r][k] when k < 8
            sa[(mode == 2 ? r : k) * 24 + (mode == 2 ? k : r)] = __float2bfloat16_rn(a[r * 16 + k]);
            float bv = k < 8 ? b[r * 8 + k] : 0.0f; // B[r][k]: row r = depth, column k
            sb[(mode == 2 ? r : k) * 24 + (mode == 2 ? k : r)] = __float2bfloat16_rn(bv);
        }
        __syncwarp();
        uint32_t b2[2][2];
        if (mode == 2)
            mma_ld_a(af, sa, 24, 0, 0), mma_ld_b2(b2, sb, 24, 0, 0);
        else
            mma_ld_at(af, sa, 24, 0, 0), mma_ld_bt2(b2, sb, 24, 0, 0);
        bf[0] = b2[0][0], bf[1] = b2[0][1];
        uint32_t z0 = b2[1][0] | b2[1][1]; // the zero column tile
        if (z0 != 0) cf[0] = NAN; // shows in d
    }
    if (mode == 1)
        mma_bf16_ref(df, af, bf, cf);
    else
        mma_bf16(df, af, bf, cf);
    for (int q = 0; q < 4; q++) d[(g + 8 * (q >> 1)) * 8 + 2 * t + (q & 1)] = df[q];
}

void gpu_mma_check(float *d, const float *a, const float *b, const float *c, int mode)
{
    const char *op = "gpu_mma_check";
    if (!gpu_enter(op)) return;
    LAUNCH(mma_check_k, 1, 32)(d, a, b, c, mode);
    gpu_launched(op);
}

// ---- backward --------------------------------------------------------------------------------------------------

// dk, dv and dq: the same buffers: K, V, Q, dO, Es (2 TB rows); S, dP, R's bands
template <class P, int HS> static size_t tc_bwd_smem(void)
{
    return tc_smem<P, HS>(6 * TB, 2 * tc_ldf(TB) + tc_ldf(TC_BAND));
}

// block (b*NH + h, key tile): dk += scale sum_i dS_ij q_i, dv += sum_i PD_ij dout_i over the query tiles in order;
// with FaArgs.dsw, each tile of dS (as its products read it) into its place there
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_dkdv_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LS = tc_ldf(TB), LB = tc_ldf(TC_BAND), LF = tc_ldf(HS), LP = tc_ld<P>(TB);
    DYN_SMEM(sm);
    S *Ks = (S *)sm, *Vs = Ks + TB * LO, *Qs = Vs + TB * LO, *Gs = Qs + TB * LO, *Es = Gs + TB * LO;
    float *Ss = (float *)(Es + 2 * TB * LO), *dPs = Ss + TB * LS, *Rs = dPs + TB * LS;
    S *dSb = (S *)Ss, *PDb = (S *)dPs; // over the scores and dP once they are read
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, j0 = blockIdx.y * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    const TcRows gh = tc_rows(a.dout, a.dout16, (size_t)b * a.Tq * a.C + h * HS);
    tc_load<P>(Ks, LO, tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS), a.ldk, j0, TB, a.Tk, HS);
    tc_load<P>(Vs, LO, tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS), a.ldv, j0, TB, a.Tk, HS);
    if (!a.ers) tc_fill0(Rs, TB * LB); // no relative term: R stays zero
    const uint64_t key = fa_key(a, bh);
    FragAcc<P> gk[HS / 16], gv[HS / 16];
    tc_zero<P>(gk), tc_zero<P>(gv);
    for (int i0 = 0; i0 < a.Tq; i0 += TB) {
        if (tc_tile_keys(a.n_keys, i0, a.Tq) <= j0) continue; // no row of the tile sees these keys
        __syncthreads();                                      // the last tile is read
        tc_load<P>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
        tc_load<P>(Gs, LO, gh, a.C, i0, TB, a.Tq, HS);
        if (a.ers) tc_load_er<P>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        __syncthreads();
        const int i = i0 + r, nk = i < a.Tq ? a.n_keys[i] : 0;
        float lse_i, D_i, ds[TB / 2], pd[TB / 2];
        tc_row_stats(a, bh, i, &lse_i, &D_i);
        tc_grads<P, HS>(ds, pd, Ss, dPs, Rs, Qs, Gs, Ks, Vs, Es, a, key, i, j0, nk, lse_i, D_i);
        __syncthreads(); // the scores and dP are read
        UNROLL for (int u = 0; u < TB / 2; u++) {
            int c = half + 2 * u;
            dSb[r * LP + c] = P::cvt(ds[u]), PDb[r * LP + c] = P::cvt(pd[u]);
        }
        __syncthreads();
        if (a.dsw) tc_copy_tile<P>(tc_ds_tile<P>(a, i0 / TB, blockIdx.y), TB, dSb, LP); // read-only, as the strips
        tc_strip<P, true, false>(gk, dSb, LP, Qs, LO, TB); // the warp's keys: columns of dS
        tc_strip<P, true, false>(gv, PDb, LP, Gs, LO, TB);
    }
    __syncthreads(); // the buffers are read: the sums go through them
    float *Gk = Ss, *Gv = Rs;
    tc_store<P>(Gk, LF, gk), tc_store<P>(Gv, LF, gv);
    __syncthreads();
    tc_add_rows(a.dk + (size_t)b * a.Tk * a.ldk + h * HS, a.ldk, j0, a.Tk, Gk, LF, HS, a.scale, a.fresh);
    tc_add_rows(a.dv + (size_t)b * a.Tk * a.ldv + h * HS, a.ldv, j0, a.Tk, Gv, LF, HS, 1.0f, a.fresh);
}

// dSk (TB x TC_BAND at pitch tc_ld(TC_BAND)) = the bands of dS's skew dS'[r, e] = dS[r, r + TB - 1 - e], zero
// where that key is outside the tile: band column e' is e = e' + 16 w, and c = tc_band(r, e') is the key's column
// in dSb (TB x TB at pitch tc_ld(TB)). Each thread writes row threadIdx.x / 2, every other column.
template <class P> __device__ static void tc_skew(typename P::S *dSk, const typename P::S *dSb)
{
    constexpr int LP = tc_ld<P>(TB), LK = tc_ld<P>(TC_BAND);
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    for (int e = half; e < TC_BAND; e += 2) {
        int c = tc_band(r, e);
        dSk[r * LK + e] = c >= 0 && c < TB ? dSb[r * LP + c] : P::cvt(0.0f);
    }
}

// A key tile's share of dq, dS in dSb: gq += dS K (+ dS' Es with Er, dS' skewed into dSk first). Ks, Es, dSb are
// loaded and barriered; dSk is the skew's room.
template <class P, int HS>
__device__ static void tc_dq_tile(FragAcc<P> (&gq)[HS / 16], const typename P::S *dSb, typename P::S *dSk,
                                  const typename P::S *Ks, const typename P::S *Es, bool er)
{
    constexpr int LO = tc_ld<P>(HS), LP = tc_ld<P>(TB), LK = tc_ld<P>(TC_BAND);
    if (er) {
        tc_skew<P>(dSk, dSb);
        __syncthreads();
    }
    tc_strip<P, false, false>(gq, dSb, LP, Ks, LO, TB);
    if (er) // the warp's rows of dS' Es: only Es rows 16 w .. 16 w + TC_BAND - 1 meet its band
        tc_strip<P, false, false>(gq, dSk, LK, Es + (size_t)16 * (threadIdx.x >> 5) * LO, LO, TC_BAND);
}

// the dq kernels' end: dq rows of query tile i0 += scale gq, through `room` (TB x tc_ldf(HS) floats of shared
// memory the kernel no longer reads)
template <class P, int HS>
__device__ static void tc_dq_store(const FaArgs &a, int b, int h, int i0, const FragAcc<P> (&gq)[HS / 16], float *room)
{
    __syncthreads(); // the buffers are read
    tc_store<P>(room, tc_ldf(HS), gq);
    __syncthreads();
    tc_add_rows(a.dq + (size_t)b * a.Tq * a.ldq + h * HS, a.ldq, i0, a.Tq, room, tc_ldf(HS), HS, a.scale, a.fresh);
}

// the dEr kernels' end: part[bh, Tq-1-m] = scale ge's row m - m0 for the tile's distances m, through `room` (as
// tc_dq_store's)
template <class P, int HS>
__device__ static void tc_der_store(const FaArgs &a, int bh, int m0, const FragAcc<P> (&ge)[HS / 16], float *room)
{
    constexpr int LF = tc_ldf(HS);
    __syncthreads(); // the buffers are read
    tc_store<P>(room, LF, ge);
    __syncthreads();
    for (int x = threadIdx.x; x < TB * HS; x += blockDim.x) {
        int c = x / HS, d = x - c * HS, m = m0 + c;
        if (m < a.Tq) a.part[((size_t)bh * a.Tq + (a.Tq - 1 - m)) * HS + d] = a.scale * room[c * LF + d];
    }
}

// block (b*NH + h, query tile): dq += scale sum_j dS_ij (k_j + Er[L-1-(i-j)]) over the key tiles in order
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_dq_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LS = tc_ldf(TB), LB = tc_ldf(TC_BAND), LP = tc_ld<P>(TB);
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *Gs = Qs + TB * LO, *Ks = Gs + TB * LO, *Vs = Ks + TB * LO, *Es = Vs + TB * LO;
    float *Ss = (float *)(Es + 2 * TB * LO), *dPs = Ss + TB * LS, *Rs = dPs + TB * LS;
    S *dSb = (S *)Ss, *dSk = (S *)Rs; // dS over the scores, its skew dS' (bands, as R's) over R
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, i0 = fa_last_first() * TB, i = i0 + r;
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const TcRows vh = tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS);
    tc_load<P>(Qs, LO, tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS), a.ldq, i0, TB, a.Tq, HS);
    tc_load<P>(Gs, LO, tc_rows(a.dout, a.dout16, (size_t)b * a.Tq * a.C + h * HS), a.C, i0, TB, a.Tq, HS);
    const int nk = i < a.Tq ? a.n_keys[i] : 0, nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
    const uint64_t key = fa_key(a, bh);
    float lse_i, D_i;
    tc_row_stats(a, bh, i, &lse_i, &D_i);
    if (!a.ers) tc_fill0(Rs, TB * LB); // no relative term: R stays zero (dS' is only written with one)
    FragAcc<P> gq[HS / 16];
    tc_zero<P>(gq);
    for (int j0 = 0; j0 < nkt; j0 += TB) {
        __syncthreads(); // the last tile is read
        tc_load<P>(Ks, LO, kh, a.ldk, j0, TB, a.Tk, HS);
        tc_load<P>(Vs, LO, vh, a.ldv, j0, TB, a.Tk, HS);
        if (a.ers) tc_load_er<P>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        __syncthreads();
        float ds[TB / 2], pd[TB / 2];
        tc_grads<P, HS>(ds, pd, Ss, dPs, Rs, Qs, Gs, Ks, Vs, Es, a, key, i, j0, nk, lse_i, D_i);
        __syncthreads(); // the scores, dP and R are read
        UNROLL for (int u = 0; u < TB / 2; u++) dSb[r * LP + half + 2 * u] = P::cvt(ds[u]);
        __syncthreads();
        tc_dq_tile<P, HS>(gq, dSb, dSk, Ks, Es, a.ers);
    }
    tc_dq_store<P, HS>(a, b, h, i0, gq, Ss);
}

// Q, dO, K and V (2 TB rows each), Es; the scores' and dP's bands, R
template <class P, int HS> static size_t tc_der_smem(void)
{
    return tc_smem<P, HS>(7 * TB, 2 * tc_ldf(TC_BAND) + tc_ldf(TB));
}

// block (b*NH + h, distance tile m0 .. m0+TB-1): part[bh, Tq-1-m] = scale sum_i dS_{i, i-m} q_i over the query
// tiles in order. Entry (r, c): distance m0 + c, key i0 + r - m0 - c, row r - c + TB - 1 of the 2 TB keys loaded
// from jlo = i0 - m0 - (TB - 1); its score is Sf[r, that row] + R[r, c] (R = Q Es^T of the tile's distances).
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_der_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LS = tc_ldf(TB), LB = tc_ldf(TC_BAND), LP = tc_ld<P>(TB);
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *Gs = Qs + TB * LO, *Ks = Gs + TB * LO, *Vs = Ks + 2 * TB * LO, *Es = Vs + 2 * TB * LO;
    float *Sf = (float *)(Es + TB * LO), *dPf = Sf + TB * LB, *Rs = dPf + TB * LB; // Sf, dPf: bands
    S *dSb = (S *)Rs;
    const int r = threadIdx.x >> 1, half = threadIdx.x & 1;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, m0 = blockIdx.y * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const TcRows vh = tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS);
    const TcRows gh = tc_rows(a.dout, a.dout16, (size_t)b * a.Tq * a.C + h * HS);
    tc_load_er<P>(Es, LO, a, m0, TB, HS);
    const uint64_t key = fa_key(a, bh);
    FragAcc<P> ge[HS / 16];
    tc_zero<P>(ge);
    for (int i0 = m0 / TB * TB; i0 < a.Tq; i0 += TB) { // rows i >= m0: the others have no key at m >= m0
        const int jlo = i0 - m0 - (TB - 1);
        __syncthreads(); // the last tile is read
        tc_load<P>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
        tc_load<P>(Gs, LO, gh, a.C, i0, TB, a.Tq, HS);
        tc_load<P>(Ks, LO, kh, a.ldk, jlo, 2 * TB, a.Tk, HS);
        tc_load<P>(Vs, LO, vh, a.ldv, jlo, 2 * TB, a.Tk, HS);
        __syncthreads();
        tc_band_t<P>(Sf, Qs, Ks, LO, HS);
        tc_band_t<P>(dPf, Gs, Vs, LO, HS);
        tc_product_t<P, TB / 16>(Rs, LS, Qs, Es, LO, HS);
        __syncthreads();
        const int i = i0 + r, nk = i < a.Tq ? a.n_keys[i] : 0;
        float lse_i, D_i, ds[TB / 2];
        tc_row_stats(a, bh, i, &lse_i, &D_i);
        UNROLL for (int u = 0; u < TB / 2; u++) {
            int c = half + 2 * u, kb = tc_band(r, c), j = jlo + r - c + TB - 1;
            float pd;
            ds[u] = tc_ds(a, key, i, j, j >= 0 && j < nk, Sf[r * LB + kb] + Rs[r * LS + c], dPf[r * LB + kb], lse_i,
                          D_i, &pd);
        }
        __syncthreads(); // R is read
        UNROLL for (int u = 0; u < TB / 2; u++) dSb[r * LP + half + 2 * u] = P::cvt(ds[u]);
        __syncthreads();
        tc_strip<P, true, false>(ge, dSb, LP, Qs, LO, TB); // the warp's distances: columns of dS
    }
    tc_der_store<P, HS>(a, bh, m0, ge, Sf);
}

// ---- backward from stored dS (FaArgs.dsw) ------------------------------------------------------------------------

// K, Es (2 TB rows); dS, its skew's bands (gq's float32 sums go over K and Es at the end)
template <class P, int HS> static size_t tc_dq_ds_smem(void)
{
    return (size_t)(3 * TB * tc_ld<P>(HS) + TB * tc_ld<P>(TB) + TB * tc_ld<P>(TC_BAND)) * sizeof(typename P::S);
}

// tc_dq_k on the dS tiles the dK, dV kernel stored: per key tile one product with K and one with Es
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_dq_ds_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LP = tc_ld<P>(TB);
    DYN_SMEM(sm);
    S *Ks = (S *)sm, *Es = Ks + TB * LO, *dSb = Es + 2 * TB * LO, *dSk = dSb + TB * LP;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, it = fa_last_first(), i0 = it * TB;
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const int nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
    FragAcc<P> gq[HS / 16];
    tc_zero<P>(gq);
    for (int j0 = 0; j0 < nkt; j0 += TB) {
        __syncthreads(); // the last tile is read
        tc_load<P>(Ks, LO, kh, a.ldk, j0, TB, a.Tk, HS);
        if (a.ers) tc_load_er<P>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        tc_copy_tile<P>(dSb, LP, tc_ds_tile<P>(a, it, j0 / TB), TB);
        __syncthreads();
        tc_dq_tile<P, HS>(gq, dSb, dSk, Ks, Es, a.ers);
    }
    tc_dq_store<P, HS>(a, b, h, i0, gq, (float *)sm); // over K and Es
}

// Q; two dS tiles side by side (2 TB columns); the skewed tile (ge's sums go over Q and the pair at the end)
template <class P, int HS> static size_t tc_der_ds_smem(void)
{
    return (size_t)(TB * tc_ld<P>(HS) + TB * tc_ld<P>(2 * TB) + TB * tc_ld<P>(TB)) * sizeof(typename P::S);
}

// tc_der_k on the stored dS tiles. For query tile i0 and distance tile m0, entry (r, c) is dS[i0 + r, i0 + r - m0
// - c]: the keys from jb = i0 - m0 - TB (a tile boundary) on, column r - c + TB of the key tiles jb and jb + TB
// loaded side by side (zero where the dK, dV kernel stored none: no row of the tile sees those keys).
template <class P, int HS> __global__ __launch_bounds__(TC_THREADS) static void tc_der_ds_k(FaArgs a)
{
    typedef typename P::S S;
    constexpr int LO = tc_ld<P>(HS), LP = tc_ld<P>(TB), L2 = tc_ld<P>(2 * TB);
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *D2 = Qs + TB * LO, *dSb = D2 + TB * L2;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, m0 = blockIdx.y * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    FragAcc<P> ge[HS / 16];
    tc_zero<P>(ge);
    for (int i0 = m0; i0 < a.Tq; i0 += TB) { // rows i >= m0: the others have no key at m >= m0
        const int jb = i0 - m0 - TB, nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
        __syncthreads(); // the last tile is read
        tc_load<P>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
        for (int t = 0; t < 2; t++) {
            int j0 = jb + t * TB;
            tc_copy_tile<P>(D2 + t * TB, L2, j0 >= 0 && j0 < nkt ? tc_ds_tile<P>(a, i0 / TB, j0 / TB) : NULL, TB);
        }
        __syncthreads();
        for (int x = threadIdx.x; x < TB * TB; x += blockDim.x) {
            int r = x / TB, c = x - r * TB;
            dSb[r * LP + c] = D2[r * L2 + r - c + TB];
        }
        __syncthreads();
        tc_strip<P, true, false>(ge, dSb, LP, Qs, LO, TB); // the warp's distances: columns of dS
    }
    tc_der_store<P, HS>(a, bh, m0, ge, (float *)sm); // over Q and the pair
}

// ---- backward on fragments in registers (mma.sync; bf16, with stored dS; HMT_GPU_FA_MMA=1) ---------------------
// tc_dkdv_k, tc_dq_ds_k and tc_der_ds_k with gpu_mma.cuh's products: each warp's S, dP and the dK, dV, dQ, dEr sums
// stay in registers. A transposed operand (dS^T and PD^T for dK and dV; K, Q and dO as B of a product over rows)
// is loaded from the operand tiles in shared memory by ldmatrix's transpose, and dS's skew for dQ and dEr is
// gathered two elements a register, so no tile is stored twice. The dS tiles in FaArgs.dsw are tc_dkdv_k's, so either kernel set reads the other's.

// rows r0 + g, r0 + g + 8 of dst (row stride ld, below `limit`) += scale * the warp's accumulators (NO tiles of 8);
// fresh: dst taken as zeros (FaArgs.fresh), not read
template <int NO>
__device__ static void mma_add_rows(float *dst, int ld, int r0, int limit, const float (&c)[NO][4], float scale,
                                    int fresh)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    UNROLL for (int x = 0; x < 2; x++) {
        int row = r0 + g + 8 * x;
        if (row >= limit) continue;
        float *d = dst + (size_t)row * ld + 2 * t;
        UNROLL for (int n = 0; n < NO; n++) {
            d[8 * n] = (fresh ? 0.0f : d[8 * n]) + scale * c[n][2 * x];
            d[8 * n + 1] = (fresh ? 0.0f : d[8 * n + 1]) + scale * c[n][2 * x + 1];
        }
    }
}

// K, V, Q, dO, Es (2 TB rows); dS and PD (TB x TB operands); the warps' R bands
template <int HS> static size_t mma_dkdv_smem(void)
{
    return (size_t)(6 * TB * tc_ld<TcBf16>(HS) + 2 * TB * tc_ld<TcBf16>(TB)) * sizeof(__nv_bfloat16) +
           (size_t)TB * tc_ldf(TC_BAND) * sizeof(float);
}

// block (b*NH + h, key tile): tc_dkdv_k. Per query tile each warp computes S, dP and dS for its 16 query rows in
// registers, stores dS and PD as operands (and dS in FaArgs.dsw), then dK += dS^T Q and dV += PD^T dO for its 16
// keys, the transposes gathered from those tiles.
template <int HS> __global__ __launch_bounds__(TC_THREADS) static void mma_dkdv_k(FaArgs a)
{
    typedef __nv_bfloat16 S;
    constexpr int LO = tc_ld<TcBf16>(HS), LB = tc_ldf(TC_BAND), LP = tc_ld<TcBf16>(TB), NQ = HS / 16, NO = HS / 8;
    DYN_SMEM(sm);
    S *Ks = (S *)sm, *Vs = Ks + TB * LO, *Qs = Vs + TB * LO, *Gs = Qs + TB * LO, *Es = Gs + TB * LO;
    S *dSb = Es + 2 * TB * LO, *PDb = dSb + TB * LP;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w16 = 16 * warp;
    float *Rw = (float *)(PDb + TB * LP) + w16 * LB;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, j0 = blockIdx.y * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    const TcRows gh = tc_rows(a.dout, a.dout16, (size_t)b * a.Tq * a.C + h * HS);
    tc_load<TcBf16>(Ks, LO, tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS), a.ldk, j0, TB, a.Tk, HS);
    tc_load<TcBf16>(Vs, LO, tc_rows(a.v, a.v16, (size_t)b * a.Tk * a.ldv + h * HS), a.ldv, j0, TB, a.Tk, HS);
    const uint64_t key = fa_key(a, bh);
    float gk[NO][4], gv[NO][4]; // the warp's keys j0 + 16 w + g (+ 8)
    mma_zero(gk), mma_zero(gv);
    for (int i0 = 0; i0 < a.Tq; i0 += TB) {
        if (tc_tile_keys(a.n_keys, i0, a.Tq) <= j0) continue; // no row of the tile sees these keys
        __syncthreads();                                      // the last tile is read
        tc_load<TcBf16>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
        tc_load<TcBf16>(Gs, LO, gh, a.C, i0, TB, a.Tq, HS);
        if (a.ers) tc_load_er<TcBf16>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        __syncthreads();
        float s[TB / 8][4], dp[TB / 8][4]; // the warp's query rows 16 w + g (+ 8), keys 8 n + 2 t (+ 1)
        mma_scores<HS>(s, Qs, Ks, a.ers ? Es : NULL, Rw);
        mma_zero(dp);
        UNROLL for (int kk = 0; kk < NQ; kk++) {
            uint32_t ga[4];
            mma_ld_a(ga, Gs, LO, w16, 16 * kk);
            UNROLL for (int n = 0; n < TB / 8; n += 2) {
                uint32_t vb[2][2];
                mma_ld_bt2(vb, Vs, LO, 8 * n, 16 * kk);
                mma_bf16(dp[n], ga, vb[0], dp[n]), mma_bf16(dp[n + 1], ga, vb[1], dp[n + 1]);
            }
        }
        UNROLL for (int x = 0; x < 2; x++) { // dS and PD of row x into their tiles, two columns a register
            const int rr = w16 + g + 8 * x, i = i0 + rr, nk = i < a.Tq ? a.n_keys[i] : 0;
            float lse_i, D_i;
            tc_row_stats(a, bh, i, &lse_i, &D_i);
            UNROLL for (int n = 0; n < TB / 8; n++) {
                float ds[2], pd[2];
                UNROLL for (int e = 0; e < 2; e++) {
                    int j = j0 + 8 * n + 2 * t + e;
                    ds[e] = tc_ds(a, key, i, j, j < nk, s[n][2 * x + e], dp[n][2 * x + e], lse_i, D_i, &pd[e]);
                }
                *(uint32_t *)(dSb + rr * LP + 8 * n + 2 * t) = mma_pack(ds[0], ds[1]);
                *(uint32_t *)(PDb + rr * LP + 8 * n + 2 * t) = mma_pack(pd[0], pd[1]);
            }
        }
        __syncthreads();
        if (a.dsw) tc_copy_tile<TcBf16>(tc_ds_tile<TcBf16>(a, i0 / TB, blockIdx.y), TB, dSb, LP);
        UNROLL for (int kq = 0; kq < TB / 16; kq++) { // over the tile's queries 16 kq ..: the warp's keys as rows
            uint32_t da[4], pa[4];
            mma_ld_at(da, dSb, LP, w16, 16 * kq);
            mma_ld_at(pa, PDb, LP, w16, 16 * kq);
            UNROLL for (int n = 0; n < NO; n += 2) {
                uint32_t qb[2][2], gb[2][2];
                mma_ld_b2(qb, Qs, LO, 8 * n, 16 * kq);
                mma_ld_b2(gb, Gs, LO, 8 * n, 16 * kq);
                mma_bf16(gk[n], da, qb[0], gk[n]), mma_bf16(gk[n + 1], da, qb[1], gk[n + 1]);
                mma_bf16(gv[n], pa, gb[0], gv[n]), mma_bf16(gv[n + 1], pa, gb[1], gv[n + 1]);
            }
        }
    }
    mma_add_rows(a.dk + (size_t)b * a.Tk * a.ldk + h * HS, a.ldk, j0 + w16, a.Tk, gk, a.scale, a.fresh);
    mma_add_rows(a.dv + (size_t)b * a.Tk * a.ldv + h * HS, a.ldv, j0 + w16, a.Tk, gv, 1.0f, a.fresh);
}

// K, Es (2 TB rows), dS
template <int HS> static size_t mma_dq_smem(void)
{
    return (size_t)(3 * TB * tc_ld<TcBf16>(HS) + TB * tc_ld<TcBf16>(TB)) * sizeof(__nv_bfloat16);
}

// block (b*NH + h, query tile): tc_dq_ds_k. dQ += dS K per key tile, and with Er dS' Es over the warp's band of
// distances: entry (r, e) of dS' is dS[r, (r % 16) - e + TB - 1] (zero outside the tile), gathered from dS
template <int HS> __global__ __launch_bounds__(TC_THREADS) static void mma_dq_k(FaArgs a)
{
    typedef __nv_bfloat16 S;
    constexpr int LO = tc_ld<TcBf16>(HS), LP = tc_ld<TcBf16>(TB), NO = HS / 8;
    DYN_SMEM(sm);
    S *Ks = (S *)sm, *Es = Ks + TB * LO, *dSb = Es + 2 * TB * LO;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w16 = 16 * warp;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, it = fa_last_first(), i0 = it * TB;
    const TcRows kh = tc_rows(a.k, a.k16, (size_t)b * a.Tk * a.ldk + h * HS);
    const int nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
    float gq[NO][4];
    mma_zero(gq);
    for (int j0 = 0; j0 < nkt; j0 += TB) {
        __syncthreads(); // the last tile is read
        tc_load<TcBf16>(Ks, LO, kh, a.ldk, j0, TB, a.Tk, HS);
        if (a.ers) tc_load_er<TcBf16>(Es, LO, a, i0 - j0 - (TB - 1), 2 * TB, HS);
        tc_copy_tile<TcBf16>(dSb, LP, tc_ds_tile<TcBf16>(a, it, j0 / TB), TB);
        __syncthreads();
        UNROLL for (int kk = 0; kk < TB / 16; kk++) {
            uint32_t da[4];
            mma_ld_a(da, dSb, LP, w16, 16 * kk);
            UNROLL for (int n = 0; n < NO; n += 2) {
                uint32_t kb[2][2];
                mma_ld_b2(kb, Ks, LO, 8 * n, 16 * kk);
                mma_bf16(gq[n], da, kb[0], gq[n]), mma_bf16(gq[n + 1], da, kb[1], gq[n + 1]);
            }
        }
        if (!a.ers) continue;
        const S *row[2] = {dSb + (w16 + g) * LP, dSb + (w16 + g + 8) * LP};
        UNROLL for (int kk = 0; kk < TC_BAND / 16; kk++) { // band columns e = 16 kk + 2 t (+1) (+8)
            uint32_t da[4];
            UNROLL for (int q = 0; q < 4; q++) {
                int x = q & 1, e = 16 * kk + 2 * t + 8 * (q >> 1), c = g + 8 * x - e + TB - 1; // c - 1 for e + 1
                float lo = c >= 0 && c < TB ? __bfloat162float(row[x][c]) : 0.0f;
                float hi = c - 1 >= 0 && c - 1 < TB ? __bfloat162float(row[x][c - 1]) : 0.0f;
                da[q] = mma_pack(lo, hi); // exact: bf16 values
            }
            UNROLL for (int n = 0; n < NO; n += 2) {
                uint32_t eb[2][2];
                mma_ld_b2(eb, Es, LO, 8 * n, w16 + 16 * kk);
                mma_bf16(gq[n], da, eb[0], gq[n]), mma_bf16(gq[n + 1], da, eb[1], gq[n + 1]);
            }
        }
    }
    mma_add_rows(a.dq + (size_t)b * a.Tq * a.ldq + h * HS, a.ldq, i0 + w16, a.Tq, gq, a.scale, a.fresh);
}

// Q; two dS tiles side by side (2 TB columns)
template <int HS> static size_t mma_der_smem(void)
{
    return (size_t)(TB * tc_ld<TcBf16>(HS) + TB * tc_ld<TcBf16>(2 * TB)) * sizeof(__nv_bfloat16);
}

// block (b*NH + h, distance tile m0): tc_der_ds_k. The warp's distances m0 + 16 w + .. are the rows of A, entry
// (c, r) = dS[i0 + r, i0 + r - m0 - c] = column r - c + TB of the pair (gathered), times Q
template <int HS> __global__ __launch_bounds__(TC_THREADS) static void mma_der_k(FaArgs a)
{
    typedef __nv_bfloat16 S;
    constexpr int LO = tc_ld<TcBf16>(HS), L2 = tc_ld<TcBf16>(2 * TB), NO = HS / 8;
    DYN_SMEM(sm);
    S *Qs = (S *)sm, *D2 = Qs + TB * LO;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w16 = 16 * warp;
    const int bh = tc_bh(a), b = bh / a.NH, h = bh - b * a.NH, m0 = blockIdx.y * TB;
    const TcRows qh = tc_rows(a.q, a.q16, (size_t)b * a.Tq * a.ldq + h * HS);
    float ge[NO][4];
    mma_zero(ge);
    for (int i0 = m0; i0 < a.Tq; i0 += TB) { // rows i >= m0: the others have no key at m >= m0
        const int jb = i0 - m0 - TB, nkt = tc_tile_keys(a.n_keys, i0, a.Tq);
        __syncthreads(); // the last tile is read
        tc_load<TcBf16>(Qs, LO, qh, a.ldq, i0, TB, a.Tq, HS);
        for (int u = 0; u < 2; u++) {
            int j0 = jb + u * TB;
            tc_copy_tile<TcBf16>(D2 + u * TB, L2, j0 >= 0 && j0 < nkt ? tc_ds_tile<TcBf16>(a, i0 / TB, j0 / TB) : NULL,
                                 TB);
        }
        __syncthreads();
        UNROLL for (int kr = 0; kr < TB / 16; kr++) { // over the tile's rows 16 kr ..
            uint32_t da[4];
            UNROLL for (int q = 0; q < 4; q++) {
                int c = w16 + g + 8 * (q & 1), r = 16 * kr + 2 * t + 8 * (q >> 1);
                float lo = __bfloat162float(D2[r * L2 + r - c + TB]);
                float hi = __bfloat162float(D2[(r + 1) * L2 + r + 1 - c + TB]);
                da[q] = mma_pack(lo, hi); // exact: bf16 values
            }
            UNROLL for (int n = 0; n < NO; n += 2) {
                uint32_t qb[2][2];
                mma_ld_b2(qb, Qs, LO, 8 * n, 16 * kr);
                mma_bf16(ge[n], da, qb[0], ge[n]), mma_bf16(ge[n + 1], da, qb[1], ge[n + 1]);
            }
        }
    }
    UNROLL for (int x = 0; x < 2; x++) { // part[bh, Tq-1-m] = scale ge's rows
        int m = m0 + w16 + g + 8 * x;
        if (m >= a.Tq) continue;
        float *d = a.part + ((size_t)bh * a.Tq + (a.Tq - 1 - m)) * HS + 2 * t;
        UNROLL for (int n = 0; n < NO; n++) d[8 * n] = a.scale * ge[n][2 * x], d[8 * n + 1] = a.scale * ge[n][2 * x + 1];
    }
}

// ---- host --------------------------------------------------------------------------------------------------------

// label: the kernel's HMT_GPU_PROFILE row (gpu_prof_part; the caller goes back to its op's)
template <typename K>
static bool tc_launch(const char *op, const char *label, K kernel, unsigned bh, unsigned tiles, size_t bytes,
                      const FaArgs &a)
{
    gpu_prof_part(label);
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) {
        gpu_record(op, cudaGetErrorString(e));
        return false;
    }
    LAUNCH_SMEM(kernel, dim3(bh, tiles), TC_THREADS, bytes)(a);
    gpu_launched(op);
    return true;
}

// HMT_GPU_FA_MMA=1: the bf16 forward on fragments in registers (mma_fwd_k; off by default until a GPU has timed it)
static bool tc_mma_on(void)
{
    const char *e = getenv("HMT_GPU_FA_MMA");
    return e && strcmp(e, "1") == 0;
}

template <class P, int HS> static bool tc_forward(const char *op, const FaArgs &a, int B)
{
    if (std::is_same<P, TcBf16>::value && tc_mma_on())
        return tc_launch(op, "fused mma fwd", mma_fwd_k<HS>, (unsigned)(B * a.NH), gpu_blocks((size_t)a.Tq, TB),
                         mma_fwd_smem<HS>(), a);
    return tc_launch(op, "fused tc fwd", tc_fwd_k<P, HS>, (unsigned)(B * a.NH), gpu_blocks((size_t)a.Tq, TB),
                     tc_fwd_smem<P, HS>(), a);
}

template <class P, int HS> static bool tc_backward(const char *op, const FaArgs &a, int B, int chunk)
{
    const int BH = B * a.NH;
    const unsigned qt = gpu_blocks((size_t)a.Tq, TB), kt = gpu_blocks((size_t)a.Tk, TB);
    if (!a.dsw)
        return tc_launch(op, "fused tc bwd: dK, dV", tc_dkdv_k<P, HS>, (unsigned)BH, kt, tc_bwd_smem<P, HS>(), a) &&
               tc_launch(op, "fused tc bwd: dQ", tc_dq_k<P, HS>, (unsigned)BH, qt, tc_bwd_smem<P, HS>(), a) &&
               (!a.part || tc_launch(op, "fused tc bwd: dEr partials", tc_der_k<P, HS>, (unsigned)BH, qt,
                                     tc_der_smem<P, HS>(), a));
    for (int bh0 = 0; bh0 < BH; bh0 += chunk) { // the heads' dS tiles share the room: one chunk after another
        FaArgs c = a;
        c.bh0 = bh0;
        unsigned n = (unsigned)std::min(chunk, BH - bh0);
        if (std::is_same<P, TcBf16>::value && tc_mma_on()) {
            if (!tc_launch(op, "fused mma bwd: dK, dV, dS", mma_dkdv_k<HS>, n, kt, mma_dkdv_smem<HS>(), c) ||
                !tc_launch(op, "fused mma bwd: dQ from dS", mma_dq_k<HS>, n, qt, mma_dq_smem<HS>(), c) ||
                (a.part && !tc_launch(op, "fused mma bwd: dEr partials from dS", mma_der_k<HS>, n, qt,
                                      mma_der_smem<HS>(), c)))
                return false;
            continue;
        }
        if (!tc_launch(op, "fused tc bwd: dK, dV, dS", tc_dkdv_k<P, HS>, n, kt, tc_bwd_smem<P, HS>(), c) ||
            !tc_launch(op, "fused tc bwd: dQ from dS", tc_dq_ds_k<P, HS>, n, qt, tc_dq_ds_smem<P, HS>(), c) ||
            (a.part && !tc_launch(op, "fused tc bwd: dEr partials from dS", tc_der_ds_k<P, HS>, n, qt,
                                  tc_der_ds_smem<P, HS>(), c)))
            return false;
    }
    return true;
}

// the most the bf16 kernels on fragments in registers take (HMT_GPU_FA_MMA=1)
template <int HS> static size_t mma_smem_max(void)
{
    return std::max(std::max(mma_fwd_smem<HS>(), mma_dkdv_smem<HS>()), std::max(mma_dq_smem<HS>(), mma_der_smem<HS>()));
}

// the most shared memory a kernel of the head size takes (0: no such instantiation)
template <class P> static size_t tc_smem_max(int HS)
{
#define TC_SMEM(H)                                                                                                     \
    std::max(std::max(std::max(std::max(tc_fwd_smem<P, H>(), tc_bwd_smem<P, H>()), tc_der_smem<P, H>()),             \
                      std::max(tc_dq_ds_smem<P, H>(), tc_der_ds_smem<P, H>())),                                        \
             std::is_same<P, TcBf16>::value ? mma_smem_max<H>() : (size_t)0)
    switch (HS) {
    case 16: return TC_SMEM(16);
    case 32: return TC_SMEM(32);
    case 48: return TC_SMEM(48);
    case 64: return TC_SMEM(64);
    }
    return 0;
#undef TC_SMEM
}

int gpu_attention_tc_fits(int head_size, int precision, size_t smem_optin)
{
    if (precision == GPU_FP32 || head_size % 16 != 0 || head_size > TC_HS_MAX) return 0;
    size_t need = precision == GPU_BF16 ? tc_smem_max<TcBf16>(head_size) : tc_smem_max<TcTf32>(head_size);
    return need > 0 && need <= smem_optin;
}

// the instantiation for the head size (fa_tc_takes: a multiple of 16 up to TC_HS_MAX)
// (chunk: the backward's heads at a time; 0 for the forward)
template <class P> static bool tc_dispatch(const char *op, const FaArgs &a, int B, bool backward, int chunk)
{
    switch (a.HS) {
    case 16: return backward ? tc_backward<P, 16>(op, a, B, chunk) : tc_forward<P, 16>(op, a, B);
    case 32: return backward ? tc_backward<P, 32>(op, a, B, chunk) : tc_forward<P, 32>(op, a, B);
    case 48: return backward ? tc_backward<P, 48>(op, a, B, chunk) : tc_forward<P, 48>(op, a, B);
    case 64: return backward ? tc_backward<P, 64>(op, a, B, chunk) : tc_forward<P, 64>(op, a, B);
    }
    gpu_record(op, "tensor-core attention: head size not 16, 32, 48 or 64");
    return false;
}

bool fa_tc_forward(const char *op, const FaArgs &a, int B, int prec)
{
    return prec == GPU_BF16 ? tc_dispatch<TcBf16>(op, a, B, false, 0) : tc_dispatch<TcTf32>(op, a, B, false, 0);
}

bool fa_tc_backward(const char *op, const FaArgs &a, int B, int prec, int chunk)
{
    return prec == GPU_BF16 ? tc_dispatch<TcBf16>(op, a, B, true, chunk) : tc_dispatch<TcTf32>(op, a, B, true, chunk);
}

size_t fa_tc_ds_bytes(const FaArgs &a, int prec)
{
    return tc_ds_tiles(a) * TB * TB * (prec == GPU_BF16 ? sizeof(TcBf16::S) : sizeof(TcTf32::S));
}
