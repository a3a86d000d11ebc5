"""Stage 3, inference: one interface over transformers and vLLM (``inference.engines``) and resource
monitoring while it runs (``inference.monitor``)."""
