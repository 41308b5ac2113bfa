// optim: Adam (Kingma & Ba 2015, as torch.optim.Adam: bias-corrected, eps outside the square root, L2 weight
// decay added to the gradient), the OneCycle learning rate (as torch.optim.lr_scheduler.OneCycleLR with
// three_phase=False) and gradient-norm clipping (as torch.nn.utils.clip_grad_norm_). Flat loops over the one
// parameter block; no allocation.
#ifndef OPTIM_H
#define OPTIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { // the CUDA backend (C++) calls adam_constants
#endif

typedef struct AdamParams {
    double lr, beta1, beta2, eps, weight_decay;
} AdamParams;

// One Adam update of w (n floats) with gradient g; m and v are the moments, t the step number counted from 1.
void adam_step(float *w, const float *g, float *m, float *v, size_t n, long t, const AdamParams *p);
// Adam's constants for step t, computed in double and rounded once (PyTorch's): step = lr / (1 - beta1^t),
// sbc2 = sqrt(1 - beta2^t). Kept apart from the update so a device can read them from its memory at each step.
typedef struct AdamStep {
    float step, sbc2;
} AdamStep;
AdamStep adam_constants(const AdamParams *p, long t);
// adam_step with its constants k (p's lr is not read), or nothing at all when one of guard[0 .. n_guard) is not
// finite (a loss or gradient norm gone to inf or nan: the weights stay as they are).
void adam_apply(float *w, const float *g, float *m, float *v, size_t n, const AdamParams *p, const AdamStep *k,
                const double *guard, int n_guard);
// The learning rate of optimizer step `step` (0-based) out of total_steps, for OneCycleLR(max_lr, total_steps,
// pct_start, anneal_strategy, div_factor, final_div_factor); anneal_linear picks "linear" over "cos".
double onecycle_lr(long step, long total_steps, double max_lr, double pct_start, double div_factor,
                   double final_div_factor, int anneal_linear);
// The global L2 norm of g (accumulated in double). When max_norm > 0 and c = max_norm / (norm + 1e-6) < 1, g is
// scaled by c. Returns the norm before clipping (inf or nan when g holds one).
double clip_grad_norm(float *g, size_t n, double max_norm);

#ifdef __cplusplus
}
#endif

#endif
