import csv

from conftest import ALBERT_BASE_TOKENIZER, PHRASEBANK

from lightning_albert.tokenizer import load_tokenizer, tokenizer_files, tokenizer_from_files, train_tokenizer


def _texts(path, n=None):
    with open(path, encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)][:n]


def test_shared_albert_base_tokenizer_gives_the_documented_ids(shared_data):
    tokenizer = load_tokenizer(str(ALBERT_BASE_TOKENIZER))
    assert tokenizer("Hello, my dog is cute")["input_ids"] == [2, 10975, 15, 51, 1952, 25, 10901, 3]
    assert len(tokenizer) == 30000
    ids = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert ids + [tokenizer.mask_token_id] == [0, 1, 2, 3, 4]


def test_trained_tokenizer_has_albert_special_ids_and_real_pieces(shared_data):
    train = _texts(PHRASEBANK / "train.csv")
    tokenizer = train_tokenizer(train, vocab_size=4000)
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert tokenizer.convert_tokens_to_ids(specials) == [0, 1, 2, 3, 4]
    assert 1000 < len(tokenizer) <= 4000
    # The transformers 5 trap: a tokenizer built wrongly maps every word to <unk>. Held-out text must not.
    ids = [i for t in _texts(PHRASEBANK / "validation.csv") for i in tokenizer(t)["input_ids"][1:-1]]
    assert ids.count(tokenizer.unk_token_id) / len(ids) < 0.01
    pieces = tokenizer.tokenize("The company reported a net profit of EUR 5 million.")
    assert "▁the" in pieces and "▁profit" in pieces and "<unk>" not in pieces
    encoded = tokenizer("profit rose", "sales fell", return_token_type_ids=True)
    assert encoded["input_ids"][0] == 2 and encoded["input_ids"][-1] == 3
    assert set(encoded["token_type_ids"]) == {0, 1}


def test_trained_tokenizer_is_deterministic_and_round_trips_through_files(shared_data):
    texts = _texts(PHRASEBANK / "train.csv", 400)
    a, b = train_tokenizer(texts, 1000), train_tokenizer(texts, 1000)
    assert a.get_vocab() == b.get_vocab()
    restored = tokenizer_from_files(tokenizer_files(a))
    assert restored.get_vocab() == a.get_vocab()
    assert restored(texts[0])["input_ids"] == a(texts[0])["input_ids"]
