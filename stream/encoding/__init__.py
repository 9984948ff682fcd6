"""The worker's side of the item encoder: in process or through the encoder service."""
