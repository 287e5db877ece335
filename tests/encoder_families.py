"""Tiny random encoders of the common transformer families, built offline.

Each family's tokenizer is trained locally with the ``tokenizers`` library on
a few hundred generated sentences (English, German and Chinese) in that
family's style, wrapped in the family's tokenizer class and saved with a
2-layer, 32-wide random model of the family (``save_pretrained``), so that a
test can pass the folder as the transformer's ``name``:

* ``bert`` (the control: cased, as conftest's tiny BERT), ``bert_uncased``,
  ``distilbert``, ``electra``: WordPiece, BERT's normalizer (uncased:
  lowercasing and accent stripping), [CLS] ... [SEP].
* ``roberta``: byte-level BPE (``Ġ``), offsets trimmed by its post-processor
  (``RobertaProcessing(trim_offsets=True)``, as roberta-base's), <s> ... </s>.
* ``modernbert``: byte-level BPE whose offsets include the space before a
  piece (a template post-processor trims nothing, as ModernBERT-base's),
  [CLS] ... [SEP], 8,192 positions.
* ``xlmr_spm``: Unigram with ``Metaspace`` (``▁``) alone, as transformers
  converts a ``sentencepiece.bpe.model`` (offsets include the space);
  ``xlmr``: whitespace split first, then ``Metaspace`` (as the hub's
  tokenizer.json of xlm-roberta-base): offsets without the space.
* ``deberta_v3``: Unigram/``Metaspace``, [CLS] ... [SEP], relative positions
  (as deberta-v3-base, converted from its spm.model); ``deberta_v2``: the
  same with punctuation split off first (``split_by_punct``) and v2's
  convolution layer.

The tokenizer classes that keep a sentencepiece file (``vocab_file``:
DebertaV2TokenizerFast, XLMRobertaTokenizerFast) get a placeholder file of
that name: spacy-transformers reads and rewrites it when it saves the
pipeline; the fast tokenizer itself is loaded from tokenizer.json.
"""

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

VOCAB_SIZE = 1200
HIDDEN = 32

FIRST = "Zoe Zoë Mary John Anna José Jürgen Åsa Li Wei Chen Ahmed Olga Pierre Björn Noah Emma Liam".split()
LAST = "Ferreira Smith Doe Lee Müller García Nguyen Novak Öztürk Schmidt Dubois Kowalski Tanaka".split()
ORGS = "Acme Globex Initech Umbrella Hooli Vandelay Stark Wayne Cyberdyne Soylent".split()
ORG_SUFFIX = "Corp Inc GmbH Ltd AG Group".split()
PLACES = "Paris London Berlin München Zürich Kraków Lisbon Tokyo Madrid Québec Reykjavík".split() + ["São Paulo"]
VERBS = [
    "works for",
    "joined",
    "left",
    "founded",
    "leads",
    "advises",
    "sued",
    "visited",
]
TAILS = [
    "in {place}",
    "near {place}",
    "after moving to {place}",
    "since {year}",
    "in {year} , sources said",
    "( {place} )",
    ", according to a report",
    "and didn't comment .",
    "; it's the third time .",
]
DE_NAMES = "Jürgen Weiß Anna Müller Björn Krüger Sophie Schäfer".split()
DE_SENTENCES = [
    "{p} arbeitet für {o} in {l} .",
    "{p} wohnt seit {y} in {l} .",
    "Die Firma {o} mit Sitz in {l} stellte {p} ein .",
    "Laut Bericht gründete {p} im Jahr {y} die {o} .",
]
ZH_PEOPLE = ["张伟", "李娜", "王芳", "刘洋", "陈静"]
ZH_ORGS = ["华为公司", "腾讯集团", "阿里巴巴", "小米科技"]
ZH_PLACES = ["北京", "上海", "深圳", "杭州", "广州"]
# Word-segmented (spaces between words): the tokenizers learn Chinese pieces
# from words, as XLM-R's mostly are, so no piece crosses a word boundary; the
# text itself has no spaces (chinese_sentences joins the words).
ZH_SENTENCES = [
    "{p} 在 {l} 的 {o} 工作 。",
    "{p} 住在 {l} 。",
    "{o} 总部 位于 {l} 。",
    "{p} 于 {y} 年 加入 {o} 。",
    "昨天 {p} 访问 了 {l} 。",
]

