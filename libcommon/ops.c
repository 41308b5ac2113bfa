// ops: forward and backward of every tensor op (see ops.h for shapes and the accumulate-into-gradients rule).
// Kernels follow the PyTorch definitions they cite; matmuls are cblas_sgemm (OpenBLAS).
#include "ops.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

// ---- embedding + positions --------------------------------------------------------------------

void encoder_forward(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = wte + (size_t)tok[b * T + t] * C, *p = pe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
}

// backward of: out[b,t] = wte[tok[b,t]] + pe[t]
void encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C)
{
    for (int i = 0; i < B * T; i++) {
        if (tok[i] == 0) continue; // padding_idx: the PAD row stays as it is
        float *d = dwte + (size_t)tok[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

void positional_table(float *pe, int T, int C)
{
    // "Attention is all you need" §3.5, as the reference computes it: div = exp(2i * -ln(10000) / C)
    for (int p = 0; p < T; p++)
        for (int i = 0; 2 * i < C; i++) {
            float div = expf((float)(2 * i) * (-logf(10000.0f) / (float)C));
            pe[(size_t)p * C + 2 * i] = sinf((float)p * div);
            if (2 * i + 1 < C) pe[(size_t)p * C + 2 * i + 1] = cosf((float)p * div);
        }
}

// ---- linear -----------------------------------------------------------------------------------

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC)
{
    // out (N,OC) = inp (N,IC) @ w^T (IC,OC) [+ b]
    if (b)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, b ? 1.0f : 0.0f, out, OC);
}

// backward of: out = inp @ w^T + b
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                     int IC, int OC)
{
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) db[o] += dout[(size_t)n * OC + o];
}

void matmul_forward_naive(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < IC; i++) s += (double)inp[(size_t)n * IC + i] * w[(size_t)o * IC + i];
            out[(size_t)n * OC + o] = (float)s;
        }
}

// ---- LayerNorm (PyTorch nn.LayerNorm, biased variance, eps inside the square root) -----------------

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N,
                       int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= (float)C;
        float r = 1.0f / sqrtf(v + 1e-5f);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

// backward of: out = (x - mean) * rstd * w + b
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float m = mean[n], r = rstd[n];
        // dxhat = g * w; dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r, dxhat = g[c] * w[c];
            sum_d += dxhat;
            sum_dx += dxhat * xhat;
        }
        sum_d /= (float)C;
        sum_dx /= (float)C;
        float *dx = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r;
            db[c] += g[c];
            dw[c] += g[c] * xhat;
            dx[c] += r * (g[c] * w[c] - sum_d - xhat * sum_dx);
        }
    }
}

// ---- elementwise ------------------------------------------------------------------------------

void relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] > 0.0f) dinp[i] += dout[i];
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void accumulate(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// splitmix64 of (seed, i): a counter-based stream, so masks do not depend on thread scheduling
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int dropout_keep(uint64_t seed, size_t i, float p)
{
    double u = (double)(mix64(seed ^ mix64(i)) >> 11) * 0x1p-53;
    return u >= p;
}

void dropout_forward(float *out, uint8_t *mask, const float *inp, float p, uint64_t seed, size_t n)
{
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        mask[i] = p <= 0.0f ? 1 : (uint8_t)dropout_keep(seed, i, p);
        out[i] = p <= 0.0f ? inp[i] : (mask[i] ? inp[i] * scale : 0.0f);
    }
}

void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n)
{
    float scale = p <= 0.0f ? 1.0f : (p < 1.0f ? 1.0f / (1.0f - p) : 0.0f);
    for (size_t i = 0; i < n; i++)
        if (mask[i]) dinp[i] += dout[i] * scale;
}

// ---- attention (Music Transformer relative attention, Huang et al. 2018; PyTorch MHA conventions) ----------

