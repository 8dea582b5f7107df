"""Tiny tokenizers trained locally with the `tokenizers` library (no hub access).

Changing CORPUS or the learner changes every built tokenizer: the cache key hashes this file.

A zoo entry names a ``style``; each style fixes its special tokens at ids 0..k (in the order listed
below), so models.toml can state pad/bos/eos/image token ids without guessing. The trained vocab
is small (≤ the requested size) and every id is < the model's vocab_size (materialize checks).
"""
from __future__ import annotations

from typing import Any

#: fixed corpus: the tokenizer is trained on this, and example inputs are drawn from it
CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a tiny model.",
    "A fast brown fox leaps over a sleepy dog.",
    "Stock markets fell sharply today.",
    "Machine learning models run on many kinds of hardware.",
    "The weather is sunny and warm in the afternoon.",
    "She sells sea shells by the sea shore.",
    "Numbers like 1, 2, 3 and 42 appear in text too.",
    "Every test should check that the model really ran.",
    "Parity means the outputs match within a tolerance.",
    "Backends include torch, onnx runtime and openvino.",
    "A photo of a cat sitting on a red chair.",
    "A photo of a dog playing in the green park.",
    "Speech recognition turns audio into words.",
    "Translate English to German: the house is small.",
    "Summarize: the meeting was long and nothing was decided.",
    "Once upon a time there was a little robot.",
    "The robot learned to count from one to ten.",
    "Why is the sky blue? Because of scattering.",
    "Good tests are small, fast and honest.",
    "Hello world! What is in the photo?\nDescribe the photo.\nWhat color is it?",
)

# style -> (model kind, special tokens in id order, role -> token, post-processing template or None)
STYLES: dict[str, dict[str, Any]] = {
    # BERT: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, "[CLS] $A [SEP]", token_type_ids
    "bert": dict(
        model="wordpiece",
        specials=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        roles=dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                   mask_token="[MASK]"),
        template=("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
        input_names=["input_ids", "token_type_ids", "attention_mask"],
    ),
    # GPT-2: byte-level BPE, <|endoftext|>=0 is bos/eos/unk; <pad>=1 so batches can pad
    "gpt2": dict(
        model="bpe-bytelevel",
        specials=["<|endoftext|>", "<pad>"],
        roles=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                   pad_token="<pad>"),
        template=None,
        input_names=["input_ids", "attention_mask"],
    ),
    # Llama / Mixtral / Mamba: <unk>=0 <s>=1 </s>=2 <pad>=3, prompt starts with <s>
    "llama": dict(
        model="bpe-bytelevel",
        specials=["<unk>", "<s>", "</s>", "<pad>"],
        roles=dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"),
        template=("<s> $A", "<s> $A <s> $B:1"),
        input_names=["input_ids", "attention_mask"],
    ),
    # LLaVA: llama + <image>=4
    "llava": dict(
        model="bpe-bytelevel",
        specials=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        roles=dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"),
        extra_special=["<image>"],
        template=("<s> $A", "<s> $A <s> $B:1"),
        input_names=["input_ids", "attention_mask"],
    ),
    # T5: <pad>=0 </s>=1 <unk>=2, "$A </s>", unigram
    "t5": dict(
        model="unigram",
        specials=["<pad>", "</s>", "<unk>"],
        roles=dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>"),
        template=("$A </s>", "$A </s> $B:1 </s>:1"),
        input_names=["input_ids", "attention_mask"],
    ),
    # CLIP: <|startoftext|>=0 <|endoftext|>=1 (also pad), "<|startoftext|> $A <|endoftext|>"
    "clip": dict(
        model="bpe-bytelevel",
        specials=["<|startoftext|>", "<|endoftext|>"],
        roles=dict(bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                   pad_token="<|endoftext|>"),
        template=("<|startoftext|> $A <|endoftext|>", "<|startoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1"),
        input_names=["input_ids", "attention_mask"],
    ),
    # Whisper: <|endoftext|>=0 (bos/eos/pad), <|startoftranscript|>=1 (decoder start),
    # <|notimestamps|>=2; no template (the processor/generate adds the prefix tokens)
    "whisper": dict(
        model="bpe-bytelevel",
        specials=["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"],
        roles=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                   pad_token="<|endoftext|>"),
        extra_special=["<|startoftranscript|>", "<|notimestamps|>"],
        template=None,
        input_names=["input_ids", "attention_mask"],
    ),
}


def _learn_merges(words: dict[str, int], vocab_size: int, n_fixed: int, prefix: str = ""):
    """Deterministic BPE merge learning (most frequent pair, ties broken by the pair's text).

    The `tokenizers` trainers are not reproducible here: WordPiece and Unigram training on the same
    corpus gives a different vocab on every run (even single-threaded), which would break the
    content-addressed cache's promise (same spec + versions → same files). So we learn the merges
    ourselves and hand the finished vocab to the `tokenizers` models. ``prefix`` = WordPiece's
    continuing-subword prefix ("##"), empty for byte-level BPE / Metaspace unigram.
    """
    splits = {w: [c if i == 0 else prefix + c for i, c in enumerate(w)] for w in words}
    counts: dict[str, int] = {}
    for w, freq in words.items():
        for sym in splits[w]:
            counts[sym] = counts.get(sym, 0) + freq
    alphabet = sorted(counts)
    learned: list[str] = []
    merges: list[tuple[str, str]] = []
    while n_fixed + len(alphabet) + len(learned) < vocab_size:
        pairs: dict[tuple[str, str], int] = {}
        for w, freq in words.items():
            sym = splits[w]
            for pair in zip(sym, sym[1:]):
                pairs[pair] = pairs.get(pair, 0) + freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        a, b = best
        merged = a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)
        merges.append(best)
        if merged not in counts:
            learned.append(merged)
        counts[merged] = counts.get(merged, 0) + pairs[best]
        for w in words:
            sym, out, i = splits[w], [], 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            splits[w] = out
    return alphabet, learned, merges, counts


