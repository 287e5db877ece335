"""The head's inference schedule for accelerators ("phased", see
``spacy_spert/models/pytorch/inference.py``), run on the CPU: the same
decisions and logits as the CPU's schedule, and a number of host round trips
that does not grow with the number of blocks in a batch."""

from typing import Dict, List

import numpy
import pytest
import spacy
import torch
from conftest import long_texts, tiny_head
from torch.overrides import TorchFunctionMode

from spacy_spert.models import tuning
from spacy_spert.models.objectives import SpERTMTObjective, SpERTObjective
from spacy_spert.models.pytorch import tensors
from spacy_spert.models.pytorch.head import SpERTHead
from spacy_spert.models.suggesters import enumerate_spans
from spacy_spert.relations import relation_key

# Tensor methods that bring values to the host (a wait for the device on a
# GPU) or move a tensor between devices.
HOST_READS = {"cpu", "numpy", "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "to", "pin_memory"}
N_TOKENS, GROUP = 96, 12


class CountHostReads(TorchFunctionMode):
    """Counts the calls of HOST_READS on tensors (by name)."""

    def __init__(self):
        super().__init__()
        self.counts: Dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def make_head(mt: bool, chunk: int) -> SpERTHead:
    """A head with 5 entity and 4 relation outputs, weights large enough for
    decisions either way, relation pairs in chunks of ``chunk``."""
    return tiny_head(5, 4, weight_std=0.5, mt=mt, pair_batch_size=chunk)


def batch_inputs(blocks_of: int, uncovered: bool = True, seed: int = 0) -> Dict:
    """A batch of N_TOKENS tokens in 3 transformer windows, pairing groups of
    GROUP tokens, blocks of ``blocks_of`` groups (as ``Candidates.blocks``
    makes them: whole groups, the token range of their spans)."""
    rng = numpy.random.default_rng(seed)
    lengths = rng.integers(1, 3, size=N_TOKENS)
    if uncovered:
        lengths[[5, 40, 41]] = 0  # tokens without wordpieces (whitespace)
    align_tokens = numpy.repeat(numpy.arange(N_TOKENS), lengths)
    align_rows = 3 + numpy.arange(len(align_tokens))
    starts, ends = enumerate_spans(N_TOKENS, 4)
    groups = starts // GROUP
    blocks = []
    for first in range(0, int(groups.max()) + 1, blocks_of):
        spans = numpy.flatnonzero((groups >= first) & (groups < first + blocks_of))
        s0, s1 = int(spans[0]), int(spans[-1]) + 1
        blocks.append((s0, s1, int(starts[s0:s1].min()), int(ends[s0:s1].max())))
    return dict(
        align_rows=align_rows,
        align_tokens=align_tokens,
        cls_rows=numpy.array([0, 1, 2]),
        token_windows=numpy.arange(N_TOKENS) * 3 // N_TOKENS,
        n_tokens=N_TOKENS,
        max_range=GROUP + 4,
        span_starts=starts,
        span_ends=ends,
        span_groups=groups,
        blocks=blocks,
        all_covered=not uncovered,
    )


def predict(head: SpERTHead, hidden, phased: bool, objective=None, **overrides):
    inputs = {**batch_inputs(2), **overrides}
    objective = objective or SpERTObjective()
    with torch.inference_mode():
        return head.predict(hidden, objective=objective, threshold=0.4, phased=phased, **inputs)


@pytest.mark.parametrize("mt", [False, True])
@pytest.mark.parametrize("chunk", [7, 4096])
@pytest.mark.parametrize("by_width", [False, True])
@pytest.mark.parametrize("blocks_of", [1, 3, 100])
@pytest.mark.parametrize("variant", ["plain", "given", "thresholds", "covered"])
def test_phased_schedule_gives_the_interleaved_results(mt, chunk, by_width, blocks_of, variant, monkeypatch):
    """Entities of all blocks first, then their relations (tables built again
    for several blocks, indices packed into one copy per phase): every
    output equals the block-by-block schedule's, bit for bit."""
    monkeypatch.setattr(tuning, "WIDTH_SLICES_MIN_TOKENS", 0 if by_width else 10**9)
    head = make_head(mt, chunk)
    hidden = torch.randn(3 + 2 * N_TOKENS, 16, generator=torch.Generator().manual_seed(1))
    objective = SpERTMTObjective() if mt else SpERTObjective()
    overrides = batch_inputs(blocks_of, uncovered=variant != "covered")
    if variant == "given":
        overrides["given_entities"] = True
    if variant == "thresholds":
        overrides["entity_thresholds"] = numpy.array([-numpy.inf, 0.3, 0.5, 0.9, 0.0])
    a = predict(head, hidden, False, objective, **overrides)
    b = predict(head, hidden, True, objective, **overrides)
    assert len(a.pair_heads) > 10  # pairs in several blocks
    assert len(numpy.unique(overrides["span_groups"][a.pair_heads])) > 1
    for name, x, y in zip(a._fields, a, b):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), name
        else:
            numpy.testing.assert_array_equal(x, y, err_msg=name)


