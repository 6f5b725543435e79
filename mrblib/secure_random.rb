# secure_random: Ruby side (see src/api/gems/)
