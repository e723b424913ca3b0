/*
 * csubs: the subscriber load generator of bench/subscribers.py, in C (bench/run.py --loadgen c).
 *
 * Why: per received frame the Python subscribers (lean.py under uvloop) cost ~5 us of CPU, about
 * what the server spends writing it; at 1,000 subscribers a latency run then partly measures the
 * load generator. This one does the same job with one epoll loop and a read() per readable
 * socket: no allocation per frame, no copy of a complete frame.
 *
 * Same command line (--kind surge|sio, --port, --count, --group, --mode count|latency,
 * --connect-concurrency) and the same stdin/stdout protocol as subscribers.py: one JSON line
 * "ready" once every subscriber has its sync (or the connect deadline passed), then one answer
 * per command: "reset", "drain <expected> <quiet_s>", "quit" (then "bye"). "reconnect" and
 * --deflate / --distinct-groups are not supported (use the Python subscribers).
 *
 * Frames: server frames are unmasked; text frames after the sync (Surge) or "42..." events
 * (Socket.IO: Engine.IO v4 over the websocket transport) are counted; in latency mode the send
 * time is read from the description ("L<monotonic ns>-...", written by writer.py) and the receipt
 * time is taken once per read(), CLOCK_MONOTONIC, as the Python subscribers do. Pings get pongs
 * (WebSocket and Engine.IO), closes are counted by code and echoed. Client frames are masked.
 *
 * --spin: poll without sleeping (epoll_wait with a zero timeout) while the load runs (from the
 * first frame after a reset until the drain is answered).
 * On loopback the server's write() runs the receiver's TCP input and, when the receiving process
 * sleeps in epoll_wait, its wake-up: costs a server pays to its network card instead when its
 * clients are other machines. A spinning load generator (one whole core) is never asleep, so the
 * server's writes stop paying for waking it; with and without --spin, side by side, show that
 * share.
 *
 * Build: gcc -O2 -Wall -o bench/csubs bench/csubs.c (bench/setup.sh does it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_NS (60LL * 1000000000LL)
#define READ_CHUNK 65536

enum { SURGE, SIO };
enum { HANDSHAKE, OPEN, GONE };

typedef struct {
    int fd, state, synced;
    int64_t synced_ns;
    char *buf; /* bytes of an incomplete frame (or of the handshake) */
    size_t len, cap;
} Conn;

typedef struct {
    int64_t *v;
    size_t n, cap;
} Vec;

static int kind = SURGE, latency_mode = 0, count = 0, port = 0, concurrency = 256, spin = 0;
static const char *group = "inbox", *host = "127.0.0.1";
static Conn *conns;
static int epfd, opened = 0, synced = 0, connected = 0, failures = 0, closed = 0;
static int64_t frames = 0, first_ns = 0, last_ns = 0;
static Vec lat, sent_at; /* latency mode: ns from the POST's start, and that start */
static int close_codes[5000];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void push(Vec *v, int64_t x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 65536;
        v->v = realloc(v->v, v->cap * sizeof(int64_t));
        if (!v->v) abort();
    }
    v->v[v->n++] = x;
}

static void append(Conn *c, const char *data, size_t n) {
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf) abort();
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
}

/* One masked client frame (FIN set). */
static void send_frame(Conn *c, int opcode, const char *payload, size_t n) {
    unsigned char out[256];
    size_t h = 0;
    if (n > sizeof out - 8) return;
    out[h++] = 0x80 | opcode;
    out[h++] = 0x80 | (unsigned char)n; /* all our frames are < 126 bytes */
    uint32_t key = (uint32_t)rand();
    memcpy(out + h, &key, 4);
    unsigned char *k = out + h;
    h += 4;
    for (size_t i = 0; i < n; i++) out[h + i] = (unsigned char)payload[i] ^ k[i & 3];
    if (write(c->fd, out, h + n) < 0) { /* the read side notices a dead peer */ }
}

static void send_text(Conn *c, const char *text) { send_frame(c, 0x1, text, strlen(text)); }

static void on_synced(Conn *c, int64_t now) {
    if (c->synced) return;
    c->synced = 1;
    c->synced_ns = now;
    synced++;
}

