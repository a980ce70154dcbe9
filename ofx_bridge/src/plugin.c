/* Dubline OpenFX filter: shows the dubbed mouth from a running dubline engine on the clip.
 *
 * Each render sends the host's source frame to the engine's frame socket (docs/OFX.md) and
 * writes the engine's composited frame to the output. Whenever the engine cannot give the frame
 * (not running, still rendering the span, outside the span, an error), the source is copied to
 * the output unchanged and the read-only Status parameter says why: the host's render never
 * fails because of the engine, and never waits longer than the Timeout parameter.
 *
 * The backend is a name the engine validates, not a menu: the plug-in holds no list of backends.
 * The read-only Engine Backends parameter shows the engine's list (asked over the frame socket when
 * the artist edits a parameter or presses Ask the Engine); docs/OFX.md says why. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dubline_ofx.h"
#include "transport.h"

#define PLUGIN_ID "org.dubline.ofx.Dubline"
#define CONNECT_TIMEOUT_MS 250
#define CAPABILITIES_TIMEOUT_MS 2000 /* the artist waits on the parameter panel (the engine lists its backends at start) */

static OfxHost *g_host;
static const OfxPropertySuiteV1 *g_props;
static const OfxParameterSuiteV1 *g_params;
static const OfxImageEffectSuiteV1 *g_effects;

/* parameter names */
#define P_ENGINE "engineAddress"
#define P_SOURCE "sourceMedia"
#define P_SOURCE_OFFSET "sourceFrameOffset"
#define P_SPAN_START "spanStart"
#define P_SPAN_END "spanEnd"
#define P_DUB "dubAudio"
#define P_DUB_OFFSET "dubOffset"
#define P_BACKEND "backendName"
#define P_ENGINE_BACKENDS "engineBackends"
#define P_ASK_ENGINE "askEngine"
#define P_SPEAKER "speaker"
#define P_MIX "mix"
#define P_SHOW_MATTE "showMatte"
#define P_TIMEOUT "timeoutMs"
#define P_STATUS "status"

#define DEFAULT_ENGINE "127.0.0.1:50918"

/* ---- describing -------------------------------------------------------------------------- */

static OfxPropertySetHandle define_param(OfxParamSetHandle set, const char *type, const char *name, const char *label,
                                         const char *hint) {
    OfxPropertySetHandle props = NULL;
    if (g_params->paramDefine(set, type, name, &props) != kOfxStatOK || !props) return NULL;
    g_props->propSetString(props, kOfxPropLabel, 0, label);
    g_props->propSetString(props, kOfxParamPropHint, 0, hint);
    return props;
}

static void define_string(OfxParamSetHandle set, const char *name, const char *label, const char *hint,
                          const char *mode, const char *default_value) {
    OfxPropertySetHandle p = define_param(set, kOfxParamTypeString, name, label, hint);
    if (!p) return;
    g_props->propSetString(p, kOfxParamPropStringMode, 0, mode);
    g_props->propSetString(p, kOfxParamPropDefault, 0, default_value);
    g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
    if (strcmp(mode, kOfxParamStringIsFilePath) == 0) g_props->propSetInt(p, kOfxParamPropStringFilePathExists, 0, 1);
}

static void define_int(OfxParamSetHandle set, const char *name, const char *label, const char *hint, int def, int lo,
                       int hi) {
    OfxPropertySetHandle p = define_param(set, kOfxParamTypeInteger, name, label, hint);
    if (!p) return;
    g_props->propSetInt(p, kOfxParamPropDefault, 0, def);
    g_props->propSetInt(p, kOfxParamPropMin, 0, lo);
    g_props->propSetInt(p, kOfxParamPropMax, 0, hi);
    g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
}

/* A read-only message the plug-in writes: it does not animate, persist, undo or trigger a render. */
static void set_label_mode(OfxPropertySetHandle p) {
    g_props->propSetString(p, kOfxParamPropStringMode, 0, kOfxParamStringIsLabel);
    g_props->propSetString(p, kOfxParamPropDefault, 0, "");
    g_props->propSetInt(p, kOfxParamPropEnabled, 0, 0);
    g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
    g_props->propSetInt(p, kOfxParamPropPersistant, 0, 0);
    g_props->propSetInt(p, kOfxParamPropEvaluateOnChange, 0, 0); /* a new message must not re-render */
    g_props->propSetInt(p, kOfxParamPropCanUndo, 0, 0);
}

