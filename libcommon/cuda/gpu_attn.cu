// gpu_attn: fused attention (gpu.h's gpu_attention_fused_*): ops.h's causal attention with the relative term (Music
// Transformer, Huang et al. 2018) and the resampling cross-attention's key limits, in tiles with an online softmax,
// so no (Tq, Tk) matrix is ever stored. The forward keeps one float per query row, the log-sum-exp of its scores;
// the backward recomputes the probabilities from it (FlashAttention, Dao et al. 2022).
//
// The skew is only indexing: S_rel[i, j] = q_i . Er[L-1-(i-j)], so a tile of FA_BQ queries by FA_BK keys touches the
// FA_BQ + FA_BK - 1 rows of Er of the distances i - j it holds; entry (r, c) of the tile uses row r - c + FA_BK - 1
// of that slice. Dropout draws ops.c's bits (per (b, h) stream keyed by seed ^ ((b*NH+h)*Tq*Tk), element i*Tk + j),
// so the kept entries are the CPU's. No float atomics: every kernel owns what it writes.
//   forward   one block per ((b, h), query tile): key tiles in order, running max and sum per row.
//   backward  D_i = dout_i . out_i (the softmax backward's row term: sum_j P_ij dP_ij with dropout's scale inside),
//             then dk, dv per key tile (query tiles in order), dq per query tile (key tiles in order), and dEr per
//             tile of FA_BM distances m = i - j (query tiles in order; the keys j = i - m of a query tile are a
//             parallelogram of FA_BQ + FA_BM - 1 rows), as one partial per (b, h) summed over (b, h) in order.
// Threads: FA_THREADS = 4 per tile row. For the scores a thread takes row r = tid/4 and the columns c = tid%4 + 4u;
// for the sums over rows it takes one column (key, or distance) c = tid/4; either way the head dimensions
// d = tid%4 + 4w. fp32, products by fmaf: equal to the CPU within 1e-5 of each tensor's scale, not byte for byte.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_attn.cuh"

#define FA_BQ 32 // query rows per tile
#define FA_BK 32 // keys per tile
#define FA_BM 32 // distances per dEr tile
#define FA_THREADS 128
#define FA_CU (FA_BK / 4)                 // a thread's columns per tile
#define FA_DW (GPU_ATTN_FUSED_HS_MAX / 4) // a thread's head dimensions at most
#define FULL_MASK 0xffffffffu


// rows row0 .. row0+n-1 of src (row stride ld) into dst at pitch HS+1; zero rows outside [0, limit)
__device__ static void fa_load(float *dst, const float *src, int ld, int row0, int n, int limit, int HS)
{
    for (int x = threadIdx.x; x < n * HS; x += blockDim.x) {
        int r = x / HS, d = x - r * HS, row = row0 + r;
        dst[r * (HS + 1) + d] = row >= 0 && row < limit ? src[(size_t)row * ld + d] : 0.0f;
    }
}

// the Er rows of distances m0 .. m0+n-1 into dst at pitch HS+1 (zero where no query-key pair has the distance)
__device__ static void fa_load_er(float *dst, const float *ers, int m0, int n, int Tq, int HS)
{
    for (int x = threadIdx.x; x < n * HS; x += blockDim.x) {
        int e = x / HS, d = x - e * HS, m = m0 + e;
        dst[e * (HS + 1) + d] = m >= 0 && m < Tq ? ers[(size_t)(Tq - 1 - m) * HS + d] : 0.0f;
    }
}

// the most keys any row of the query tile at i0 sees (the same in every thread)
__device__ static int fa_tile_keys(const int *n_keys, int i0, int Tq)
{
    int nk = 0;
    for (int i = i0; i < i0 + FA_BQ && i < Tq; i++) nk = n_keys[i] > nk ? n_keys[i] : nk;
    return nk;
}

// For the thread's columns u: s[u] = q . (Ks[krow[u]] + Es[erow[u]]) (Es NULL: no relative term) and, with DP,
// dp[u] = dout . Vs[krow[u]]. qr, dor: the thread's row of the query and dout tiles; tiles at pitch HS+1.
template <bool DP>
__device__ static void fa_dots(float *s, float *dp, const float *qr, const float *dor, const float *Ks,
                               const float *Vs, const float *Es, const int *krow, const int *erow, int HS)
{
    const int P = HS + 1;
    UNROLL for (int u = 0; u < FA_CU; u++) s[u] = 0.0f, dp[u] = 0.0f;
    for (int d = 0; d < HS; d++) {
        float qd = qr[d], gd = DP ? dor[d] : 0.0f;
        UNROLL for (int u = 0; u < FA_CU; u++) {
            float kv = Ks[krow[u] * P + d];
            if (Es) kv += Es[erow[u] * P + d];
            s[u] = fmaf(qd, kv, s[u]);
            if (DP) dp[u] = fmaf(gd, Vs[krow[u] * P + d], dp[u]);
        }
    }
}

