/* migflow Linux guest: dirties memory at a controlled rate, verifies it, and
 * owns the heartbeat port.
 *
 * The Linux counterpart of the tiny guest (plugins/migflow_lab/guest/kernel.c),
 * with the same parameters and pacing.  Parameters (kernel command line):
 *
 *   ws=MiB         working set (clamped to available RAM; default 64)
 *   rate=MiB/s     target dirty rate, decimals allowed; 0 = as fast as possible
 *                  (default 32)
 *   pattern=seq|random   page order after a first sweep in order (default seq)
 *   hb_us=N        heartbeat period in microseconds (default 1000, min 50)
 *   seed=N         seed of the random pattern (default 1)
 *
 * Serial protocol on the FIRST serial port (COM1, ttyS0), see docs/guest.md:
 *   '.'            one heartbeat, every hb_us
 *   '#' ... '\n'   a status line, never containing a heartbeat:
 *                  "#migflow-guest v1 guest=linux ws=.. rate=.. pattern=.. hb_us=.. mem_mib=.."
 *                  "#rate=31.82 ws=64 pattern=seq up=12 ver=N bad=M"  about once a second
 *                  "#steady t_ms=.. rate=.."   once (see status())
 *                  and every line other programs send through STATUS_FIFO.
 * This process is the only writer of COM1: it interleaves heartbeats and whole
 * status lines itself.  It writes the UART directly (ioperm + outb, as the
 * tiny guest does), or through /dev/ttyS0 in raw mode when ioperm is refused.
 *
 * Verification: each dirtying write to page i increments expected[i] (a shadow
 * array outside the working set) and stores word 0 = the count and the last
 * word = count ^ 0xA5A5A5A5 ^ i.  Between slices a few pages are checked
 * against expected[] (32 per 1 ms slice: a pass over 64 MiB takes 0.5 s); "ver" counts
 * completed passes, "bad" the pages found wrong (pages never dirtied, with
 * expected[i] == 0, are not checked).  A migration that loses a dirty page
 * makes bad > 0.
 */
#include "common.h"
#include <sched.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <termios.h>

#define COM1 0x3f8
#define PAGE 4096u
#define WORDS (PAGE / 4)
#define CHECK 0xA5A5A5A5u
#define NS_PER_S 1000000000ull
#define SLICE_NS 1000000ull          /* pacing slice: 1 ms */
#define RESERVE_MIB 24               /* RAM left to the kernel and the other programs */
#define MAX_BAD_LINES 10             /* "#bad ..." lines printed at most */

static struct { u32 ws_mib; u64 rate_milli; int random; u32 hb_us; u32 seed; } P = { 64, 32000, 0, 1000, 1 };

/* ---- the heartbeat port ------------------------------------------------ */

static int tty_fd = -1;             /* -1: direct port I/O */

static void serial_init(void)
{
    struct termios t;
    if (ioperm(COM1, 8, 1) == 0) {
        outb(0x00, COM1 + 1);       /* no interrupts */
        outb(0x80, COM1 + 3);       /* DLAB */
        outb(0x01, COM1 + 0);       /* 115200 baud */
        outb(0x00, COM1 + 1);
        outb(0x03, COM1 + 3);       /* 8N1 */
        outb(0xC7, COM1 + 2);       /* FIFO on, cleared */
        outb(0x03, COM1 + 4);       /* DTR, RTS */
        return;
    }
    tty_fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
    if (tty_fd < 0) { perror("mf-dirty: /dev/ttyS0"); exit(1); }
    if (tcgetattr(tty_fd, &t) == 0) {
        cfmakeraw(&t);
        cfsetospeed(&t, B115200);
        tcsetattr(tty_fd, TCSANOW, &t);
    }
}

static void serial_write(const char *s, size_t n)
{
    if (tty_fd >= 0) {
        while (n) {
            ssize_t w = write(tty_fd, s, n);
            if (w <= 0) { if (errno == EINTR) continue; return; }
            s += w;
            n -= (size_t)w;
        }
        return;
    }
    while (n--) {
        u32 spins = 0;
        /* Wait (bounded) for the transmit holding register to be empty. */
        while (!(inb(COM1 + 5) & 0x20) && ++spins < 100000) ;
        outb((unsigned char)*s++, COM1);
    }
}

static void serial_line(const char *fmt, ...)
{
    char buf[STATUS_MAX + 2];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) n = (int)sizeof buf - 1;
    if (n > 0) serial_write(buf, (size_t)n);
}

/* ---- status lines from the other programs ------------------------------ */

static int fifo_fd = -1;
static char pend[2 * STATUS_MAX];
static size_t npend;

