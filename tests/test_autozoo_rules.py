"""Fast tests of the auto-zoo machinery: shrink rules, input synthesis, classification, sampling,
known-failure data, and self-tests that a planted defect fails the stage meant to catch it.

Real transformers models throughout (tiny, random); a planted defect is a real change to a real
model or to its saved file, never a stand-in.
"""
from __future__ import annotations

import pytest
from pathlib import Path

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402

from hfmatrix.zoo import auto, auto_pytest  # noqa: E402
from hfmatrix.zoo.auto_inputs import special_ids, synthesize  # noqa: E402
from hfmatrix.zoo.auto_shrink import default_rules, load_rules, remap_token_ids, shrink_config, shrink_dict  # noqa: E402

FIVE = ("bert", "llama", "vit", "whisper", "t5")


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)


def _case(mt: str, role: str = "base") -> auto.AutoCase:
    name, mapping = auto.class_name(mt, role)
    return auto.AutoCase(mt, role, name, mapping)


# ----------------------------------------------------------------------------- shrink rules
@pytest.mark.parametrize("mt", FIVE)
def test_shrink_caps_every_size(mt):
    cfg, fired = shrink_config(CONFIG_MAPPING[mt])
    d = cfg.to_dict()
    for key in ("hidden_size", "d_model"):
        if key in d:
            assert d[key] <= 64, (key, d[key])
    for key in ("num_hidden_layers", "num_layers", "encoder_layers", "decoder_layers", "num_decoder_layers"):
        if key in d and d[key] is not None:
            assert d[key] <= 2, (key, d[key])
    for key in ("num_attention_heads", "num_heads", "encoder_attention_heads", "decoder_attention_heads"):
        if key in d:
            assert d[key] <= 4, (key, d[key])
    if "vocab_size" in d:
        assert d["vocab_size"] <= 256
        assert all(i < d["vocab_size"] for i in special_ids(cfg)), special_ids(cfg)
    assert {"width", "layers", "heads"} <= set(fired), fired


def test_shrink_specifics():
    vit, _ = shrink_config(CONFIG_MAPPING["vit"])
    assert (vit.image_size, vit.patch_size) == (32, 4)
    llama, _ = shrink_config(CONFIG_MAPPING["llama"])
    assert llama.intermediate_size == 128 and llama.max_position_embeddings == 128
    assert llama.num_attention_heads % llama.num_key_value_heads == 0
    whisper, fired = shrink_config(CONFIG_MAPPING["whisper"])
    assert "token-ids" in fired
    assert whisper.decoder_start_token_id < whisper.vocab_size and whisper.decoder_start_token_id != whisper.eos_token_id


def test_rule_ops():
    from hfmatrix.zoo.auto_shrink import Rule
    widths = Rule(name="w", keys=frozenset({"dims"}), scale_min=16)
    assert widths.apply([96, 192, 384]) == [16, 32, 64]
    assert widths.apply([8, 16]) == [8, 16], "already below: left alone"


def test_disabled_rule_is_not_applied():
    rules = load_rules(disabled="width")
    cfg, fired = shrink_config(CONFIG_MAPPING["bert"], rules)
    assert cfg.hidden_size == CONFIG_MAPPING["bert"]().hidden_size
    assert "width" not in fired


def test_rules_file_is_consistent():
    rules = default_rules()
    assert len({r.name for r in rules.rules}) == len(rules.rules)
    assert rules.fixups and rules.head_mappings and rules.arch_classes
    assert {c["name"] for c in rules.arch_classes} == {
        "encoder", "decoder", "encoder-decoder", "vision", "audio", "multimodal", "mixture-of-experts", "state-space"}


def test_token_remap_keeps_equal_ids_equal_and_distinct_ids_distinct():
    tree = {"vocab_size": 256, "pad_token_id": 0, "bos_token_id": 50000, "eos_token_id": [50000, 50001],
            "text_config": {"model_type": "x", "vocab_size": 256, "image_token_id": 50002, "sep_token_id": 255}}
    assert remap_token_ids(tree)
    ids = {tree["bos_token_id"], *tree["eos_token_id"], tree["text_config"]["image_token_id"]}
    assert tree["bos_token_id"] == tree["eos_token_id"][0]
    assert len(ids) == 3 and all(i < 256 for i in ids)
    assert 255 not in ids and 0 not in ids  # ids already in range are never reused


def test_per_layer_lists_keep_each_kind():
    cfg, fired = shrink_config(CONFIG_MAPPING["gemma3_text"])
    assert "per-layer-lists" in fired
    assert len(cfg.layer_types) == cfg.num_hidden_layers
    assert set(cfg.layer_types) == {"sliding_attention", "full_attention"}


