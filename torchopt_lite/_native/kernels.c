/* Elementwise optimizer loops that torch has no single-pass kernel for (see _native/__init__.py).
 *
 * Every entry point takes per-leaf pointer arrays, the leaves' sizes, the step's scalars and a
 * worker count; the elements of all leaves, laid end to end, are split evenly among the workers.
 * Arithmetic is in the tensors' dtype, in the order of the multi-tensor ops the Python fallbacks
 * run, with no fused multiply-add contraction (compiled with -ffp-contract=off).
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_WORKERS 64
#define MAX_ARRAYS 9

/* Where the compiler can, one copy of each loop per vector width, picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* Each kernel is a loop over restrict-qualified arrays (so the compiler vectorizes it) and an
 * adapter that unpacks one leaf's pointers and the step's scalars. */

/* ---- SGD momentum, in place --------------------------------------------------------------
 * arrays: 0 g (gradient in, update out), 1 b (trace). k: momentum, dampening, lr, nesterov, first.
 *     b <- g on the first step, else momentum * b + (1 - dampening) * g
 *     g <- -lr * (nesterov ? g + momentum * b : b)
 */
#define SGD_MOMENTUM(T)                                                                         \
    CLONES static void sgd_momentum_loop_##T(T *restrict g, T *restrict b, int64_t n, T mu,    \
                                             T keep, T step, int nesterov, int first) {         \
        for (int64_t j = 0; j < n; ++j) {                                                       \
            T trace = first ? g[j] : mu * b[j] + keep * g[j];                                   \
            b[j] = trace;                                                                       \
            g[j] = step * (nesterov ? g[j] + mu * trace : trace);                               \
        }                                                                                       \
    }                                                                                           \
    static void sgd_momentum_##T(void *const *p, int64_t n, const double *k) {                 \
        sgd_momentum_loop_##T(p[0], p[1], n, (T)k[0], (T)(1.0 - k[1]), (T)(-k[2]), k[3] != 0.0, \
                              k[4] != 0.0);                                                     \
    }

/* ---- Adam, out of place ------------------------------------------------------------------
 * arrays: 0 g, 1 m, 2 v (read); 3 u, 4 m', 5 v' (written).
 * k: 1 - b1, b2, 1 - b2, c = 1 / (1 - b2^t), eps_root, eps, a = -lr / (1 - b1^t).
 *     m' = lerp(m, g, 1 - b1)         v' = b2 v + (1 - b2) g^2
 *     u  = m' / (sqrt(c v' + eps_root) + eps) * a
 * torch's lerp starts from the nearer end; one loop for each end keeps both vectorized.
 */
#define ADAM_FORWARD_LOOP(T, SQRT, NAME, NEW_M)                                                 \
    CLONES static void NAME(const T *restrict g, const T *restrict m, const T *restrict v,     \
                            T *restrict u, T *restrict m1, T *restrict v1, int64_t n, T w,      \
                            T b2, T w2, T c, T eps_root, T eps, T a) {                          \
        for (int64_t j = 0; j < n; ++j) {                                                       \
            T mj = NEW_M, vj = v[j] * b2 + w2 * g[j] * g[j];                                    \
            m1[j] = mj;                                                                         \
            v1[j] = vj;                                                                         \
            u[j] = mj / (SQRT(vj * c + eps_root) + eps) * a;                                    \
        }                                                                                       \
    }

