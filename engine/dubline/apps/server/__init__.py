"""The resident engine: a gRPC server (``dubline.v1``) over the same pipeline as the CLI.

``app.create_server`` builds it; ``servicer`` turns RPCs into pipeline calls (and maps errors to
status codes, in one place); ``jobs`` queues and runs work with progress and cancellation;
``security`` holds the listen-address, token and media-root rules; ``convert`` translates
messages to pipeline requests and back.
"""
