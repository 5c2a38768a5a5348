"""From embeddings to the numbers users see: similarity (the calibrated table) and score
normalisation (label-free fairness)."""