static OfxStatus describe(OfxImageEffectHandle effect) {
    OfxPropertySetHandle props;
    if (g_effects->getPropertySet(effect, &props) != kOfxStatOK) return kOfxStatErrBadHandle;
    g_props->propSetString(props, kOfxPropLabel, 0, "Dubline");
    g_props->propSetString(props, kOfxImageEffectPluginPropGrouping, 0, "Dubline");
    g_props->propSetString(props, kOfxPropPluginDescription, 0,
                           "Lip-sync patch from a running dubline engine: the speaker's mouth follows the dub audio.");
    g_props->propSetString(props, kOfxImageEffectPropSupportedContexts, 0, kOfxImageEffectContextFilter);
    g_props->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 0, kOfxBitDepthByte);
    g_props->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 1, kOfxBitDepthFloat);
    g_props->propSetInt(props, kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0);
    /* The engine needs the whole frame (face position), so no tiles and no host frame threading. */
    g_props->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 0);
    g_props->propSetInt(props, kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
    g_props->propSetInt(props, kOfxImageEffectPluginPropSingleInstance, 0, 0);
    /* Each render opens its own connection and keeps no state of its own, but it writes the
     * instance's Status parameter: renders of one instance must not overlap. */
    g_props->propSetString(props, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderInstanceSafe);
    return kOfxStatOK;
}

