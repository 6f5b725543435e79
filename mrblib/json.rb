# json: Ruby side (see src/api/gems/)
