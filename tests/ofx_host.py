"""A minimal OpenFX host in ctypes, enough to load, describe and render the Dubline plug-in.

It provides the property, parameter, image-effect and memory suites (the plug-in does not
declare host frame threading, so no multithread suite), one filter-context instance at a time
with numpy images, parameter edits (the instance-changed actions), and records what the plug-in
defines. Handles are small integers.

Limitation: the parameter suite's value functions are variadic in C. ctypes cannot define a
variadic callback, so they are declared with fixed pointer-sized arguments, which matches the
x86-64 System V calling convention for the pointer and int arguments used here (not for double
values passed to paramSetValue, which this host refuses). It therefore runs on Linux x86-64.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_int,
    c_size_t,
    c_uint,
    c_void_p,
)
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

OK, FAILED, ERR_UNKNOWN, ERR_UNSUPPORTED, ERR_BAD_HANDLE, ERR_BAD_INDEX, REPLY_DEFAULT = 0, 1, 3, 5, 9, 10, 14

Status = c_int
FETCH_SUITE = CFUNCTYPE(c_void_p, c_void_p, c_char_p, c_int)
SET_HOST = CFUNCTYPE(None, c_void_p)
MAIN_ENTRY = CFUNCTYPE(Status, c_char_p, c_void_p, c_void_p, c_void_p)


class OfxHostStruct(Structure):
    _fields_ = [("host", c_void_p), ("fetchSuite", FETCH_SUITE)]


class OfxPluginStruct(Structure):
    _fields_ = [
        ("pluginApi", c_char_p), ("apiVersion", c_int), ("pluginIdentifier", c_char_p),
        ("pluginVersionMajor", c_uint), ("pluginVersionMinor", c_uint), ("setHost", SET_HOST), ("mainEntry", MAIN_ENTRY),
    ]


class OfxRectD(Structure):
    _fields_ = [("x1", c_double), ("y1", c_double), ("x2", c_double), ("y2", c_double)]


def _suite(name: str, fields: list[tuple[str, Any]]) -> type[Structure]:
    return type(name, (Structure,), {"_fields_": fields})


H = c_void_p  # every handle
S = c_char_p  # every name
OUT = POINTER(c_void_p)  # every "handle out" argument

_PROPERTY_TYPES = [
    ("propSetPointer", [H, S, c_int, c_void_p]), ("propSetString", [H, S, c_int, c_char_p]),
    ("propSetDouble", [H, S, c_int, c_double]), ("propSetInt", [H, S, c_int, c_int]),
    ("propSetPointerN", [H, S, c_int, POINTER(c_void_p)]), ("propSetStringN", [H, S, c_int, POINTER(c_char_p)]),
    ("propSetDoubleN", [H, S, c_int, POINTER(c_double)]), ("propSetIntN", [H, S, c_int, POINTER(c_int)]),
    ("propGetPointer", [H, S, c_int, POINTER(c_void_p)]), ("propGetString", [H, S, c_int, POINTER(c_void_p)]),
    ("propGetDouble", [H, S, c_int, POINTER(c_double)]), ("propGetInt", [H, S, c_int, POINTER(c_int)]),
    ("propGetPointerN", [H, S, c_int, POINTER(c_void_p)]), ("propGetStringN", [H, S, c_int, POINTER(c_void_p)]),
    ("propGetDoubleN", [H, S, c_int, POINTER(c_double)]), ("propGetIntN", [H, S, c_int, POINTER(c_int)]),
    ("propReset", [H, S]), ("propGetDimension", [H, S, POINTER(c_int)]),
]
_PARAMETER_TYPES = [
    ("paramDefine", [H, S, S, OUT]), ("paramGetHandle", [H, S, OUT, OUT]), ("paramSetGetPropertySet", [H, OUT]),
    ("paramGetPropertySet", [H, OUT]), ("paramGetValue", [H, c_void_p]), ("paramGetValueAtTime", [H, c_double, c_void_p]),
    ("paramGetDerivative", [H, c_double, c_void_p]), ("paramGetIntegral", [H, c_double, c_double, c_void_p]),
    ("paramSetValue", [H, c_void_p]), ("paramSetValueAtTime", [H, c_double, c_void_p]),
    ("paramGetNumKeys", [H, POINTER(c_uint)]), ("paramGetKeyTime", [H, c_uint, POINTER(c_double)]),
    ("paramGetKeyIndex", [H, c_double, c_int, POINTER(c_int)]), ("paramDeleteKey", [H, c_double]),
    ("paramDeleteAllKeys", [H]), ("paramCopy", [H, H, c_double, c_void_p]), ("paramEditBegin", [H, S]), ("paramEditEnd", [H]),
]
_EFFECT_TYPES = [
    ("getPropertySet", Status, [H, OUT]), ("getParamSet", Status, [H, OUT]), ("clipDefine", Status, [H, S, OUT]),
    ("clipGetHandle", Status, [H, S, OUT, OUT]), ("clipGetPropertySet", Status, [H, OUT]),
    ("clipGetImage", Status, [H, c_double, c_void_p, OUT]), ("clipReleaseImage", Status, [H]),
    ("clipGetRegionOfDefinition", Status, [H, c_double, POINTER(OfxRectD)]), ("abort", c_int, [H]),
    ("imageMemoryAlloc", Status, [H, c_size_t, OUT]), ("imageMemoryFree", Status, [H]),
    ("imageMemoryLock", Status, [H, OUT]), ("imageMemoryUnlock", Status, [H]),
]
_MEMORY_TYPES = [("memoryAlloc", Status, [H, c_size_t, OUT]), ("memoryFree", Status, [c_void_p])]

PropertySuite = _suite("OfxPropertySuiteV1", [(n, CFUNCTYPE(Status, *a)) for n, a in _PROPERTY_TYPES])
ParameterSuite = _suite("OfxParameterSuiteV1", [(n, CFUNCTYPE(Status, *a)) for n, a in _PARAMETER_TYPES])
EffectSuite = _suite("OfxImageEffectSuiteV1", [(n, CFUNCTYPE(r, *a)) for n, r, a in _EFFECT_TYPES])
MemorySuite = _suite("OfxMemorySuiteV1", [(n, CFUNCTYPE(r, *a)) for n, r, a in _MEMORY_TYPES])


class OfxError(RuntimeError):
    """An action answered a status other than the one the harness expected."""


class PropertySet:
    """Named, multi-dimensional values; strings are kept as C buffers that stay valid."""

    def __init__(self, values: dict[str, list] | None = None) -> None:
        self.values: dict[str, list] = {k: list(v) for k, v in (values or {}).items()}
        self._strings: dict[tuple[str, int], ctypes.Array] = {}

    def set(self, name: str, index: int, value: Any) -> None:
        values = self.values.setdefault(name, [])
        while len(values) <= index:
            values.append(None)
        values[index] = value

    def c_string(self, name: str, index: int) -> int:
        value = self.values[name][index]
        buffer = self._strings.get((name, index))
        if buffer is None or buffer.value != value.encode():
            buffer = self._strings[(name, index)] = ctypes.create_string_buffer(value.encode())
        return ctypes.addressof(buffer)


@dataclass
class Param:
    kind: str
    name: str
    props: PropertySet
    value: Any = None
    sets: list = field(default_factory=list)  # every value the plug-in set, in order


@dataclass
class Clip:
    name: str
    props: PropertySet
    memory: np.ndarray | None = None  # (H, W, 4) pixels the image's data pointer addresses
    top_down: bool = False  # memory's first row is the top: addressed from its last row, negative stride


@dataclass
class Effect:
    props: PropertySet
    param_set: int
    params: dict[str, Param] = field(default_factory=dict)
    clips: dict[str, Clip] = field(default_factory=dict)


class OfxHost:
    """Loads one OpenFX binary and drives its first plug-in through the actions a host runs."""

    def __init__(self, binary: Path) -> None:
        self.library = ctypes.CDLL(str(binary))
        self._objects: dict[int, Any] = {}
        self._ids = count(0x1000)
        self._memory: dict[int, ctypes.Array] = {}
        self.host_props = PropertySet({"OfxPropName": ["org.dubline.tests.ctypes-host"], "OfxPropLabel": ["dubline test host"],
                                       "OfxImageEffectHostPropIsBackground": [1]})
        self._host_handle = self._register(self.host_props)
        self._suites = {
            (b"OfxPropertySuite", 1): self._property_suite(),
            (b"OfxParameterSuite", 1): self._parameter_suite(),
            (b"OfxImageEffectSuite", 1): self._effect_suite(),
            (b"OfxMemorySuite", 1): self._memory_suite(),
        }
        self.fetched: list[str] = []
        self._fetch = FETCH_SUITE(self._fetch_suite)
        self.host = OfxHostStruct(self._host_handle, self._fetch)
        self.plugin: OfxPluginStruct | None = None
        self.descriptor: Effect | None = None

    # -- handles ---------------------------------------------------------------------------

    def _register(self, obj: Any) -> int:
        handle = next(self._ids)
        self._objects[handle] = obj
        return handle

    def _get(self, handle: int | None, kind: type) -> Any:
        obj = self._objects.get(handle or 0)
        return obj if isinstance(obj, kind) else None

    def _fetch_suite(self, host: int, name: bytes, version: int) -> int | None:
        self.fetched.append(name.decode())
        suite = self._suites.get((name, version))
        return ctypes.addressof(suite) if suite is not None else None

    # -- property suite --------------------------------------------------------------------

    def _property_suite(self) -> Structure:
        def setter(convert):
            def set_one(handle, name, index, value):
                props = self._get(handle, PropertySet)
                if props is None:
                    return ERR_BAD_HANDLE
                props.set(name.decode(), index, convert(value))
                return OK
            return set_one

        def setter_n(convert):
            def set_n(handle, name, n, values):
                props = self._get(handle, PropertySet)
                if props is None:
                    return ERR_BAD_HANDLE
                for i in range(n):
                    props.set(name.decode(), i, convert(values[i]))
                return OK
            return set_n

        def getter(write):
            def get_one(handle, name, index, out):
                props = self._get(handle, PropertySet)
                if props is None:
                    return ERR_BAD_HANDLE
                values = props.values.get(name.decode())
                if values is None:
                    return ERR_UNKNOWN
                if not 0 <= index < len(values):
                    return ERR_BAD_INDEX
                write(props, name.decode(), index, out, 0)
                return OK
            return get_one

        def getter_n(write):
            def get_n(handle, name, n, out):
                props = self._get(handle, PropertySet)
                if props is None:
                    return ERR_BAD_HANDLE
                values = props.values.get(name.decode())
                if values is None:
                    return ERR_UNKNOWN
                if n > len(values):
                    return ERR_BAD_INDEX
                for i in range(n):
                    write(props, name.decode(), i, out, i)
                return OK
            return get_n

        def write_string(props, name, index, out, at):
            out[at] = props.c_string(name, index)

        def write_plain(props, name, index, out, at):
            out[at] = props.values[name][index]

        def reset(handle, name):
            return OK

        def dimension(handle, name, out):
            props = self._get(handle, PropertySet)
            if props is None:
                return ERR_BAD_HANDLE
            if name.decode() not in props.values:
                return ERR_UNKNOWN
            out[0] = len(props.values[name.decode()])
            return OK

        text = lambda v: v.decode() if v is not None else ""
        same = lambda v: v
        implementations = {
            "propSetPointer": setter(same), "propSetString": setter(text), "propSetDouble": setter(float),
            "propSetInt": setter(int), "propSetPointerN": setter_n(same), "propSetStringN": setter_n(text),
            "propSetDoubleN": setter_n(float), "propSetIntN": setter_n(int),
            "propGetPointer": getter(write_plain), "propGetString": getter(write_string), "propGetDouble": getter(write_plain),
            "propGetInt": getter(write_plain), "propGetPointerN": getter_n(write_plain), "propGetStringN": getter_n(write_string),
            "propGetDoubleN": getter_n(write_plain), "propGetIntN": getter_n(write_plain), "propReset": reset,
            "propGetDimension": dimension,
        }
        return self._build(PropertySuite, implementations)

    def _build(self, suite_type: type[Structure], implementations: dict) -> Structure:
        suite = suite_type()
        for name, function_type in suite_type._fields_:
            callback = function_type(implementations[name])
            setattr(suite, name, callback)
            self._objects[-id(callback)] = callback  # keep the thunk alive as long as the host
        return suite

    # -- parameter suite -------------------------------------------------------------------

    def _parameter_suite(self) -> Structure:
        def define(param_set, kind, name, props_out):
            effect = self._get(param_set, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            param = Param(kind.decode(), name.decode(), PropertySet({"OfxParamPropType": [kind.decode()], "OfxPropName": [name.decode()]}))
            effect.params[param.name] = param
            self._register_param(param)
            if props_out:
                props_out[0] = param.props_handle  # type: ignore[attr-defined]
            return OK

        def get_handle(param_set, name, param_out, props_out):
            effect = self._get(param_set, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            param = effect.params.get(name.decode())
            if param is None:
                return ERR_UNKNOWN
            param_out[0] = param.handle  # type: ignore[attr-defined]
            if props_out:
                props_out[0] = param.props_handle  # type: ignore[attr-defined]
            return OK

        def set_props(param_set, out):
            effect = self._get(param_set, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            out[0] = effect.param_props_handle  # type: ignore[attr-defined]
            return OK

        def param_props(handle, out):
            param = self._get(handle, Param)
            if param is None:
                return ERR_BAD_HANDLE
            out[0] = param.props_handle  # type: ignore[attr-defined]
            return OK

        def get_value(handle, out):
            param = self._get(handle, Param)
            if param is None or not out:
                return ERR_BAD_HANDLE
            if param.kind == "OfxParamTypeString":
                ctypes.cast(out, POINTER(c_void_p))[0] = self._c_text(param)
            elif param.kind == "OfxParamTypeDouble":
                ctypes.cast(out, POINTER(c_double))[0] = float(param.value)
            elif param.kind in ("OfxParamTypeInteger", "OfxParamTypeBoolean", "OfxParamTypeChoice"):
                ctypes.cast(out, POINTER(c_int))[0] = int(param.value)
            else:
                return ERR_UNSUPPORTED
            return OK

        def get_value_at_time(handle, time, out):
            return get_value(handle, out)

        def set_value(handle, value):
            param = self._get(handle, Param)
            if param is None:
                return ERR_BAD_HANDLE
            if param.kind == "OfxParamTypeString":
                param.value = ctypes.string_at(value).decode() if value else ""
            elif param.kind in ("OfxParamTypeInteger", "OfxParamTypeBoolean", "OfxParamTypeChoice"):
                param.value = ctypes.c_int.from_buffer(ctypes.c_uint64(value or 0)).value
            else:
                return ERR_UNSUPPORTED  # doubles arrive in a floating-point register: see the module docstring
            param.sets.append(param.value)
            return OK

        def unsupported(*args):
            return ERR_UNSUPPORTED

        implementations = {name: unsupported for name, _ in _PARAMETER_TYPES}
        implementations.update({
            "paramDefine": define, "paramGetHandle": get_handle, "paramSetGetPropertySet": set_props,
            "paramGetPropertySet": param_props, "paramGetValue": get_value, "paramGetValueAtTime": get_value_at_time,
            "paramSetValue": set_value, "paramSetValueAtTime": lambda handle, time, value: set_value(handle, value),
            "paramEditBegin": lambda param_set, name: OK, "paramEditEnd": lambda param_set: OK,
        })
        return self._build(ParameterSuite, implementations)

    def _c_text(self, param: Param) -> int:
        param.props.values["__text__"] = [param.value or ""]
        return param.props.c_string("__text__", 0)

    def _register_param(self, param: Param) -> None:
        param.handle = self._register(param)  # type: ignore[attr-defined]
        param.props_handle = self._register(param.props)  # type: ignore[attr-defined]

    # -- image effect suite ----------------------------------------------------------------

    def _effect_suite(self) -> Structure:
        def property_set(effect_handle, out):
            effect = self._get(effect_handle, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            out[0] = effect.props_handle  # type: ignore[attr-defined]
            return OK

        def param_set(effect_handle, out):
            effect = self._get(effect_handle, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            out[0] = effect.param_set
            return OK

        def clip_define(effect_handle, name, out):
            effect = self._get(effect_handle, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            clip = Clip(name.decode(), PropertySet({"OfxPropName": [name.decode()]}))
            clip.handle = self._register(clip)  # type: ignore[attr-defined]
            clip.props_handle = self._register(clip.props)  # type: ignore[attr-defined]
            effect.clips[clip.name] = clip
            out[0] = clip.props_handle  # type: ignore[attr-defined]
            return OK

        def clip_handle(effect_handle, name, clip_out, props_out):
            effect = self._get(effect_handle, Effect)
            if effect is None:
                return ERR_BAD_HANDLE
            clip = effect.clips.get(name.decode())
            if clip is None:
                return ERR_UNKNOWN
            clip_out[0] = clip.handle  # type: ignore[attr-defined]
            if props_out:
                props_out[0] = clip.props_handle  # type: ignore[attr-defined]
            return OK

        def clip_props(handle, out):
            clip = self._get(handle, Clip)
            if clip is None:
                return ERR_BAD_HANDLE
            out[0] = clip.props_handle  # type: ignore[attr-defined]
            return OK

        def clip_image(handle, time, region, out):
            clip = self._get(handle, Clip)
            if clip is None:
                return ERR_BAD_HANDLE
            if clip.memory is None:
                return FAILED
            out[0] = self._register(self._image_props(clip))
            return OK

        def release(handle):
            props = self._objects.pop(handle or 0, None)
            return OK if isinstance(props, PropertySet) else ERR_BAD_HANDLE

        def unsupported(*args):
            return ERR_UNSUPPORTED

        implementations = {name: unsupported for name, _, _ in _EFFECT_TYPES}
        implementations.update({
            "getPropertySet": property_set, "getParamSet": param_set, "clipDefine": clip_define,
            "clipGetHandle": clip_handle, "clipGetPropertySet": clip_props, "clipGetImage": clip_image,
            "clipReleaseImage": release, "abort": lambda handle: 0,
        })
        return self._build(EffectSuite, implementations)

    def _image_props(self, clip: Clip) -> PropertySet:
        """OpenFX image properties over ``clip.memory``."""
        image = clip.memory
        assert image is not None
        height, width = image.shape[:2]
        pixel = image.itemsize * 4
        if clip.top_down:  # OpenFX rows run bottom-up: start at the last row, step backwards
            data, row_bytes = image.ctypes.data + (height - 1) * width * pixel, -width * pixel
        else:
            data, row_bytes = image.ctypes.data, width * pixel
        depth = "OfxBitDepthByte" if image.dtype == np.uint8 else "OfxBitDepthFloat"
        return PropertySet({
            "OfxImagePropData": [data], "OfxImagePropBounds": [0, 0, width, height], "OfxImagePropRowBytes": [row_bytes],
            "OfxImageEffectPropPixelDepth": [depth], "OfxImageEffectPropComponents": ["OfxImageComponentRGBA"],
            "OfxImagePropPixelAspectRatio": [1.0], "OfxImageEffectPropRenderScale": [1.0, 1.0],
        })

    # -- memory suite ----------------------------------------------------------------------

    def _memory_suite(self) -> Structure:
        def alloc(handle, size, out):
            buffer = ctypes.create_string_buffer(size)
            self._memory[ctypes.addressof(buffer)] = buffer
            out[0] = ctypes.addressof(buffer)
            return OK

        def free(pointer):
            return OK if self._memory.pop(pointer or 0, None) is not None else ERR_BAD_HANDLE

        return self._build(MemorySuite, {"memoryAlloc": alloc, "memoryFree": free})

    # -- actions ---------------------------------------------------------------------------

    def _action(self, action: str, handle: int | None = None, in_args: PropertySet | None = None,
                expect: tuple[int, ...] = (OK, REPLY_DEFAULT)) -> int:
        assert self.plugin is not None, "load() first"
        in_handle = self._register(in_args) if in_args is not None else None
        out_args = PropertySet()
        status = self.plugin.mainEntry(action.encode(), handle, in_handle, self._register(out_args))
        if status not in expect:
            raise OfxError(f"{action} answered status {status}, expected one of {expect}")
        return status

    def load(self) -> OfxPluginStruct:
        """OfxGetNumberOfPlugins, OfxGetPlugin(0), setHost and the load action."""
        self.library.OfxGetNumberOfPlugins.restype = c_int
        self.library.OfxGetPlugin.restype = POINTER(OfxPluginStruct)
        self.library.OfxGetPlugin.argtypes = [c_int]
        count_ = self.library.OfxGetNumberOfPlugins()
        if count_ < 1:
            raise OfxError(f"the binary declares {count_} plug-ins")
        self.plugin = self.library.OfxGetPlugin(0).contents
        if self.plugin.pluginApi != b"OfxImageEffectPluginAPI" or self.plugin.apiVersion != 1:
            raise OfxError(f"plug-in API {self.plugin.pluginApi!r} v{self.plugin.apiVersion} is not an image effect v1")
        self.plugin.setHost(ctypes.addressof(self.host))
        self._action("OfxActionLoad", expect=(OK, REPLY_DEFAULT))
        return self.plugin

    def _new_effect(self) -> Effect:
        effect = Effect(PropertySet(), 0)
        handle = self._register(effect)
        effect.handle = handle  # type: ignore[attr-defined]
        effect.param_set = handle  # one handle serves as effect and as its parameter set
        effect.props_handle = self._register(effect.props)  # type: ignore[attr-defined]
        effect.param_props_handle = self._register(PropertySet())  # type: ignore[attr-defined]
        return effect

    def describe(self) -> Effect:
        self.descriptor = self._new_effect()
        self._action("OfxActionDescribe", self.descriptor.handle, expect=(OK,))  # type: ignore[attr-defined]
        return self.descriptor

    def describe_in_context(self, context: str = "OfxImageEffectContextFilter") -> int:
        assert self.descriptor is not None, "describe() first"
        self.descriptor.props.values["OfxImageEffectPropContext"] = [context]
        return self._action("OfxImageEffectActionDescribeInContext", self.descriptor.handle,  # type: ignore[attr-defined]
                            PropertySet({"OfxImageEffectPropContext": [context]}), expect=(OK, ERR_UNSUPPORTED))

    def create_instance(self, values: dict[str, Any], frame_range: tuple[float, float] = (0, 0),
                        frame_rate: float = 25.0) -> Instance:
        """An instance of the described filter with parameter defaults, then ``values``."""
        assert self.descriptor is not None
        effect = self._new_effect()
        effect.props.values = {k: list(v) for k, v in self.descriptor.props.values.items()}
        effect.props.values.update({"OfxImageEffectPropContext": ["OfxImageEffectContextFilter"],
                                    "OfxImageEffectPropFrameRate": [frame_rate]})
        for name, described in self.descriptor.params.items():
            param = Param(described.kind, name, PropertySet(described.props.values))
            param.value = described.props.values.get("OfxParamPropDefault", [None])[0]
            if name in values:
                param.value = values[name]
            self._register_param(param)
            effect.params[name] = param
        unknown = set(values) - set(effect.params)
        if unknown:
            raise OfxError(f"the plug-in defines no parameters {sorted(unknown)}")
        for name, described in self.descriptor.clips.items():
            clip = Clip(name, PropertySet(described.props.values))
            clip.props.values["OfxImageEffectPropFrameRange"] = list(frame_range)
            clip.props.values["OfxImageEffectPropFrameRate"] = [frame_rate]
            clip.handle = self._register(clip)  # type: ignore[attr-defined]
            clip.props_handle = self._register(clip.props)  # type: ignore[attr-defined]
            effect.clips[name] = clip
        self._action("OfxActionCreateInstance", effect.handle, expect=(OK, REPLY_DEFAULT))  # type: ignore[attr-defined]
        return Instance(self, effect)

    def unload(self) -> None:
        self._action("OfxActionUnload", expect=(OK, REPLY_DEFAULT))


class Instance:
    def __init__(self, host: OfxHost, effect: Effect) -> None:
        self.host = host
        self.effect = effect

    @property
    def status(self) -> str:
        return self.effect.params["status"].value or ""

    def render(self, source: np.ndarray, time: float, window: tuple[int, int, int, int] | None = None,
               negative_row_bytes: bool = False) -> np.ndarray:
        """Render ``source`` ((H, W, 4) uint8 or float32, top row first) at ``time``; the output
        image, top row first. ``window`` (x1, y1, x2, y2) in OpenFX pixel coordinates."""
        height, width = source.shape[:2]
        source = np.ascontiguousarray(source)
        clip_in, clip_out = self.effect.clips["Source"], self.effect.clips["Output"]
        for clip, image in ((clip_in, source), (clip_out, np.zeros_like(source))):
            clip.top_down = negative_row_bytes
            clip.memory = image if negative_row_bytes else np.ascontiguousarray(image[::-1])
            depth = "OfxBitDepthByte" if image.dtype == np.uint8 else "OfxBitDepthFloat"
            clip.props.values["OfxImageEffectPropPixelDepth"] = [depth]
            clip.props.values["OfxImageEffectPropComponents"] = ["OfxImageComponentRGBA"]
        args = PropertySet({
            "OfxPropTime": [float(time)], "OfxImageEffectPropRenderWindow": list(window or (0, 0, width, height)),
            "OfxImageEffectPropRenderScale": [1.0, 1.0], "OfxImageEffectPropFieldToRender": ["OfxImageFieldNone"],
        })
        self.host._action("OfxImageEffectActionRender", self.effect.handle, args, expect=(OK,))  # type: ignore[attr-defined]
        assert clip_out.memory is not None
        return clip_out.memory.copy() if negative_row_bytes else clip_out.memory[::-1].copy()

    def value(self, name: str) -> Any:
        return self.effect.params[name].value

    def change(self, name: str, value: Any = None, reason: str = "OfxChangeUserEdited") -> None:
        """Set parameter ``name`` to ``value`` (a push button has none) and run the instance-changed
        actions a host runs after an edit."""
        param = self.effect.params[name]
        if param.kind != "OfxParamTypePushButton":
            param.value = value
        handle = self.effect.handle  # type: ignore[attr-defined]
        self.host._action("OfxActionBeginInstanceChanged", handle, PropertySet({"OfxPropChangeReason": [reason]}))
        self.host._action("OfxActionInstanceChanged", handle, PropertySet({
            "OfxPropType": ["OfxTypeParameter"], "OfxPropName": [name], "OfxPropChangeReason": [reason],
            "OfxPropTime": [0.0], "OfxImageEffectPropRenderScale": [1.0, 1.0],
        }))
        self.host._action("OfxActionEndInstanceChanged", handle, PropertySet({"OfxPropChangeReason": [reason]}))

    def destroy(self) -> None:
        self.host._action("OfxActionDestroyInstance", self.effect.handle, expect=(OK, REPLY_DEFAULT))  # type: ignore[attr-defined]
