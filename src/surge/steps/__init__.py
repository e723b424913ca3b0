"""Steps: config models, discovery of step files, and the immutable registry."""
