/* Frame socket client (see transport.h and docs/OFX.md). Plain C and the OS socket API only. */
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET socket_t;
#define INVALID_SOCK INVALID_SOCKET
#define close_socket closesocket
#define poll WSAPoll
#define last_error() WSAGetLastError()
#define IN_PROGRESS(e) ((e) == WSAEWOULDBLOCK || (e) == WSAEINPROGRESS)
#define SEND_FLAGS 0
#else
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
typedef int socket_t;
#define INVALID_SOCK (-1)
#define close_socket close
#define last_error() errno
#define IN_PROGRESS(e) ((e) == EINPROGRESS || (e) == EAGAIN)
#if defined(MSG_NOSIGNAL)
#define SEND_FLAGS MSG_NOSIGNAL /* a closed engine must not SIGPIPE the host application */
#else
#define SEND_FLAGS 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif
#endif

#define MAGIC "DBLF"
#define VERSION 1
#define KIND_FRAME_REQUEST 1
#define KIND_FRAME_ANSWER 2
#define KIND_CAPABILITIES_REQUEST 3
#define KIND_CAPABILITIES_ANSWER 4
#define CAPABILITIES_LIMIT (1u << 20) /* far more than any engine's list of backends */
#define HEADER_BYTES 16
#define REQUEST_FIXED_BYTES 52
#define ANSWER_FIXED_BYTES 28
#define IMAGE_HEAD_BYTES 20

/* ---- little-endian encoding ------------------------------------------------------------- */

static void put_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

static size_t format_bytes(int format) {
    switch (format) {
    case DUBLINE_FORMAT_RGBA8: return 4;
    case DUBLINE_FORMAT_RGBA_F32: return 16;
    case DUBLINE_FORMAT_GRAY8: return 1;
    case DUBLINE_FORMAT_GRAY_F32: return 4;
    default: return 0;
    }
}

/* ---- time ------------------------------------------------------------------------------- */

static int64_t now_ms(void) {
#if defined(_WIN32)
    return (int64_t)GetTickCount64();
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
#endif
}