static void fifo_open(void)
{
    mkfifo(STATUS_FIFO, 0600);
    fifo_fd = open(STATUS_FIFO, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    /* A writer of our own: reads give EAGAIN, not EOF, when all others close. */
    if (fifo_fd >= 0) open(STATUS_FIFO, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
}

/* Forward every complete line waiting in the FIFO, whole, to the port. */
static void fifo_poll(void)
{
    ssize_t n;
    char *nl;
    if (fifo_fd < 0) return;
    n = read(fifo_fd, pend + npend, sizeof pend - npend);
    if (n <= 0) return;
    npend += (size_t)n;
    while ((nl = memchr(pend, '\n', npend)) != NULL) {
        size_t len = (size_t)(nl - pend) + 1;
        if (pend[0] != '#') serial_write("#", 1);   /* never let a '.' count as a heartbeat */
        serial_write(pend, len);
        memmove(pend, pend + len, npend - len);
        npend -= len;
    }
    if (npend == sizeof pend) npend = 0;             /* an overlong line: drop it */
}

/* ---- the workload ------------------------------------------------------ */

static volatile u32 *ws;            /* the working set */
static u32 *expected;               /* shadow: count last written to each page */
static u32 npages, seq_idx, rng, vidx, vpp;
static u64 last_r100;            /* the rate of the previous status line, x100 */
static u64 dirtied;                 /* pages dirtied since start */
static u32 ver, bad;

static u64 hb_ns, t_start, next_hb, next_status, last_status_t, last_status_pages;
static int steady_done;

static inline void dirty_page(u32 i)
{
    volatile u32 *p = ws + (size_t)i * WORDS;
    u32 c = ++expected[i];
    p[0] = c;
    p[WORDS - 1] = c ^ CHECK ^ i;
}

static u32 fill_idx;               /* pages of the first sweep done */

static void dirty(u32 n)
{
    u32 np = npages;
    /* Every pattern starts with one sequential sweep, so that "written once"
       (the #steady line) means every page of the working set holds data: a
       random order alone leaves about 1/e of the pages untouched after
       npages writes. */
    while (n && fill_idx < np) {
        dirty_page(fill_idx++);
        n--;
    }
    if (P.random) {
        u32 x = rng;
        while (n--) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;            /* xorshift32 */
            dirty_page((u32)(((u64)x * np) >> 32));
        }
        rng = x;
    } else {
        u32 i = seq_idx;
        while (n--) {
            dirty_page(i);
            if (++i == np) i = 0;
        }
        seq_idx = i;
    }
}

/* Check n pages against expected[]; a full pass increments ver. */
static void verify(u32 n)
{
    u32 i = vidx;
    while (n--) {
        u32 e = expected[i];
        if (e) {
            volatile u32 *p = ws + (size_t)i * WORDS;
            u32 w0 = p[0], wl = p[WORDS - 1];
            if (w0 != e || wl != (e ^ CHECK ^ i)) {
                if (bad++ < MAX_BAD_LINES)
                    serial_line("#bad page=%u want=%u got=%u,%u ver=%u\n", i, e, w0, wl ^ CHECK ^ i, ver);
            }
        }
        if (++i == npages) { i = 0; ver++; }
    }
    vidx = i;
}

/* The "#rate" line, and the "#steady" line once: the working set has had one
 * full working set of writes (with seq, every page written once) and the rate
 * of the last second is within 10 % of the target (at once when unbounded). */
static void status(u64 now)
{
    u64 el_ns = now - last_status_t;
    u64 pages = dirtied - last_status_pages;
    /* MiB/s x 100 = pages * 4096 * 100 * 1e9 / (el_ns * 2^20) */
    u64 r100 = el_ns ? pages * 100ull * NS_PER_S / (el_ns * 256u) : 0;
    serial_line("#rate=%llu.%02llu ws=%u pattern=%s up=%llu ver=%u bad=%u\n",
                (unsigned long long)(r100 / 100), (unsigned long long)(r100 % 100), P.ws_mib,
                P.random ? "random" : "seq", (unsigned long long)((now - t_start) / NS_PER_S), ver, bad);
    if (!steady_done && dirtied >= npages) {
        /* Settled: at the target (within 10 %), or, for a rate the vCPU cannot
         * reach, the same as the second before (within 10 %): as the tiny guest. */
        u64 t100 = P.rate_milli / 10;
        u64 diff = r100 > t100 ? r100 - t100 : t100 - r100;
        u64 drift = r100 > last_r100 ? r100 - last_r100 : last_r100 - r100;
        if (P.rate_milli == 0 || diff * 10 <= t100 || (last_r100 && drift * 10 <= last_r100)) {
            serial_line("#steady t_ms=%llu rate=%llu.%02llu\n", (unsigned long long)((now - t_start) / 1000000u),
                        (unsigned long long)(r100 / 100), (unsigned long long)(r100 % 100));
            steady_done = 1;
        }
    }
    last_status_t = now;
    last_status_pages = dirtied;
    last_r100 = r100;
}

static inline void tick(u64 now)
{
    if (now >= next_hb) {
        serial_write(".", 1);
        next_hb += hb_ns;
        if (now >= next_hb) next_hb = now + hb_ns;   /* late (paused): no burst */
    }
    if (now >= next_status) {
        status(now);
        next_status = now + NS_PER_S;
    }
}

/* ---- setup ------------------------------------------------------------- */

static void parse_params(void)
{
    char v[16];
    P.ws_mib = param_u32("ws", P.ws_mib);
    P.rate_milli = param_milli("rate", P.rate_milli);
    if (param_str("pattern", v, sizeof v)) P.random = !strncmp(v, "rand", 4);
    P.hb_us = param_u32("hb_us", P.hb_us);
    P.seed = param_u32("seed", P.seed);
    if (P.hb_us < 50) P.hb_us = 50;
}

static u64 meminfo_kib(const char *key)
{
    char line[128];
    u64 v = 0;
    size_t klen = strlen(key);
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen) && line[klen] == ':') { v = strtoull(line + klen + 1, NULL, 10); break; }
    fclose(f);
    return v;
}

