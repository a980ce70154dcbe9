"""dubline: Workspace > Scripts > Utility > Dubline in DaVinci Resolve (18.5 or later).

Patches the clip under the playhead (limited to the mark in/out when set) so the speaker's mouth
follows a dub, and puts the patch on a new video track above it. Thin on purpose: the logic lives in
``dubline_resolve`` (tested against a stand-in of the API); this file only finds ``resolve``, asks for
the dub and prints the outcome to the Console (Workspace > Console). See docs/RESOLVE.md.

The dub comes from, in order: the dialog (Fusion UIManager, when Resolve offers it), the first
command-line argument, ``$DUBLINE_DUB``. ``$DUBLINE_VIA_OTIO=1`` takes the OTIO round trip instead
(a new, patched timeline); ``$DUBLINE_NO_MARKS=1`` ignores the mark in/out.
"""

import os
import sys


def _add_own_folder_to_path() -> None:
    # Resolve runs this file with exec(); __file__ is not always set, so DUBLINE_RESOLVE_DIR may name the folder.
    here = os.environ.get("DUBLINE_RESOLVE_DIR") or os.path.dirname(os.path.abspath(globals().get("__file__", "")))
    for folder in (here, os.environ.get("DUBLINE_CLIENT_DIR", "")):
        if folder and os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)


def _resolve_app():
    app = globals().get("resolve")  # injected by Resolve into Workspace > Scripts runs
    if app is None:
        try:
            import DaVinciResolveScript  # Resolve's module, for runs from an external Python
            app = DaVinciResolveScript.scriptapp("Resolve")
        except ImportError:
            app = None
    return app


def _ask_with_dialog(app, initial_dub: str):
    """(dub, use_marks, via_otio) from a small UIManager window, or None when there is no UIManager."""
    fusion = app.Fusion() if app is not None else None
    ui = getattr(fusion, "UIManager", None) if fusion is not None else None
    bmd_module = globals().get("bmd")
    if ui is None or bmd_module is None:
        return None
    dispatcher = bmd_module.UIDispatcher(ui)
    window = dispatcher.AddWindow({"ID": "DublineWin", "WindowTitle": "dubline", "Geometry": [200, 200, 560, 150]}, [
        ui.VGroup([
            ui.HGroup([ui.Label({"Text": "Dub audio"}), ui.LineEdit({"ID": "Dub", "Text": initial_dub}),
                       ui.Button({"ID": "Browse", "Text": "Browse..."})]),
            ui.HGroup([ui.CheckBox({"ID": "Marks", "Text": "Only the mark in/out", "Checked": True}),
                       ui.CheckBox({"ID": "Otio", "Text": "Via OTIO (new timeline)", "Checked": False})]),
            ui.HGroup([ui.Button({"ID": "Render", "Text": "Render patch"}), ui.Button({"ID": "Cancel", "Text": "Cancel"})]),
        ]),
    ])
    items = window.GetItems()
    answer = {}

    def browse(event):
        chosen = fusion.RequestFile()
        if chosen:
            items["Dub"].Text = chosen

    def render(event):
        answer.update(dub=items["Dub"].Text, marks=items["Marks"].Checked, otio=items["Otio"].Checked)
        dispatcher.ExitLoop()

    window.On.Browse.Clicked = browse
    window.On.Render.Clicked = render
    window.On.Cancel.Clicked = lambda event: dispatcher.ExitLoop()
    window.On.DublineWin.Close = lambda event: dispatcher.ExitLoop()
    window.Show()
    dispatcher.RunLoop()
    window.Hide()
    return (answer["dub"], answer["marks"], answer["otio"]) if answer else ("", True, False)


def main() -> int:
    _add_own_folder_to_path()
    try:
        import dubline_resolve
    except ImportError as error:
        print(f"dubline: cannot load the bridge ({error}). Put dubline_resolve/ and dubline_client/ beside "
              "Dubline.py and install grpcio and protobuf into the Python Resolve uses (docs/RESOLVE.md).")
        return 2
    app = _resolve_app()
    initial = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DUBLINE_DUB", "")
    asked = _ask_with_dialog(app, initial)
    if asked is None:
        asked = (initial, os.environ.get("DUBLINE_NO_MARKS") != "1", os.environ.get("DUBLINE_VIA_OTIO") == "1")
    dub, use_marks, via_otio = asked
    if not dub:
        print("dubline: no dub chosen; nothing done")
        return 1
    try:
        settings = dubline_resolve.load_settings()
        if via_otio:
            dubline_resolve.patch_via_otio(app, dub, settings, use_marks=use_marks)
        else:
            dubline_resolve.patch_current_item(app, dub, settings, use_marks=use_marks)
    except dubline_resolve.BridgeError as error:
        print(f"dubline: {error}")
        return 2
    return 0


main()
