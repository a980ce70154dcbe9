"""Add-on preferences: where the engine is, how to start it, where the client library lives."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from . import engine

PACKAGE = __package__  # "dubline_vse" as a legacy add-on, "bl_ext.<repo>.dubline_vse" as an extension


class DUBLINE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    address: StringProperty(
        name="Engine Address", default=engine.DEFAULT_ADDRESS,
        description="unix:/path/to/socket or HOST:PORT of `dubline serve`",
    )
    token: StringProperty(
        name="Token", subtype="PASSWORD",
        description="Bearer token of an engine started with --token-file (stored in Blender's preferences in clear)",
    )
    tls_ca: StringProperty(
        name="TLS Certificate Authority", subtype="FILE_PATH",
        description="PEM file of the certificate authority of an engine on another machine (started with "
                    "--tls-cert/--tls-key); empty: a local engine without TLS",
    )
    tls_server_name: StringProperty(
        name="TLS Server Name",
        description="The host name in the engine's certificate, when the address differs from it (e.g. an IP)",
    )
    auto_start: BoolProperty(
        name="Start a Local Engine", default=True,
        description="Run `dubline serve` when no engine answers at a local address; it stops with the add-on",
    )
    executable: StringProperty(
        name="dubline Executable", subtype="FILE_PATH", default="dubline",
        description="The `dubline` command (a name on PATH or a full path)",
    )
    python_path: StringProperty(
        name="dubline Python Environment", subtype="DIR_PATH",
        description="site-packages holding grpcio, protobuf and dubline_client; empty: found from the executable",
    )
    start_timeout: FloatProperty(name="Start Timeout", default=90.0, min=5.0, max=600.0, unit="TIME_ABSOLUTE")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "address")
        layout.prop(self, "token")
        layout.prop(self, "tls_ca")
        layout.prop(self, "tls_server_name")
        row = layout.row()
        row.prop(self, "auto_start")
        row.prop(self, "start_timeout")
        layout.prop(self, "executable")
        layout.prop(self, "python_path")
        found = site_packages(context)
        problem = engine.client_problem(found)
        if problem:
            box = layout.box()
            box.alert = True
            for line in _wrap(problem):
                box.label(text=line)
        else:
            layout.label(text=f"Client library found{' in ' + found if found else ''}", icon="CHECKMARK")


def get(context: bpy.types.Context) -> DUBLINE_AP_preferences:
    return context.preferences.addons[PACKAGE].preferences


def site_packages(context: bpy.types.Context) -> str:
    """The environment to append to sys.path: the one set, else the executable's."""
    prefs = get(context)
    if prefs.python_path:
        return bpy.path.abspath(prefs.python_path)
    return engine.site_packages_of(prefs.executable)


def settings(context: bpy.types.Context) -> engine.EngineSettings:
    prefs = get(context)
    return engine.EngineSettings(
        address=prefs.address.strip(), token=prefs.token.strip(), executable=prefs.executable.strip(),
        auto_start=prefs.auto_start, start_timeout=prefs.start_timeout,
        tls_ca=bpy.path.abspath(prefs.tls_ca) if prefs.tls_ca.strip() else "",
        tls_server_name=prefs.tls_server_name.strip(),
    )


def _wrap(text: str, width: int = 90) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def register() -> None:
    bpy.utils.register_class(DUBLINE_AP_preferences)


def unregister() -> None:
    bpy.utils.unregister_class(DUBLINE_AP_preferences)
