"""The face pipeline: image files, detection, embedding, the runtime, weights, attributes."""
