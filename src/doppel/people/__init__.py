"""People: who is the same person and who only looks alike.

calibration: same-person thresholds per model (measured, shipped, looked up).
clustering: grouping faces into people over a nearest-neighbour graph (arrays only).
scores: how well a grouping matches known identities (for benchmarks and tests).
groups: the `doppel people` use cases on a gallery (cluster, name, merge, take out).
verify: are two photos of the same person.
twins: the most alike pairs of different people in a gallery.
"""