// The key tile at j0 for the query tile at i0: its keys and values, and the Er rows of the distances it holds
// (i0 - j0 - (FA_BK - 1) onward), once the last tile is read by every thread; ready for all on return.
__device__ static void fa_key_tile(float *Ks, float *Vs, float *Es, const float *kh, const float *vh, const FaArgs &a,
                                   int i0, int j0)
{
    __syncthreads();
    fa_load(Ks, kh, a.ldk, j0, FA_BK, a.Tk, a.HS);
    fa_load(Vs, vh, a.ldv, j0, FA_BK, a.Tk, a.HS);
    if (a.ers) fa_load_er(Es, a.ers, i0 - j0 - (FA_BK - 1), FA_BQ + FA_BK - 1, a.Tq, a.HS);
    __syncthreads();
}

// A square tile's rows for the thread's columns c = l4 + 4u: the key row c, and the Er row r - c + FA_BK - 1
__device__ static void fa_square_rows(int *krow, int *erow, int r, int l4)
{
    UNROLL for (int u = 0; u < FA_CU; u++) krow[u] = l4 + 4 * u, erow[u] = r - krow[u] + FA_BK - 1;
}

// ---- forward ---------------------------------------------------------------------------------------------------

static size_t fa_fwd_smem(int HS)
{
    return ((size_t)(FA_BQ + 2 * FA_BK + FA_BQ + FA_BK - 1) * (HS + 1) + FA_BQ * (FA_BK + 1)) * sizeof(float);
}

// block (b*NH + h, query tile): o rows of the tile and their lse
__global__ __launch_bounds__(FA_THREADS) static void fa_fwd_k(FaArgs a)
{
    DYN_SMEM(sm);
    const int HS = a.HS, P = HS + 1, r = threadIdx.x >> 2, l4 = threadIdx.x & 3;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh - b * a.NH, i0 = fa_last_first() * FA_BQ, i = i0 + r;
    float *Qs = sm, *Ks = Qs + FA_BQ * P, *Vs = Ks + FA_BK * P, *Es = Vs + FA_BK * P;
    float *Ps = Es + (FA_BQ + FA_BK - 1) * P; // (FA_BQ, FA_BK + 1): the tile's dropped probabilities, unnormalised
    const float *qh = a.q + (size_t)b * a.Tq * a.ldq + h * HS;
    const float *kh = a.k + (size_t)b * a.Tk * a.ldk + h * HS, *vh = a.v + (size_t)b * a.Tk * a.ldv + h * HS;
    fa_load(Qs, qh, a.ldq, i0, FA_BQ, a.Tq, HS);
    const int nk = i < a.Tq ? a.n_keys[i] : 0, nkt = fa_tile_keys(a.n_keys, i0, a.Tq);
    const uint64_t key = fa_key(a, bh);
    int krow[FA_CU], erow[FA_CU];
    fa_square_rows(krow, erow, r, l4);
    float m = -INFINITY, l = 0.0f, o[FA_DW];
    UNROLL for (int w = 0; w < FA_DW; w++) o[w] = 0.0f;
    for (int j0 = 0; j0 < nkt; j0 += FA_BK) {
        fa_key_tile(Ks, Vs, Es, kh, vh, a, i0, j0);
        float s[FA_CU], unused[FA_CU], mx = -INFINITY;
        fa_dots<false>(s, unused, Qs + r * P, NULL, Ks, NULL, a.ers ? Es : NULL, krow, erow, HS);
        UNROLL for (int u = 0; u < FA_CU; u++) {
            s[u] = j0 + krow[u] < nk ? s[u] * a.scale : -INFINITY;
            mx = fmaxf(mx, s[u]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 1)); // the row's four threads
        mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 2));
        float mn = fmaxf(m, mx), corr = mn == -INFINITY ? 1.0f : expf(m - mn), sum = 0.0f;
        UNROLL for (int u = 0; u < FA_CU; u++) {
            int j = j0 + krow[u];
            float p = s[u] == -INFINITY ? 0.0f : expf(s[u] - mn);
            sum += p;
            int kept = a.drop ? drop_keep(key, a.thr, (size_t)i * a.Tk + j) : 1;
            Ps[r * (FA_BK + 1) + krow[u]] = kept ? p * a.keep : 0.0f;
        }
        sum += __shfl_xor_sync(FULL_MASK, sum, 1);
        sum += __shfl_xor_sync(FULL_MASK, sum, 2);
        l = l * corr + sum, m = mn;
        UNROLL for (int w = 0; w < FA_DW; w++) o[w] *= corr;
        __syncthreads(); // Ps is written
        for (int c = 0; c < FA_BK; c++) {
            float p = Ps[r * (FA_BK + 1) + c];
            UNROLL for (int w = 0; w < FA_DW; w++) {
                int d = l4 + 4 * w;
                if (d < HS) o[w] = fmaf(p, Vs[c * P + d], o[w]);
            }
        }
    }
    if (i < a.Tq) {
        float *orow = a.o + ((size_t)b * a.Tq + i) * a.C + h * HS;
        UNROLL for (int w = 0; w < FA_DW; w++) {
            int d = l4 + 4 * w;
            if (d < HS) orow[d] = o[w] / l;
        }
        if (l4 == 0) a.lse[(size_t)bh * a.Tq + i] = m + logf(l);
    }
}

