"""dubline: re-render a span of a clip so the speaker's mouth follows a new dialogue track."""

__version__ = "0.1.0"
