# The grid stage (see docs/pipeline.md).
