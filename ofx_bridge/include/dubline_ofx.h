/*
 * dubline_ofx.h — the part of the OpenFX 1.x C API the Dubline plug-in uses.
 *
 * Declared by us from the public OpenFX specification (openeffects.org): the binary interface
 * (struct layouts, the order of function pointers in each suite, the status codes) and the
 * name strings hosts and plug-ins exchange. Only what this plug-in touches is here; the
 * official headers are not needed to build it.
 */
#ifndef DUBLINE_OFX_H
#define DUBLINE_OFX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define DUBLINE_OFX_EXPORT __declspec(dllexport)
#else
#define DUBLINE_OFX_EXPORT __attribute__((visibility("default")))
#endif

/* ---- basic types ------------------------------------------------------------------------- */

typedef int OfxStatus;
typedef double OfxTime;
typedef struct OfxPropertySetStruct *OfxPropertySetHandle;
typedef struct OfxParamSetStruct *OfxParamSetHandle;
typedef struct OfxParamStruct *OfxParamHandle;
typedef struct OfxImageEffectStruct *OfxImageEffectHandle;
typedef struct OfxImageClipStruct *OfxImageClipHandle;
typedef struct OfxImageMemoryStruct *OfxImageMemoryHandle;

typedef struct { int x1, y1, x2, y2; } OfxRectI;
typedef struct { double x1, y1, x2, y2; } OfxRectD;
typedef struct { double x, y; } OfxPointD;
typedef struct { double min, max; } OfxRangeD;

/* status codes */
enum {
    kOfxStatOK = 0,
    kOfxStatFailed = 1,
    kOfxStatErrFatal = 2,
    kOfxStatErrUnknown = 3,
    kOfxStatErrMissingHostFeature = 4,
    kOfxStatErrUnsupported = 5,
    kOfxStatErrExists = 6,
    kOfxStatErrFormat = 7,
    kOfxStatErrMemory = 8,
    kOfxStatErrBadHandle = 9,
    kOfxStatErrBadIndex = 10,
    kOfxStatErrValue = 11,
    kOfxStatReplyYes = 12,
    kOfxStatReplyNo = 13,
    kOfxStatReplyDefault = 14,
    kOfxStatErrImageFormat = 1000
};

/* ---- host and plug-in -------------------------------------------------------------------- */

typedef struct OfxHost {
    OfxPropertySetHandle host;
    const void *(*fetchSuite)(OfxPropertySetHandle host, const char *suiteName, int suiteVersion);
} OfxHost;

typedef OfxStatus(OfxPluginEntryPoint)(const char *action, const void *handle,
                                       OfxPropertySetHandle inArgs, OfxPropertySetHandle outArgs);

typedef struct OfxPlugin {
    const char *pluginApi;
    int apiVersion;
    const char *pluginIdentifier;
    unsigned int pluginVersionMajor;
    unsigned int pluginVersionMinor;
    void (*setHost)(OfxHost *host);
    OfxPluginEntryPoint *mainEntry;
} OfxPlugin;

#define kOfxImageEffectPluginApi "OfxImageEffectPluginAPI"
#define kOfxImageEffectPluginApiVersion 1

/* ---- suites (function pointer order is the ABI) ------------------------------------------ */

#define kOfxPropertySuite "OfxPropertySuite"
typedef struct OfxPropertySuiteV1 {
    OfxStatus (*propSetPointer)(OfxPropertySetHandle, const char *property, int index, void *value);
    OfxStatus (*propSetString)(OfxPropertySetHandle, const char *property, int index, const char *value);
    OfxStatus (*propSetDouble)(OfxPropertySetHandle, const char *property, int index, double value);
    OfxStatus (*propSetInt)(OfxPropertySetHandle, const char *property, int index, int value);
    OfxStatus (*propSetPointerN)(OfxPropertySetHandle, const char *property, int count, void *const *value);
    OfxStatus (*propSetStringN)(OfxPropertySetHandle, const char *property, int count, const char *const *value);
    OfxStatus (*propSetDoubleN)(OfxPropertySetHandle, const char *property, int count, const double *value);
    OfxStatus (*propSetIntN)(OfxPropertySetHandle, const char *property, int count, const int *value);
    OfxStatus (*propGetPointer)(OfxPropertySetHandle, const char *property, int index, void **value);
    OfxStatus (*propGetString)(OfxPropertySetHandle, const char *property, int index, char **value);
    OfxStatus (*propGetDouble)(OfxPropertySetHandle, const char *property, int index, double *value);
    OfxStatus (*propGetInt)(OfxPropertySetHandle, const char *property, int index, int *value);
    OfxStatus (*propGetPointerN)(OfxPropertySetHandle, const char *property, int count, void **value);
    OfxStatus (*propGetStringN)(OfxPropertySetHandle, const char *property, int count, char **value);
    OfxStatus (*propGetDoubleN)(OfxPropertySetHandle, const char *property, int count, double *value);
    OfxStatus (*propGetIntN)(OfxPropertySetHandle, const char *property, int count, int *value);
    OfxStatus (*propReset)(OfxPropertySetHandle, const char *property);
    OfxStatus (*propGetDimension)(OfxPropertySetHandle, const char *property, int *count);
} OfxPropertySuiteV1;

