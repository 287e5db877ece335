"""The tuning constants of candidate generation and inference, in one place.

None of them changes what the model predicts, only how fast (and in how much
memory) it gets there. They were set by measuring the head's share of the
inference time on 2 CPU cores (``python -m research speed``); each comment
says what the value trades. The modules read them as ``tuning.NAME`` at call
time, so a test (or an experiment) can change one for a run.
"""

# Candidates (suggesters.py): docs of at most this many tokens (sentences)
# without scopes or skipped tokens share their spans, kept per (length, max
# width) in a small cache. Trades a little memory (512 grids of at most
# 256 x max_width spans) for enumerating the spans of every sentence again.
SPAN_GRID_CACHE_TOKENS = 256

# Pairing (pairing.py): up to this many kept spans, ``pairs_within_groups``
# pairs them through a dense (K, K) same-group mask. Trades K**2 booleans
# (64 KiB at 256) for the sorts and repeats of the general path, which cost
# more for a few dozen spans.
DENSE_PAIRS_MAX = 256

# Blocks (architectures.py): at inference the head pools and classifies one
# block of whole pairing groups of about this many tokens at a time. Trades
# memory (the range-max table and the span features of a block; it no longer
# grows with the length of a document) for the per-block overhead of more,
# smaller blocks. A batch of sentences is one block.
INFERENCE_BLOCK_TOKENS = 4096

# Schedule (pytorch/inference.py): on an accelerator the head classifies the
# entities of every block, brings all their logits to the host in one copy,
# then classifies the relations of every block, so that a batch waits for the
# device twice whatever its number of blocks (and its indices move in two
# copies). On the CPU, where nothing waits, each block is done before the
# next (its table freed first). True runs the accelerators' schedule on the
# CPU too (tests run it there; the results are the same).
PHASED_ON_CPU = False

# Range-max table (pytorch/range_max.py): a table level of at most this many
# values (tokens x hidden width) is computed with numpy on the CPU. torch's
# operations on tensors this small run on one thread (its grain size) and
# cost more in dispatch than in work; larger ones are computed by torch,
# which uses all threads.
NUMPY_LEVELS_MAX_VALUES = 32768

# Entity logits (pytorch/classifiers.py): a block of at least
# WIDTH_SLICES_MIN_TOKENS tokens whose spans are at most
# WIDTH_SLICES_MAX_WIDTH wide takes the span part of its entity logits width
# by width, from contiguous slices of the range-max table (no gather of span
# vectors). Trades one small matmul per width (wasted on a short block, whose
# spans are few) for a gather of two table rows per span; the bound on the
# width keeps the number of those matmuls small.
WIDTH_SLICES_MIN_TOKENS = 192
WIDTH_SLICES_MAX_WIDTH = 16

# Chunks (pytorch/classifiers.py): spans and pairs are pooled and classified
# in chunks of at most this many (and at most the head's pair_batch_size).
# Trades more, smaller matmuls for a chunk's pooled vectors (1024 x H floats)
# staying in the CPU's cache between the gather and the matmul.
SPAN_CHUNK = 1024