# The test text of the alignment measurements: 319 spaCy tokens (English
# tokenizer) with names, punctuation, contractions, accents, numbers,
# repeated spaces and line breaks.
ALIGNMENT_TEXT = (
    "Zoe Ferreira, a senior engineer at Acme Corp in Paris, said on Monday that the company's "
    "new plant near Lisbon won't open before 2026. \"We didn't expect the delay,\" she told "
    "reporters; José García (Globex GmbH) agreed. Jürgen Müller, who founded Initech Ltd in "
    "München in 1998, left the board in March. Åsa Novak visited Zürich, Kraków and Québec "
    "last year.  Two spaces here, and a line break:\nLi Wei joined Hooli Inc. in São Paulo; "
    "it's the third office there. Prices rose 3.5% to $12.40 per share (e-mail: ir@acme.com). "
    "Mr. Smith's U.S. team, led by Dr. Emma Dubois, met Björn Schmidt at 9:30 a.m. on 12/03/2024. "
    'The report - 42 pages long - was called "state-of-the-art" by Ahmed Öztürk of Stark Group. '
    "Noah Lee and Olga Kowalski co-wrote it in Reykjavík; Pierre Dubois translated it. "
    "Wayne AG, Cyberdyne Corp and Soylent Inc. declined to comment, and Vandelay Group's lawyers "
    "said they hadn't seen it. Tokyo, Madrid and Berlin will host the next meetings in 2025 "
    "and 2027, while Umbrella Corp's CEO, Liam Tanaka, stays in London until June. "
    "Anna Lee, Mary Smith and John Doe work for Globex in Paris; Chen Nguyen leads Initech in "
    "Berlin."
)


def english_sentences(n: int, seed: int = 0) -> List[str]:
    """``n`` generated English sentences (pre-tokenized with spaces)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        org = f"{rng.choice(ORGS)} {rng.choice(ORG_SUFFIX)}"
        tail = rng.choice(TAILS).format(place=rng.choice(PLACES), year=rng.randint(1950, 2030))
        out.append(f"{person} {rng.choice(VERBS)} {org} {tail}")
    return out


def german_sentences(n: int, seed: int = 0) -> List[str]:
    rng = random.Random(seed)
    return [
        rng.choice(DE_SENTENCES).format(
            p=f"{rng.choice(DE_NAMES[::2])} {rng.choice(DE_NAMES[1::2])}",
            o=f"{rng.choice(ORGS)} {rng.choice(ORG_SUFFIX)}",
            l=rng.choice(PLACES),
            y=rng.randint(1950, 2030),
        )
        for _ in range(n)
    ]


def chinese_sentences(n: int, seed: int = 0, segmented: bool = True) -> List[str]:
    """Generated Chinese sentences, with spaces between words (``segmented``)
    or as Chinese is written."""
    rng = random.Random(seed)
    sentences = [
        rng.choice(ZH_SENTENCES).format(
            p=rng.choice(ZH_PEOPLE), o=rng.choice(ZH_ORGS), l=rng.choice(ZH_PLACES), y=rng.randint(1990, 2030)
        )
        for _ in range(n)
    ]
    return sentences if segmented else [sentence.replace(" ", "") for sentence in sentences]


def training_corpus() -> List[str]:
    """The tokenizers' training text: generated English, German and Chinese
    sentences, the conftest words and the alignment text's lines."""
    from conftest import EXTRA_WORDS, TRAIN_DATA

    lines = english_sentences(300) + german_sentences(80) + chinese_sentences(80)
    lines += [" ".join(words) for words, _, _ in TRAIN_DATA] * 5
    lines += [" ".join(EXTRA_WORDS)] * 3
    lines += ALIGNMENT_TEXT.split("\n")
    return lines


