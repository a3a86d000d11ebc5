"""Before any stage: the model registry (``env.models``), preparing stand-in weights and resolving model
paths (``env.prepare``), the hardware lane and library versions (``env.lane``), how vLLM runs here
(``env.vllm_lane``) and ``llmcourse doctor`` (``env.doctor``)."""