void attention_forward(float *out, float *probs, uint8_t *mask, float *scratch, const float *q, const float *k,
                       const float *v, const float *Er, const AttnDims *d)
{
    int Tq = d->Tq, Tk = d->Tk, NH = d->NH, HS = d->C / d->NH;
    float scale = 1.0f / sqrtf((float)HS);
    assert(!Er || (Tq == Tk && Tq <= d->L));
    float *pd = scratch, *qe = scratch + 2 * (size_t)Tq * Tk;
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL; // the last T rows of Er
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < NH; h++) {
            const float *qh = q + (size_t)b * Tq * d->ldq + h * HS;
            const float *kh = k + (size_t)b * Tk * d->ldk + h * HS;
            const float *vh = v + (size_t)b * Tk * d->ldv + h * HS;
            size_t base = ((size_t)b * NH + h) * Tq * Tk;
            float *P = probs + base;
            // S = scale * q k^T  (+ scale * q Er^T, skewed: S[i,j] += QE[i, T-1-i+j])
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, HS, scale, qh, d->ldq, kh, d->ldk, 0.0f, P,
                        Tk);
            if (ers) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tq, HS, scale, qh, d->ldq, ers, HS, 0.0f, qe,
                            Tq);
                for (int i = 0; i < Tq; i++)
                    for (int j = 0; j < d->n_keys[i]; j++) P[(size_t)i * Tk + j] += qe[(size_t)i * Tq + Tq - 1 - i + j];
            }
            // softmax over the visible keys; the rest is exactly 0
            for (int i = 0; i < Tq; i++) {
                float *row = P + (size_t)i * Tk;
                int n = d->n_keys[i];
                float mx = row[0], sum = 0.0f;
                for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
                for (int j = 0; j < n; j++) sum += row[j] = expf(row[j] - mx);
                for (int j = 0; j < n; j++) row[j] /= sum;
                for (int j = n; j < Tk; j++) row[j] = 0.0f;
            }
            const float *use = P;
            if (d->dropout > 0.0f) {
                dropout_forward(pd, mask + base, P, d->dropout, d->seed ^ (uint64_t)base, (size_t)Tq * Tk);
                use = pd;
            } else {
                memset(mask + base, 1, (size_t)Tq * Tk);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, HS, Tk, 1.0f, use, Tk, vh, d->ldv, 0.0f,
                        out + (size_t)b * Tq * d->C + h * HS, d->C);
        }
}

// backward of: S = scale*(q k^T + skew(q Er^T)); P = softmax(S); PD = dropout(P); out = PD v
void attention_backward(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                        const float *probs, const uint8_t *mask, const float *q, const float *k, const float *v,
                        const float *Er, const AttnDims *d)
{
    int Tq = d->Tq, Tk = d->Tk, NH = d->NH, HS = d->C / d->NH;
    float scale = 1.0f / sqrtf((float)HS), keep = d->dropout > 0.0f ? 1.0f / (1.0f - d->dropout) : 1.0f;
    float *pd = scratch, *dp = scratch + (size_t)Tq * Tk, *dqe = scratch + 2 * (size_t)Tq * Tk;
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL;
    float *ders = dEr ? dEr + (size_t)(d->L - Tq) * HS : NULL;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < NH; h++) {
            const float *qh = q + (size_t)b * Tq * d->ldq + h * HS;
            const float *kh = k + (size_t)b * Tk * d->ldk + h * HS;
            const float *vh = v + (size_t)b * Tk * d->ldv + h * HS;
            float *dqh = dq + (size_t)b * Tq * d->ldq + h * HS;
            float *dkh = dk + (size_t)b * Tk * d->ldk + h * HS;
            float *dvh = dv + (size_t)b * Tk * d->ldv + h * HS;
            const float *doh = dout + (size_t)b * Tq * d->C + h * HS;
            size_t base = ((size_t)b * NH + h) * Tq * Tk;
            const float *P = probs + base;
            const uint8_t *M = mask + base;
            const float *use = P;
            if (d->dropout > 0.0f) { // PD from the saved P and mask
                for (size_t i = 0; i < (size_t)Tq * Tk; i++) pd[i] = M[i] ? P[i] * keep : 0.0f;
                use = pd;
            }
            // dv += PD^T dout;  dPD = dout v^T;  dP = dPD * mask * keep
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, HS, Tq, 1.0f, use, Tk, doh, d->C, 1.0f, dvh,
                        d->ldv);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, HS, 1.0f, doh, d->C, vh, d->ldv, 0.0f, dp,
                        Tk);
            // softmax backward: dS = P * (dP - sum_j P dP), over the visible keys
            for (int i = 0; i < Tq; i++) {
                const float *pr = P + (size_t)i * Tk;
                const uint8_t *mr = M + (size_t)i * Tk;
                float *g = dp + (size_t)i * Tk;
                int n = d->n_keys[i];
                float dot = 0.0f;
                for (int j = 0; j < n; j++) {
                    g[j] = mr[j] ? g[j] * keep : 0.0f;
                    dot += g[j] * pr[j];
                }
                for (int j = 0; j < n; j++) g[j] = pr[j] * (g[j] - dot);
                for (int j = n; j < Tk; j++) g[j] = 0.0f;
            }
            // dq += scale * dS k;  dk += scale * dS^T q
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, HS, Tk, scale, dp, Tk, kh, d->ldk, 1.0f, dqh,
                        d->ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, HS, Tq, scale, dp, Tk, qh, d->ldq, 1.0f, dkh,
                        d->ldk);
            if (ers) { // un-skew: dQE[i, T-1-i+j] = dS[i,j]; dq += scale * dQE Er; dEr += scale * dQE^T q
                memset(dqe, 0, (size_t)Tq * Tq * sizeof *dqe);
                for (int i = 0; i < Tq; i++)
                    for (int j = 0; j < d->n_keys[i]; j++) dqe[(size_t)i * Tq + Tq - 1 - i + j] = dp[(size_t)i * Tk + j];
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, HS, Tq, scale, dqe, Tq, ers, HS, 1.0f, dqh,
                            d->ldq);
                if (ders)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tq, HS, Tq, scale, dqe, Tq, qh, d->ldq, 1.0f,
                                ders, HS);
            }
        }
}

