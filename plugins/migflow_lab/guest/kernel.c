/* migflow guest: dirties memory at a controlled rate and sends a heartbeat.
 *
 * A 32-bit multiboot kernel with no OS, no paging and no interrupts.  It reads
 * its parameters from the multiboot command line:
 *
 *   ws=MiB         working set (clamped to guest RAM; default 64)
 *   rate=MiB/s     target dirty rate, decimals allowed; 0 = as fast as possible
 *                  (default 32)
 *   pattern=seq|random   page order after a first sweep in order (default seq)
 *   hb_us=N        heartbeat period in microseconds of guest time (default 1000)
 *   seed=N         seed of the random pattern (default 1)
 *
 * Serial protocol on COM1 (I/O port 0x3f8), see docs/guest.md:
 *   '.'            one heartbeat, every hb_us
 *   '#' ... '\n'   a status line (never contains a heartbeat); once at boot
 *                  ("#migflow-guest v1 ..."), about once a second
 *                  ("#rate=31.82 ws=64 pattern=seq up=12 ver=3 bad=0"), and
 *                  once when the workload is steady ("#steady t_ms=.. rate=..").
 *
 * Verification: each dirtying write to page i increments expected[i], a
 * shadow array placed right after the working set, and stores word 0 = the
 * count and the last word = count ^ 0xA5A5A5A5 ^ i.  32 pages are checked
 * after each 1 ms slice (a pass over 64 MiB takes half a second): "ver" counts
 * completed passes, "bad" the pages found wrong (pages
 * never dirtied, expected[i] == 0, are not checked).  A migration that loses a
 * dirty page makes bad > 0.
 *
 * Time comes from the TSC, calibrated against PIT channel 2 at boot.  All
 * 64-bit divisions go through udiv64() so no libgcc is needed.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define COM1 0x3f8
#define PAGE 4096u
#define WS_BASE 0x200000u           /* working set starts at 2 MiB */
#define WORDS (PAGE / 4)
#define CHECK 0xA5A5A5A5u
#define MAX_BAD_LINES 10            /* "#bad ..." lines printed at most */

/* ---- port I/O, TSC ----------------------------------------------------- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause"); }

/* gcc may emit calls to these for struct copies. */
void *memset(void *d, int c, u32 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u32 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

static u64 udiv64(u64 n, u64 d)
{
    u64 q = 0, r = 0;
    int i;
    if (d == 0) return 0;
    for (i = 63; i >= 0; i--) {
        r = (r << 1) | ((n >> i) & 1);
        if (r >= d) { r -= d; q |= (u64)1 << i; }
    }
    return q;
}

/* ---- serial ------------------------------------------------------------ */

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xC7);   /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

static void putc(char c)
{
    u32 spins = 0;
    /* Wait (bounded) for the transmit holding register to be empty. */
    while (!(inb(COM1 + 5) & 0x20) && ++spins < 100000) cpu_relax();
    outb(COM1, (u8)c);
}

static void puts(const char *s) { while (*s) putc(*s++); }

static void putu(u64 v)
{
    char buf[24];
    int i = 0;
    do { u64 q = udiv64(v, 10); buf[i++] = (char)('0' + (v - q * 10)); v = q; } while (v);
    while (i) putc(buf[--i]);
}

/* v / 10^decimals, printed with that many decimals */
static void putfixed(u64 v, int decimals)
{
    u64 scale = 1;
    int i;
    for (i = 0; i < decimals; i++) scale *= 10;
    putu(udiv64(v, scale));
    if (decimals) {
        u64 frac = v - udiv64(v, scale) * scale;
        putc('.');
        for (i = decimals - 1; i >= 0; i--) {
            u64 p = 1;
            int j;
            for (j = 0; j < i; j++) p *= 10;
            putc((char)('0' + (u32)udiv64(frac, p) % 10u));
        }
    }
}

/* ---- multiboot command line -------------------------------------------- */

struct mbinfo { u32 flags, mem_lower, mem_upper, boot_device, cmdline; };

static int streq_n(const char *a, const char *b, u32 n)
{
    while (n--) { if (*a != *b) return 0; if (!*a) return 1; a++; b++; }
    return 1;
}

static u32 parse_u32(const char *s, const char **end)
{
    u32 v = 0;
    while (*s >= '0' && *s <= '9') { v = v * 10 + (u32)(*s - '0'); if (v > 100000000u) v = 100000000u; s++; }
    if (end) *end = s;
    return v;
}

/* "32", "32.5", "0.25" -> thousandths */
static u64 parse_milli(const char *s)
{
    const char *e;
    u64 v = (u64)parse_u32(s, &e) * 1000;
    if (*e == '.') {
        u32 mul = 100;
        e++;
        while (*e >= '0' && *e <= '9') { v += (u64)(*e - '0') * mul; mul /= 10; e++; }
    }
    return v;
}

struct params { u32 ws_mib; u64 rate_milli; int random; u32 hb_us; u32 seed; };