static void count_frame(const char *p, size_t n, int64_t now) {
    frames++;
    if (!first_ns) first_ns = now;
    last_ns = now;
    if (!latency_mode) return;
    static const char mark[] = "\"description\":\"L";
    const char *i = memmem(p, n, mark, sizeof mark - 1);
    if (!i) return;
    i += sizeof mark - 1;
    int64_t t0 = 0;
    while (i < p + n && *i >= '0' && *i <= '9') t0 = t0 * 10 + (*i++ - '0');
    push(&lat, now - t0);
    push(&sent_at, t0);
}

static void on_text(Conn *c, const char *p, size_t n, int64_t now) {
    if (kind == SIO) {
        if (n >= 2 && p[0] == '4' && p[1] == '2') count_frame(p, n, now);
        else if (n == 1 && p[0] == '2') send_text(c, "3");
        else if (n >= 1 && p[0] == '0') send_text(c, "40");
        else if (n >= 3 && !memcmp(p, "431", 3)) on_synced(c, now);
        else if (n >= 2 && !memcmp(p, "40", 2)) {
            char join[160];
            snprintf(join, sizeof join, "421[\"join\",\"%s\"]", group);
            send_text(c, join);
        }
        return;
    }
    if (c->synced) count_frame(p, n, now);
    else if (memmem(p, n, "\"type\":\"sync\"", 13)) on_synced(c, now);
}

static void drop(Conn *c) {
    if (c->state == GONE) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = GONE;
    closed++;
}

/* Parse every complete frame of p[0..n); returns the bytes consumed. */
static size_t parse(Conn *c, const char *p, size_t n, int64_t now) {
    size_t pos = 0;
    while (n - pos >= 2) {
        const unsigned char *b = (const unsigned char *)p + pos;
        uint64_t length = b[1] & 0x7F;
        size_t start;
        if (length < 126) start = 2;
        else if (length == 126) {
            if (n - pos < 4) break;
            length = ((uint64_t)b[2] << 8) | b[3];
            start = 4;
        } else {
            if (n - pos < 10) break;
            length = 0;
            for (int i = 2; i < 10; i++) length = (length << 8) | b[i];
            start = 10;
        }
        if (length > n - pos - start) break;
        int opcode = b[0] & 0x0F;
        const char *payload = p + pos + start;
        if (opcode == 0x1) on_text(c, payload, length, now); /* fragments: never sent here */
        else if (opcode == 0x9) send_frame(c, 0xA, payload, length);
        else if (opcode == 0x8) {
            int code = length >= 2 ? ((unsigned char)payload[0] << 8) | (unsigned char)payload[1]
                                   : 1005;
            if (code >= 0 && code < 5000) close_codes[code]++;
            send_frame(c, 0x8, payload, length >= 2 ? 2 : 0);
            drop(c);
            return n;
        }
        pos += start + length;
    }
    return pos;
}

static void on_readable(Conn *c) {
    static char chunk[READ_CHUNK];
    for (;;) {
        ssize_t got = read(c->fd, chunk, sizeof chunk);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(c);
            return;
        }
        if (got < 0) return;
        int64_t now = now_ns();
        const char *data = chunk;
        size_t n = (size_t)got;
        if (c->state == HANDSHAKE) {
            append(c, data, n);
            char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!end) continue;
            if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 101", 12)) {
                failures++;
                drop(c);
                return;
            }
            c->state = OPEN;
            connected++;
            size_t rest = c->len - (size_t)(end + 4 - c->buf);
            memmove(c->buf, end + 4, rest);
            c->len = rest;
            if (kind == SURGE) {
                char join[200];
                snprintf(join, sizeof join,
                         "{\"type\":\"join\",\"data\":{\"streamName\":\"todo\",\"groupId\":\"%s\","
                         "\"subscriptionId\":\"s1\"}}",
                         group);
                send_text(c, join);
            }
            data = NULL;
            n = 0;
        }
        if (c->len) { /* a partial frame is waiting: join it with what came */
            if (n) append(c, data, n);
            size_t used = parse(c, c->buf, c->len, now);
            if (c->state == GONE) return;
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
        } else {
            size_t used = parse(c, data, n, now);
            if (c->state == GONE) return;
            if (used < n) append(c, data + used, n - used);
        }
        if ((size_t)got < sizeof chunk) return;
    }
}