#define kOfxParameterSuite "OfxParameterSuite"
/* The value functions are variadic: each takes pointers (get) or values (set) per dimension. */
typedef struct OfxParameterSuiteV1 {
    OfxStatus (*paramDefine)(OfxParamSetHandle, const char *paramType, const char *name, OfxPropertySetHandle *propertySet);
    OfxStatus (*paramGetHandle)(OfxParamSetHandle, const char *name, OfxParamHandle *param, OfxPropertySetHandle *propertySet);
    OfxStatus (*paramSetGetPropertySet)(OfxParamSetHandle, OfxPropertySetHandle *propHandle);
    OfxStatus (*paramGetPropertySet)(OfxParamHandle, OfxPropertySetHandle *propHandle);
    OfxStatus (*paramGetValue)(OfxParamHandle, ...);
    OfxStatus (*paramGetValueAtTime)(OfxParamHandle, OfxTime time, ...);
    OfxStatus (*paramGetDerivative)(OfxParamHandle, OfxTime time, ...);
    OfxStatus (*paramGetIntegral)(OfxParamHandle, OfxTime time1, OfxTime time2, ...);
    OfxStatus (*paramSetValue)(OfxParamHandle, ...);
    OfxStatus (*paramSetValueAtTime)(OfxParamHandle, OfxTime time, ...);
    OfxStatus (*paramGetNumKeys)(OfxParamHandle, unsigned int *numberOfKeys);
    OfxStatus (*paramGetKeyTime)(OfxParamHandle, unsigned int nthKey, OfxTime *time);
    OfxStatus (*paramGetKeyIndex)(OfxParamHandle, OfxTime time, int direction, int *index);
    OfxStatus (*paramDeleteKey)(OfxParamHandle, OfxTime time);
    OfxStatus (*paramDeleteAllKeys)(OfxParamHandle);
    OfxStatus (*paramCopy)(OfxParamHandle paramTo, OfxParamHandle paramFrom, OfxTime dstOffset, const OfxRangeD *frameRange);
    OfxStatus (*paramEditBegin)(OfxParamSetHandle, const char *name);
    OfxStatus (*paramEditEnd)(OfxParamSetHandle);
} OfxParameterSuiteV1;

#define kOfxImageEffectSuite "OfxImageEffectSuite"
typedef struct OfxImageEffectSuiteV1 {
    OfxStatus (*getPropertySet)(OfxImageEffectHandle, OfxPropertySetHandle *propHandle);
    OfxStatus (*getParamSet)(OfxImageEffectHandle, OfxParamSetHandle *paramSet);
    OfxStatus (*clipDefine)(OfxImageEffectHandle, const char *name, OfxPropertySetHandle *propertySet);
    OfxStatus (*clipGetHandle)(OfxImageEffectHandle, const char *name, OfxImageClipHandle *clip, OfxPropertySetHandle *propertySet);
    OfxStatus (*clipGetPropertySet)(OfxImageClipHandle, OfxPropertySetHandle *propHandle);
    OfxStatus (*clipGetImage)(OfxImageClipHandle, OfxTime time, const OfxRectD *region, OfxPropertySetHandle *imageHandle);
    OfxStatus (*clipReleaseImage)(OfxPropertySetHandle imageHandle);
    OfxStatus (*clipGetRegionOfDefinition)(OfxImageClipHandle, OfxTime time, OfxRectD *bounds);
    int (*abort)(OfxImageEffectHandle);
    OfxStatus (*imageMemoryAlloc)(OfxImageEffectHandle instanceHandle, size_t nBytes, OfxImageMemoryHandle *memoryHandle);
    OfxStatus (*imageMemoryFree)(OfxImageMemoryHandle);
    OfxStatus (*imageMemoryLock)(OfxImageMemoryHandle, void **returnedPtr);
    OfxStatus (*imageMemoryUnlock)(OfxImageMemoryHandle);
} OfxImageEffectSuiteV1;

#define kOfxMemorySuite "OfxMemorySuite"
typedef struct OfxMemorySuiteV1 {
    OfxStatus (*memoryAlloc)(void *handle, size_t nBytes, void **allocatedData);
    OfxStatus (*memoryFree)(void *allocatedData);
} OfxMemorySuiteV1;

/* ---- actions ----------------------------------------------------------------------------- */

#define kOfxActionLoad "OfxActionLoad"
#define kOfxActionUnload "OfxActionUnload"
#define kOfxActionDescribe "OfxActionDescribe"
#define kOfxActionCreateInstance "OfxActionCreateInstance"
#define kOfxActionDestroyInstance "OfxActionDestroyInstance"
#define kOfxImageEffectActionDescribeInContext "OfxImageEffectActionDescribeInContext"
#define kOfxImageEffectActionRender "OfxImageEffectActionRender"
#define kOfxActionInstanceChanged "OfxActionInstanceChanged"

