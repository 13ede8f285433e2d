"""Fine-tuning job (`python -m training.train`) and SageMaker packaging (`python -m training.package`)."""
