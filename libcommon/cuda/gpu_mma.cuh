// gpu_mma: the warp's tensor-core product on fragments in registers, PTX's mma.sync.aligned.m16n8k16.row.col with
// bf16 operands and float32 sums (sm_80 on), for kernels that keep their tiles in registers between products
// (gpu_attn_tc.cu's mma forward) instead of going through shared memory as nvcuda::wmma's opaque fragments must.
//
// The fragments, as the PTX ISA lays them out (lane = 4 g + t: g = lane / 4, t = lane % 4; two bf16 to a 32-bit
// register, the lower index in the low half):
//   A (16 x 16, row-major)  a[0] = A[g][2t, 2t+1]    a[1] = A[g+8][2t, 2t+1]
//                           a[2] = A[g][2t+8, 2t+9]  a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, column n)    b[0] = B[2t, 2t+1][g]    b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8, float32)  c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// So D's fragment of two adjacent column tiles (keys 16 k .. 16 k + 15) is, rounded and paired, the A fragment of
// the next product over those keys (FlashAttention's P V without shared memory).
//
// mma_bf16 is the instruction on a GPU; mma_bf16_ref computes the same from the same fragments with warp shuffles
// in plain float32 (the emulator's instruction, and test_cuda_ops "mma" runs both on a GPU against the CPU's
// product, which checks the layout above on the hardware). The hardware's sums need not be in the reference's order:
// results agree within float32 rounding of a 16-term sum.
#ifndef GPU_MMA_CUH
#define GPU_MMA_CUH
#include <stdint.h>

#ifndef GPU_EMU
#include <cuda_bf16.h>
#endif

// two float32 values rounded to bf16 (nearest even) as one register: lo in the low half
__device__ static inline uint32_t mma_pack(float lo, float hi)
{
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16;
}
__device__ static inline float mma_lo(uint32_t x) { return __uint_as_float(x << 16); }
__device__ static inline float mma_hi(uint32_t x) { return __uint_as_float(x & 0xffff0000u); }

// d = a b + c by warp shuffles (every lane of the warp takes part); d may be c
__device__ static inline void mma_bf16_ref(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    const int lane = (int)(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
    float ar[2][16], bc[2][16]; // rows g, g+8 of A; columns 2t, 2t+1 of B
    for (int s = 0; s < 4; s++) { // lane 4 g + s holds columns 2s, 2s+1, 2s+8, 2s+9 of rows g, g+8 of A
        for (int q = 0; q < 4; q++) {
            uint32_t x = __shfl_sync(0xffffffffu, a[q], 4 * g + s);
            int row = q & 1, col = 2 * s + (q >> 1) * 8;
            ar[row][col] = mma_lo(x), ar[row][col + 1] = mma_hi(x);
        }
        for (int e = 0; e < 2; e++) // column n = 2t + e of B: lane 4 n + s holds rows 2s, 2s+1, 2s+8, 2s+9
            for (int q = 0; q < 2; q++) {
                uint32_t y = __shfl_sync(0xffffffffu, b[q], 4 * (2 * t + e) + s);
                bc[e][2 * s + 8 * q] = mma_lo(y), bc[e][2 * s + 8 * q + 1] = mma_hi(y);
            }
    }
    float r[4];
    for (int q = 0; q < 4; q++) {
        float acc = c[q];
        for (int k = 0; k < 16; k++) acc += ar[q >> 1][k] * bc[q & 1][k];
        r[q] = acc;
    }
    for (int q = 0; q < 4; q++) d[q] = r[q];
}

// d = a b + c: the tensor cores' instruction (the reference in the emulator)
__device__ static inline void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
#ifdef GPU_EMU
    mma_bf16_ref(d, a, b, c);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
#endif
}

// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: the warp loads four 8 x 8 tiles of bf16 from shared memory.
// Lane l gives the address of row l % 8 of tile l / 8 (16-byte aligned); register j of lane l gets tile j's row
// l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (so a tile is an A or B quarter in the layout above), or with trans
// the transpose's: column l / 4, rows 2 (l % 4) and 2 (l % 4) + 1. mma_ldm_ref does the same by shuffles.
template <bool TRANS> __device__ static inline void mma_ldm_ref(uint32_t r[4], const __nv_bfloat16 *row)
{
    const int lane = (int)(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
    const unsigned long long mine = (unsigned long long)(uintptr_t)row;
    for (int j = 0; j < 4; j++) {
        if (!TRANS) {
            const __nv_bfloat16 *p = (const __nv_bfloat16 *)(uintptr_t)__shfl_sync(0xffffffffu, mine, 8 * j + g);
            r[j] = (uint32_t)__bfloat16_as_ushort(p[2 * t]) | (uint32_t)__bfloat16_as_ushort(p[2 * t + 1]) << 16;
        } else {
            const __nv_bfloat16 *p0 = (const __nv_bfloat16 *)(uintptr_t)__shfl_sync(0xffffffffu, mine, 8 * j + 2 * t);
            const __nv_bfloat16 *p1 =
                (const __nv_bfloat16 *)(uintptr_t)__shfl_sync(0xffffffffu, mine, 8 * j + 2 * t + 1);
            r[j] = (uint32_t)__bfloat16_as_ushort(p0[g]) | (uint32_t)__bfloat16_as_ushort(p1[g]) << 16;
        }
    }
}
template <bool TRANS> __device__ static inline void mma_ldm(uint32_t r[4], const __nv_bfloat16 *row)
{
#ifdef GPU_EMU
    emu_ldm_check(row); // aligned, in shared memory
    mma_ldm_ref<TRANS>(r, row);
#else
    unsigned a = (unsigned)__cvta_generic_to_shared(row);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
#endif
}
#endif
