"""OpenTimelineIO interchange: timelines that place a patch above its source."""

from dubline.interchange.timeline import patch_timeline, write_timeline

__all__ = ["patch_timeline", "write_timeline"]
