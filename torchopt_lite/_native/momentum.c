/* The in-place SGD momentum step in one pass over memory (loaded by torchopt_lite._native).
 *
 * For every element of every leaf, with g the gradient (sign already flipped and weight decay
 * already added) and b the momentum trace:
 *
 *     b <- g                                    on the first step
 *     b <- momentum * b + (1 - dampening) * g   on later steps
 *     g <- -lr * (g + momentum * b)             with Nesterov momentum
 *     g <- -lr * b                              without
 *
 * Reading g and b and writing both is the least memory traffic a step can have when the update
 * is returned apart from the trace (4 streams); torch's stock kernels need three passes (7 streams).
 * Arithmetic is in the tensors' dtype, as torch's CPU kernels do for float and double.
 */
#include <pthread.h>
#include <stdint.h>

#define MAX_WORKERS 64

typedef struct {
    void *const *grads;   /* per leaf: the gradient in, the update out */
    void *const *traces;  /* per leaf: the momentum trace, updated */
    const int64_t *sizes; /* per leaf: number of elements */
    int64_t leaves;
    double momentum, dampening, lr;
    int nesterov, first;
    int64_t begin, end; /* this worker's element range over the leaves laid end to end */
} Job;

#define DEFINE_RANGE(NAME, T)                                                                  \
    static void *NAME(void *arg) {                                                             \
        const Job *job = (const Job *)arg;                                                     \
        const T mu = (T)job->momentum, keep = (T)(1.0 - job->dampening), step = (T)(-job->lr); \
        int64_t offset = 0;                                                                    \
        for (int64_t i = 0; i < job->leaves && offset < job->end; offset += job->sizes[i++]) { \
            int64_t lo = job->begin > offset ? job->begin - offset : 0;                        \
            int64_t hi = job->end - offset < job->sizes[i] ? job->end - offset : job->sizes[i]; \
            T *g = (T *)job->grads[i], *b = (T *)job->traces[i];                               \
            for (int64_t j = lo; j < hi; ++j) {                                                \
                T trace = job->first ? g[j] : mu * b[j] + keep * g[j];                         \
                b[j] = trace;                                                                  \
                g[j] = step * (job->nesterov ? g[j] + mu * trace : trace);                     \
            }                                                                                  \
        }                                                                                      \
        return 0;                                                                              \
    }

DEFINE_RANGE(range_f32, float)
DEFINE_RANGE(range_f64, double)

/* Splits the elements evenly over `workers` threads (the caller sizes it to the work). */
static int run(Job job, int64_t total, int workers, void *(*range)(void *)) {
    pthread_t threads[MAX_WORKERS];
    Job jobs[MAX_WORKERS];
    int started = 0;
    if (workers < 1) workers = 1;
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    for (int k = 0; k < workers; ++k) {
        jobs[k] = job;
        jobs[k].begin = total * k / workers;
        jobs[k].end = total * (k + 1) / workers;
    }
    for (int k = 1; k < workers; ++k) {
        if (pthread_create(&threads[k], 0, range, &jobs[k]) != 0) break;
        started = k;
    }
    range(&jobs[0]);
    for (int k = started + 1; k < workers; ++k) range(&jobs[k]); /* threads that did not start */
    for (int k = 1; k <= started; ++k) pthread_join(threads[k], 0);
    return 0;
}

#define DEFINE_ENTRY(NAME, RANGE)                                                              \
    int NAME(void *const *grads, void *const *traces, const int64_t *sizes, int64_t leaves,    \
             double momentum, double dampening, double lr, int nesterov, int first,            \
             int64_t total, int workers) {                                                     \
        Job job = {grads, traces, sizes, leaves, momentum, dampening, lr, nesterov, first, 0, 0}; \
        return run(job, total, workers, RANGE);                                                \
    }

DEFINE_ENTRY(sgd_momentum_f32, range_f32)
DEFINE_ENTRY(sgd_momentum_f64, range_f64)