// ---- backward --------------------------------------------------------------------------------------------------

// D[bh*Tq + i] = dout_i . out_i over head h; one warp per row
__global__ static void fa_rowdot_k(float *D, const float *dout, const float *out, int Tq, int NH, int HS, int C,
                                   size_t rows)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return; // whole warps
    size_t bh = row / Tq, i = row % Tq, b = bh / NH, h = bh % NH, at = (b * Tq + i) * C + h * HS;
    float s = 0.0f;
    for (int d = threadIdx.x & 31; d < HS; d += 32) s = fmaf(dout[at + d], out[at + d], s);
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) D[row] = s;
}

// The thread's entries of a tile (row r, query i; columns c = l4 + 4u, key j = jbase + krow[u]):
// dS = P (g - D_i) with P = exp(scale s - lse_i), g = dP * keep where kept (else 0), into dSs[r, c]; and, with PDs,
// the dropped probability P * keep where kept, into PDs[r, c]. Entries whose key the row does not see are 0.
__device__ static void fa_grad_entries(float *dSs, float *PDs, int pitch, const FaArgs &a, uint64_t key, int r,
                                       int i, float lse_i, float D_i, int jbase, const float *Qs, const float *Os,
                                       const float *Ks, const float *Vs, const float *Es, const int *krow,
                                       const int *erow)
{
    const int P = a.HS + 1, nk = i < a.Tq ? a.n_keys[i] : 0, l4 = threadIdx.x & 3;
    float s[FA_CU], dp[FA_CU];
    fa_dots<true>(s, dp, Qs + r * P, Os + r * P, Ks, Vs, Es, krow, erow, a.HS);
    UNROLL for (int u = 0; u < FA_CU; u++) {
        int j = jbase + krow[u], c = l4 + 4 * u;
        bool valid = j >= 0 && j < nk;
        float p = valid ? expf(s[u] * a.scale - lse_i) : 0.0f;
        bool kept = valid && (!a.drop || drop_keep(key, a.thr, (size_t)i * a.Tk + j));
        float g = kept ? dp[u] * a.keep : 0.0f;
        dSs[r * pitch + c] = p * (g - D_i);
        if (PDs) PDs[r * pitch + c] = kept ? p * a.keep : 0.0f;
    }
}

// lse and D of the thread's query row (0 beyond Tq)
__device__ static void fa_row_stats(const FaArgs &a, int bh, int i, float *lse_i, float *D_i)
{
    *lse_i = i < a.Tq ? a.lse[(size_t)bh * a.Tq + i] : 0.0f;
    *D_i = i < a.Tq ? a.D[(size_t)bh * a.Tq + i] : 0.0f;
}

static size_t fa_dkdv_smem(int HS)
{
    return ((size_t)(2 * FA_BK + 2 * FA_BQ + FA_BQ + FA_BK - 1) * (HS + 1) + 2 * FA_BQ * (FA_BK + 1)) *
           sizeof(float);
}