# Annotated sentence templates: {slot} is an entity (P person, O org, L
# place), relations between slots. One list per language.
RELATION_TEMPLATES = {
    "en": [
        ("{P} works for {O} in {L} .", [("P", "O", "Work_For"), ("O", "L", "OrgBased_In")]),
        ("{P} lives in {L} .", [("P", "L", "Live_In")]),
        ("{O} , a firm in {L} , hired {P} .", [("O", "L", "OrgBased_In"), ("P", "O", "Work_For")]),
        ("{P} , who lives in {L} , left {O} .", [("P", "L", "Live_In")]),
        ("Yesterday {P} visited {L} .", []),
    ],
    "de": [
        ("{P} arbeitet für {O} in {L} .", [("P", "O", "Work_For"), ("O", "L", "OrgBased_In")]),
        ("{P} wohnt in {L} .", [("P", "L", "Live_In")]),
        ("Die Firma {O} aus {L} stellte {P} ein .", [("O", "L", "OrgBased_In"), ("P", "O", "Work_For")]),
        ("Gestern besuchte {P} die Stadt {L} .", []),
    ],
    "zh": [  # (the spaces separate words; the text has none)
        ("{P} 在 {L} 的 {O} 工作 。", [("P", "O", "Work_For"), ("O", "L", "OrgBased_In")]),
        ("{P} 住在 {L} 。", [("P", "L", "Live_In")]),
        ("{O} 总部 位于 {L} ， {P} 是 那里 的 员工 。", [("O", "L", "OrgBased_In"), ("P", "O", "Work_For")]),
        ("昨天 {P} 访问 了 {L} 。", []),
    ],
}
SLOT_LABELS = {"P": "Peop", "O": "Org", "L": "Loc"}
SLOT_VALUES = {
    "en": {
        "P": [f"{f} {last}" for f, last in zip(FIRST, LAST * 2)],
        "O": [f"{o} {s}" for o, s in zip(ORGS, ORG_SUFFIX * 2)],
        "L": PLACES,
    },
    "de": {
        "P": ["Jürgen Weiß", "Anna Müller", "Björn Krüger", "Sophie Schäfer"],
        "O": [f"{o} {s}" for o, s in zip(ORGS, ORG_SUFFIX * 2)],
        "L": ["München", "Köln", "Düsseldorf", "Zürich", "Berlin"],
    },
    "zh": {"P": ZH_PEOPLE, "O": ZH_ORGS, "L": ZH_PLACES},
}

# (text, entities [(start_char, end_char, label)], relations [(head entity, tail entity, label)])
Record = Tuple[str, List[Tuple[int, int, str]], List[Tuple[int, int, str]]]


def relation_corpus(n: int, lang: str = "en", seed: int = 0) -> List[Record]:
    """``n`` annotated sentences in ``lang`` ("en", "de" or "zh") from
    RELATION_TEMPLATES, entities by character offsets (so any spaCy
    tokenizer of the language can take them).

    RETURNS (List[Record]): (text, entities, relations) per sentence.
    """
    rng = random.Random(seed)
    records: List[Record] = []
    for i in range(n):
        template, relations = RELATION_TEMPLATES[lang][i % len(RELATION_TEMPLATES[lang])]
        if lang == "zh":
            template = template.replace(" ", "")
        text, entities, slots = "", [], {}
        for part in re.split(r"(\{[POL]\})", template):
            if part[:1] == "{" and part[-1:] == "}":
                slot = part[1:-1]
                value = rng.choice(SLOT_VALUES[lang][slot])
                slots[slot] = len(entities)
                entities.append((len(text), len(text) + len(value), SLOT_LABELS[slot]))
                text += value
            else:
                text += part
        records.append((text, entities, [(slots[h], slots[t], label) for h, t, label in relations]))
    return records


def record_examples(nlp, records: List[Record], spans_key: str = "sc") -> List:
    """Training examples of records, tokenized by ``nlp``: entities in
    ``doc.spans[spans_key]`` of the reference, relations in doc._.relations.

    RETURNS (List[Example]): One per record.
    """
    from spacy.tokens import SpanGroup
    from spacy.training import Example

    from spacy_spert.relations import make_relation

    examples = []
    for text, entities, relations in records:
        reference = nlp.make_doc(text)
        spans = [reference.char_span(s, e, label=label) for s, e, label in entities]
        if any(span is None for span in spans):
            raise ValueError(f"an entity of {text!r} is not on token boundaries")
        reference.spans[spans_key] = SpanGroup(reference, name=spans_key, spans=spans)
        reference._.relations = [make_relation(spans[h], spans[t], label) for h, t, label in relations]
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