// ---- hourglass resampling ---------------------------------------------------------------------

void pad_forward(float *out, const float *inp, int B, int T, int Tp, int C)
{
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * Tp * C, inp + (size_t)b * T * C, (size_t)T * C * sizeof *out);
        memset(out + ((size_t)b * Tp + T) * C, 0, (size_t)(Tp - T) * C * sizeof *out);
    }
}

void pad_backward(float *dinp, const float *dout, int B, int T, int Tp, int C)
{
    for (int b = 0; b < B; b++) accumulate(dinp + (size_t)b * T * C, dout + (size_t)b * Tp * C, (size_t)T * C);
}

void crop_forward(float *out, const float *inp, int B, int Tp, int T, int C)
{
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * T * C, inp + (size_t)b * Tp * C, (size_t)T * C * sizeof *out);
}

void crop_backward(float *dinp, const float *dout, int B, int Tp, int T, int C)
{
    for (int b = 0; b < B; b++) accumulate(dinp + (size_t)b * Tp * C, dout + (size_t)b * T * C, (size_t)T * C);
}

void shift_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    int s = K - 1 < T ? K - 1 : T;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * T * C;
        memset(o, 0, (size_t)s * C * sizeof *o);
        memcpy(o + (size_t)s * C, inp + (size_t)b * T * C, (size_t)(T - s) * C * sizeof *o);
    }
}

// backward of: out[t] = inp[t - s]
void shift_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    int s = K - 1 < T ? K - 1 : T;
    for (int b = 0; b < B; b++)
        accumulate(dinp + (size_t)b * T * C, dout + ((size_t)b * T + s) * C, (size_t)(T - s) * C);
}

void meanpool_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    int Ts = T / K;
    for (int r = 0; r < B * Ts; r++) { // rows K*r .. K*r+K-1 of the flattened (B*T, C) input: T % K == 0
        float *o = out + (size_t)r * C;
        memset(o, 0, (size_t)C * sizeof *o);
        for (int k = 0; k < K; k++) accumulate(o, inp + ((size_t)r * K + k) * C, (size_t)C);
        for (int c = 0; c < C; c++) o[c] /= (float)K;
    }
}

void meanpool_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    int Ts = T / K;
    for (int r = 0; r < B * Ts; r++)
        for (int k = 0; k < K; k++) {
            float *d = dinp + ((size_t)r * K + k) * C;
            for (int c = 0; c < C; c++) d[c] += dout[(size_t)r * C + c] / (float)K;
        }
}