static OfxStatus describe_in_context(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    char *context = NULL;
    g_props->propGetString(in_args, kOfxImageEffectPropContext, 0, &context);
    if (!context || strcmp(context, kOfxImageEffectContextFilter) != 0) return kOfxStatErrUnsupported;

    OfxPropertySetHandle clip;
    const char *clips[] = {kOfxImageEffectOutputClipName, kOfxImageEffectSimpleSourceClipName};
    for (int i = 0; i < 2; ++i) {
        if (g_effects->clipDefine(effect, clips[i], &clip) != kOfxStatOK) return kOfxStatErrUnknown;
        g_props->propSetString(clip, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
        g_props->propSetInt(clip, kOfxImageEffectPropSupportsTiles, 0, 0);
    }

    OfxParamSetHandle set;
    if (g_effects->getParamSet(effect, &set) != kOfxStatOK) return kOfxStatErrBadHandle;
    define_string(set, P_ENGINE, "Engine Address",
                  "Where `dubline serve --frame-socket ADDRESS` listens: unix:/path/to/socket or 127.0.0.1:PORT",
                  kOfxParamStringIsSingleLine, DEFAULT_ENGINE);
    define_string(set, P_SOURCE, "Source Media",
                  "The clip's own media file (OpenFX hosts do not tell effects file paths): the engine learns the "
                  "speaker's mouth from it", kOfxParamStringIsFilePath, "");
    define_int(set, P_SOURCE_OFFSET, "Source Frame Offset",
               "Source frame = host frame + this offset (the clip's source in-point when the host counts from the "
               "timeline or the clip start)", 0, -100000000, 100000000);
    define_int(set, P_SPAN_START, "Span Start", "First source frame re-rendered (with Span End 0: the effect's frame range)",
               0, 0, 100000000);
    define_int(set, P_SPAN_END, "Span End", "Source frame after the last re-rendered one (0: the effect's frame range)", 0, 0,
               100000000);
    define_string(set, P_DUB, "Dub Audio", "The new dialogue (wav, flac, mp3, ...)", kOfxParamStringIsFilePath, "");
    OfxPropertySetHandle p = define_param(set, kOfxParamTypeDouble, P_DUB_OFFSET, "Dub Offset (s)",
                                          "Dub time, in seconds, that plays at the span's first frame");
    if (p) {
        g_props->propSetDouble(p, kOfxParamPropDefault, 0, 0.0);
        g_props->propSetDouble(p, kOfxParamPropMin, 0, 0.0);
        g_props->propSetDouble(p, kOfxParamPropMax, 0, 86400.0);
        g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
    }
    define_string(set, P_BACKEND, "Backend",
                  "The engine's name of the mouth renderer (Engine Backends lists them); empty: the engine's default",
                  kOfxParamStringIsSingleLine, "");
    p = define_param(set, kOfxParamTypeString, P_ENGINE_BACKENDS, "Engine Backends",
                     "The backends the engine at Engine Address offers, as it last answered");
    if (p) set_label_mode(p);
    define_param(set, kOfxParamTypePushButton, P_ASK_ENGINE, "Ask the Engine",
                 "Ask the engine at Engine Address again which backends it offers");
    define_string(set, P_SPEAKER, "Speaker", "Which face when there are several: X,Y@FRAME or X0,Y0,X1,Y1@FRAME (empty: the largest)",
                  kOfxParamStringIsSingleLine, "");
    p = define_param(set, kOfxParamTypeDouble, P_MIX, "Mix", "0 shows the source, 1 the dubbed frame");
    if (p) {
        g_props->propSetDouble(p, kOfxParamPropDefault, 0, 1.0);
        g_props->propSetDouble(p, kOfxParamPropMin, 0, 0.0);
        g_props->propSetDouble(p, kOfxParamPropMax, 0, 1.0);
        g_props->propSetDouble(p, kOfxParamPropDisplayMin, 0, 0.0);
        g_props->propSetDouble(p, kOfxParamPropDisplayMax, 0, 1.0);
    }
    p = define_param(set, kOfxParamTypeBoolean, P_SHOW_MATTE, "Show Matte", "Show the patch's matte (white = re-rendered)");
    if (p) g_props->propSetInt(p, kOfxParamPropDefault, 0, 0);
    define_int(set, P_TIMEOUT, "Timeout (ms)", "Longest wait for the engine per frame before the source is shown instead",
               3000, 50, 60000);
    p = define_param(set, kOfxParamTypeString, P_STATUS, "Status", "What the engine said about the last frame rendered");
    if (p) set_label_mode(p);
    return kOfxStatOK;
}

/* ---- rendering --------------------------------------------------------------------------- */

typedef struct {
    void *data;
    OfxRectI bounds;
    int row_bytes; /* may be negative: rows are addressed from data, bottom row first */
    int pixel;     /* bytes per RGBA pixel: 4 or 16 */
    int is_float;
} Image;

static int fetch_image(OfxImageClipHandle clip, OfxTime time, OfxPropertySetHandle *handle, Image *image) {
    *handle = NULL;
    if (g_effects->clipGetImage(clip, time, NULL, handle) != kOfxStatOK || !*handle) return -1;
    char *depth = NULL, *components = NULL;
    g_props->propGetPointer(*handle, kOfxImagePropData, 0, &image->data);
    g_props->propGetIntN(*handle, kOfxImagePropBounds, 4, &image->bounds.x1);
    g_props->propGetInt(*handle, kOfxImagePropRowBytes, 0, &image->row_bytes);
    g_props->propGetString(*handle, kOfxImageEffectPropPixelDepth, 0, &depth);
    g_props->propGetString(*handle, kOfxImageEffectPropComponents, 0, &components);
    if (!image->data || !depth || !components || strcmp(components, kOfxImageComponentRGBA) != 0) return -1;
    if (strcmp(depth, kOfxBitDepthByte) == 0) {
        image->is_float = 0;
        image->pixel = 4;
    } else if (strcmp(depth, kOfxBitDepthFloat) == 0) {
        image->is_float = 1;
        image->pixel = 16;
    } else {
        return -1;
    }
    return 0;
}

static unsigned char *pixel_at(const Image *image, int x, int y) {
    return (unsigned char *)image->data + (ptrdiff_t)(y - image->bounds.y1) * image->row_bytes +
           (ptrdiff_t)(x - image->bounds.x1) * image->pixel;
}

static void pack_rows(void *context, uint8_t *destination) {
    const Image *image = (const Image *)context;
    size_t row = (size_t)(image->bounds.x2 - image->bounds.x1) * (size_t)image->pixel;
    for (int y = image->bounds.y1; y < image->bounds.y2; ++y, destination += row)
        memcpy(destination, pixel_at(image, image->bounds.x1, y), row);
}

static OfxRectI intersect(OfxRectI a, OfxRectI b) {
    OfxRectI r = {a.x1 > b.x1 ? a.x1 : b.x1, a.y1 > b.y1 ? a.y1 : b.y1, a.x2 < b.x2 ? a.x2 : b.x2, a.y2 < b.y2 ? a.y2 : b.y2};
    if (r.x2 < r.x1) r.x2 = r.x1;
    if (r.y2 < r.y1) r.y2 = r.y1;
    return r;
}

/* Output = source over the window (outside the source: transparent black). */
static void copy_source(const Image *src, const Image *dst, OfxRectI window) {
    for (int y = window.y1; y < window.y2; ++y) {
        unsigned char *out = pixel_at(dst, window.x1, y);
        memset(out, 0, (size_t)(window.x2 - window.x1) * (size_t)dst->pixel);
        if (!src || y < src->bounds.y1 || y >= src->bounds.y2) continue;
        OfxRectI row = intersect(window, src->bounds);
        if (row.x2 > row.x1)
            memcpy(pixel_at(dst, row.x1, y), pixel_at(src, row.x1, y), (size_t)(row.x2 - row.x1) * (size_t)dst->pixel);
    }
}

/* Output = source + mix * (engine - source), or the matte as grey; `engine` rows are tight,
 * bottom-up, over the source's bounds. */
static void write_engine_frame(const Image *src, const Image *dst, OfxRectI window, const DublineImage *engine,
                               double mix, int show_matte) {
    OfxRectI area = intersect(window, src->bounds);
    int width = src->bounds.x2 - src->bounds.x1;
    size_t engine_pixel = engine->format == DUBLINE_FORMAT_RGBA8 ? 4 : engine->format == DUBLINE_FORMAT_RGBA_F32 ? 16
                          : engine->format == DUBLINE_FORMAT_GRAY8 ? 1 : 4;
    copy_source(src, dst, window); /* pixels of the window outside the source, and the mix's base */
    for (int y = area.y1; y < area.y2; ++y) {
        const uint8_t *row = engine->data + ((size_t)(y - src->bounds.y1) * (size_t)width) * engine_pixel;
        for (int x = area.x1; x < area.x2; ++x) {
            const uint8_t *e = row + (size_t)(x - src->bounds.x1) * engine_pixel;
            if (dst->is_float) {
                float *out = (float *)pixel_at(dst, x, y);
                if (show_matte) {
                    float m;
                    memcpy(&m, e, sizeof m);
                    out[0] = out[1] = out[2] = m;
                    out[3] = 1.0f;
                } else {
                    float v[4];
                    memcpy(v, e, sizeof v);
                    for (int c = 0; c < 4; ++c) out[c] = mix >= 1.0 ? v[c] : (float)(out[c] + mix * (v[c] - out[c]));
                }
            } else {
                unsigned char *out = pixel_at(dst, x, y);
                if (show_matte) {
                    out[0] = out[1] = out[2] = e[0];
                    out[3] = 255;
                } else {
                    for (int c = 0; c < 4; ++c)
                        out[c] = mix >= 1.0 ? e[c] : (unsigned char)floor(out[c] + mix * ((int)e[c] - (int)out[c]) + 0.5);
                }
            }
        }
    }
}

static char *get_string(OfxParamSetHandle set, const char *name, OfxTime time) {
    OfxParamHandle param;
    char *value = NULL;
    if (g_params->paramGetHandle(set, name, &param, NULL) != kOfxStatOK) return NULL;
    if (g_params->paramGetValueAtTime(param, time, &value) != kOfxStatOK) return NULL;
    return value;
}

static int get_int(OfxParamSetHandle set, const char *name, OfxTime time, int fallback) {
    OfxParamHandle param;
    int value = fallback;
    if (g_params->paramGetHandle(set, name, &param, NULL) != kOfxStatOK) return fallback;
    if (g_params->paramGetValueAtTime(param, time, &value) != kOfxStatOK) return fallback;
    return value;
}

static double get_double(OfxParamSetHandle set, const char *name, OfxTime time, double fallback) {
    OfxParamHandle param;
    double value = fallback;
    if (g_params->paramGetHandle(set, name, &param, NULL) != kOfxStatOK) return fallback;
    if (g_params->paramGetValueAtTime(param, time, &value) != kOfxStatOK) return fallback;
    return value;
}

/* Set a label parameter only when its text changes (hosts may record every set). */
static void set_label(OfxParamSetHandle set, const char *name, const char *text) {
    OfxParamHandle param;
    char *current = NULL;
    if (g_params->paramGetHandle(set, name, &param, NULL) != kOfxStatOK) return;
    if (g_params->paramGetValue(param, &current) == kOfxStatOK && current && strcmp(current, text) == 0) return;
    g_params->paramSetValue(param, text);
}

static void set_status(OfxParamSetHandle set, const char *text) { set_label(set, P_STATUS, text); }

static OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    OfxTime time = 0;
    OfxRectI window;
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    if (g_props->propGetIntN(in_args, kOfxImageEffectPropRenderWindow, 4, &window.x1) != kOfxStatOK) return kOfxStatFailed;

    OfxImageClipHandle source_clip, output_clip;
    OfxPropertySetHandle source_clip_props = NULL;
    if (g_effects->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &source_clip, &source_clip_props) != kOfxStatOK ||
        g_effects->clipGetHandle(effect, kOfxImageEffectOutputClipName, &output_clip, NULL) != kOfxStatOK)
        return kOfxStatErrBadHandle;
    OfxParamSetHandle set;
    if (g_effects->getParamSet(effect, &set) != kOfxStatOK) return kOfxStatErrBadHandle;

    Image src, dst;
    OfxPropertySetHandle src_handle = NULL, dst_handle = NULL;
    OfxStatus status = kOfxStatOK;
    if (fetch_image(output_clip, time, &dst_handle, &dst) != 0) {
        status = kOfxStatFailed; /* nowhere to write: the host gave no usable output image */
        goto release;
    }
    if (fetch_image(source_clip, time, &src_handle, &src) != 0 || src.is_float != dst.is_float) {
        copy_source(NULL, &dst, window);
        set_status(set, "no RGBA source image of the output's depth at this time");
        goto release;
    }

    DublineFrameRequest request;
    memset(&request, 0, sizeof request);
    int offset = get_int(set, P_SOURCE_OFFSET, time, 0);
    request.frame = (int64_t)floor(time + 0.5) + offset;
    request.span_first = get_int(set, P_SPAN_START, time, 0);
    request.span_end = get_int(set, P_SPAN_END, time, 0);
    if (request.span_end == 0 && request.span_first == 0) { /* the effect's frame range, in source frames */
        double range[2] = {0, 0};
        if (source_clip_props && g_props->propGetDoubleN(source_clip_props, kOfxImageEffectPropFrameRange, 2, range) == kOfxStatOK) {
            request.span_first = (int64_t)floor(range[0] + 0.5) + offset;
            request.span_end = (int64_t)floor(range[1] + 0.5) + offset + 1; /* the range's last frame is inclusive */
        }
    }
    request.audio_offset_ms = (int64_t)floor(get_double(set, P_DUB_OFFSET, time, 0.0) * 1000.0 + 0.5);
    int show_matte = get_int(set, P_SHOW_MATTE, time, 0);
    double mix = get_double(set, P_MIX, time, 1.0);
    mix = mix < 0 ? 0 : mix > 1 ? 1 : mix;
    request.output = show_matte ? DUBLINE_OUTPUT_PATCH_AND_MATTE : DUBLINE_OUTPUT_COMPOSITED;
    request.format = src.is_float ? DUBLINE_FORMAT_RGBA_F32 : DUBLINE_FORMAT_RGBA8;
    request.width = src.bounds.x2 - src.bounds.x1;
    request.height = src.bounds.y2 - src.bounds.y1;
    request.video = get_string(set, P_SOURCE, time);
    request.audio = get_string(set, P_DUB, time);
    request.backend = get_string(set, P_BACKEND, time); /* the engine checks the name */
    request.speaker = get_string(set, P_SPEAKER, time);
    const char *address = get_string(set, P_ENGINE, time);
    int timeout_ms = get_int(set, P_TIMEOUT, time, 3000);

    if (!request.video || !*request.video || !request.audio || !*request.audio) {
        copy_source(&src, &dst, window);
        set_status(set, "choose the Source Media (the clip's file) and the Dub Audio");
        goto release;
    }
    if (mix <= 0.0 && !show_matte) {
        copy_source(&src, &dst, window);
        set_status(set, "mix is 0: showing the source");
        goto release;
    }

    DublineFrameAnswer answer;
    dubline_exchange(address && *address ? address : DEFAULT_ENGINE, CONNECT_TIMEOUT_MS, timeout_ms, &request, pack_rows,
                     &src, &answer);
    int wanted_format = show_matte ? (src.is_float ? DUBLINE_FORMAT_GRAY_F32 : DUBLINE_FORMAT_GRAY8) : request.format;
    const DublineImage *frame = answer.image_count > (show_matte ? 1 : 0) ? &answer.images[show_matte ? 1 : 0] : NULL;
    if (answer.status == DUBLINE_STATUS_READY && frame && frame->format == wanted_format && frame->width == request.width &&
        frame->height == request.height) {
        write_engine_frame(&src, &dst, window, frame, mix, show_matte);
    } else {
        copy_source(&src, &dst, window);
        if (answer.status == DUBLINE_STATUS_READY)
            snprintf(answer.message, sizeof answer.message, "the engine's frame does not match the host's (format or size)");
    }
    set_status(set, answer.message);
    dubline_answer_free(&answer);

