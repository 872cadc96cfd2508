# The hod stage (see docs/pipeline.md).
