"""Stage 4, serving: the OpenAI-compatible API (``serving.server``, ``serving.batcher``), the ``openai``
client for multi-turn calls (``serving.chat``), load tests and malformed-request checks."""