release:
    if (src_handle) g_effects->clipReleaseImage(src_handle);
    if (dst_handle) g_effects->clipReleaseImage(dst_handle);
    return status;
}

/* ---- the engine's backends ---------------------------------------------------------------- */

/* Append to `text` (of `size` bytes, always terminated) without overflowing. */
static void append(char *text, size_t size, const char *more) {
    size_t used = strlen(text);
    if (used + 1 < size) snprintf(text + used, size - used, "%s", more);
}

/* "NAME (default), NAME (weights missing), NAME", with a warning first when `chosen` is not one of
 * them, or why the engine gave no list. */
static void describe_backends(const DublineCapabilities *engine, const char *chosen, char *text, size_t size) {
    text[0] = '\0';
    if (engine->status != DUBLINE_STATUS_READY) {
        snprintf(text, size, "%s (then press Ask the Engine)", engine->message);
        return;
    }
    int listed = engine->backend_count < DUBLINE_MAX_BACKENDS ? engine->backend_count : DUBLINE_MAX_BACKENDS;
    int known = !chosen || !*chosen;
    for (int i = 0; i < listed; ++i) known = known || strcmp(chosen, engine->backends[i].name) == 0;
    if (!known) {
        snprintf(text, size, "no backend '%s' on this engine; it offers ", chosen);
    }
    for (int i = 0; i < listed; ++i) {
        const DublineBackend *backend = &engine->backends[i];
        if (i > 0) append(text, size, ", ");
        append(text, size, backend->name);
        if (strcmp(backend->name, engine->default_backend) == 0) append(text, size, " (default)");
        if (!backend->weights_present) append(text, size, " (weights missing)");
    }
    if (engine->backend_count > listed) append(text, size, ", ...");
}

