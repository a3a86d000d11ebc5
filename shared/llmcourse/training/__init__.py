"""Stage 2, training: LoRA supervised fine-tuning (``training.run``), what LoRA trains (``lora_math``),
the lean CPU loss (``lm_head``) and memory estimates before renting a GPU (``gpu_memory``)."""