def _train(style: dict, vocab_size: int):
    import math

    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    kind = style["model"]
    specials = list(style["specials"])
    unk = style["roles"].get("unk_token")
    if kind == "wordpiece":
        normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        decoder, prefix = decoders.WordPiece(), "##"
    elif kind == "bpe-bytelevel":
        # no initial 256-byte alphabet: keeps the vocab tiny; bytes absent from CORPUS are dropped
        normalizer, pre = None, pre_tokenizers.ByteLevel(add_prefix_space=False)
        decoder, prefix = decoders.ByteLevel(), ""
    elif kind == "unigram":
        normalizer, pre, decoder, prefix = None, pre_tokenizers.Metaspace(), decoders.Metaspace(), ""
    else:
        raise ValueError(f"unknown tokenizer model {kind!r}")
    words: dict[str, int] = {}
    for line in CORPUS:
        text = normalizer.normalize_str(line) if normalizer else line
        for word, _ in pre.pre_tokenize_str(text):
            words[word] = words.get(word, 0) + 1
    alphabet, learned, merges, counts = _learn_merges(words, vocab_size, len(specials), prefix)
    pieces = specials + alphabet + learned
    vocab = {t: i for i, t in enumerate(pieces)}
    if kind == "wordpiece":
        model = models.WordPiece(vocab=vocab, unk_token=unk, continuing_subword_prefix="##")
    elif kind == "bpe-bytelevel":
        model = models.BPE(vocab=vocab, merges=merges)
    else:
        total = sum(counts[p] for p in alphabet)
        scores = [(t, 0.0) for t in specials] + [(t, math.log(counts[t] / total)) for t in alphabet + learned]
        model = models.Unigram(scores, unk_id=specials.index(unk), byte_fallback=False)
    tok = Tokenizer(model)
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer, tok.decoder = pre, decoder
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if style.get("template"):
        single, pair = style["template"]
        names = {t.split(":")[0] for t in (single + " " + pair).split() if not t.startswith("$")}
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(n, tok.token_to_id(n)) for n in sorted(names)])
    for i, name in enumerate(specials):  # the contract models.toml relies on
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name!r} got id {tok.token_to_id(name)}, expected {i}")
    return tok


def build(cfg: dict[str, Any], model_vocab_size: int | None = None):
    """A transformers fast tokenizer for a models.toml ``tokenizer`` table.

    ``cfg``: {style = "bert"|"gpt2"|"llama"|"llava"|"t5"|"clip"|"whisper", vocab_size = N,
    model_max_length = N, class = "PreTrainedTokenizerFast" (default) or a model tokenizer class}.
    """
    import transformers

    style_name = cfg.get("style")
    if style_name == "ctc":
        return _build_ctc(cfg)
    if style_name not in STYLES:
        raise ValueError(f"tokenizer style {style_name!r} not in {sorted(STYLES)}")
    style = STYLES[style_name]
    vocab_size = int(cfg.get("vocab_size", 100))
    raw = _train(style, vocab_size)
    if model_vocab_size is not None and raw.get_vocab_size() > model_vocab_size:
        raise ValueError(f"tokenizer has {raw.get_vocab_size()} tokens > model vocab_size {model_vocab_size}")
    cls = getattr(transformers, cfg.get("class", "PreTrainedTokenizerFast"))
    kwargs = dict(style["roles"])
    if style.get("extra_special"):
        kwargs["additional_special_tokens"] = list(style["extra_special"])
    tok = cls(tokenizer_object=raw, model_max_length=int(cfg.get("model_max_length", 64)),
              padding_side="right", model_input_names=list(style["input_names"]), **kwargs)
    # fast tokenizers default to emitting token_type_ids (CLIP would choke on them): only models
    # that take them get them; passed to the constructor so tokenizer_config.json keeps it
    return tok


def _build_ctc(cfg: dict[str, Any]):
    """Character vocab for CTC heads: <pad>=0 (the CTC blank) <s>=1 </s>=2 <unk>=3 |=4 (word delimiter)."""
    import json
    import tempfile

    import transformers

    chars = sorted({c for line in CORPUS for c in line.lower() if c != " "})
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *chars])}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/vocab.json"
        with open(path, "w") as fh:
            json.dump(vocab, fh)
        tok = transformers.Wav2Vec2CTCTokenizer(path, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", word_delimiter_token="|")
        tok.model_max_length = int(cfg.get("model_max_length", 64))
        return tok