def count_round_trips(head, hidden, phased: bool, blocks_of: int, monkeypatch) -> Dict[str, int]:
    """Host reads (by name) and numpy-to-tensor conversions of one batch."""
    from_numpy = torch.from_numpy
    calls: List[int] = []
    monkeypatch.setattr(torch, "from_numpy", lambda a: calls.append(1) or from_numpy(a))
    stages: List[tensors.IndexStage] = []
    stage_init = tensors.IndexStage.__init__
    monkeypatch.setattr(
        tensors.IndexStage, "__init__", lambda self, *a, **k: stages.append(self) or stage_init(self, *a, **k)
    )
    with CountHostReads() as mode:
        predict(head, hidden, phased, **batch_inputs(blocks_of))
    monkeypatch.setattr(torch, "from_numpy", from_numpy)
    counts = dict(mode.counts)
    counts["from_numpy"] = len(calls)
    counts["transfers"] = sum(stage.transfers for stage in stages)
    return counts


def test_phased_schedule_waits_for_the_device_a_fixed_number_of_times(monkeypatch):
    """On an accelerator every host read waits for the device: the phased
    schedule reads the entity logits once for the whole batch (and the
    relation logits are read once by the caller) and moves the indices in one
    copy per phase, however many blocks the batch has. The CPU's schedule,
    counted the same way, reads and moves per block."""
    # the levels of a short block's table are written through numpy on the
    # CPU only (an accelerator has the torch path)
    monkeypatch.setattr(tuning, "NUMPY_LEVELS_MAX_VALUES", 0)
    head = make_head(True, 7)
    hidden = torch.randn(3 + 2 * N_TOKENS, 16, generator=torch.Generator().manual_seed(1))
    n_blocks = {b: len(batch_inputs(b)["blocks"]) for b in (100, 2, 1)}
    assert n_blocks == {100: 1, 2: 4, 1: 8}
    phased = {b: count_round_trips(head, hidden, True, b, monkeypatch) for b in n_blocks}
    # one read of the entity logits; per phase one packed buffer, moved once
    expected = {"cpu": 1, "numpy": 1, "from_numpy": 2, "to": 2, "transfers": 2}
    assert phased[100] == phased[2] == phased[1] == expected
    interleaved = {b: count_round_trips(head, hidden, False, b, monkeypatch) for b in n_blocks}
    for b, n in n_blocks.items():
        assert interleaved[b]["cpu"] == interleaved[b]["numpy"] == interleaved[b]["transfers"] / 2 == n
    assert interleaved[1]["from_numpy"] > interleaved[100]["from_numpy"] > phased[100]["from_numpy"]


def test_index_stage_packs_arrays_into_one_copy():
    """Packed, the arrays are views of one int64 buffer, in the order added;
    unpacked (the CPU's), each shares its numpy array's memory."""
    arrays = [numpy.array([3, 1]), numpy.array([], dtype="int64"), numpy.arange(4, dtype="int32")]
    packed = tensors.IndexStage(torch.device("cpu"), pack=True)
    handles = [packed.add(a) for a in arrays]
    packed.send()
    later = packed.add(numpy.array([7]))
    packed.send()
    assert packed.transfers == 2
    for h, a in zip(handles, arrays):
        assert packed[h].tolist() == a.tolist() and packed[h].dtype == torch.int64
    assert packed[later].tolist() == [7]
    assert packed[handles[0]].untyped_storage().data_ptr() == packed[handles[2]].untyped_storage().data_ptr()
    plain = tensors.IndexStage(torch.device("cpu"))
    h = plain.add(arrays[0])
    plain.send()
    assert plain[h].data_ptr() == arrays[0].ctypes.data


def outputs(nlp, texts: List[str]) -> List:
    docs = list(nlp.pipe(texts, batch_size=4))
    return [
        (
            [(s.start, s.end, s.label_) for s in doc.spans["sc"]],
            list(numpy.round(doc.spans["sc"].attrs["scores"], 6)),
            sorted(map(relation_key, doc._.relations)),
        )
        for doc in docs
    ]


def test_pipeline_on_the_phased_schedule_predicts_the_same(small_model_dir, monkeypatch):
    """A trained pipeline predicts the same entities, scores and relations
    with the accelerators' schedule on sentences and on a long doc of several
    blocks."""
    nlp = spacy.load(small_model_dir)
    texts = long_texts()
    monkeypatch.setattr(tuning, "INFERENCE_BLOCK_TOKENS", 200)
    expected = outputs(nlp, texts)
    monkeypatch.setattr(tuning, "PHASED_ON_CPU", True)
    got = outputs(nlp, texts)
    assert sum(len(ents) for ents, _, _ in expected) > 20 and sum(len(rels) for _, _, rels in expected) > 5
    assert got == expected


@pytest.mark.parametrize("phased", [False, True])
def test_one_range_max_table_at_a_time(phased, monkeypatch):
    """Blocks bound the head's memory on long docs: when a block's table is
    built, no other block's table is alive (the phased schedule builds each
    block's table again for its relations rather than keeping them all)."""
    import gc
    import weakref

    from spacy_spert.models.pytorch import inference

    built: List = []
    alive_at_build: List[int] = []
    table = inference.inference_table

    def tracked(*args, **kwargs):
        gc.collect()
        alive_at_build.append(sum(ref() is not None for ref in built))
        out = table(*args, **kwargs)
        built.append(weakref.ref(out))
        return out

    monkeypatch.setattr(inference, "inference_table", tracked)
    head = make_head(True, 7)
    hidden = torch.randn(3 + 2 * N_TOKENS, 16, generator=torch.Generator().manual_seed(1))
    out = predict(head, hidden, phased, **batch_inputs(1))
    assert len(out.pair_heads) > 10
    assert len(built) == (16 if phased else 8) and alive_at_build == [0] * len(built)
