"""What the paper reports, with where it says so, so every comparison quotes the same numbers.

Bhanderi, Atole, Panchmia, "Evaluation of a deep learning model on Kubeless" (UGA): two VMs with 2 CPUs and
2 GB RAM, Minikube 0.29, Kubernetes 1.10.4, Kubeless 1.0.0-alpha; a Keras CNN (11 MB) classifying Yelp photos.
"""

from __future__ import annotations

# Table 1 (section IV.C): the mean of 10 requests per platform, in milliseconds.
TABLE1_MS = {
    "function": {"prediction_ms": 120.0, "response_ms": 200.0, "label": "Kubeless"},
    "container": {"prediction_ms": 100.0, "response_ms": 130.0, "label": "Kubernetes"},
}

# "Kubeless takes around 35% more response time than that of the containerized application."
# The table's own numbers give (0.2 - 0.13) / 0.2 = 35 %, i.e. the difference over the *function's* time;
# over the container's time, the usual definition, the same numbers give (0.2 / 0.13 - 1) = 54 %.
RESPONSE_OVERHEAD_PCT_AS_STATED = 35.0
RESPONSE_OVERHEAD_PCT_OF_CONTAINER = 100 * (200.0 / 130.0 - 1)
PREDICTION_OVERHEAD_PCT_OF_CONTAINER = 100 * (120.0 / 100.0 - 1)

# Figure 1 and section IV.B, Kubeless only: "for the one request only, kubeless takes 0.2 s"; at 20 concurrent
# requests "the average response time is 965s [sic: ms, given the other two values], the quickest response is
# 472 ms and the longest response time takes up to 1s". Each experiment was repeated up to five times.
FIG1_FUNCTION_MS = {
    1: {"mean_ms": 200.0},
    20: {"mean_ms": 965.0, "min_ms": 472.0, "max_ms": 1000.0},
}

# Section III.A / IV.A: both VMs had 2 CPUs and 2 GB RAM.
MEMORY_CAP_BYTES = 2 * 1024**3
CPUS = 2

# Section IV.B: "we received all the responses successfully without getting an error for any requests".
ERRORS = 0

# What we call "no major prediction overhead": the paper itself calls 0.12 s vs 0.10 s (+20 %) no significant
# change, so a relative difference up to that size is within what the paper's wording covers.
MINOR_PREDICTION_OVERHEAD_PCT = PREDICTION_OVERHEAD_PCT_OF_CONTAINER
# A response-time overhead "matches the paper's ~35 %" when its interval (computed the paper's way) overlaps
# 35 % +/- this many percentage points.
RESPONSE_OVERHEAD_TOLERANCE_PTS = 10.0
# issue 24: the sentence read as it is worded, "35 % more response time than the containerized application", is a
# ratio of 1.35 to the container; +/- the same 10 points gives the band the c=1 ratio's whole interval must lie in
# for the claim to hold (equivalence; analysis/headline.py). The paper's own Table 1 gives 200 / 130 = 1.54.
RESPONSE_RATIO_BAND = (1.25, 1.45)