/* Ask the engine for its backends and show them in Engine Backends. */
static void show_engine_backends(OfxParamSetHandle set, OfxTime time) {
    char address[512], chosen[128];
    const char *value = get_string(set, P_ENGINE, time);
    snprintf(address, sizeof address, "%s", value && *value ? value : DEFAULT_ENGINE);
    value = get_string(set, P_BACKEND, time);
    snprintf(chosen, sizeof chosen, "%s", value ? value : "");
    DublineCapabilities *engine = (DublineCapabilities *)malloc(sizeof *engine);
    if (!engine) return;
    dubline_capabilities(address, CONNECT_TIMEOUT_MS, CAPABILITIES_TIMEOUT_MS, engine);
    char text[1024];
    describe_backends(engine, chosen, text, sizeof text);
    free(engine);
    set_label(set, P_ENGINE_BACKENDS, text);
}

/* A parameter changed: the engine's list may have changed with the address, the chosen name needs
 * checking, or nobody asked yet. Our own label writes (plugin edits) are ignored. */
static OfxStatus instance_changed(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    char *type = NULL, *name = NULL, *reason = NULL;
    OfxTime time = 0;
    g_props->propGetString(in_args, kOfxPropType, 0, &type);
    g_props->propGetString(in_args, kOfxPropName, 0, &name);
    g_props->propGetString(in_args, kOfxPropChangeReason, 0, &reason);
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    if (!type || strcmp(type, kOfxTypeParameter) != 0 || !name) return kOfxStatReplyDefault;
    if ((reason && strcmp(reason, kOfxChangePluginEdited) == 0) || strcmp(name, P_STATUS) == 0 ||
        strcmp(name, P_ENGINE_BACKENDS) == 0)
        return kOfxStatReplyDefault;
    OfxParamSetHandle set;
    if (g_effects->getParamSet(effect, &set) != kOfxStatOK) return kOfxStatErrBadHandle;
    const char *shown = get_string(set, P_ENGINE_BACKENDS, time);
    if (strcmp(name, P_ENGINE) == 0 || strcmp(name, P_BACKEND) == 0 || strcmp(name, P_ASK_ENGINE) == 0 || !shown || !*shown)
        show_engine_backends(set, time);
    return kOfxStatOK;
}

