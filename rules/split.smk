# The split stage (see docs/pipeline.md).