static void explain(char *why, size_t why_size, const char *what, const char *detail) {
    snprintf(why, why_size, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

static void fail(DublineFrameAnswer *answer, const char *what, const char *detail) {
    answer->status = DUBLINE_STATUS_UNREACHABLE;
    explain(answer->message, sizeof answer->message, what, detail);
}

static const char *error_text(int code) {
#if defined(_WIN32)
    static char text[64];
    snprintf(text, sizeof text, "winsock error %d", code);
    return text;
#else
    return strerror(code);
#endif
}

/* ---- connecting -------------------------------------------------------------------------- */

static int set_nonblocking(socket_t s) {
#if defined(_WIN32)
    u_long on = 1;
    return ioctlsocket(s, FIONBIO, &on) == 0 ? 0 : -1;
#else
    int flags = fcntl(s, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(s, F_SETFL, flags | O_NONBLOCK);
#endif
}

/* Wait until `s` is readable/writable or the deadline passes: 1 ready, 0 timed out, -1 error. */
static int wait_for(socket_t s, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p;
        p.fd = s;
        p.events = events;
        p.revents = 0;
        int n = poll(&p, 1, (int)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
#if !defined(_WIN32)
        if (errno == EINTR) continue;
#endif
        return -1;
    }
}

static socket_t connect_engine(const char *address, int64_t deadline, char *why, size_t why_size) {
    struct sockaddr_storage where;
    socklen_t where_len = 0;
    memset(&where, 0, sizeof where);
    int family;
    if (strncmp(address, "unix:", 5) == 0) {
#if defined(_WIN32)
        explain(why, why_size, "unix: engine addresses are not supported on Windows; use 127.0.0.1:PORT", NULL);
        return INVALID_SOCK;
#else
        const char *path = address + 5;
        if (strncmp(path, "//", 2) == 0) path += 2;
        struct sockaddr_un *un = (struct sockaddr_un *)&where;
        if (strlen(path) == 0 || strlen(path) >= sizeof un->sun_path) {
            explain(why, why_size, "engine address: the unix socket path is empty or too long", address);
            return INVALID_SOCK;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        where_len = (socklen_t)sizeof *un;
        family = AF_UNIX;
#endif
    } else {
        char host[256];
        const char *colon = strrchr(address, ':');
        size_t host_len = colon ? (size_t)(colon - address) : 0;
        if (!colon || host_len == 0 || host_len >= sizeof host || colon[1] == '\0') {
            explain(why, why_size, "engine address is neither unix:PATH nor HOST:PORT", address);
            return INVALID_SOCK;
        }
        memcpy(host, address, host_len);
        host[host_len] = '\0';
        if (host[0] == '[' && host_len > 2 && host[host_len - 1] == ']') { /* [::1]:PORT */
            memmove(host, host + 1, host_len - 2);
            host[host_len - 2] = '\0';
        }
        struct addrinfo hints, *found = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        int rc = getaddrinfo(host, colon + 1, &hints, &found);
        if (rc != 0 || !found) {
            explain(why, why_size, "engine address cannot be resolved", address);
            return INVALID_SOCK;
        }
        memcpy(&where, found->ai_addr, found->ai_addrlen);
        where_len = (socklen_t)found->ai_addrlen;
        family = found->ai_family;
        freeaddrinfo(found);
    }
    socket_t s = socket(family, SOCK_STREAM, 0);
    if (s == INVALID_SOCK) {
        explain(why, why_size, "cannot create a socket", error_text(last_error()));
        return INVALID_SOCK;
    }
#if defined(SO_NOSIGPIPE)
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    if (family != AF_UNIX) {
        int nodelay = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&nodelay, sizeof nodelay);
    }
    if (set_nonblocking(s) != 0) {
        explain(why, why_size, "cannot make the socket non-blocking", error_text(last_error()));
        close_socket(s);
        return INVALID_SOCK;
    }
    if (connect(s, (struct sockaddr *)&where, where_len) != 0) {
        int e = last_error();
        if (!IN_PROGRESS(e)) {
            explain(why, why_size, "no dubline engine at the address (start `dubline serve --frame-socket ...`)", error_text(e));
            close_socket(s);
            return INVALID_SOCK;
        }
        int ready = wait_for(s, POLLOUT, deadline);
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (ready == 1) getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&so_error, &len);
        if (ready != 1 || so_error != 0) {
            explain(why, why_size, ready == 0 ? "connecting to the dubline engine timed out" : "no dubline engine at the address",
                 ready == 0 ? address : error_text(so_error));
            close_socket(s);
            return INVALID_SOCK;
        }
    }
    return s;
}

/* ---- sending and receiving within the deadline ------------------------------------------ */

static int send_all(socket_t s, const uint8_t *data, size_t size, int64_t deadline) {
    while (size > 0) {
        int ready = wait_for(s, POLLOUT, deadline);
        if (ready != 1) return ready == 0 ? -2 : -1;
        size_t chunk = size > (1u << 30) ? (1u << 30) : size;
        long n = (long)send(s, (const char *)data, (int)chunk, SEND_FLAGS);
        if (n < 0) {
            int e = last_error();
            if (IN_PROGRESS(e)) continue;
#if !defined(_WIN32)
            if (e == EINTR) continue;
#endif
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static int recv_all(socket_t s, uint8_t *data, size_t size, int64_t deadline) {
    while (size > 0) {
        int ready = wait_for(s, POLLIN, deadline);
        if (ready != 1) return ready == 0 ? -2 : -1;
        size_t chunk = size > (1u << 30) ? (1u << 30) : size;
        long n = (long)recv(s, (char *)data, (int)chunk, 0);
        if (n == 0) return -3; /* the engine closed the connection */
        if (n < 0) {
            int e = last_error();
            if (IN_PROGRESS(e)) continue;
#if !defined(_WIN32)
            if (e == EINTR) continue;
#endif
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static const char *io_failure(int rc) {
    return rc == -2 ? "the dubline engine did not answer in time" : rc == -3 ? "the dubline engine closed the connection"
                                                                           : "the connection to the dubline engine failed";
}

/* ---- the request ------------------------------------------------------------------------- */

static uint8_t *put_text(uint8_t *p, const char *text) {
    size_t n = text ? strlen(text) : 0;
    put_u32(p, (uint32_t)n);
    if (n) memcpy(p + 4, text, n);
    return p + 4 + n;
}

static size_t text_size(const char *text) { return 4 + (text ? strlen(text) : 0); }

/* ---- the answer -------------------------------------------------------------------------- */

static const uint8_t *get_text(const uint8_t *p, const uint8_t *end, char *out, size_t out_size) {
    if (end - p < 4) return NULL;
    uint32_t n = get_u32(p);
    p += 4;
    if ((uint64_t)(end - p) < n) return NULL;
    size_t copy = n < out_size - 1 ? n : out_size - 1;
    memcpy(out, p, copy);
    out[copy] = '\0';
    return p + n;
}

static int parse_answer(uint8_t *body, size_t size, DublineFrameAnswer *answer) {
    const uint8_t *p = body, *end = body + size;
    if (size < ANSWER_FIXED_BYTES) return -1;
    int status = body[0];
    answer->frame_index = (int64_t)get_u64(body + 4);
    answer->progress_done = (int64_t)get_u64(body + 12);
    answer->progress_total = (int64_t)get_u64(body + 20);
    p += ANSWER_FIXED_BYTES;
    char code[64], stage[64], message[400];
    if (!(p = get_text(p, end, code, sizeof code))) return -1;
    if (!(p = get_text(p, end, stage, sizeof stage))) return -1;
    if (!(p = get_text(p, end, message, sizeof message))) return -1;
    if (end - p < 4) return -1;
    uint32_t count = get_u32(p);
    p += 4;
    if (count > 2) return -1;
    for (uint32_t i = 0; i < count; ++i) {
        if (end - p < IMAGE_HEAD_BYTES) return -1;
        DublineImage *image = &answer->images[i];
        image->format = p[0];
        image->width = (int)get_u32(p + 4);
        image->height = (int)get_u32(p + 8);
        uint64_t nbytes = get_u64(p + 12);
        p += IMAGE_HEAD_BYTES;
        if (format_bytes(image->format) == 0 ||
            nbytes != (uint64_t)image->width * (uint64_t)image->height * format_bytes(image->format) ||
            (uint64_t)(end - p) < nbytes)
            return -1;
        image->data = p;
        p += nbytes;
    }
    answer->image_count = (int)count;
    answer->status = status;
    switch (status) {
    case DUBLINE_STATUS_ERROR:
        snprintf(answer->message, sizeof answer->message, "engine error %s: %s", code, message);
        break;
    case DUBLINE_STATUS_NOT_READY:
        snprintf(answer->message, sizeof answer->message, "rendering the span (%s %lld/%lld); showing the source meanwhile",
                 stage, (long long)answer->progress_done, (long long)answer->progress_total);
        break;
    case DUBLINE_STATUS_OUTSIDE_SPAN:
        snprintf(answer->message, sizeof answer->message, "outside the span: %s", message);
        break;
    case DUBLINE_STATUS_READY:
        snprintf(answer->message, sizeof answer->message, "dubbed frame %lld", (long long)answer->frame_index);
        break;
    default:
        return -1;
    }
    return 0;
}

void dubline_answer_free(DublineFrameAnswer *answer) {
    free(answer->buffer);
    answer->buffer = NULL;
    answer->image_count = 0;
}

/* Connect, send `message` and receive the answer's header and body within the deadlines. 0 with the
 * answer's kind and body (malloc'ed: the caller frees it), or -1 with `why` filled. */
static int round_trip(const char *address, int connect_timeout_ms, int timeout_ms, const uint8_t *message, size_t size,
                      uint64_t answer_limit, int *kind, uint8_t **body, uint64_t *body_size, char *why, size_t why_size) {
    int64_t start = now_ms();
    int64_t deadline = start + timeout_ms;
    int64_t connect_deadline = start + (connect_timeout_ms < timeout_ms ? connect_timeout_ms : timeout_ms);
    int result = -1;
    *body = NULL;
#if defined(_WIN32)
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        explain(why, why_size, "cannot start winsock", NULL);
        return -1;
    }
#endif
    socket_t s = connect_engine(address, connect_deadline, why, why_size);
    if (s == INVALID_SOCK) goto done;
    int rc = send_all(s, message, size, deadline);
    uint8_t head[HEADER_BYTES];
    if (rc == 0) rc = recv_all(s, head, HEADER_BYTES, deadline);
    if (rc != 0) {
        explain(why, why_size, io_failure(rc), NULL);
        goto done;
    }
    *body_size = get_u64(head + 8);
    *kind = (int)get_u16(head + 6);
    if (memcmp(head, MAGIC, 4) != 0 || get_u16(head + 4) != VERSION || *body_size > answer_limit) {
        explain(why, why_size, "the engine's answer is not a dubline answer (version mismatch?)", NULL);
        goto done;
    }
    *body = (uint8_t *)malloc(*body_size ? *body_size : 1);
    if (!*body) {
        explain(why, why_size, "out of memory for the engine's answer", NULL);
        goto done;
    }
    rc = recv_all(s, *body, *body_size, deadline);
    if (rc != 0) {
        explain(why, why_size, io_failure(rc), NULL);
        free(*body);
        *body = NULL;
        goto done;
    }
    result = 0;
done:
    if (s != INVALID_SOCK) close_socket(s);
#if defined(_WIN32)
    WSACleanup();
#endif
    return result;
}

void dubline_exchange(const char *address, int connect_timeout_ms, int timeout_ms, const DublineFrameRequest *request,
                      void (*fill_pixels)(void *context, uint8_t *destination), void *context,
                      DublineFrameAnswer *answer) {
    memset(answer, 0, sizeof *answer);
    size_t pixel = format_bytes(request->format);
    if (pixel == 0 || request->width <= 0 || request->height <= 0) {
        fail(answer, "unsupported frame for the engine", NULL);
        return;
    }
    size_t pixels = (size_t)request->width * (size_t)request->height * pixel;
    size_t body = REQUEST_FIXED_BYTES + text_size(request->video) + text_size(request->audio) +
                  text_size(request->backend) + text_size(request->speaker) + 8 + pixels;
    uint8_t *message = (uint8_t *)malloc(HEADER_BYTES + body);
    if (!message) {
        fail(answer, "out of memory for the frame request", NULL);
        return;
    }
    memcpy(message, MAGIC, 4);
    put_u16(message + 4, VERSION);
    put_u16(message + 6, KIND_FRAME_REQUEST);
    put_u64(message + 8, body);
    uint8_t *p = message + HEADER_BYTES;
    put_u64(p, (uint64_t)request->frame);
    put_u64(p + 8, (uint64_t)request->span_first);
    put_u64(p + 16, (uint64_t)request->span_end);
    put_u64(p + 24, (uint64_t)request->audio_offset_ms); /* value ... */
    put_u32(p + 32, 1000);                               /* ... at 1000/1 per second: milliseconds */
    put_u32(p + 36, 1);
    p[40] = (uint8_t)request->output;
    p[41] = (uint8_t)request->format;
    p[42] = 1; /* bottom-up: OpenFX rows */
    p[43] = 0;
    put_u32(p + 44, (uint32_t)request->width);
    put_u32(p + 48, (uint32_t)request->height);
    p += REQUEST_FIXED_BYTES;
    p = put_text(p, request->video);
    p = put_text(p, request->audio);
    p = put_text(p, request->backend);
    p = put_text(p, request->speaker);
    put_u64(p, pixels);
    fill_pixels(context, p + 8);

    int kind = 0;
    uint64_t answer_bytes = 0;
    /* The largest sensible answer: a frame and a matte of the size we sent, plus the texts. */
    int rc = round_trip(address, connect_timeout_ms, timeout_ms, message, HEADER_BYTES + body, (uint64_t)pixels * 2 + (1u << 20),
                        &kind, &answer->buffer, &answer_bytes, answer->message, sizeof answer->message);
    free(message);
    if (rc != 0) {
        answer->status = DUBLINE_STATUS_UNREACHABLE;
    } else if (kind != KIND_FRAME_ANSWER) {
        fail(answer, "the engine's answer is not a dubline frame answer (version mismatch?)", NULL);
    } else if (parse_answer(answer->buffer, answer_bytes, answer) != 0) {
        fail(answer, "the engine's answer is malformed", NULL);
    }
    if (answer->status == DUBLINE_STATUS_UNREACHABLE) dubline_answer_free(answer);
}

/* ---- the capabilities -------------------------------------------------------------------- */

static int parse_capabilities(const uint8_t *body, size_t size, DublineCapabilities *capabilities) {
    const uint8_t *p = body, *end = body + size;
    if (!(p = get_text(p, end, capabilities->version, sizeof capabilities->version))) return -1;
    if (!(p = get_text(p, end, capabilities->default_backend, sizeof capabilities->default_backend))) return -1;
    if (end - p < 4) return -1;
    uint32_t count = get_u32(p);
    p += 4;
    for (uint32_t i = 0; i < count; ++i) {
        DublineBackend skipped, *backend = i < DUBLINE_MAX_BACKENDS ? &capabilities->backends[i] : &skipped;
        if (!(p = get_text(p, end, backend->name, sizeof backend->name))) return -1;
        if (!(p = get_text(p, end, backend->description, sizeof backend->description))) return -1;
        if (end - p < 4) return -1;
        backend->weights_present = p[0] != 0;
        backend->prefers_gpu = p[1] != 0;
        p += 4;
    }
    capabilities->backend_count = (int)count;
    capabilities->status = DUBLINE_STATUS_READY;
    return 0;
}

void dubline_capabilities(const char *address, int connect_timeout_ms, int timeout_ms, DublineCapabilities *capabilities) {
    memset(capabilities, 0, sizeof *capabilities);
    capabilities->status = DUBLINE_STATUS_UNREACHABLE;
    uint8_t message[HEADER_BYTES];
    memcpy(message, MAGIC, 4);
    put_u16(message + 4, VERSION);
    put_u16(message + 6, KIND_CAPABILITIES_REQUEST);
    put_u64(message + 8, 0);
    int kind = 0;
    uint8_t *body = NULL;
    uint64_t size = 0;
    if (round_trip(address, connect_timeout_ms, timeout_ms, message, sizeof message, CAPABILITIES_LIMIT, &kind, &body, &size,
                   capabilities->message, sizeof capabilities->message) != 0)
        return;
    if (kind == KIND_FRAME_ANSWER) { /* the engine refused: its error, as for a frame */
        DublineFrameAnswer refusal;
        memset(&refusal, 0, sizeof refusal);
        if (parse_answer(body, size, &refusal) == 0 && refusal.status == DUBLINE_STATUS_ERROR) {
            capabilities->status = DUBLINE_STATUS_ERROR;
            snprintf(capabilities->message, sizeof capabilities->message, "%s", refusal.message);
        } else {
            explain(capabilities->message, sizeof capabilities->message, "the engine's answer is malformed", NULL);
        }
    } else if (kind != KIND_CAPABILITIES_ANSWER || parse_capabilities(body, size, capabilities) != 0) {
        capabilities->status = DUBLINE_STATUS_UNREACHABLE;
        explain(capabilities->message, sizeof capabilities->message, "the engine's answer is not a dubline capabilities answer", NULL);
    }
    free(body);
}
