/* The glance-gaze modules of a causal batch-norm GaGNet for one frame, with int8 weights.
 *
 * Built and loaded by gagnet/native.py, which also packs the weights; see that module for the
 * layout. Every matrix product is weight-only int8: the weights are int8 with one float scale
 * per output column, each product is accumulated in float32 from the float32 input, then scaled.
 * Norms are folded into the products and biases by gagnet/fast_step.py.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#define BLOCK 64

/* One matrix product y = scale * (x W) + bias: W int8 (ceil(N / 64), K, 64), zero-padded columns. */
typedef struct {
    const int8_t *w;
    const float *scale; /* (ceil(N / 64) * 64,) */
    const float *bias;  /* (N,) or NULL */
    int k, n;
} Mat;

static void gemv(const Mat *m, const float *restrict x, float *restrict y) {
    const int blocks = (m->n + BLOCK - 1) / BLOCK;
    for (int b = 0; b < blocks; b++) {
        float acc[BLOCK];
        memset(acc, 0, sizeof acc);
        const int8_t *restrict w = m->w + (size_t)b * m->k * BLOCK;
        for (int k = 0; k < m->k; k++) {
            const float xk = x[k];
            const int8_t *restrict wk = w + (size_t)k * BLOCK;
            for (int j = 0; j < BLOCK; j++) acc[j] += xk * (float)wk[j];
        }
        const int rows = m->n - BLOCK * b < BLOCK ? m->n - BLOCK * b : BLOCK;
        const float *scale = m->scale + BLOCK * b;
        float *out = y + BLOCK * b;
        if (m->bias) {
            const float *bias = m->bias + BLOCK * b;
            for (int j = 0; j < rows; j++) out[j] = acc[j] * scale[j] + bias[j];
        } else {
            for (int j = 0; j < rows; j++) out[j] = acc[j] * scale[j];
        }
    }
}

static inline float prelu(float v, float a) { return v > 0.0f ? v : a * v; }

static inline float activation(float v, int kind) { /* 0 sigmoid, 1 tanh, 2 relu */
    if (kind == 0) return 1.0f / (1.0f + expf(-v));
    if (kind == 1) return tanhf(v);
    return v > 0.0f ? v : 0.0f;
}

#define MAXD 1024
#define MAXF 1024
#define MAXTAPS 16

/* dims: stages, layers per stack, stacks (3), d_feat, cd1, bins F, kd1, gain activation; then
 * the dilation of each layer. mats: per stage the input conv (K = d_feat + 2F, N = 4 d_feat),
 * per layer and stack squeeze, dconv, expand (its bias: the folded norm), then the three output
 * convs. vecs: per stage, layer and stack act1, scale1, shift1, act2 (cd1 each).
 * feat (d_feat,), spec (2, F) in, est (2, F) out; windows: per stage, layer and stack the
 * last span = (kd1 - 1) * dilation dconv inputs as a ring: the input of frame t in row
 * t mod span (zeros before the stream starts), updated in place; frame: t, counted from 0.
 * Returns 0, or -1 for dimensions past the fixed buffers. */
int gagnet_stages(const int *dims, const Mat *mats, const float *const *vecs, const float *feat,
                  const float *spec, float *windows, float *est, long long frame) {
    const int q = dims[0], layers = dims[1], stacks = dims[2], d = dims[3], c = dims[4], f = dims[5];
    const int kd = dims[6], act = dims[7];
    const int *dil = dims + 8;
    if (d > MAXD || f > MAXF || stacks != 3 || kd > MAXTAPS || c * kd > MAXD) return -1;
    float in[2 * MAXD + 2 * MAXF], gated[4 * MAXD], x[3][MAXD], h[MAXD], cols[MAXD], u[MAXD], t[MAXD];
    float prev[2 * MAXF], out[3][MAXF];
    memcpy(prev, spec, sizeof(float) * 2 * f);
    for (int s = 0; s < q; s++) {
        memcpy(in, feat, sizeof(float) * d);
        memcpy(in + d, prev, sizeof(float) * 2 * f);
        gemv(mats++, in, gated);
        for (int i = 0; i < 2 * d; i++) gated[i] *= 1.0f / (1.0f + expf(-gated[2 * d + i]));
        memcpy(x[0], gated, sizeof(float) * d);     /* glance */
        memcpy(x[1], gated + d, sizeof(float) * d); /* gaze, real */
        memcpy(x[2], gated + d, sizeof(float) * d); /* gaze, imaginary */
        for (int l = 0; l < layers; l++) {
            const int span = (kd - 1) * dil[l];
            for (int st = 0; st < stacks; st++) {
                const float *act1 = vecs[0], *scale1 = vecs[1], *shift1 = vecs[2], *act2 = vecs[3];
                vecs += 4;
                gemv(mats++, x[st], h);
                for (int i = 0; i < c; i++) h[i] = prelu(h[i], act1[i]) * scale1[i] + shift1[i];
                /* taps oldest first: frame t - (kd - 1 - j) dilation, then this frame */
                for (int j = 0; j < kd - 1; j++) {
                    const long long row = (frame - (long long)(kd - 1 - j) * dil[l]) % span;
                    memcpy(cols + j * c, windows + (row < 0 ? row + span : row) * c, sizeof(float) * c);
                }
                memcpy(cols + (kd - 1) * c, h, sizeof(float) * c);
                if (span > 0) { /* this frame's row replaces frame t - span, read above */
                    memcpy(windows + (frame % span) * c, h, sizeof(float) * c);
                }
                windows += span * c;
                gemv(mats++, cols, u);
                for (int i = 0; i < c; i++) u[i] = prelu(u[i], act2[i]);
                gemv(mats++, u, t);
                for (int i = 0; i < d; i++) x[st][i] += t[i];
            }
        }
        for (int st = 0; st < 3; st++) gemv(mats++, x[st], out[st]);
        for (int i = 0; i < f; i++) {
            const float g = activation(out[0][i], act);
            prev[i] = g * prev[i] + out[1][i];
            prev[f + i] = g * prev[f + i] + out[2][i];
        }
    }
    memcpy(est, prev, sizeof(float) * 2 * f);
    return 0;
}