void repeat_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    for (int r = 0; r < B * (T / K); r++)
        for (int k = 0; k < K; k++) memcpy(out + ((size_t)r * K + k) * C, inp + (size_t)r * C, (size_t)C * sizeof *out);
}

void repeat_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    for (int r = 0; r < B * (T / K); r++)
        for (int k = 0; k < K; k++) accumulate(dinp + (size_t)r * C, dout + ((size_t)r * K + k) * C, (size_t)C);
}

// ---- losses -----------------------------------------------------------------------------------

float crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *n_valid)
{
    double loss = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * V;
        float *p = probs + (size_t)i * V;
        float mx = x[0];
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += p[v] = expf(x[v] - mx);
        for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum);
        if (targets[i] == 0) continue; // PAD: ignore_index
        loss += -(x[targets[i]] - mx - log(sum));
        n++;
    }
    *n_valid = n;
    return n ? (float)(loss / n) : 0.0f;
}

// backward of: loss = mean over non-PAD rows of -log softmax(logits)[target]
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, int n_valid,
                           float scale)
{
    if (n_valid == 0) return;
    float g = scale / (float)n_valid;
    for (int i = 0; i < N; i++) {
        if (targets[i] == 0) continue;
        float *d = dlogits + (size_t)i * V;
        const float *p = probs + (size_t)i * V;
        for (int v = 0; v < V; v++) d[v] += g * p[v];
        d[targets[i]] -= g;
    }
}

// cos(a, b) and its gradient parts; norms clamped at 1e-8 as torch.nn.functional.cosine_similarity
static double cosine(const float *a, const float *b, int C, double *na, double *nb, double *dot)
{
    double ab = 0, aa = 0, bb = 0;
    for (int c = 0; c < C; c++) ab += (double)a[c] * b[c], aa += (double)a[c] * a[c], bb += (double)b[c] * b[c];
    *na = fmax(sqrt(aa), 1e-8);
    *nb = fmax(sqrt(bb), 1e-8);
    *dot = ab;
    return ab / (*na * *nb);
}

// d cos / da = b / (|a||b|) - cos * a / |a|^2, accumulated with weight g
static void cosine_grad(float *da, float *db, const float *a, const float *b, int C, double g)
{
    double na, nb, dot, cs = cosine(a, b, C, &na, &nb, &dot);
    for (int c = 0; c < C; c++) {
        da[c] += (float)(g * (b[c] / (na * nb) - cs * a[c] / (na * na)));
        db[c] += (float)(g * (a[c] / (na * nb) - cs * b[c] / (nb * nb)));
    }
}

double cosine_pairs_forward(const float *h, int B, int T, int C, long *n_pairs)
{
    double sum = 0, na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i + 1 < T; i += 2) {
            const float *r = h + ((size_t)b * T + i) * C;
            sum += cosine(r, r + C, C, &na, &nb, &dot);
        }
    *n_pairs = (long)B * (T / 2);
    return sum;
}

void cosine_pairs_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i + 1 < T; i += 2) {
            size_t o = ((size_t)b * T + i) * C;
            cosine_grad(dh + o, dh + o + C, h + o, h + o + C, C, scale);
        }
}

double exp_cosine_forward(const float *h, int B, int T, int C)
{
    double sum = 0, na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) { // cos is symmetric: each unordered pair counts twice
                const float *x = h + (size_t)b * T * C;
                sum += 2 * exp(-cosine(x + (size_t)i * C, x + (size_t)j * C, C, &na, &nb, &dot));
            }
    return sum;
}

// backward of: sum_{i != j} exp(-cos(h_i, h_j)); d/dcos = -exp(-cos), twice per unordered pair
void exp_cosine_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    double na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) {
                size_t oi = ((size_t)b * T + i) * C, oj = ((size_t)b * T + j) * C;
                double cs = cosine(h + oi, h + oj, C, &na, &nb, &dot);
                cosine_grad(dh + oi, dh + oj, h + oi, h + oj, C, -2.0 * exp(-cs) * scale);
            }
}