#define ADAM_FORWARD(T, SQRT)                                                                   \
    ADAM_FORWARD_LOOP(T, SQRT, adam_forward_near_m_##T, m[j] + w * (g[j] - m[j]))              \
    ADAM_FORWARD_LOOP(T, SQRT, adam_forward_near_g_##T, g[j] - (g[j] - m[j]) * ((T)1 - w))     \
    static void adam_forward_##T(void *const *p, int64_t n, const double *k) {                 \
        T w = (T)k[0];                                                                          \
        (w < (T)0.5 ? adam_forward_near_m_##T : adam_forward_near_g_##T)(                       \
            p[0], p[1], p[2], p[3], p[4], p[5], n, w, (T)k[1], (T)k[2], (T)k[3], (T)k[4],       \
            (T)k[5], (T)k[6]);                                                                  \
    }

/* ---- Adam's vector-Jacobian product, no graph ---------------------------------------------
 * arrays: 0 u_bar, 1 m'_bar, 2 v'_bar (read; a NULL leaf is zeros), 3 g, 4 m', 5 v' (read);
 * 6 g_bar, 7 m_bar, 8 v_bar (written). k: a, c, eps_root, eps, 1 - b1, 2 (1 - b2), b1, b2.
 *     s = sqrt(c v' + eps_root), D = s + eps, t = u_bar / D
 *     gm = m'_bar + a t,   gv = v'_bar + (-a c / 2) t m' / D / s
 *     g_bar = (1 - b1) gm + 2 (1 - b2) g gv,   m_bar = b1 gm,   v_bar = b2 gv
 * Absent output gradients are rare (an unused state), so they take a second loop.
 */
#define ADAM_BACKWARD(T, SQRT)                                                                  \
    CLONES static void adam_backward_loop_##T(                                                  \
        const T *restrict ub, const T *restrict mb, const T *restrict vb, const T *restrict g,  \
        const T *restrict m1, const T *restrict v1, T *restrict gb, T *restrict gm,             \
        T *restrict gv, int64_t n, T a, T c, T eps_root, T eps, T w1, T w2, T b1, T b2,         \
        T half_ac) {                                                                            \
        for (int64_t j = 0; j < n; ++j) {                                                       \
            T s = SQRT(v1[j] * c + eps_root), d = s + eps, t = ub[j] / d;                       \
            T m_j = t * a + mb[j], v_j = t * m1[j] / d / s * half_ac + vb[j];                   \
            gb[j] = m_j * w1 + w2 * g[j] * v_j;                                                 \
            gm[j] = m_j * b1;                                                                   \
            gv[j] = v_j * b2;                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void adam_backward_partial_##T(                                                      \
        const T *ub, const T *mb, const T *vb, const T *g, const T *m1, const T *v1, T *gb,     \
        T *gm, T *gv, int64_t n, T a, T c, T eps_root, T eps, T w1, T w2, T b1, T b2,           \
        T half_ac) {                                                                            \
        for (int64_t j = 0; j < n; ++j) {                                                       \
            T m_j = 0, v_j = 0;                                                                 \
            if (ub) {                                                                           \
                T s = SQRT(v1[j] * c + eps_root), d = s + eps, t = ub[j] / d;                   \
                m_j = t * a;                                                                    \
                v_j = t * m1[j] / d / s * half_ac;                                              \
            }                                                                                   \
            if (mb) m_j = m_j + mb[j];                                                          \
            if (vb) v_j = v_j + vb[j];                                                          \
            gb[j] = m_j * w1 + w2 * g[j] * v_j;                                                 \
            gm[j] = m_j * b1;                                                                   \
            gv[j] = v_j * b2;                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void adam_backward_##T(void *const *p, int64_t n, const double *k) {                \
        int complete = p[0] && p[1] && p[2];                                                    \
        (complete ? adam_backward_loop_##T : adam_backward_partial_##T)(                        \
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], n, (T)k[0], (T)k[1],          \
            (T)k[2], (T)k[3], (T)k[4], (T)k[5], (T)k[6], (T)k[7], (T)(-0.5 * k[0] * k[1]));     \
    }

SGD_MOMENTUM(float)
SGD_MOMENTUM(double)
ADAM_FORWARD(float, sqrtf)
ADAM_FORWARD(double, sqrt)
ADAM_BACKWARD(float, sqrtf)
ADAM_BACKWARD(double, sqrt)

typedef struct {
    void *const *arrays[MAX_ARRAYS]; /* per-leaf pointer arrays; a NULL entry is an absent leaf */
    int count;                       /* how many arrays */
    size_t item;                     /* bytes per element */
    const int64_t *sizes;
    int64_t leaves;
    const double *k;
    void (*leaf)(void *const *, int64_t, const double *); /* the kernel's adapter */
    int64_t begin, end; /* this worker's element range over the leaves laid end to end */
} Job;

/* Runs the kernel on each leaf's part of [begin, end), offsetting every present pointer. */
static void *work(void *arg) {
    const Job *job = (const Job *)arg;
    int64_t offset = 0;
    for (int64_t i = 0; i < job->leaves && offset < job->end; offset += job->sizes[i++]) {
        int64_t lo = job->begin > offset ? job->begin - offset : 0;
        int64_t rest = job->end - offset;
        int64_t hi = rest < job->sizes[i] ? rest : job->sizes[i];
        void *p[MAX_ARRAYS];
        if (lo >= hi) continue;
        for (int a = 0; a < job->count; ++a) {
            char *base = (char *)job->arrays[a][i];
            p[a] = base ? base + lo * (int64_t)job->item : 0;
        }
        job->leaf(p, hi - lo, job->k);
    }
    return 0;
}

/* Splits the elements evenly over `workers` threads (the caller sizes it to the work); a thread
 * that cannot be started has its share run on the calling thread. */
static int run(const Job *job, int64_t total, int workers) {
    pthread_t threads[MAX_WORKERS];
    Job jobs[MAX_WORKERS];
    int started = 0;
    if (workers < 1) workers = 1;
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    for (int w = 0; w < workers; ++w) {
        jobs[w] = *job;
        jobs[w].begin = total * w / workers;
        jobs[w].end = total * (w + 1) / workers;
    }
    for (int w = 1; w < workers; ++w) {
        if (pthread_create(&threads[w], 0, work, &jobs[w]) != 0) break;
        started = w;
    }
    work(&jobs[0]);
    for (int w = started + 1; w < workers; ++w) work(&jobs[w]);
    for (int w = 1; w <= started; ++w) pthread_join(threads[w], 0);
    return 0;
}

/* Entry points: `arrays` holds the kernel's pointer arrays (see each kernel), `k` its scalars. */
#define DEFINE_ENTRY(NAME, T, COUNT)                                                            \
    int NAME(void *const *const *arrays, const int64_t *sizes, int64_t leaves, const double *k, \
             int64_t total, int workers) {                                                      \
        Job job = {{0}, COUNT, sizeof(T), sizes, leaves, k, NAME##_leaf, 0, 0};                \
        for (int a = 0; a < COUNT; ++a) job.arrays[a] = arrays[a];                              \
        return run(&job, total, workers);                                                       \
    }

#define sgd_momentum_f32_leaf sgd_momentum_float
#define sgd_momentum_f64_leaf sgd_momentum_double
#define adam_forward_f32_leaf adam_forward_float
#define adam_forward_f64_leaf adam_forward_double
#define adam_backward_f32_leaf adam_backward_float
#define adam_backward_f64_leaf adam_backward_double

DEFINE_ENTRY(sgd_momentum_f32, float, 2)
DEFINE_ENTRY(sgd_momentum_f64, double, 2)
DEFINE_ENTRY(adam_forward_f32, float, 6)
DEFINE_ENTRY(adam_forward_f64, double, 6)
DEFINE_ENTRY(adam_backward_f32, float, 9)
DEFINE_ENTRY(adam_backward_f64, double, 9)
