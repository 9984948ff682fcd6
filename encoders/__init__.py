"""Text encoders: turn item text into L2-normalised float32 vectors."""
