"""A small BERT built from scratch, offline: for tests, the demo and CI.

The WordPiece vocab is built from the given texts (deterministically), so no hub access
is needed. The result is saved as an ordinary Hugging Face model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from finsight.labels import LABELS

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], *, vocab_size: int = 2000):
    """A BERT-style uncased WordPiece fast tokenizer whose vocab comes from ``texts``.

    The vocab is every character (alone and as a ``##`` continuation) plus the most frequent
    words, ties broken alphabetically. Unlike ``tokenizers``' WordPieceTrainer, whose merges
    vary from run to run, the same texts always give the same vocab, so a seeded tiny run
    repeats exactly. Words outside the vocab split into pieces; only unseen characters are [UNK].
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in counts for char in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{char}" for char in chars)]
    known = set(vocab)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in known]
    vocab += words[:max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece(vocab={token: i for i, token in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def build_tiny_model(
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    labels: Sequence[str] = LABELS,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 2000,
    max_length: int = 64,
    seed: int = 0,
) -> Path:
    """Build and save an untrained BERT sequence classifier with its own tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_wordpiece(texts, vocab_size=vocab_size)
    tokenizer.model_max_length = max_length
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16), intermediate_size=hidden_size * 4,
        max_position_embeddings=max(128, max_length), pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
