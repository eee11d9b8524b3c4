/*
 * C11 threads over pthreads, for sanitizer runs only (scripts/sanitize.sh preloads it; it is never
 * linked into a release binary).
 *
 * Why: librdkafka creates its threads with glibc's C11 thrd_create and locks with mtx_* and cnd_*.
 * glibc implements those by calling its internal pthread functions directly, so this toolchain's
 * ThreadSanitizer runtime, which intercepts only the public pthread_* entry points, never sees
 * librdkafka's threads start or its locks taken: the worker then crashes at once (SEGV in TSan's
 * allocator on a librdkafka thread), or would report races on data that librdkafka's mutexes
 * guard. Preloaded, these definitions come before glibc's (an unversioned definition satisfies
 * librdkafka's versioned references), and every call goes through the pthread functions that TSan
 * (and ASan) intercept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

static int result(int error) {
    switch (error) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
    }
}

/* thrd_start_t returns int, a pthread start routine returns void *: carry the int through. */
struct start { thrd_start_t function; void *argument; };

static void *trampoline(void *opaque) {
    struct start start = *(struct start *)opaque;
    free(opaque);
    return (void *)(intptr_t)start.function(start.argument);
}

int thrd_create(thrd_t *thread, thrd_start_t function, void *argument) {
    struct start *start = malloc(sizeof *start);
    if (start == NULL) return thrd_nomem;
    start->function = function;
    start->argument = argument;
    int error = pthread_create((pthread_t *)thread, NULL, trampoline, start);
    if (error != 0) free(start);
    return result(error);
}

int thrd_join(thrd_t thread, int *status) {
    void *value = NULL;
    int error = pthread_join((pthread_t)thread, &value);
    if (error == 0 && status != NULL) *status = (int)(intptr_t)value;
    return result(error);
}

int thrd_detach(thrd_t thread) { return result(pthread_detach((pthread_t)thread)); }
thrd_t thrd_current(void) { return (thrd_t)pthread_self(); }
int thrd_equal(thrd_t a, thrd_t b) { return pthread_equal((pthread_t)a, (pthread_t)b); }
_Noreturn void thrd_exit(int status) { pthread_exit((void *)(intptr_t)status); }
void thrd_yield(void) { sched_yield(); }

int thrd_sleep(const struct timespec *duration, struct timespec *remaining) {
    if (nanosleep(duration, remaining) == 0) return 0;
    return errno == EINTR ? -1 : -2;
}

int mtx_init(mtx_t *mutex, int type) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_settype(&attributes, (type & mtx_recursive) ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_NORMAL);
    int error = pthread_mutex_init((pthread_mutex_t *)mutex, &attributes);
    pthread_mutexattr_destroy(&attributes);
    return result(error);
}

int mtx_lock(mtx_t *mutex) { return result(pthread_mutex_lock((pthread_mutex_t *)mutex)); }
int mtx_trylock(mtx_t *mutex) { return result(pthread_mutex_trylock((pthread_mutex_t *)mutex)); }
int mtx_timedlock(mtx_t *restrict mutex, const struct timespec *restrict deadline) {
    return result(pthread_mutex_timedlock((pthread_mutex_t *)mutex, deadline));
}
int mtx_unlock(mtx_t *mutex) { return result(pthread_mutex_unlock((pthread_mutex_t *)mutex)); }
void mtx_destroy(mtx_t *mutex) { pthread_mutex_destroy((pthread_mutex_t *)mutex); }

int cnd_init(cnd_t *condition) { return result(pthread_cond_init((pthread_cond_t *)condition, NULL)); }
int cnd_signal(cnd_t *condition) { return result(pthread_cond_signal((pthread_cond_t *)condition)); }
int cnd_broadcast(cnd_t *condition) { return result(pthread_cond_broadcast((pthread_cond_t *)condition)); }
int cnd_wait(cnd_t *condition, mtx_t *mutex) {
    return result(pthread_cond_wait((pthread_cond_t *)condition, (pthread_mutex_t *)mutex));
}
int cnd_timedwait(cnd_t *restrict condition, mtx_t *restrict mutex, const struct timespec *restrict deadline) {
    return result(pthread_cond_timedwait((pthread_cond_t *)condition, (pthread_mutex_t *)mutex, deadline));
}
void cnd_destroy(cnd_t *condition) { pthread_cond_destroy((pthread_cond_t *)condition); }

int tss_create(tss_t *key, tss_dtor_t destructor) { return result(pthread_key_create((pthread_key_t *)key, destructor)); }
void *tss_get(tss_t key) { return pthread_getspecific((pthread_key_t)key); }
int tss_set(tss_t key, void *value) { return result(pthread_setspecific((pthread_key_t)key, value)); }
void tss_delete(tss_t key) { pthread_key_delete((pthread_key_t)key); }

void call_once(once_flag *flag, void (*function)(void)) { pthread_once((pthread_once_t *)flag, function); }
