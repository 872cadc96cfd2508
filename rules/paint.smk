# The paint stage (see docs/pipeline.md).
