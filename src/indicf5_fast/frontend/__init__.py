"""Front ends: text (vocabulary, tokenizer, chunking) and audio (decode, resample, clip, post-process)."""