@dataclass
class Family:
    """How to build one family: its tokenizer (trained) and its model."""

    name: str
    build_tokenizer: Callable[[List[str], Path], object]
    build_model: Callable[[int, object], object]
    # what the family's [CLS]-equivalent is (the first piece of a window)
    cls_token: str


def _wordpiece(corpus: List[str], lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _wordpiece_tokenizer(cls_name: str, lowercase: bool) -> Callable[[List[str], Path], object]:
    def build(corpus: List[str], path: Path):
        import transformers

        cls = getattr(transformers, cls_name)
        return cls(tokenizer_object=_wordpiece(corpus, lowercase), do_lower_case=lowercase, model_max_length=512)

    return build


def _byte_level(corpus: List[str], specials: List[str], trim_offsets: bool, template: Optional[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tok.decoder = decoders.ByteLevel()
    if template is None:  # RoBERTa's
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=trim_offsets
        )
    else:
        first, last = template.split(" $A ")
        tok.post_processor = processors.TemplateProcessing(
            single=template,
            special_tokens=[(first, tok.token_to_id(first)), (last, tok.token_to_id(last))],
        )
    return tok


def _roberta_tokenizer(corpus: List[str], path: Path):
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = _byte_level(corpus, specials, trim_offsets=True, template=None)
    return RobertaTokenizerFast(tokenizer_object=tok, model_max_length=512, trim_offsets=True)


def _modernbert_tokenizer(corpus: List[str], path: Path):
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = _byte_level(corpus, specials, trim_offsets=False, template="[CLS] $A [SEP]")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=8192,
        # as ModernBERT-base's tokenizer_config.json: the model takes no token_type_ids
        model_input_names=["input_ids", "attention_mask"],
    )


def _unigram(corpus: List[str], specials: List[str], unk: str, style: str, template: str):
    """A sentencepiece-style Unigram tokenizer: ``style`` "spm" (Metaspace
    alone, as transformers converts an spm model), "hub" (whitespace split
    first) or "punct" (punctuation split first, DeBERTa's split_by_punct)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), "▁")])
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    if style == "spm":
        tok.pre_tokenizer = metaspace
    elif style == "hub":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation(behavior="isolated"), metaspace])
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=unk)
    tok.train_from_iterator(corpus, trainer)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    first, last = template.split(" $A ")
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(first, tok.token_to_id(first)), (last, tok.token_to_id(last))]
    )
    return tok


def _placeholder_vocab_file(path: Path, cls) -> str:
    """The sentencepiece file that the tokenizer class keeps as ``vocab_file``
    (a placeholder: the fast tokenizer loads from tokenizer.json)."""
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / cls.vocab_files_names["vocab_file"]
    vocab_file.write_bytes(b"placeholder: the fast tokenizer is loaded from tokenizer.json\n")
    return str(vocab_file)


def _sentencepiece_tokenizer(
    cls_name: str, specials: List[str], unk: str, template: str, style: str, **settings
) -> Callable[[List[str], Path], object]:
    """A family's tokenizer class (one that keeps a sentencepiece
    ``vocab_file``: a placeholder) around a :func:`_unigram` tokenizer."""

    def build(corpus: List[str], path: Path):
        import transformers

        cls = getattr(transformers, cls_name)
        tok = _unigram(corpus, specials, unk, style, template)
        return cls(vocab_file=_placeholder_vocab_file(path, cls), tokenizer_object=tok, **settings)

    return build


def _xlmr_tokenizer(style: str) -> Callable[[List[str], Path], object]:
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    return _sentencepiece_tokenizer(
        "XLMRobertaTokenizerFast", specials, "<unk>", "<s> $A </s>", style, model_max_length=512
    )


def _deberta_tokenizer(style: str) -> Callable[[List[str], Path], object]:
    # (deberta-v3-base's tokenizer_config sets no model_max_length; the
    # encoder's 512 positions bound the windows)
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    return _sentencepiece_tokenizer(
        "DebertaV2TokenizerFast", specials, "[UNK]", "[CLS] $A [SEP]", style, split_by_punct=style == "punct"
    )


def _small(**kwargs) -> Dict:
    base = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    base.update(kwargs)
    return base


def _bert_model(vocab_size: int, tok):
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=vocab_size, **_small(max_position_embeddings=512)))


def _distilbert_model(vocab_size: int, tok):
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=vocab_size, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512
    )
    return DistilBertModel(config)


def _electra_model(vocab_size: int, tok):
    from transformers import ElectraConfig, ElectraModel

    return ElectraModel(ElectraConfig(vocab_size=vocab_size, embedding_size=HIDDEN, **_small()))


def _roberta_style_model(prefix: str) -> Callable[[int, object], object]:
    """RoBERTa's model or XLM-R's (``prefix`` "Roberta" or "XLMRoberta"): 514
    positions (two for the padding offset), one token type."""

    def build(vocab_size: int, tok):
        import transformers

        config = getattr(transformers, f"{prefix}Config")(
            vocab_size=vocab_size,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            type_vocab_size=1,
            **_small(max_position_embeddings=514),
        )
        return getattr(transformers, f"{prefix}Model")(config)

    return build


def _deberta_model(version: int) -> Callable[[int, object], object]:
    def build(vocab_size: int, tok):
        from transformers import DebertaV2Config, DebertaV2Model

        extra = {"conv_kernel_size": 3, "conv_act": "gelu"} if version == 2 else {}
        config = DebertaV2Config(
            vocab_size=vocab_size,
            pad_token_id=tok.pad_token_id,
            relative_attention=True,
            position_buckets=256,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            type_vocab_size=0,
            **_small(max_position_embeddings=512),
            **extra,
        )
        return DebertaV2Model(config)

    return build


def _modernbert_model(vocab_size: int, tok):
    from transformers import ModernBertConfig, ModernBertModel

    config = ModernBertConfig(
        vocab_size=vocab_size,
        **_small(max_position_embeddings=8192),
        global_attn_every_n_layers=2,
        local_attention=64,
        pad_token_id=tok.pad_token_id,
        cls_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        attn_implementation="eager",
    )
    return ModernBertModel(config)


SPECS: Dict[str, Family] = {
    name: Family(name, *parts)
    for name, parts in {
        "bert": (_wordpiece_tokenizer("BertTokenizerFast", False), _bert_model, "[CLS]"),
        "bert_uncased": (_wordpiece_tokenizer("BertTokenizerFast", True), _bert_model, "[CLS]"),
        "distilbert": (_wordpiece_tokenizer("DistilBertTokenizerFast", False), _distilbert_model, "[CLS]"),
        "electra": (_wordpiece_tokenizer("ElectraTokenizerFast", True), _electra_model, "[CLS]"),
        "roberta": (_roberta_tokenizer, _roberta_style_model("Roberta"), "<s>"),
        "modernbert": (_modernbert_tokenizer, _modernbert_model, "[CLS]"),
        "xlmr_spm": (_xlmr_tokenizer("spm"), _roberta_style_model("XLMRoberta"), "<s>"),
        "xlmr": (_xlmr_tokenizer("hub"), _roberta_style_model("XLMRoberta"), "<s>"),
        "deberta_v2": (_deberta_tokenizer("punct"), _deberta_model(2), "[CLS]"),
        "deberta_v3": (_deberta_tokenizer("spm"), _deberta_model(3), "[CLS]"),
    }.items()
}
# The families' names, in the order of the tests' parameters.
FAMILIES = tuple(SPECS)


def build_family(name: str, path: Path, seed: int = 0) -> Path:
    """Train the family's tokenizer, build its tiny random model and save
    both to ``path`` (a folder for the transformer's ``name``).

    name (str): One of FAMILIES.
    path (Path): The folder (created).
    seed (int): The torch seed of the random weights.
    RETURNS (Path): ``path``.
    """
    import torch

    spec = SPECS[name]
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = spec.build_tokenizer(training_corpus(), path)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(seed)
    model = spec.build_model(len(tokenizer), tokenizer)
    model.save_pretrained(str(path))
    return path


_BUILT: Dict[str, Path] = {}


def family_dir(name: str, tmp_path_factory) -> Path:
    """The saved tiny encoder of a family, built once per test session.

    name (str): One of FAMILIES.
    tmp_path_factory: pytest's session fixture (where the folder is made).
    RETURNS (Path): The folder.
    """
    if name not in _BUILT:
        _BUILT[name] = build_family(name, tmp_path_factory.mktemp(f"encoder_{name}"))
    return _BUILT[name]
