# The train stage (see docs/pipeline.md).
