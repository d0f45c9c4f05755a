/* util.c: error reporting (thread-local message + status), the log hook, file-type checks
 * before opening, checked size arithmetic, aligned allocation, clocks, and CPU counting. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "runtime/internal.h"

static _Thread_local char em_errbuf[512];

ember_status em_fail(ember_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(em_errbuf, sizeof em_errbuf, fmt, ap);
    va_end(ap);
    return status;
}

void em_clear_error(void) { em_errbuf[0] = 0; }

const char *ember_last_error(void) { return em_errbuf; }

/* The log hook: one process-wide callback and its user data, read together under a lock
 * so a concurrent ember_log_set never pairs one callback with another's data. */
static pthread_mutex_t em_log_mu = PTHREAD_MUTEX_INITIALIZER;
static ember_log_callback em_log_cb;
static void *em_log_ud;

void ember_log_set(ember_log_callback cb, void *user_data) {
    pthread_mutex_lock(&em_log_mu);
    em_log_cb = cb;
    em_log_ud = user_data;
    pthread_mutex_unlock(&em_log_mu);
}

void em_log(ember_log_level level, const char *fmt, ...) {
    pthread_mutex_lock(&em_log_mu);
    ember_log_callback cb = em_log_cb;
    void *ud = em_log_ud;
    pthread_mutex_unlock(&em_log_mu);
    if (!cb) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb(level, msg, ud);
}

static const char *file_kind(mode_t mode) {
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a character device"
         : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

ember_status em_check_regular(const char *path) {
    struct stat st;
    if (stat(path, &st)) return em_fail(EMBER_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return em_fail(EMBER_E_IO, "%s: is %s, not a regular file", path, file_kind(st.st_mode));
    return EMBER_OK;
}

FILE *em_fopen_regular(const char *path, ember_status *status) {
    *status = em_check_regular(path);
    if (*status) return NULL;
    /* O_NONBLOCK: if a FIFO replaced the file since the check, open returns at once and
     * fstat refuses it; reads from a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { *status = em_fail(EMBER_E_IO, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st)) *status = em_fail(EMBER_E_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        *status = em_fail(EMBER_E_IO, "%s: is %s, not a regular file", path, file_kind(st.st_mode));
    if (*status) { close(fd); return NULL; }
    FILE *f = fdopen(fd, "rb");
    if (!f) { *status = em_fail(EMBER_E_NOMEM, "%s: cannot open: %s", path, strerror(errno)); close(fd); }
    return f;
}

const char *ember_strerror(ember_status s) {
    switch (s) {
    case EMBER_OK: return "ok";
    case EMBER_E_INVALID: return "invalid argument";
    case EMBER_E_IO: return "i/o error";
    case EMBER_E_FORMAT: return "bad file format";
    case EMBER_E_UNSUPPORTED: return "unsupported";
    case EMBER_E_NOMEM: return "out of memory";
    case EMBER_E_CONTEXT_FULL: return "context full";
    }
    return "unknown status";
}

const char *ember_version(void) { return EMBER_VERSION; }

int em_mul_size(size_t a, size_t b, size_t *out) {
    if (b && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}

int em_add_size(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return -1;
    *out = a + b;
    return 0;
}

void *em_alloc_aligned(size_t size) {
    void *p = NULL;
    size_t rounded;
    if (em_add_size(size, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64)) return NULL;
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void em_free_aligned(void *p) { free(p); }

double em_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo; falls back to
 * the online CPU count. Decode is bandwidth-bound, so hyper-threads only add contention. */
int em_physical_cores(void) {
    int logical = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (logical < 1) logical = 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return logical;
    char line[256];
    int phys = -1, n = 0;
    int seen[256][2];
    while (fgets(line, sizeof line, f)) {
        int v;
        if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
        else if (sscanf(line, "core id : %d", &v) == 1) {
            int dup = 0;
            for (int i = 0; i < n; i++) dup |= seen[i][0] == phys && seen[i][1] == v;
            if (!dup && n < 256) { seen[n][0] = phys; seen[n][1] = v; n++; }
        }
    }
    fclose(f);
    return n > 0 && n <= logical ? n : logical;
}