// block (b*NH + h, key tile): dk += scale sum_i dS_ij q_i, dv += sum_i PD_ij dout_i over the query tiles in order
__global__ __launch_bounds__(FA_THREADS) static void fa_dkdv_k(FaArgs a)
{
    DYN_SMEM(sm);
    const int HS = a.HS, P = HS + 1, r = threadIdx.x >> 2, l4 = threadIdx.x & 3;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh - b * a.NH, j0 = blockIdx.y * FA_BK;
    float *Ks = sm, *Vs = Ks + FA_BK * P, *Qs = Vs + FA_BK * P, *Os = Qs + FA_BQ * P, *Es = Os + FA_BQ * P;
    float *dSs = Es + (FA_BQ + FA_BK - 1) * P, *PDs = dSs + FA_BQ * (FA_BK + 1);
    const float *qh = a.q + (size_t)b * a.Tq * a.ldq + h * HS, *oh = a.dout + (size_t)b * a.Tq * a.C + h * HS;
    fa_load(Ks, a.k + (size_t)b * a.Tk * a.ldk + h * HS, a.ldk, j0, FA_BK, a.Tk, HS);
    fa_load(Vs, a.v + (size_t)b * a.Tk * a.ldv + h * HS, a.ldv, j0, FA_BK, a.Tk, HS);
    const uint64_t key = fa_key(a, bh);
    int krow[FA_CU], erow[FA_CU];
    fa_square_rows(krow, erow, r, l4);
    float gk[FA_DW], gv[FA_DW];
    UNROLL for (int w = 0; w < FA_DW; w++) gk[w] = 0.0f, gv[w] = 0.0f;
    for (int i0 = 0; i0 < a.Tq; i0 += FA_BQ) {
        if (fa_tile_keys(a.n_keys, i0, a.Tq) <= j0) continue; // no row of the tile sees these keys
        __syncthreads();                                       // the last tile is read
        fa_load(Qs, qh, a.ldq, i0, FA_BQ, a.Tq, HS);
        fa_load(Os, oh, a.C, i0, FA_BQ, a.Tq, HS);
        if (a.ers) fa_load_er(Es, a.ers, i0 - j0 - (FA_BK - 1), FA_BQ + FA_BK - 1, a.Tq, HS);
        __syncthreads();
        float lse_i, D_i;
        fa_row_stats(a, bh, i0 + r, &lse_i, &D_i);
        fa_grad_entries(dSs, PDs, FA_BK + 1, a, key, r, i0 + r, lse_i, D_i, j0, Qs, Os, Ks, Vs, a.ers ? Es : NULL,
                        krow, erow);
        __syncthreads();
        for (int rr = 0; rr < FA_BQ; rr++) { // this thread's key: column r
            float ds = dSs[rr * (FA_BK + 1) + r], pd = PDs[rr * (FA_BK + 1) + r];
            UNROLL for (int w = 0; w < FA_DW; w++) {
                int d = l4 + 4 * w;
                if (d < HS) gk[w] = fmaf(ds, Qs[rr * P + d], gk[w]), gv[w] = fmaf(pd, Os[rr * P + d], gv[w]);
            }
        }
    }
    int j = j0 + r;
    if (j < a.Tk) {
        float *dkr = a.dk + ((size_t)b * a.Tk + j) * a.ldk + h * HS, *dvr = a.dv + ((size_t)b * a.Tk + j) * a.ldv + h * HS;
        UNROLL for (int w = 0; w < FA_DW; w++) {
            int d = l4 + 4 * w;
            if (d < HS) {
                dkr[d] = (a.fresh ? 0.0f : dkr[d]) + a.scale * gk[w];
                dvr[d] = (a.fresh ? 0.0f : dvr[d]) + gv[w];
            }
        }
    }
}

static size_t fa_dq_smem(int HS)
{
    return ((size_t)(2 * FA_BQ + 2 * FA_BK + FA_BQ + FA_BK - 1) * (HS + 1) + FA_BQ * (FA_BK + 1)) * sizeof(float);
}

