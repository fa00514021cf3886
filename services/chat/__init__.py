"""The chat playground's domain: a conversation, its turns and how they ended, and its exports."""
