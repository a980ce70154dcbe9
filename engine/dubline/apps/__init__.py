"""Applications over the pipeline: the command line, the gRPC engine, the demo. Nothing imports apps."""