// block (b*NH + h, query tile): dq += scale sum_j dS_ij (k_j + Er[L-1-(i-j)]) over the key tiles in order
__global__ __launch_bounds__(FA_THREADS) static void fa_dq_k(FaArgs a)
{
    DYN_SMEM(sm);
    const int HS = a.HS, P = HS + 1, r = threadIdx.x >> 2, l4 = threadIdx.x & 3;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh - b * a.NH, i0 = fa_last_first() * FA_BQ, i = i0 + r;
    float *Qs = sm, *Os = Qs + FA_BQ * P, *Ks = Os + FA_BQ * P, *Vs = Ks + FA_BK * P, *Es = Vs + FA_BK * P;
    float *dSs = Es + (FA_BQ + FA_BK - 1) * P;
    const float *kh = a.k + (size_t)b * a.Tk * a.ldk + h * HS, *vh = a.v + (size_t)b * a.Tk * a.ldv + h * HS;
    fa_load(Qs, a.q + (size_t)b * a.Tq * a.ldq + h * HS, a.ldq, i0, FA_BQ, a.Tq, HS);
    fa_load(Os, a.dout + (size_t)b * a.Tq * a.C + h * HS, a.C, i0, FA_BQ, a.Tq, HS);
    const int nkt = fa_tile_keys(a.n_keys, i0, a.Tq);
    const uint64_t key = fa_key(a, bh);
    float lse_i, D_i;
    fa_row_stats(a, bh, i, &lse_i, &D_i);
    int krow[FA_CU], erow[FA_CU];
    fa_square_rows(krow, erow, r, l4);
    float gq[FA_DW];
    UNROLL for (int w = 0; w < FA_DW; w++) gq[w] = 0.0f;
    for (int j0 = 0; j0 < nkt; j0 += FA_BK) {
        fa_key_tile(Ks, Vs, Es, kh, vh, a, i0, j0);
        fa_grad_entries(dSs, NULL, FA_BK + 1, a, key, r, i, lse_i, D_i, j0, Qs, Os, Ks, Vs, a.ers ? Es : NULL, krow,
                        erow);
        __syncthreads();
        for (int c = 0; c < FA_BK; c++) { // this thread's row r
            float ds = dSs[r * (FA_BK + 1) + c];
            const float *kr = Ks + c * P, *er = Es + (r - c + FA_BK - 1) * P;
            UNROLL for (int w = 0; w < FA_DW; w++) {
                int d = l4 + 4 * w;
                if (d < HS) gq[w] = fmaf(ds, a.ers ? kr[d] + er[d] : kr[d], gq[w]);
            }
        }
    }
    if (i < a.Tq) {
        float *dqr = a.dq + ((size_t)b * a.Tq + i) * a.ldq + h * HS;
        UNROLL for (int w = 0; w < FA_DW; w++) {
            int d = l4 + 4 * w;
            if (d < HS) dqr[d] = (a.fresh ? 0.0f : dqr[d]) + a.scale * gq[w];
        }
    }
}

static size_t fa_der_smem(int HS)
{
    return ((size_t)(2 * FA_BQ + 2 * (FA_BQ + FA_BM - 1) + FA_BM) * (HS + 1) + FA_BQ * (FA_BM + 1)) * sizeof(float);
}

// block (b*NH + h, distance tile m0 .. m0+FA_BM-1): part[bh, Tq-1-m] = scale sum_i dS_{i, i-m} q_i (the Er_T row of
// distance m), over the query tiles in order. Entry (r, c) of a tile: distance m0 + c, key i0 + r - m0 - c, which is
// row r - c + FA_BM - 1 of the keys loaded from jlo = i0 - m0 - (FA_BM - 1).
__global__ __launch_bounds__(FA_THREADS) static void fa_der_k(FaArgs a)
{
    DYN_SMEM(sm);
    const int HS = a.HS, P = HS + 1, r = threadIdx.x >> 2, l4 = threadIdx.x & 3, NKR = FA_BQ + FA_BM - 1;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh - b * a.NH, m0 = blockIdx.y * FA_BM;
    float *Qs = sm, *Os = Qs + FA_BQ * P, *Ks = Os + FA_BQ * P, *Vs = Ks + NKR * P, *Es = Vs + NKR * P;
    float *dSs = Es + FA_BM * P;
    const float *qh = a.q + (size_t)b * a.Tq * a.ldq + h * HS, *oh = a.dout + (size_t)b * a.Tq * a.C + h * HS;
    const float *kh = a.k + (size_t)b * a.Tk * a.ldk + h * HS, *vh = a.v + (size_t)b * a.Tk * a.ldv + h * HS;
    fa_load_er(Es, a.ers, m0, FA_BM, a.Tq, HS);
    const uint64_t key = fa_key(a, bh);
    int krow[FA_CU], erow[FA_CU];
    UNROLL for (int u = 0; u < FA_CU; u++) erow[u] = l4 + 4 * u, krow[u] = r - erow[u] + FA_BM - 1;
    float ge[FA_DW];
    UNROLL for (int w = 0; w < FA_DW; w++) ge[w] = 0.0f;
    for (int i0 = m0 / FA_BQ * FA_BQ; i0 < a.Tq; i0 += FA_BQ) { // rows i >= m0: the others have no key at m >= m0
        int jlo = i0 - m0 - (FA_BM - 1);
        __syncthreads(); // the last tile is read
        fa_load(Qs, qh, a.ldq, i0, FA_BQ, a.Tq, HS);
        fa_load(Os, oh, a.C, i0, FA_BQ, a.Tq, HS);
        fa_load(Ks, kh, a.ldk, jlo, NKR, a.Tk, HS);
        fa_load(Vs, vh, a.ldv, jlo, NKR, a.Tk, HS);
        __syncthreads();
        float lse_i, D_i;
        fa_row_stats(a, bh, i0 + r, &lse_i, &D_i);
        fa_grad_entries(dSs, NULL, FA_BM + 1, a, key, r, i0 + r, lse_i, D_i, jlo, Qs, Os, Ks, Vs, Es, krow, erow);
        __syncthreads();
        for (int rr = 0; rr < FA_BQ; rr++) { // this thread's distance: column r
            float ds = dSs[rr * (FA_BM + 1) + r];
            UNROLL for (int w = 0; w < FA_DW; w++) {
                int d = l4 + 4 * w;
                if (d < HS) ge[w] = fmaf(ds, Qs[rr * P + d], ge[w]);
            }
        }
    }
    int m = m0 + r;
    if (m < a.Tq) {
        float *pr = a.part + ((size_t)bh * a.Tq + (a.Tq - 1 - m)) * HS;
        UNROLL for (int w = 0; w < FA_DW; w++) {
            int d = l4 + 4 * w;
            if (d < HS) pr[d] = a.scale * ge[w];
        }
    }
}