static void open_one(int i) {
    Conn *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { failures++; c->state = GONE; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        failures++;
        close(c->fd);
        c->state = GONE;
        return;
    }
    c->state = HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i + 1};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_writable(Conn *c, int i) { /* connected: send the upgrade, then only read */
    char req[512];
    unsigned char raw[16];
    for (int k = 0; k < 16; k++) raw[k] = (unsigned char)rand();
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int k = 0, o = 0; k < 16; k += 3) {
        uint32_t v = raw[k] << 16 | (k + 1 < 16 ? raw[k + 1] << 8 : 0) | (k + 2 < 16 ? raw[k + 2] : 0);
        key[o++] = b64[(v >> 18) & 63];
        key[o++] = b64[(v >> 12) & 63];
        key[o++] = k + 1 < 16 ? b64[(v >> 6) & 63] : '=';
        key[o++] = k + 2 < 16 ? b64[v & 63] : '=';
    }
    key[24] = 0;
    const char *path = kind == SIO ? "/socket.io/?EIO=4&transport=websocket" : "/";
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port, key);
    if (write(c->fd, req, (size_t)n) != n) { failures++; drop(c); closed--; return; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i + 1};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* {"p50":..,"p90":..,"p99":..,"p999":..,"max":..} of v (ns) in ms, like subscribers.py. */
static void percentiles(FILE *out, int64_t *v, size_t n) {
    if (!n) { fputs("{}", out); return; }
    qsort(v, n, sizeof *v, cmp64);
    double q[] = {0.50, 0.90, 0.99, 0.999};
    const char *k[] = {"p50", "p90", "p99", "p999"};
    fputc('{', out);
    for (int i = 0; i < 4; i++) {
        size_t at = (size_t)(q[i] * (double)n);
        fprintf(out, "\"%s\":%.6f,", k[i], (double)v[at < n ? at : n - 1] / 1e6);
    }
    fprintf(out, "\"max\":%.6f}", (double)v[n - 1] / 1e6);
}

typedef struct { int64_t t0, lat; } Pair;

static int cmp_pair(const void *a, const void *b) {
    const Pair *x = a, *y = b;
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

static void report_drained(void) {
    /* Per POST (send time): its first and its last receipt. */
    size_t n = lat.n, posts = 0;
    Pair *pairs = malloc((n + 1) * sizeof *pairs);
    int64_t *first = malloc((n + 1) * sizeof *first), *last = malloc((n + 1) * sizeof *last);
    for (size_t i = 0; i < n; i++) pairs[i] = (Pair){sent_at.v[i], lat.v[i]};
    qsort(pairs, n, sizeof *pairs, cmp_pair);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int64_t lo = pairs[i].lat, hi = pairs[i].lat;
        for (; j < n && pairs[j].t0 == pairs[i].t0; j++) {
            if (pairs[j].lat < lo) lo = pairs[j].lat;
            if (pairs[j].lat > hi) hi = pairs[j].lat;
        }
        first[posts] = lo;
        last[posts++] = hi;
        i = j;
    }
    printf("{\"event\":\"drained\",\"first_receipt_ms\":");
    percentiles(stdout, first, posts);
    printf(",\"last_receipt_ms\":");
    percentiles(stdout, last, posts);
    printf(",\"frames\":%lld,\"first_ns\":%lld,\"last_ns\":%lld,\"closed\":%d,\"close_codes\":{",
           (long long)frames, (long long)first_ns, (long long)last_ns, closed);
    for (int code = 0, sep = 0; code < 5000; code++)
        if (close_codes[code]) printf("%s\"%d\":%d", sep++ ? "," : "", code, close_codes[code]);
    printf("},\"latency_ms\":");
    percentiles(stdout, lat.v, n);
    printf(",\"samples\":%zu}\n", n);
    fflush(stdout);
    free(pairs);
    free(first);
    free(last);
}

static void report_ready(int64_t start) {
    int64_t *t = malloc((size_t)(count + 1) * sizeof *t);
    size_t n = 0;
    for (int i = 0; i < count; i++)
        if (conns[i].synced) t[n++] = conns[i].synced_ns - start;
    int64_t worst = 0;
    for (size_t i = 0; i < n; i++) if (t[i] > worst) worst = t[i];
    printf("{\"event\":\"ready\",\"connected\":%d,\"synced\":%zu,\"failures\":{",
           connected, n);
    if (failures) printf("\"connect\":%d", failures);
    printf("},\"all_synced_s\":%.6f,\"sync_ms\":", (double)worst / 1e9);
    percentiles(stdout, t, n);
    printf("}\n");
    fflush(stdout);
    free(t);
}