/* Largest working set (MiB) that fits, with its shadow, in available RAM. */
static u32 max_ws_mib(void)
{
    u64 avail = meminfo_kib("MemAvailable") / 1024u;
    u64 room = avail > RESERVE_MIB + 1 ? avail - RESERVE_MIB : 1;
    return (u32)(room * 1024u / 1025u);              /* + 4 bytes of shadow per page */
}

static void *alloc_locked(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int main(void)
{
    struct sysinfo si;
    struct utsname u;
    u32 max_ws, pps = 0, acc = 0;
    u64 now, slice_end;
    int unbounded;

    parse_params();
    serial_init();
    fifo_open();
    sysinfo(&si);
    uname(&u);
    serial_line("\n#migflow-guest v1 guest=linux ws=%u rate=%llu.%03llu pattern=%s hb_us=%u mem_mib=%llu kernel=%s\n",
                P.ws_mib, (unsigned long long)(P.rate_milli / 1000), (unsigned long long)(P.rate_milli % 1000),
                P.random ? "random" : "seq", P.hb_us,
                (unsigned long long)((u64)si.totalram * si.mem_unit >> 20), u.release);

    /* Keep everything resident: the working set must not be swapped or reclaimed. */
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) serial_line("#warn mlockall failed errno=%d\n", errno);
    max_ws = max_ws_mib();
    if (P.ws_mib == 0 || P.ws_mib > max_ws) {
        u32 want = P.ws_mib;
        P.ws_mib = P.ws_mib == 0 || max_ws == 0 ? 1 : max_ws;
        serial_line("#warn ws=%u does not fit: clamped to ws=%u\n", want, P.ws_mib);
    }
    npages = P.ws_mib * (1048576u / PAGE);
    expected = alloc_locked((size_t)npages * 4u);
    ws = alloc_locked((size_t)npages * PAGE);
    if (!ws || !expected) {
        serial_line("#error cannot allocate ws=%u errno=%d\n", P.ws_mib, errno);
        return 1;
    }
    rng = P.seed ? P.seed : 1;
    vpp = 32;  /* pages checked per 1 ms slice, as the tiny guest: a pass over 64 MiB takes 0.5 s */

    /* Pages per second; the pacing works in 1 ms slices with a remainder. */
    unbounded = P.rate_milli == 0 || P.rate_milli >= 1000000000ull;
    if (!unbounded) {
        struct sched_param sp = { .sched_priority = 50 };
        pps = (u32)(P.rate_milli * 256u / 1000u);
        if (pps == 0) pps = 1;
        /* Wake on time for heartbeats and slices; the program sleeps most of the time. */
        if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) serial_line("#warn no SCHED_FIFO errno=%d\n", errno);
    }
    hb_ns = (u64)P.hb_us * 1000u;

    now = mono_ns();
    t_start = last_status_t = now;
    next_hb = now + hb_ns;
    next_status = now + NS_PER_S;
    slice_end = now + SLICE_NS;

    if (unbounded) {
        for (;;) {
            dirty(64);
            dirtied += 64;
            now = mono_ns();
            tick(now);
            if ((i64)(now - slice_end) >= 0) {
                verify(vpp);
                fifo_poll();
                slice_end = now + SLICE_NS;
            }
        }
    }
    for (;;) {
        u32 n;
        acc += pps;                      /* acc in thousandths of a page */
        n = acc / 1000u;
        acc -= n * 1000u;
        while (n) {
            u32 c = n < 16 ? n : 16;
            dirty(c);
            dirtied += c;
            n -= c;
            tick(mono_ns());
        }
        verify(vpp);
        fifo_poll();
        for (;;) {
            now = mono_ns();
            tick(now);
            if ((i64)(now - slice_end) >= 0) break;
            sleep_until_ns(next_hb < slice_end ? next_hb : slice_end);
        }
        slice_end += SLICE_NS;
        /* More than 20 slices behind (paused, or the rate is out of reach):
         * drop the debt rather than catching up in a burst.  Shorter lags
         * are caught up, keeping the mean rate. */
        if ((i64)(now - slice_end) > (i64)(20 * SLICE_NS)) slice_end = now + SLICE_NS;
    }
}