// ---- host --------------------------------------------------------------------------------------------------------

static bool fa_check(const char *op, const AttnDims *d, const float *Er)
{
    if (d->NH <= 0 || d->C % d->NH != 0 || d->C / d->NH > GPU_ATTN_FUSED_HS_MAX || d->Tq <= 0 || d->Tk <= 0 ||
        (Er && (d->Tq != d->Tk || d->Tq > d->L))) {
        gpu_record(op, "bad dimensions (C % NH, a head size over 128, or with Er Tq == Tk <= L)");
        return false;
    }
    return true;
}

static FaArgs fa_args(const AttnDims *d, const float *q, const float *k, const float *v, const float *Er,
                      int backward)
{
    FaArgs a;
    memset(&a, 0, sizeof a);
    int HS = d->C / d->NH;
    a.q = q, a.k = k, a.v = v, a.ers = Er ? Er + (size_t)(d->L - d->Tq) * HS : NULL, a.n_keys = d->n_keys;
    a.Tq = d->Tq, a.Tk = d->Tk, a.NH = d->NH, a.HS = HS, a.C = d->C, a.ldq = d->ldq, a.ldk = d->ldk, a.ldv = d->ldv;
    a.causal = d->causal && d->Tq == d->Tk;
    a.scale = 1.0f / sqrtf((float)HS), a.drop = d->dropout > 0.0f, a.thr = drop_threshold(d->dropout);
    a.seed = d->seed;
    if (backward) a.keep = a.drop ? 1.0f / (1.0f - d->dropout) : 1.0f;
    else a.keep = d->dropout < 1.0f ? 1.0f / (1.0f - d->dropout) : 0.0f;
    return a;
}

// launches kernel on (B*NH, tiles) blocks with `bytes` of shared memory (over 48 KiB needs the kernel's consent)
template <typename K>
static void fa_launch(const char *op, K kernel, unsigned bh, unsigned tiles, size_t bytes, const FaArgs &a)
{
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) {
        gpu_record(op, cudaGetErrorString(e));
        return;
    }
    LAUNCH_SMEM(kernel, dim3(bh, tiles), FA_THREADS, bytes)(a);
    gpu_launched(op);
}

__global__ static void fa_copy_k(float *dst, const float *src, size_t n) { GRID_STRIDE(i, n) dst[i] = src[i]; }

// Floats of the aligned copy of Er's rows that the tensor-core kernels need (gpu_attn.cuh), 0 when Er is aligned
static size_t fa_er_room(const FaArgs &a)
{
    return a.ers && !fa_tc_aligned(a.ers, a.HS, 4) ? (size_t)a.Tq * a.HS : 0;
}
// a.ers's rows into room (fa_er_room floats, 16-byte aligned), a.ers then the copy; nothing when room is NULL
static void fa_er_copy(const char *op, FaArgs &a, float *room)
{
    if (!room) return;
    size_t n = fa_er_room(a);
    LAUNCH(fa_copy_k, ew_blocks(n), EW_THREADS)(room, a.ers, n);
    gpu_launched(op);
    a.ers = room;
}

// n floats of src as bfloat16 into dst (rounded to nearest even: the operands the kernels would make of them)
__global__ static void fa_to16_k(uint16_t *dst, const float *src, size_t n) { GRID_STRIDE(i, n) dst[i] = to_bf16(src[i]); }

// Floats of workspace that a bfloat16 copy of n values takes (whole floats, so what follows stays aligned)
static size_t fa_half(size_t n) { return (n + 1) / 2; }

// the bfloat16 copy of n floats of src into room (fa_half(n) floats), returned; NULL for NULL room
static const uint16_t *fa_copy16(const char *op, float *room, const float *src, size_t n)
{
    if (!room) return NULL;
    LAUNCH(fa_to16_k, ew_blocks(n), EW_THREADS)((uint16_t *)room, src, n);
    gpu_launched(op);
    return (const uint16_t *)room;
}

