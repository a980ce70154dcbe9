"""dubline for Blender's Video Sequence Editor: render a lip-sync patch for a span of a movie strip
and put it on the channel above, frame-exact.

The Blender-facing modules (props, prefs, ops, ui, compat) import ``bpy``; the arithmetic, the
engine/job handling and the engine's menus (frames, engine, jobs, menus) do not, and are imported
here only inside ``register`` so this package also loads in plain Python for tests.
"""

bl_info = {
    "name": "dubline",
    "author": "dubline",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Sequencer > Sidebar > Dubline",
    "description": "Lip-sync patches for a span of a clip, rendered by the dubline engine",
    "category": "Sequencer",
}

_MODULES = ("props", "prefs", "ops", "ui")


def register() -> None:
    import importlib

    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}").register()


def unregister() -> None:
    import importlib

    for name in reversed(_MODULES):
        importlib.import_module(f"{__package__}.{name}").unregister()