static void parse_cmdline(const char *s, struct params *p)
{
    while (s && *s) {
        const char *tok, *val = 0;
        u32 klen;
        while (*s == ' ') s++;
        tok = s;
        while (*s && *s != ' ' && *s != '=') s++;
        klen = (u32)(s - tok);
        if (*s == '=') val = ++s;
        while (*s && *s != ' ') s++;
        if (!val) continue;
        if (klen == 2 && streq_n(tok, "ws", 2)) p->ws_mib = parse_u32(val, 0);
        else if (klen == 4 && streq_n(tok, "rate", 4)) p->rate_milli = parse_milli(val);
        else if (klen == 7 && streq_n(tok, "pattern", 7)) p->random = streq_n(val, "random", 6) || streq_n(val, "rand ", 5);
        else if (klen == 5 && streq_n(tok, "hb_us", 5)) p->hb_us = parse_u32(val, 0);
        else if (klen == 4 && streq_n(tok, "seed", 4)) p->seed = parse_u32(val, 0);
    }
}

/* ---- TSC calibration against PIT channel 2 ------------------------------ */

static u32 calibrate_tsc_khz(void)
{
    /* 50 ms worth of PIT ticks (1193182 Hz) */
    const u32 latch = 1193182u / 20u;
    u32 best = 0xffffffffu;
    int round;
    for (round = 0; round < 3; round++) {
        u64 t1, t2;
        u32 spins = 0;
        outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));  /* gate on, speaker off */
        outb(0x43, 0xB0);                                /* ch2, lo/hi, mode 0 */
        outb(0x42, (u8)(latch & 0xff));
        outb(0x42, (u8)(latch >> 8));
        t1 = rdtsc();
        while (!(inb(0x61) & 0x20) && ++spins < 0x7fffffffu) ;
        t2 = rdtsc();
        /* The shortest round had the fewest interruptions by the host. */
        if ((u32)(t2 - t1) < best) best = (u32)(t2 - t1);
    }
    return best / 50u;
}

/* ---- the workload ------------------------------------------------------ */

static struct params P = { 64, 32000, 0, 1000, 1 };
static volatile u32 *ws_base;
static u32 *expected;            /* shadow: count last written to each page */
static u32 npages, seq_idx, rng, vidx, vpp;
static u32 dirtied;              /* pages dirtied since boot (wraps) */
static u32 dirtied_hi;           /* ... saturating, for the steady test */
static u32 ver, bad;
static int steady_done;
static u64 last_r100;           /* the rate of the previous status line, x100 */

static u32 tsc_khz;
static u64 tsc_hz, hb_ticks;
static u64 next_hb, next_status, last_status_t, boot_t;
static u32 last_status_pages;