/* ---- properties -------------------------------------------------------------------------- */

#define kOfxPropLabel "OfxPropLabel"
#define kOfxPropTime "OfxPropTime"
#define kOfxPropPluginDescription "OfxPropPluginDescription"
#define kOfxPropName "OfxPropName"
#define kOfxPropType "OfxPropType"
#define kOfxTypeParameter "OfxTypeParameter"
#define kOfxPropChangeReason "OfxPropChangeReason"
#define kOfxChangePluginEdited "OfxChangePluginEdited"

#define kOfxImageEffectPropContext "OfxImageEffectPropContext"
#define kOfxImageEffectContextFilter "OfxImageEffectContextFilter"
#define kOfxImageEffectPluginPropGrouping "OfxImageEffectPluginPropGrouping"
#define kOfxImageEffectPropSupportedContexts "OfxImageEffectPropSupportedContexts"
#define kOfxImageEffectPropSupportedPixelDepths "OfxImageEffectPropSupportedPixelDepths"
#define kOfxImageEffectPropSupportsMultipleClipDepths "OfxImageEffectPropSupportsMultipleClipDepths"
#define kOfxImageEffectPropSupportsTiles "OfxImageEffectPropSupportsTiles"
#define kOfxImageEffectPluginPropSingleInstance "OfxImageEffectPluginPropSingleInstance"
#define kOfxImageEffectPluginPropHostFrameThreading "OfxImageEffectPluginPropHostFrameThreading"
#define kOfxImageEffectPluginRenderThreadSafety "OfxImageEffectPluginRenderThreadSafety"
#define kOfxImageEffectRenderUnsafe "OfxImageEffectRenderUnsafe"
#define kOfxImageEffectRenderInstanceSafe "OfxImageEffectRenderInstanceSafe"
#define kOfxImageEffectRenderFullySafe "OfxImageEffectRenderFullySafe"
#define kOfxImageEffectPropSupportedComponents "OfxImageEffectPropSupportedComponents"
#define kOfxImageEffectPropComponents "OfxImageEffectPropComponents"
#define kOfxImageComponentRGBA "OfxImageComponentRGBA"
#define kOfxImageEffectPropPixelDepth "OfxImageEffectPropPixelDepth"
#define kOfxBitDepthByte "OfxBitDepthByte"
#define kOfxBitDepthFloat "OfxBitDepthFloat"
#define kOfxImageEffectPropFrameRange "OfxImageEffectPropFrameRange"
#define kOfxImageEffectPropRenderWindow "OfxImageEffectPropRenderWindow"
#define kOfxImageEffectPropRenderScale "OfxImageEffectPropRenderScale"

#define kOfxImageEffectSimpleSourceClipName "Source"
#define kOfxImageEffectOutputClipName "Output"

#define kOfxImagePropData "OfxImagePropData"
#define kOfxImagePropBounds "OfxImagePropBounds"
#define kOfxImagePropRowBytes "OfxImagePropRowBytes"

/* parameters */
#define kOfxParamTypeInteger "OfxParamTypeInteger"
#define kOfxParamTypeDouble "OfxParamTypeDouble"
#define kOfxParamTypeBoolean "OfxParamTypeBoolean"
#define kOfxParamTypeString "OfxParamTypeString"
#define kOfxParamTypePushButton "OfxParamTypePushButton"

#define kOfxParamPropHint "OfxParamPropHint"
#define kOfxParamPropDefault "OfxParamPropDefault"
#define kOfxParamPropMin "OfxParamPropMin"
#define kOfxParamPropMax "OfxParamPropMax"
#define kOfxParamPropDisplayMin "OfxParamPropDisplayMin"
#define kOfxParamPropDisplayMax "OfxParamPropDisplayMax"
#define kOfxParamPropAnimates "OfxParamPropAnimates"
#define kOfxParamPropEnabled "OfxParamPropEnabled"
#define kOfxParamPropEvaluateOnChange "OfxParamPropEvaluateOnChange"
#define kOfxParamPropPersistant "OfxParamPropPersistant" /* sic: the specification's spelling */
#define kOfxParamPropCanUndo "OfxParamPropCanUndo"
#define kOfxParamPropStringMode "OfxParamPropStringMode"
#define kOfxParamPropStringFilePathExists "OfxParamPropStringFilePathExists"
#define kOfxParamStringIsSingleLine "OfxParamStringIsSingleLine"
#define kOfxParamStringIsFilePath "OfxParamStringIsFilePath"
#define kOfxParamStringIsLabel "OfxParamStringIsLabel"

#ifdef __cplusplus
}
#endif

#endif /* DUBLINE_OFX_H */
