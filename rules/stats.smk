# The stats stage (see docs/pipeline.md).