def test_kv_heads_divide_attention_heads():
    rules = default_rules()
    out = shrink_dict({"num_attention_heads": 12, "num_key_value_heads": 3}, rules)
    assert out["num_attention_heads"] % out["num_key_value_heads"] == 0


# ----------------------------------------------------------------------------- inputs
def _tiny(mt: str, role: str = "base"):
    case = _case(mt, role)
    cfg, _ = shrink_config(CONFIG_MAPPING[mt])
    torch.manual_seed(0)
    return auto.resolve_class(case.class_name)._from_config(cfg).eval()


def test_inputs_text_encoder():
    model = _tiny("bert")
    inputs, _ = synthesize(model, default_rules())
    ids = inputs["input_ids"]
    assert ids.shape == (2, 16) and int(ids.max()) < model.config.vocab_size
    assert not set(ids.unique().tolist()) & special_ids(model.config)
    assert inputs["attention_mask"].shape == ids.shape
    again, _ = synthesize(model, default_rules())
    assert torch.equal(again["input_ids"], ids)  # seeded


def test_inputs_vision_audio_encdec():
    rules = default_rules()
    vit, _ = synthesize(_tiny("vit"), rules)
    assert tuple(vit["pixel_values"].shape) == (2, 3, 32, 32)
    whisper, notes = synthesize(_tiny("whisper"), rules)
    assert tuple(whisper["input_features"].shape) == (2, 80, 3000), notes  # WhisperFeatureExtractor's own padding
    assert "decoder_input_ids" in whisper
    t5, _ = synthesize(_tiny("t5"), rules)
    assert {"input_ids", "decoder_input_ids"} <= set(t5)
    llama, _ = synthesize(_tiny("llama", "head"), rules)
    assert llama.get("use_cache") is False and "pixel_values" not in llama


@pytest.mark.parametrize("mt", FIVE)
def test_every_stage_passes(mt, tmp_path):
    result = auto.run_case(_case(mt, "head"), workdir=tmp_path)
    assert result.ok, (result.failed_stage, result.error)
    assert result.stage == "reload"
    m = result.measures
    assert m["stage"] == "passed" and m["seconds"] > 0 and m["peak_rss_mb"] > 0
    assert set(m["stage_seconds"]) == set(auto.STAGES)


def test_text_path_when_image_inputs_cannot_be_synthesized(tmp_path):
    # molmo2's get_image_features needs pooling indices no recipe makes: synthesizing the image path
    # fails, the text path runs, and the record says which path ran and why
    result = auto.run_case(_case("molmo2", "base"), workdir=tmp_path)
    assert result.ok, (result.failed_stage, result.error)
    assert result.measures["ran_text_path_only"] is True
    assert "get_image_features" in result.measures["full_path_error"]
    assert "pixel_values" not in result.measures["inputs"]


# ----------------------------------------------------------------------------- planted defects
def _noise_hook(module, args, output):
    return output + torch.rand_like(output)


