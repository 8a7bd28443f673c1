/* migflow Linux guest: helpers shared by the guest's programs.
 *
 * Parameters come from the kernel command line (/proc/cmdline), as
 * whitespace-separated key=value words; unknown words are ignored.
 *
 * Status lines ("#...\n") reach the heartbeat port through one FIFO,
 * STATUS_FIFO, read by mf-dirty, the only process that writes to ttyS0.
 * Each line is sent with one write() shorter than PIPE_BUF, which the kernel
 * keeps whole, so lines from several programs never mix.
 */
#ifndef MF_COMMON_H
#define MF_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STATUS_FIFO "/run/mfstatus"
#define STATUS_MAX 240              /* bytes per status line, '\n' included */

typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

static char mf_cmdline[4096];

/* Read /proc/cmdline once (an empty line when it cannot be read). */
static inline const char *cmdline(void)
{
    static int done;
    if (!done) {
        int fd = open("/proc/cmdline", O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, mf_cmdline, sizeof mf_cmdline - 1) : -1;
        mf_cmdline[n > 0 ? n : 0] = 0;
        if (fd >= 0) close(fd);
        done = 1;
    }
    return mf_cmdline;
}

/* The value of "key=" on the command line (the last one wins), copied into
 * out; returns 0 when the key is absent. */
static inline int param_str(const char *key, char *out, size_t outlen)
{
    const char *s = cmdline();
    size_t klen = strlen(key);
    int found = 0;
    while (*s) {
        const char *tok, *end;
        while (*s == ' ' || *s == '\n' || *s == '\t') s++;
        tok = s;
        while (*s && *s != ' ' && *s != '\n' && *s != '\t') s++;
        end = s;
        if ((size_t)(end - tok) > klen && !strncmp(tok, key, klen) && tok[klen] == '=') {
            size_t n = (size_t)(end - tok) - klen - 1;
            if (n >= outlen) n = outlen - 1;
            memcpy(out, tok + klen + 1, n);
            out[n] = 0;
            found = 1;
        }
    }
    return found;
}

static inline u32 param_u32(const char *key, u32 dflt)
{
    char v[32];
    return param_str(key, v, sizeof v) ? (u32)strtoul(v, NULL, 10) : dflt;
}

/* "32", "32.5", "0.25" -> thousandths (as the tiny guest parses rate=) */
static inline u64 param_milli(const char *key, u64 dflt)
{
    char v[32];
    const char *e;
    u64 r;
    u32 mul = 100;
    if (!param_str(key, v, sizeof v)) return dflt;
    r = (u64)strtoul(v, (char **)&e, 10) * 1000u;
    if (*e == '.')
        for (e++; *e >= '0' && *e <= '9'; e++, mul /= 10) r += (u64)(*e - '0') * mul;
    return r;
}

/* CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). */
static inline u64 mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
}

static inline void sleep_until_ns(u64 t)
{
    struct timespec ts = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) ;
}

/* Send one status line ("#" is prepended, "\n" appended) to the heartbeat
 * owner.  Never blocks: a line is dropped when the FIFO is full or has no
 * reader for 5 s; it then goes to stderr (the kernel console) instead. */
static inline void status_line(const char *fmt, ...)
{
    static int fd = -1;
    char buf[STATUS_MAX];
    va_list ap;
    int n;
    buf[0] = '#';
    va_start(ap, fmt);
    n = vsnprintf(buf + 1, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof buf - 3) n = (int)sizeof buf - 3;
    buf[1 + n] = '\n';
    if (fd < 0) {
        int tries;
        for (tries = 0; tries < 500 && fd < 0; tries++) {
            fd = open(STATUS_FIFO, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) usleep(10000);          /* ENXIO: no reader yet */
        }
    }
    if (fd < 0 || write(fd, buf, (size_t)n + 2) != n + 2)
        if (write(2, buf, (size_t)n + 2) < 0) { /* nowhere to report */ }
}

#endif