// Floats of Er's bfloat16 copy (FaArgs.ers16) under GPU_BF16 on tensor cores; Er then needs no aligned float copy
static size_t fa_er16_room(const FaArgs &a, bool tc16) { return tc16 && a.ers ? fa_half((size_t)a.Tq * a.HS) : 0; }

// what the fused attention records when handed bfloat16 q, k, v that the tensor-core kernels do not take
static const char FA_NO16[] =
    "bf16 q, k, v: the tensor-core kernels do not take them here (gpu_attention_fused_takes16)";

// the forward on a's q, k, v (float32 or, when q16 is set, bfloat16 for the tensor-core kernels only)
static void fused_forward(const char *op, FaArgs &a, float *out, float *lse, int B)
{
    a.o = out, a.lse = lse;
    if (fa_tc_takes(a, gpu_precision())) {
        const bool tc16 = gpu_precision() == GPU_BF16;
        size_t er = tc16 ? 0 : fa_er_room(a), er16 = fa_er16_room(a, tc16);
        float *room = er + er16 ? (float *)gpu_workspace(op, (er + er16) * sizeof(float)) : NULL;
        if (er + er16 && !room) return;
        fa_er_copy(op, a, er ? room : NULL);
        if (er16) gpu_prof_part("fused fwd: Er as bf16");
        a.ers16 = fa_copy16(op, er16 ? room : NULL, a.ers, (size_t)a.Tq * a.HS);
        fa_tc_forward(op, a, B, gpu_precision());
        gpu_prof_part(NULL);
        return;
    }
    if (a.q16) {
        gpu_record(op, FA_NO16);
        return;
    }
    fa_launch(op, fa_fwd_k, (unsigned)(B * a.NH), gpu_blocks((size_t)a.Tq, FA_BQ), fa_fwd_smem(a.HS), a);
}

void gpu_attention_fused_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const float *Er, const AttnDims *d)
{
    const char *op = "gpu_attention_fused_forward";
    if (!gpu_enter(op) || !fa_check(op, d, Er)) return;
    FaArgs a = fa_args(d, q, k, v, Er, 0);
    fused_forward(op, a, out, lse, d->B);
}

int gpu_attention_fused_takes16(const AttnDims *d)
{
    return gpu_act16() && d->NH > 0 && d->C % d->NH == 0 &&
           gpu_attention_tc_fits(d->C / d->NH, GPU_BF16, gpu_smem_optin()) && d->C % 8 == 0 && d->ldq % 8 == 0 &&
           d->ldk % 8 == 0 && d->ldv % 8 == 0;
}

void gpu_attention_fused_forward16(float *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                   const float *Er, const AttnDims *d)
{
    const char *op = "gpu_attention_fused_forward16";
    if (!gpu_enter(op) || !fa_check(op, d, Er)) return;
    FaArgs a = fa_args(d, NULL, NULL, NULL, Er, 0);
    a.q16 = q, a.k16 = k, a.v16 = v;
    fused_forward(op, a, out, lse, d->B);
}

// The heads whose dS tiles the tensor-core backward keeps at a time (gpu_attn_tc.cu): at most as many as fit
// HMT_GPU_FA_DS_MIB (64 by default), at least one, in chunks as even as that count of chunks allows (so the last
// launch is not a sliver); 0 (HMT_GPU_FA_DS_MIB=0) keeps none, and its kernels compute dS again each. per_head:
// fa_tc_ds_bytes.
static int fa_ds_chunk(int heads, size_t per_head)
{
    const char *e = getenv("HMT_GPU_FA_DS_MIB");
    double mib = e && *e ? strtod(e, NULL) : 64.0;
    if (!(mib > 0.0)) return 0;
    double n = floor(mib * 1048576.0 / (double)per_head);
    int most = n < 1.0 ? 1 : n > heads ? heads : (int)n, chunks = (heads + most - 1) / most;
    return (heads + chunks - 1) / chunks;
}