static inline void dirty_page(u32 i)
{
    volatile u32 *p = ws_base + i * WORDS;
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
            volatile u32 *p = ws_base + i * WORDS;
            u32 w0 = p[0], wl = p[WORDS - 1];
            if (w0 != e || wl != (e ^ CHECK ^ i)) {
                if (bad++ < MAX_BAD_LINES) {
                    puts("\n#bad page=");
                    putu(i);
                    puts(" want=");
                    putu(e);
                    puts(" got=");
                    putu(w0);
                    putc(',');
                    putu(wl ^ CHECK ^ i);
                    putc('\n');
                }
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
    u64 el_us = udiv64((now - last_status_t) * 1000u, tsc_khz);
    u32 pages = dirtied - last_status_pages;
    /* MiB/s x 100 = pages * 4096 * 100 * 1e6 / (el_us * 2^20) */
    u64 r100 = el_us ? udiv64((u64)pages * 100000000ull, el_us * 256u) : 0;
    puts("\n#rate=");
    putfixed(r100, 2);
    puts(" ws=");
    putu(P.ws_mib);
    puts(P.random ? " pattern=random" : " pattern=seq");
    puts(" up=");
    putu(udiv64(now - boot_t, tsc_hz));
    puts(" ver=");
    putu(ver);
    puts(" bad=");
    putu(bad);
    putc('\n');
    if (!steady_done && dirtied_hi >= npages) {
        /* Settled: at the target (within 10 %), or, for a rate the vCPU cannot
         * reach, the same as the second before (within 10 %). */
        u64 t100 = udiv64(P.rate_milli, 10);
        u64 diff = r100 > t100 ? r100 - t100 : t100 - r100;
        u64 drift = r100 > last_r100 ? r100 - last_r100 : last_r100 - r100;
        if (P.rate_milli == 0 || diff * 10 <= t100 || (last_r100 && drift * 10 <= last_r100)) {
            puts("#steady t_ms=");
            putu(udiv64(now - boot_t, tsc_khz));
            puts(" rate=");
            putfixed(r100, 2);
            putc('\n');
            steady_done = 1;
        }
    }
    last_status_t = now;
    last_status_pages = dirtied;
    last_r100 = r100;
}

static void count_dirtied(u32 c)
{
    dirtied += c;
    if (dirtied_hi < npages) dirtied_hi += c;
}

static inline void tick(u64 now)
{
    if (now >= next_hb) {
        putc('.');
        next_hb += hb_ticks;
        if (now >= next_hb) next_hb = now + hb_ticks;   /* late (paused): no burst */
    }
    if (now >= next_status) {
        status(now);
        next_status = now + tsc_hz;
    }
}

void kmain(u32 magic, struct mbinfo *mbi)
{
    u64 mem_top = 0;
    u32 max_ws, pps = 0, acc = 0;
    u64 slice_ticks, slice_end, now;
    int unbounded;

    serial_init();
    if (magic == 0x2BADB002u && (mbi->flags & 4) && mbi->cmdline)
        parse_cmdline((const char *)mbi->cmdline, &P);

    if (magic == 0x2BADB002u && (mbi->flags & 1))
        mem_top = 0x100000ull + (u64)mbi->mem_upper * 1024u;
    else
        mem_top = 64ull << 20;                           /* unknown: assume 64 MiB */
    if (mem_top > 0xF0000000ull) mem_top = 0xF0000000ull; /* no paging: stay below 4 GiB */
    /* The working set and its shadow (4 bytes per 4 KiB page) must fit. */
    max_ws = mem_top > WS_BASE + (2u << 20) ? (u32)(udiv64((mem_top - WS_BASE) * 1024u, 1025u) >> 20) : 1;

    tsc_khz = calibrate_tsc_khz();
    if (tsc_khz < 1000) tsc_khz = 1000;
    tsc_hz = (u64)tsc_khz * 1000u;
    if (P.hb_us < 50) P.hb_us = 50;
    hb_ticks = udiv64((u64)P.hb_us * tsc_khz, 1000u);

    puts("\n#migflow-guest v1 ws=");
    putu(P.ws_mib);
    puts(" rate=");
    putfixed(P.rate_milli, 3);
    puts(P.random ? " pattern=random" : " pattern=seq");
    puts(" hb_us=");
    putu(P.hb_us);
    puts(" tsc_khz=");
    putu(tsc_khz);
    puts(" mem_mib=");
    putu(mem_top >> 20);
    putc('\n');
    if (P.ws_mib == 0 || P.ws_mib > max_ws) {
        u32 want = P.ws_mib;
        P.ws_mib = P.ws_mib == 0 ? 1 : max_ws;
        puts("#warn ws=");
        putu(want);
        puts(" does not fit: clamped to ws=");
        putu(P.ws_mib);
        putc('\n');
    }

    ws_base = (volatile u32 *)WS_BASE;
    npages = P.ws_mib * (1048576u / PAGE);
    expected = (u32 *)(WS_BASE + npages * PAGE);
    memset(expected, 0, npages * 4u);                    /* RAM may hold a previous boot's */
    rng = P.seed ? P.seed : 1;
    /* 32 pages checked per 1 ms slice: a pass over 64 MiB takes 0.5 s.  Checking
     * more (one pass a second over a large working set) costs the dirtier its
     * pace on a host with slow page walks (a 960 MiB set fell to a third of its
     * rate with 274 pages a slice). */
    vpp = 32;

    /* Pages per second; the pacing works in 1 ms slices with a remainder. */
    unbounded = P.rate_milli == 0 || P.rate_milli >= 1000000000ull;
    if (!unbounded) pps = (u32)udiv64(P.rate_milli * 256u, 1000u);
    if (!unbounded && pps == 0) pps = 1;
    slice_ticks = tsc_khz;                               /* 1 ms */

    now = rdtsc();
    boot_t = last_status_t = now;
    next_hb = now + hb_ticks;
    next_status = now + tsc_hz;
    slice_end = now + slice_ticks;

    for (;;) {
        u32 n;
        if (unbounded) {
            n = 64;
        } else {
            acc += pps;                  /* acc in thousandths of a page */
            n = acc / 1000u;
            acc -= n * 1000u;
        }
        while (n) {
            u32 c = n < 16 ? n : 16;
            dirty(c);
            count_dirtied(c);
            n -= c;
            tick(rdtsc());
        }
        if (unbounded) {
            now = rdtsc();
            if ((i64)(now - slice_end) >= 0) {           /* verify once a millisecond */
                verify(vpp);
                slice_end = now + slice_ticks;
            }
            continue;
        }
        verify(vpp);
        for (;;) {
            now = rdtsc();
            tick(now);
            if ((i64)(now - slice_end) >= 0) break;
            cpu_relax();
        }
        slice_end += slice_ticks;
        /* More than 20 slices behind (paused, or the rate is out of reach):
         * drop the debt rather than catching up in a burst.  Shorter lags
         * (the host preempted the vCPU) are caught up, keeping the mean rate. */
        if ((i64)(now - slice_end) > (i64)(20 * slice_ticks)) slice_end = now + slice_ticks;
    }
}
