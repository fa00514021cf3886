"""The chat playground: a conversation and its exports (conversation), the tree of messages and titles (tree),
conversations kept per person (history), and starting prompts (starters)."""
