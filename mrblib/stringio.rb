# stringio: Ruby side (see src/api/gems/)