/* ---- entry points ------------------------------------------------------------------------ */

static OfxStatus load(void) {
    if (!g_host) return kOfxStatErrMissingHostFeature;
    g_props = (const OfxPropertySuiteV1 *)g_host->fetchSuite(g_host->host, kOfxPropertySuite, 1);
    g_params = (const OfxParameterSuiteV1 *)g_host->fetchSuite(g_host->host, kOfxParameterSuite, 1);
    g_effects = (const OfxImageEffectSuiteV1 *)g_host->fetchSuite(g_host->host, kOfxImageEffectSuite, 1);
    return g_props && g_params && g_effects ? kOfxStatOK : kOfxStatErrMissingHostFeature;
}

static OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in_args,
                            OfxPropertySetHandle out_args) {
    (void)out_args;
    OfxImageEffectHandle effect = (OfxImageEffectHandle)handle;
    if (strcmp(action, kOfxActionLoad) == 0) return load();
    if (!g_props || !g_params || !g_effects) return kOfxStatErrMissingHostFeature;
    if (strcmp(action, kOfxActionDescribe) == 0) return describe(effect);
    if (strcmp(action, kOfxImageEffectActionDescribeInContext) == 0) return describe_in_context(effect, in_args);
    if (strcmp(action, kOfxImageEffectActionRender) == 0) return render(effect, in_args);
    if (strcmp(action, kOfxActionInstanceChanged) == 0) return instance_changed(effect, in_args);
    if (strcmp(action, kOfxActionCreateInstance) == 0 || strcmp(action, kOfxActionDestroyInstance) == 0 ||
        strcmp(action, kOfxActionUnload) == 0)
        return kOfxStatOK; /* no per-instance state */
    return kOfxStatReplyDefault;
}

static void set_host(OfxHost *host) { g_host = host; }

static OfxPlugin g_plugin = {
    /* 0.2: Backend became a string parameter (backendName) checked by the engine */
    kOfxImageEffectPluginApi, kOfxImageEffectPluginApiVersion, PLUGIN_ID, 0, 2, set_host, main_entry,
};

DUBLINE_OFX_EXPORT int OfxGetNumberOfPlugins(void) { return 1; }

DUBLINE_OFX_EXPORT OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &g_plugin : NULL; }