static void fused_backward(const char *op, FaArgs &a, float *dq, float *dk, float *dv, float *dEr, const float *dout,
                           const float *out, const float *lse, const AttnDims *d)
{
    size_t rows = (size_t)d->B * d->NH * d->Tq, part = a.ers && dEr ? (size_t)d->B * d->Tq * d->C : 0;
    a.out = out, a.dout = dout, a.lse = (float *)lse, a.dq = dq, a.dk = dk, a.dv = dv;
    const int prec = gpu_precision();
    bool tc = fa_tc_takes(a, prec);
    if (a.q16 && !tc) {
        gpu_record(op, FA_NO16);
        return;
    }
    // the workspace: D, dEr's partials, (TF32 tensor cores, Er not aligned) Er's copy, (bf16 tensor cores) the
    // bfloat16 copies of Er's rows and of dout, and (tensor cores) a chunk of heads' dS tiles; each from a 64-float
    // boundary
    const bool tc16 = tc && prec == GPU_BF16;
    const size_t per_head = tc ? fa_tc_ds_bytes(a, prec) : 0;
    const int chunk = tc ? fa_ds_chunk(d->B * d->NH, per_head) : 0;
    const size_t n_dout = (size_t)d->B * d->Tq * d->C;
    size_t er = tc && !tc16 ? fa_er_room(a) : 0, er16 = fa_er16_room(a, tc16), g16 = tc16 ? fa_half(n_dout) : 0;
    size_t er_at = (rows + part + 63) & ~(size_t)63, er16_at = (er_at + er + 63) & ~(size_t)63;
    size_t g16_at = (er16_at + er16 + 63) & ~(size_t)63, ds_at = (g16_at + g16 + 63) & ~(size_t)63;
    size_t ds = (size_t)chunk * per_head / sizeof(float);
    size_t end = ds ? ds_at + ds : g16 ? g16_at + g16 : er16 ? er16_at + er16 : er ? er_at + er : rows + part;
    float *ws = (float *)gpu_workspace(op, end * sizeof(float));
    if (!ws) return;
    a.D = ws, a.part = part ? ws + rows : NULL, a.dsw = ds ? ws + ds_at : NULL;
    fa_er_copy(op, a, er ? ws + er_at : NULL);
    if (tc16) gpu_prof_part("fused bwd: Er and dO as bf16");
    a.ers16 = fa_copy16(op, er16 ? ws + er16_at : NULL, a.ers, (size_t)a.Tq * a.HS);
    a.dout16 = fa_copy16(op, g16 ? ws + g16_at : NULL, dout, n_dout);
    gpu_prof_part("fused bwd: D = rowsum(dO O)");
    LAUNCH(fa_rowdot_k, gpu_blocks(rows, FA_THREADS / 32), FA_THREADS)(a.D, dout, out, d->Tq, d->NH, a.HS, d->C, rows);
    gpu_launched(op);
    if (tc) { // its kernels label their profile rows themselves
        if (fa_tc_backward(op, a, d->B, prec, chunk) && a.part) {
            gpu_prof_part("fused bwd: dEr sum");
            gpu_er_sum(op, dEr + (size_t)(d->L - d->Tq) * a.HS, a.part, d->B * d->NH, (size_t)d->Tq * a.HS);
        }
        gpu_prof_part(NULL);
        return;
    }
    unsigned bh = (unsigned)(d->B * d->NH);
    gpu_prof_part("fused bwd: dK, dV");
    fa_launch(op, fa_dkdv_k, bh, gpu_blocks((size_t)d->Tk, FA_BK), fa_dkdv_smem(a.HS), a);
    gpu_prof_part("fused bwd: dQ");
    fa_launch(op, fa_dq_k, bh, gpu_blocks((size_t)d->Tq, FA_BQ), fa_dq_smem(a.HS), a);
    if (a.part) {
        gpu_prof_part("fused bwd: dEr partials");
        fa_launch(op, fa_der_k, bh, gpu_blocks((size_t)d->Tq, FA_BM), fa_der_smem(a.HS), a);
        gpu_prof_part("fused bwd: dEr sum");
        gpu_er_sum(op, dEr + (size_t)(d->L - d->Tq) * a.HS, a.part, (int)bh, (size_t)d->Tq * a.HS);
    }
    gpu_prof_part(NULL);
}

void gpu_attention_fused_backward(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v, const float *Er,
                                  const AttnDims *d)
{
    const char *op = "gpu_attention_fused_backward";
    int fresh = gpu_att_qkv_fresh(dq, dk, dv, d); // every row of dq, dk, dv is written once: by one block
    if (!gpu_enter(op) || !fa_check(op, d, Er)) return;
    FaArgs a = fa_args(d, q, k, v, Er, 1);
    a.fresh = fresh;
    fused_backward(op, a, dq, dk, dv, dEr, dout, out, lse, d);
}

void gpu_attention_fused_backward16(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *out,
                                    const float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                    const float *Er, const AttnDims *d)
{
    const char *op = "gpu_attention_fused_backward16";
    int fresh = gpu_att_qkv_fresh(dq, dk, dv, d);
    if (!gpu_enter(op) || !fa_check(op, d, Er)) return;
    FaArgs a = fa_args(d, NULL, NULL, NULL, Er, 1);
    a.fresh = fresh;
    a.q16 = q, a.k16 = k, a.v16 = v;
    fused_backward(op, a, dq, dk, dv, dEr, dout, out, lse, d);
}