def _first_linear(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_planted_nondeterminism_fails_determinism(tmp_path):
    def tamper(stage, obj):
        if stage == "build":
            _first_linear(obj).register_forward_hook(_noise_hook)
        return obj
    result = auto.run_case(_case("bert"), workdir=tmp_path, tamper=tamper)
    assert result.failed_stage == "determinism", (result.failed_stage, result.error)
    with pytest.raises(auto.STAGE_ERRORS["determinism"]):
        auto.raise_for_stage(result)


def test_planted_nan_fails_forward(tmp_path):
    def tamper(stage, obj):
        if stage == "build":
            _first_linear(obj).register_forward_hook(lambda m, a, o: o * float("nan"))
        return obj
    result = auto.run_case(_case("llama"), workdir=tmp_path, tamper=tamper)
    assert result.failed_stage == "forward" and "non-finite" in result.error


def test_planted_altered_weight_fails_reload(tmp_path):
    from safetensors.torch import load_file, save_file

    def tamper(stage, obj):
        if stage == "save":
            path = next(obj.glob("*.safetensors"))
            tensors = load_file(path)
            name = sorted(k for k in tensors if k.endswith("weight") and tensors[k].dim() == 2)[0]
            tensors[name] = tensors[name].clone()
            tensors[name][0, 0] += 1.0
            save_file(tensors, path, metadata={"format": "pt"})
        return obj
    result = auto.run_case(_case("vit"), workdir=tmp_path, tamper=tamper)
    assert result.failed_stage == "reload", (result.failed_stage, result.error)
    assert "weights changed" in result.error


# ----------------------------------------------------------------------------- classes, coverage, sampling, data
@pytest.mark.parametrize("mt,expected", [
    ("bert", "encoder"), ("llama", "decoder"), ("t5", "encoder-decoder"), ("vit", "vision"),
    ("whisper", "audio"), ("llava", "multimodal"), ("mixtral", "mixture-of-experts"), ("mamba", "state-space"),
])
def test_arch_class(mt, expected):
    assert auto.arch_class(mt) == expected


def test_coverage_table():
    recs = [
        {"model": "a", "arch_class": "encoder", "outcome": "passed"},
        {"model": "a", "arch_class": "encoder", "outcome": "passed"},
        {"model": "b", "arch_class": "encoder", "outcome": "passed"},
        {"model": "b", "arch_class": "encoder", "outcome": "failed"},
        {"model": "c", "arch_class": "multimodal", "outcome": "passed", "measures": {"ran_text_path_only": True}},
        {"model": "d", "arch_class": "vision", "outcome": "skipped"},
        {"model": "e", "arch_class": "vision", "outcome": "xfailed"},
    ]
    t = auto.coverage_table(recs)
    assert t["encoder"]["passed"] == 1 and t["encoder"]["ran"] == 2
    assert t["multimodal"]["text_path_only"] == 1
    assert t["vision"]["skipped"] == 1 and t["vision"]["known_bug"] == 1
    assert t["total"]["passed"] == 2 and t["total"]["types"] == 5


def test_sample_is_deterministic_and_sized():
    types = auto.model_types()
    a, b = auto.sample_types(types, 25), auto.sample_types(list(reversed(types)), 25)
    assert a == b and len(a) == 25 and set(a) <= set(types)
    assert auto.sample_size({auto.SAMPLE_ENV: "7"}) == 7
    assert auto.sample_size({auto.SAMPLE_ENV: "all"}) == 0
    assert auto.sample_size({}, changed=["README.md"], default=40) == 40
    assert auto.sample_size({}, changed=["hfmatrix/zoo/auto_rules.toml"], default=40) == 0
    assert auto_pytest.resolve_sample("12", env={}) == 12
    assert auto_pytest.resolve_sample(None, env={}) == 0  # not CI, no sample asked: everything


def test_cases_cover_every_config_type():
    cs = auto.cases()
    assert {c.model_type for c in cs} == set(CONFIG_MAPPING.keys())
    assert len(cs) == 2 * len(CONFIG_MAPPING.keys())


def test_known_failures_are_well_formed():
    known = auto.load_known()
    types = set(CONFIG_MAPPING.keys())
    for (mt, role), k in known.items():
        assert mt in types, f"auto_known.toml names {mt!r}, not a model type of this transformers"
        assert k.stage in auto.STAGES and k.reason
        assert auto.class_name(mt, role)[0] is not None, f"{mt}/{role} has no class to fail"
    gaps = [k for k in known.values() if k.gap]
    assert all(auto.GAP_PREFIX in k.xfail_reason() for k in gaps)
    assert not any(auto.GAP_PREFIX in k.xfail_reason() for k in known.values() if not k.gap)


def _xfail_records(known):
    """Records as the plugin writes a sweep that ran with these entries: the xfail reason without its kind."""
    from hfmatrix import skips
    return [{"model": k.model_type, "outcome": "xfailed", "message": skips.parse(k.xfail_reason())[1],
             "measures": {"stage": k.stage, "role": k.role}} for k in known.values() if k.gap]


def _load_gaps(path):
    auto.load_known.cache_clear()
    try:
        return {k: v for k, v in auto.load_known(None, str(path)).items() if v.gap}
    finally:
        auto.load_known.cache_clear()


def test_gaps_file_round_trips_a_sweep(tmp_path):
    long_error = "ValueError: " + "word " * 80
    recs = [
        {"model": "sam2", "outcome": "failed", "message": "ForwardStageFailure: [forward] shape \"x\" wrong\nmore",
         "measures": {"stage": "forward", "role": "base"}},
        {"model": "bert", "outcome": "passed", "measures": {"stage": "passed", "role": "base"}},
        # the plugin records an xfail's reason without its "[known-bug] " kind
        {"model": "molmo", "outcome": "xfailed", "measures": {"stage": "build", "role": "head"},
         "message": f"build: {auto.GAP_PREFIX}: TypeError: bad"},
        {"model": "blip", "outcome": "failed", "message": long_error, "measures": {"stage": "forward", "role": "base"}},
        {"model": "blip", "outcome": "failed", "message": long_error, "measures": {"stage": "forward", "role": "head"}},
        {"model": "shieldgemma2", "outcome": "xfailed", "message": "reload: library bug",
         "measures": {"stage": "reload", "role": "head"}},   # a recorded library bug stays in auto_known.toml
    ]
    path = tmp_path / "gaps.toml"
    text = auto.gaps_toml(recs)
    path.write_text(text)
    gaps = _load_gaps(path)
    assert set(gaps) == {("sam2", "base"), ("molmo", "head"), ("blip", "base"), ("blip", "head")}
    assert text.count('model_type = "blip"') == 1 and 'class = "*"' in text   # base and head alike: one entry
    assert gaps[("sam2", "base")].stage == "forward" and gaps[("sam2", "base")].reason == 'shape "x" wrong'
    assert gaps[("molmo", "head")].reason == "TypeError: bad"
    blip = gaps[("blip", "base")].reason
    assert len(blip) <= auto.GAP_REASON_LIMIT and blip.endswith("word\u2026")   # clipped between words
    # a sweep that ran with this file regenerates it unchanged (the xfail prefixes never stack), and so does a
    # sweep that ran with the regenerated one
    again = tmp_path / "gaps-again.toml"
    again.write_text(auto.gaps_toml(_xfail_records(gaps)))
    assert again.read_text() == text
    assert auto.gaps_toml(_xfail_records(_load_gaps(again))) == text


def test_committed_gaps_file_is_a_fixed_point():
    gaps = _load_gaps(auto.GAPS_FILE)
    assert len(gaps) > 100
    assert not any(auto.GAP_PREFIX in g.reason for g in gaps.values())
    assert auto.gaps_toml(_xfail_records(gaps)) == Path(auto.GAPS_FILE).read_text()


@pytest.mark.parametrize("mt,check", [
    # backbone outputs name stages that survive the layer cut (DPT-style necks keep their four)
    ("dinov2", lambda c: set(c.out_features) <= set(c.stage_names)),
    ("depth_anything", lambda c: len(c.backbone_config.out_indices) == 4
        and max(c.backbone_config.out_indices) <= c.backbone_config.num_hidden_layers),
    # RoPE sections of multimodal text towers add up to half the shrunk head_dim (code default made explicit)
    ("qwen2_vl_text", lambda c: sum(c.rope_parameters["mrope_section"]) == (c.hidden_size // c.num_attention_heads) // 2),
    # swin: the last of 4 stages still holds one attention window
    ("swin", lambda c: c.image_size // c.patch_size // 2 ** (len(c.depths) - 1) >= c.window_size),
    # vision feature layers index layers that exist
    ("vipllava", lambda c: all(-(c.vision_config.num_hidden_layers + 1) <= i < c.vision_config.num_hidden_layers
                               for i in c.vision_feature_layers)),
    # a size the config class leaves None gets one
    ("esm", lambda c: c.vocab_size == 256),
    # mamba2: heads * head_dim == expand * hidden
    ("mamba2", lambda c: c.num_heads * c.head_dim == c.expand * c.hidden_size),
    # sam2: Hiera stage widths still double (a stage change is told by the width changing), the first is
    # the hidden size, the FPN reads them in reverse; feature-map sizes follow the 32 px image; the
    # prompt encoder's grid (image / its patch_size) is the image encoder's last feature map
    ("sam2", lambda c: c.vision_config.backbone_config.embed_dim_per_stage == [64, 128, 256, 512]
        and c.vision_config.backbone_config.hidden_size == 64
        and c.vision_config.backbone_channel_list == [512, 256, 128, 64]
        and c.vision_config.backbone_feature_sizes == [[8, 8], [4, 4], [2, 2]]
        and c.prompt_encoder_config.image_size // c.prompt_encoder_config.patch_size == 2),
    # sam (1): the prompt encoder's grid is the vision patch grid; positional features span the width
    ("sam", lambda c: c.prompt_encoder_config.image_embedding_size == c.vision_config.image_size // c.vision_config.patch_size
        == c.prompt_encoder_config.image_size // c.prompt_encoder_config.patch_size
        and 2 * c.vision_config.num_pos_feats == c.vision_config.output_channels == c.mask_decoder_config.hidden_size),
    # sam3 tracker: feature maps at 4x, 2x, 1x of the ViT's patch grid, the last one the prompt grid
    ("sam3_tracker", lambda c: c.vision_config.backbone_feature_sizes[-1][0]
        == c.vision_config.backbone_config.image_size // c.vision_config.backbone_config.patch_size
        == c.prompt_encoder_config.image_size // c.prompt_encoder_config.patch_size),
    # efficientloftr: the 2D RoPE table (head_dim * factor) stays half the width; channel lists shrink
    # with the width, so the last stage's channels are hidden_size
    ("efficientloftr", lambda c: c.hidden_size // c.num_attention_heads * c.rope_parameters["partial_rotary_factor"]
        == c.hidden_size // 2 and c.stage_block_out_channels[-1][-1] == c.hidden_size
        and all(a == b for a, b in zip(c.stage_in_channels[1:], [s[-1] for s in c.stage_block_out_channels]))),
])
def test_fixups(mt, check):
    cfg, _ = shrink_config(CONFIG_MAPPING[mt])
    assert check(cfg), cfg.to_dict()
