# regexp: Ruby side (see src/api/gems/)
