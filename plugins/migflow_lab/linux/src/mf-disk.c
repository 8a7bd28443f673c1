/* migflow Linux guest: writes the disk at a controlled rate and verifies it.
 *
 * Parameters (kernel command line):
 *
 *   disk_rate=KiB/s   write rate, in 4 KiB blocks (0: the program exits at once)
 *   disk_mib=MiB      size of the area written from the start of the disk,
 *                     clamped to the disk (default 64)
 *   disk_dev=PATH     the disk (default /dev/vda)
 *
 * Blocks are written in order, wrapping around the area, with O_DIRECT (the
 * guest's page cache is bypassed) and one fdatasync a second.  Each 4 KiB
 * block describes itself: a magic, its block number, its generation (how many
 * times it was written) and a checksum of the whole block; the rest is a
 * pseudo-random fill derived from (block, generation).  The generation of
 * every block is kept in memory.
 *
 * About once a second, after the fdatasync, a slice of the written area is
 * read back (O_DIRECT) and checked: magic, number, generation == the latest
 * written, checksum.  "dver" counts completed passes over the written area,
 * "dbad" the blocks found wrong.  Status, once a second, through the
 * heartbeat owner:
 *
 *   #disk wrote_kib=N disk_kibs=R dver=N dbad=M derr=E
 *
 * (disk_kibs, not "rate": the host's monitor takes any line with a "rate" key
 * as the dirty-rate status.)
 */
#include "common.h"
#include <linux/fs.h>
#include <sys/ioctl.h>

#define BLOCK 4096u
#define BWORDS (BLOCK / 8)
#define MAGIC 0x3130534b4944464dull     /* "MFDISK01" */
#define NS_PER_S 1000000000ull
#define SLICE_NS 10000000ull            /* pacing slice: 10 ms */
#define VERIFY_BLOCKS 2048u             /* read back per second: 8 MiB */
#define READ_BLOCKS 64u                 /* per read: 256 KiB */
#define MAX_BAD_LINES 10

static int fd;
static u32 nblocks, *gen;               /* generation last written, per block */
static u32 next_block, hi;              /* next block to write; blocks [0, hi) were written */
static u64 *wbuf, *rbuf;
static u64 wrote_blocks, dver, dbad, derr;
static u32 vcur;                        /* verification cursor */

static u64 fill_seed(u32 b, u32 g) { return ((u64)b << 32 ^ g ^ 0x9E3779B97F4A7C15ull) | 1; }

/* FNV-1a over the block's 64-bit words, the checksum word (3) taken as 0. */
static u64 checksum(const u64 *w)
{
    u64 h = 0xcbf29ce484222325ull;
    u32 i;
    for (i = 0; i < BWORDS; i++) h = (h ^ (i == 3 ? 0 : w[i])) * 0x100000001b3ull;
    return h;
}

static void make_block(u64 *w, u32 b, u32 g)
{
    u64 x = fill_seed(b, g);
    u32 i;
    w[0] = MAGIC;
    w[1] = b;
    w[2] = g;
    for (i = 4; i < BWORDS; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; w[i] = x; }   /* xorshift64 */
    w[3] = checksum(w);
}

static void write_one(void)
{
    u32 b = next_block;
    make_block(wbuf, b, gen[b] + 1);
    if (pwrite(fd, wbuf, BLOCK, (off_t)b * BLOCK) != (ssize_t)BLOCK) { derr++; return; }
    gen[b]++;
    wrote_blocks++;
    if (b + 1 > hi) hi = b + 1;
    next_block = b + 1 == nblocks ? 0 : b + 1;
}

static int block_ok(const u64 *w, u32 b)
{
    return w[0] == MAGIC && w[1] == b && w[2] == gen[b] && w[3] == checksum(w);
}

/* Read back up to VERIFY_BLOCKS blocks (and at most the written area, so at most
 * one pass) from the cursor; a wrap completes a pass. */
static void verify_slice(void)
{
    u32 left = hi < VERIFY_BLOCKS ? hi : VERIFY_BLOCKS;
    while (left && hi) {
        u32 n = READ_BLOCKS, i;
        if (n > left) n = left;
        if (n > hi - vcur) n = hi - vcur;
        if (pread(fd, rbuf, (size_t)n * BLOCK, (off_t)vcur * BLOCK) != (ssize_t)(n * BLOCK)) {
            derr++;
            return;
        }
        for (i = 0; i < n; i++) {
            const u64 *w = rbuf + (size_t)i * BWORDS;
            u32 b = vcur + i;
            if (gen[b] && !block_ok(w, b) && dbad++ < MAX_BAD_LINES)
                status_line("diskbad block=%u want_gen=%u got_gen=%llu", b, gen[b], (unsigned long long)w[2]);
        }
        vcur += n;
        left -= n;
        if (vcur >= hi) { vcur = 0; dver++; }
    }
}

int main(void)
{
    char dev[64] = "/dev/vda";
    u32 rate_kib = param_u32("disk_rate", 0), area_mib = param_u32("disk_mib", 64);
    u64 size = 0, per, acc = 0, now, slice_end, next_sec, last_t, last_blocks = 0;

    if (rate_kib == 0) return 0;
    param_str("disk_dev", dev, sizeof dev);
    fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) != 0) {
        status_line("warn disk=%s unusable errno=%d", dev, errno);
        return 1;
    }
    if (area_mib == 0) area_mib = 1;
    if ((u64)area_mib << 20 > size) area_mib = (u32)(size >> 20);
    nblocks = area_mib * (1048576u / BLOCK);
    if (nblocks == 0) { status_line("warn disk=%s too small", dev); return 1; }
    gen = calloc(nblocks, sizeof *gen);
    if (!gen || posix_memalign((void **)&wbuf, BLOCK, BLOCK) || posix_memalign((void **)&rbuf, BLOCK, READ_BLOCKS * BLOCK)) {
        status_line("warn disk: out of memory");
        return 1;
    }

    /* Per 10 ms slice, rate_kib / 4 / 100 blocks: acc counts 1/400 of a block. */
    per = (BLOCK / 1024u) * (NS_PER_S / SLICE_NS);
    now = mono_ns();
    last_t = now;
    slice_end = now + SLICE_NS;
    next_sec = now + NS_PER_S;
    for (;;) {
        acc += rate_kib;
        while (acc >= per) { write_one(); acc -= per; }
        now = mono_ns();
        if ((i64)(now - next_sec) >= 0) {
            u64 el = now - last_t, kib = (wrote_blocks - last_blocks) * (BLOCK / 1024u);
            u64 r10 = el ? kib * 10u * NS_PER_S / el : 0;
            if (fdatasync(fd) != 0) derr++;
            verify_slice();
            status_line("disk wrote_kib=%llu disk_kibs=%llu.%llu dver=%llu dbad=%llu derr=%llu",
                        (unsigned long long)(wrote_blocks * (BLOCK / 1024u)), (unsigned long long)(r10 / 10),
                        (unsigned long long)(r10 % 10), (unsigned long long)dver, (unsigned long long)dbad,
                        (unsigned long long)derr);
            last_t = now;
            last_blocks = wrote_blocks;
            next_sec = now + NS_PER_S;
        }
        sleep_until_ns(slice_end);
        slice_end += SLICE_NS;
        now = mono_ns();
        if ((i64)(now - slice_end) > (i64)(20 * SLICE_NS)) { slice_end = now + SLICE_NS; acc = 0; }   /* paused: no burst */
    }
}
