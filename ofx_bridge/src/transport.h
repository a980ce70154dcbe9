/* The frame socket client: one request/answer exchange with the dubline engine within a deadline
 * (a frame, or the list of the engine's backends).
 * The byte layout is documented in docs/OFX.md; engine/dubline/server/frame_socket.py is the
 * other side. */
#ifndef DUBLINE_TRANSPORT_H
#define DUBLINE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#define DUBLINE_STATUS_ERROR 0
#define DUBLINE_STATUS_READY 1
#define DUBLINE_STATUS_NOT_READY 2
#define DUBLINE_STATUS_OUTSIDE_SPAN 3
/* not on the wire: the exchange itself failed (no engine, timeout, malformed answer) */
#define DUBLINE_STATUS_UNREACHABLE 255

#define DUBLINE_FORMAT_RGBA8 1
#define DUBLINE_FORMAT_RGBA_F32 2
#define DUBLINE_FORMAT_GRAY8 3
#define DUBLINE_FORMAT_GRAY_F32 4

#define DUBLINE_OUTPUT_COMPOSITED 1
#define DUBLINE_OUTPUT_PATCH_AND_MATTE 2

typedef struct {
    int64_t frame;            /* source frame index */
    int64_t span_first;       /* source frames [span_first, span_end) */
    int64_t span_end;
    int64_t audio_offset_ms;  /* dub time that plays at the span's first frame */
    int output;               /* DUBLINE_OUTPUT_* */
    int format;               /* DUBLINE_FORMAT_RGBA8 or _RGBA_F32 */
    int width, height;        /* of the host frame, sent bottom-up with tight rows */
    const char *video, *audio, *backend, *speaker;
} DublineFrameRequest;

typedef struct {
    int format, width, height;
    const uint8_t *data;      /* tight rows, bottom-up (points into DublineFrameAnswer.buffer) */
} DublineImage;

typedef struct {
    int status;               /* DUBLINE_STATUS_* */
    int64_t frame_index;
    int64_t progress_done, progress_total;
    char message[512];        /* code, stage and message folded into one line for the UI */
    int image_count;
    DublineImage images[2];   /* the frame, then (patch-and-matte) the matte */
    uint8_t *buffer;          /* owns the answer's bytes; free with dubline_answer_free */
} DublineFrameAnswer;

/* Ask the engine at `address` (unix:PATH or HOST:PORT) for one frame. The host frame's pixels
 * are copied by `fill_pixels(context, destination)` straight into the request buffer
 * (width * height * pixel size bytes, bottom row first). Never takes longer than about
 * `timeout_ms` (connecting gets at most `connect_timeout_ms` of it). Always fills `answer`;
 * on failure its status is DUBLINE_STATUS_UNREACHABLE and its message says why. */
void dubline_exchange(const char *address, int connect_timeout_ms, int timeout_ms, const DublineFrameRequest *request,
                      void (*fill_pixels)(void *context, uint8_t *destination), void *context,
                      DublineFrameAnswer *answer);

void dubline_answer_free(DublineFrameAnswer *answer);

#define DUBLINE_MAX_BACKENDS 32

typedef struct {
    char name[64];
    char description[256];
    int weights_present;      /* 0: the engine lacks its weights (a render would fail) */
    int prefers_gpu;
} DublineBackend;

typedef struct {
    int status;               /* DUBLINE_STATUS_READY (answered), _ERROR (the engine refused) or _UNREACHABLE */
    char message[512];        /* why, when status is not READY */
    char version[64];         /* the engine's */
    char default_backend[64]; /* what an empty backend name means */
    int backend_count;        /* all the engine listed; the first DUBLINE_MAX_BACKENDS are kept */
    DublineBackend backends[DUBLINE_MAX_BACKENDS];
} DublineCapabilities;

/* Ask the engine at `address` which backends it offers (the capabilities message of docs/OFX.md),
 * within the same bounds as dubline_exchange. Always fills `capabilities`. */
void dubline_capabilities(const char *address, int connect_timeout_ms, int timeout_ms, DublineCapabilities *capabilities);

#endif