/* Run the loop for at most timeout_ms; returns when stdin has a line (1) or on timeout (0). */
static int pump(int timeout_ms, int *stdin_ready) {
    struct epoll_event evs[512];
    int got = epoll_wait(epfd, evs, 512, timeout_ms);
    for (int e = 0; e < got; e++) {
        uint32_t id = evs[e].data.u32;
        if (id == 0) { *stdin_ready = 1; continue; }
        Conn *c = &conns[id - 1];
        if (c->state == GONE) continue;
        if (evs[e].events & (EPOLLERR | EPOLLHUP) && !(evs[e].events & EPOLLIN)) {
            if (c->state == HANDSHAKE) { failures++; closed--; }
            drop(c);
        } else if (evs[e].events & EPOLLOUT) on_writable(c, (int)id - 1);
        else if (evs[e].events & EPOLLIN) on_readable(c);
    }
    return got;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--kind")) kind = !strcmp(v, "sio") ? SIO : SURGE, i++;
        else if (!strcmp(a, "--port")) port = atoi(v), i++;
        else if (!strcmp(a, "--count")) count = atoi(v), i++;
        else if (!strcmp(a, "--group")) group = v, i++;
        else if (!strcmp(a, "--host")) host = v, i++;
        else if (!strcmp(a, "--mode")) latency_mode = !strcmp(v, "latency"), i++;
        else if (!strcmp(a, "--connect-concurrency")) concurrency = atoi(v), i++;
        else if (!strcmp(a, "--spin")) spin = 1;
        else { fprintf(stderr, "csubs: unsupported option %s\n", a); return 2; }
    }
    if (!port || count <= 0) { fprintf(stderr, "csubs: --port and --count are required\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    srand((unsigned)now_ns());
    conns = calloc((size_t)count, sizeof *conns);
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);

    int64_t start = now_ns();
    int stdin_ready = 0;
    while (synced < count && now_ns() - start < CONNECT_TIMEOUT_NS) {
        /* At most --connect-concurrency upgrades in flight, like subscribers.py. */
        while (opened < count && opened - synced - failures < concurrency) open_one(opened++);
        pump(50, &stdin_ready);
    }
    report_ready(start);

    char line[256];
    size_t have = 0;
    int64_t expected = -1, last_change = 0, seen = 0;
    double quiet_s = 0;
    for (;;) {
        /* --spin: from the first frame after a reset until the drain is answered, so that the
         * orchestrator's wait for a quiet machine (before the load starts) still sees one. */
        pump(spin && frames ? 0 : expected >= 0 ? 20 : 200, &stdin_ready);
        if (expected >= 0) { /* draining */
            int64_t now = now_ns();
            if (frames != seen) seen = frames, last_change = now;
            if (frames >= expected || (double)(now - last_change) / 1e9 > quiet_s) {
                expected = -1;
                report_drained();
                frames = 0; /* stop spinning; the next reset clears the rest */
            }
        }
        if (!stdin_ready) continue;
        stdin_ready = 0;
        ssize_t got = read(0, line + have, sizeof line - 1 - have);
        if (got <= 0) break;
        have += (size_t)got;
        char *nl;
        while ((nl = memchr(line, '\n', have))) {
            *nl = 0;
            if (!strncmp(line, "reset", 5)) {
                frames = first_ns = last_ns = 0;
                lat.n = sent_at.n = 0;
                puts("{\"event\":\"reset\"}");
                fflush(stdout);
            } else if (!strncmp(line, "drain", 5)) {
                long long e = 0;
                sscanf(line + 5, "%lld %lf", &e, &quiet_s);
                expected = e;
                seen = frames;
                last_change = now_ns();
            } else if (!strncmp(line, "quit", 4)) {
                for (int i = 0; i < count; i++)
                    if (conns[i].state == OPEN) send_frame(&conns[i], 0x8, "\x03\xe9", 2);
                puts("{\"event\":\"bye\"}");
                fflush(stdout);
                return 0;
            }
            size_t used = (size_t)(nl + 1 - line);
            memmove(line, nl + 1, have - used);
            have -= used;
        }
    }
    return 0;
}
