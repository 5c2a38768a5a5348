"""Faces in images: decoding and limits (imaging), geometry (analysis), the engine (image ->
faces), typed results and the batched pipeline."""
