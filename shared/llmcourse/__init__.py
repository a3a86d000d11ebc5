"""llmcourse helpers."""
