/* migflow Linux guest: UDP echo responder.
 *
 * Parameters (kernel command line):
 *
 *   ip=ADDR/PREFIX   the NIC's address (set by /init; only reported here)
 *   echo_port=N      UDP port (default 7)
 *
 * Every datagram received on any address, port echo_port, goes back to its
 * sender unchanged, in a tight recvfrom/sendto loop.  Once listening it sends
 * "#net ip=ADDR echo_port=N" through the heartbeat owner.  It runs at a real
 * time priority below the dirtier's so that replies are not delayed by the
 * disk writer or a busy shell.
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

int main(void)
{
    char ip[64] = "none";
    u32 port = param_u32("echo_port", 7);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    struct sched_param sp = { .sched_priority = 40 };
    static char buf[65536];
    int s, rcvbuf = 4 << 20;

    param_str("ip", ip, sizeof ip);
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) { status_line("warn echo socket errno=%d", errno); return 1; }
    /* A large receive buffer absorbs bursts (root may exceed rmem_max). */
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    me.sin_port = htons((uint16_t)port);
    if (bind(s, (struct sockaddr *)&me, sizeof me) != 0) {
        status_line("warn echo bind port=%u errno=%d", port, errno);
        return 1;
    }
    sched_setscheduler(0, SCHED_FIFO, &sp);
    status_line("net ip=%s echo_port=%u", ip, port);
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0) continue;
        sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
    }
}
