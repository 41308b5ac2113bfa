// gpu_optim: gradient-norm clipping and Adam on the GPU (gpu.h), optim.c's arithmetic: the norm summed in double
// in a fixed order (per-block partials, then the partials in block order: no atomics), Adam operation for operation
// in float with the constants computed on the host as optim.c does (with --fmad=false, the same bytes).
#include <math.h>

#include "gpu_internal.cuh"

#define NORM_THREADS 256
#define NORM_BLOCKS_MAX 1024 // partials; the split depends on n alone, never on the device

// part[blk] = sum over the block's strided elements of g^2, in double
__global__ static void sumsq_part_k(double *part, const float *g, size_t n)
{
    __shared__ double redd[32];
    double s = 0;
    GRID_STRIDE(i, n)
        s += (double)g[i] * g[i];
    s = block_sum(s, redd);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// *norm = sqrt(sum of the partials), *coef = max_norm / (norm + 1e-6) (PyTorch's clip coefficient)
__global__ static void norm_final_k(double *norm, double *coef, const double *part, int nblk, double max_norm)
{
    __shared__ double redd[32];
    double s = 0;
    for (int i = threadIdx.x; i < nblk; i += blockDim.x) s += part[i];
    s = block_sum(s, redd);
    if (threadIdx.x == 0) {
        double nr = sqrt(s);
        *norm = nr;
        *coef = max_norm / (nr + 1e-6);
    }
}

// g *= (float)c where max_norm > 0 and c < 1 (c read on the device: no wait for the host)
__global__ static void clip_scale_k(float *g, const double *coef, double max_norm, size_t n)
{
    double c = *coef;
    if (!(max_norm > 0 && c < 1)) return;
    float cf = (float)c;
    GRID_STRIDE(i, n)
        g[i] *= cf;
}

// the norm to *norm (NULL: to ws[1]) and g clipped; returns the workspace: ws[0] the clip coefficient, ws[1] the
// norm when norm is NULL, the partial sums from ws[2]
static double *clip_launch(const char *op, double *norm, float *g, size_t n, double max_norm)
{
    if (!gpu_enter(op)) return NULL;
    unsigned nblk = gpu_blocks(n, (size_t)NORM_THREADS * 16);
    if (nblk > NORM_BLOCKS_MAX) nblk = NORM_BLOCKS_MAX;
    double *ws = (double *)gpu_workspace(op, (2 + (size_t)nblk) * sizeof(double));
    if (!ws) return NULL;
    LAUNCH(sumsq_part_k, nblk, NORM_THREADS)(ws + 2, g, n);
    gpu_launched(op);
    LAUNCH(norm_final_k, 1, 1024)(norm ? norm : ws + 1, ws, ws + 2, (int)nblk, max_norm);
    gpu_launched(op);
    if (max_norm > 0 && n) {
        LAUNCH(clip_scale_k, ew_blocks(n), EW_THREADS)(g, ws, max_norm, n);
        gpu_launched(op);
    }
    return ws;
}

void gpu_clip_grad_norm_to(double *norm, float *g, size_t n, double max_norm)
{
    clip_launch("gpu_clip_grad_norm", norm, g, n, max_norm);
}

double gpu_clip_grad_norm(float *g, size_t n, double max_norm)
{
    double *ws = clip_launch("gpu_clip_grad_norm", NULL, g, n, max_norm), norm = 0;
    return ws && gpu_download(&norm, ws + 1, sizeof norm) == 0 ? norm : 0.0;
}

// m = m b1 + (1-b1) g; v = v b2 + ((1-b2) g) g; w += -step (m / (sqrt(v) / sbc2 + eps))  (optim.c); the step's
// constants k and the guard read on the device: nothing is written when a guard value is not finite
typedef struct AdamK {
    float b1, b2, c1, c2, wd, eps;
} AdamK;
__global__ static void adam_k(float *w, const float *g, float *m, float *v, AdamK a, const AdamStep *k,
                              const double *guard, int n_guard, size_t n)
{
    for (int i = 0; i < n_guard; i++)
        if (!isfinite(guard[i])) return;
    float step = k->step, sbc2 = k->sbc2;
    GRID_STRIDE(i, n)
    {
        float gi = a.wd != 0 ? g[i] + a.wd * w[i] : g[i];
        float mi = m[i] * a.b1 + a.c1 * gi;
        float vi = v[i] * a.b2 + a.c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] += -step * (mi / (sqrtf(vi) / sbc2 + a.eps));
    }
}

void gpu_adam_apply(float *w, const float *g, float *m, float *v, size_t n, const AdamParams *p, const AdamStep *k,
                    const double *guard, int n_guard)
{
    const char *op = "gpu_adam_apply";
    if (!gpu_enter(op) || n == 0) return;
    // the constants exactly as optim.c computes them
    AdamK a;
    a.b1 = (float)p->beta1, a.b2 = (float)p->beta2, a.c1 = (float)(1 - p->beta1), a.c2 = (float)(1 - p->beta2);
    a.wd = (float)p->weight_decay, a.eps = (float)p->eps;
    LAUNCH(adam_k, ew_blocks(n), EW_THREADS)(w, g, m, v, a, k, guard, n_guard, n);
    gpu_launched(op);
}

void gpu_adam_step(float *w, const float *g, float *m, float *v, size_t n, long t, const AdamParams *p)
{
    if (!gpu_enter("gpu_adam_step") || n == 0) return;
    AdamStep k = adam_constants(p, t), *kd = (AdamStep *)gpu_workspace("gpu_adam_step", sizeof k);
    if (kd && gpu_upload(kd, &k, sizeof k) == 0) gpu_adam_apply(w, g, m, v, n, p, kd, NULL, 0);
}
