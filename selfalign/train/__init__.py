"""Fine-tuning (principle engraving, verbose cloning) through DeepSpeed under torchrun."""
