# The figures stage (see docs/pipeline.md).
