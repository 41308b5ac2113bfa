// optim: Adam, OneCycle and gradient clipping (see optim.h), written from the PyTorch documentation of
// torch.optim.Adam, OneCycleLR and clip_grad_norm_.
#include "optim.h"

#include <math.h>

AdamStep adam_constants(const AdamParams *p, long t)
{
    double bc1 = 1.0 - pow(p->beta1, (double)t), bc2 = 1.0 - pow(p->beta2, (double)t);
    return (AdamStep){(float)(p->lr / bc1), (float)sqrt(bc2)};
}

void adam_apply(float *w, const float *g, float *m, float *v, size_t n, const AdamParams *p, const AdamStep *k,
                const double *guard, int n_guard)
{
    for (int i = 0; i < n_guard; i++)
        if (!isfinite(guard[i])) return;
    // PyTorch 1.13's _single_tensor_adam, operation for operation: the constants are computed in double and
    // rounded once, m = m b1 + (1-b1) g, v = v b2 + ((1-b2) g) g, w += -step_size (m / (sqrt(v) / sqrt(bc2) + eps))
    float b1 = (float)p->beta1, b2 = (float)p->beta2, c1 = (float)(1 - p->beta1), c2 = (float)(1 - p->beta2);
    float wd = (float)p->weight_decay, eps = (float)p->eps, step = k->step, sbc2 = k->sbc2;
    for (size_t i = 0; i < n; i++) {
        float gi = wd != 0 ? g[i] + wd * w[i] : g[i];
        m[i] = m[i] * b1 + c1 * gi;
        v[i] = v[i] * b2 + c2 * gi * gi;
        w[i] += -step * (m[i] / (sqrtf(v[i]) / sbc2 + eps));
    }
}

void adam_step(float *w, const float *g, float *m, float *v, size_t n, long t, const AdamParams *p)
{
    AdamStep k = adam_constants(p, t);
    adam_apply(w, g, m, v, n, p, &k, NULL, 0);
}

static double anneal(double start, double end, double pct, int linear)
{
    if (linear) return (end - start) * pct + start;
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

double onecycle_lr(long step, long total_steps, double max_lr, double pct_start, double div_factor,
                   double final_div_factor, int anneal_linear)
{
    double initial = max_lr / div_factor, min_lr = initial / final_div_factor;
    double end1 = pct_start * (double)total_steps - 1, end2 = (double)total_steps - 1;
    if ((double)step <= end1) return anneal(initial, max_lr, end1 > 0 ? (double)step / end1 : 1.0, anneal_linear);
    double span = end2 - end1;
    return anneal(max_lr, min_lr, span > 0 ? ((double)step - end1) / span : 1.0, anneal_linear);
}

double clip_grad_norm(float *g, size_t n, double max_norm)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    double c = max_norm / (norm + 1e-6); // PyTorch scales whenever this is below 1
    if (max_norm > 0 && c < 1) {
        for (size_t i = 0; i < n; i++) g[i] *= (float)c;
    }
    return norm;
}
