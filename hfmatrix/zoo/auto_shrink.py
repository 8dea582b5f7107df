"""Generic shrink rules: any transformers config → a tiny config of the same model type.

The rules are data (``auto_rules.toml``); this module applies them to the config's dict form
(``to_dict()``, sub-configs nested as dicts) and rebuilds the config through ``from_dict`` — the
path a saved config.json takes — so derived attributes are recomputed by the config class itself.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ModuleNotFoundError:  # python < 3.11
    import tomli as tomllib  # type: ignore

RULES_FILE = Path(__file__).with_name("auto_rules.toml")
DISABLE_ENV = "HFMATRIX_AUTOZOO_DISABLE"


@dataclass(frozen=True)
class Rule:
    name: str
    keys: frozenset = frozenset()
    patterns: tuple = ()
    exclude: frozenset = frozenset()
    cap: int | None = None
    fill_lists: int | None = None
    set: Any = None
    has_set: bool = False
    #: the rule applies only in a config dict that also has one of these keys
    only_with: frozenset = frozenset()
    #: value for the attribute when its default is None (a size the config class leaves to the user)
    if_none: Any = None
    #: int lists are scaled so their smallest element is this, keeping their ratios (per-stage widths
    #: that double from stage to stage, where the model tells a stage change by the width changing)
    scale_min: int | None = None

    def matches(self, key: str, d: dict | None = None) -> bool:
        if key in self.exclude:
            return False
        if self.only_with and not (d is not None and self.only_with & d.keys()):
            return False
        return key in self.keys or any(p.search(key) for p in self.patterns)

    def apply(self, value: Any) -> Any:
        """New value for an attribute this rule owns (the value itself when the rule leaves it)."""
        if self.has_set:
            return self.set
        if value is None and self.if_none is not None:
            return self.if_none
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.cap is not None:
            return min(value, self.cap)
        if _is_int_list(value):
            if self.scale_min is not None and min(value) > self.scale_min:
                return [max(1, v * self.scale_min // min(value)) for v in value]
            if self.fill_lists is not None:
                return [self.fill_lists] * len(value)
            if self.cap is not None:
                return [min(v, self.cap) for v in value]
        return value


@dataclass
class Rules:
    rules: list[Rule]
    fixups: list[str]
    limits: dict[str, Any]
    head_mappings: list[str]
    arch_classes: list[dict[str, Any]]
    disabled: frozenset = frozenset()
    raw: dict[str, Any] = field(default_factory=dict)

    def active(self) -> list[Rule]:
        return [r for r in self.rules if r.name not in self.disabled]

    def rule_for(self, key: str, d: dict | None = None) -> Rule | None:
        for rule in self.rules:
            if rule.matches(key, d):
                return None if rule.name in self.disabled else rule
        return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_int_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(_is_int(x) for x in v)


def load_rules(path: Path | str | None = None, disabled: str | None = None) -> Rules:
    """Read auto_rules.toml; ``disabled`` (or $HFMATRIX_AUTOZOO_DISABLE) is a comma list of rule names."""
    with open(path or RULES_FILE, "rb") as fh:
        data = tomllib.load(fh)
    names = disabled if disabled is not None else os.environ.get(DISABLE_ENV, "")
    rules = []
    for entry in data.get("rule", []):
        rules.append(Rule(
            name=entry["name"], keys=frozenset(entry.get("keys", ())),
            patterns=tuple(re.compile(p) for p in entry.get("patterns", ())),
            exclude=frozenset(entry.get("exclude", ())), cap=entry.get("cap"),
            fill_lists=entry.get("fill_lists"), set=entry.get("set"), has_set="set" in entry,
            only_with=frozenset(entry.get("only_with", ())), if_none=entry.get("if_none"),
            scale_min=entry.get("scale_min")))
    seen = set()
    for r in rules:
        if r.name in seen:
            raise ValueError(f"{path or RULES_FILE}: duplicate rule name {r.name!r}")
        seen.add(r.name)
    fixups = list(data.get("fixups", {}).get("order", []))
    unknown = [f for f in fixups if f not in FIXUPS]
    if unknown:
        raise ValueError(f"{path or RULES_FILE}: unknown fixups {unknown}; known: {sorted(FIXUPS)}")
    return Rules(rules=rules, fixups=fixups, limits=dict(data.get("limits", {})),
                 head_mappings=list(data.get("heads", {}).get("mappings", [])), arch_classes=list(data.get("arch_class", [])),
                 disabled=frozenset(n.strip() for n in names.split(",") if n.strip()), raw=data)


@lru_cache(maxsize=4)
def default_rules(disabled: str | None = None) -> Rules:
    return load_rules(disabled=disabled if disabled is not None else os.environ.get(DISABLE_ENV, ""))


# ----------------------------------------------------------------------------- dict walking
def is_sub_config(key: str, value: Any) -> bool:
    return isinstance(value, dict) and ("model_type" in value or key.endswith("_config") or key.endswith("config"))


def sub_configs(d: dict) -> list[tuple[str, dict]]:
    """(key, dict) of nested configs, one level down."""
    return [(k, v) for k, v in d.items() if is_sub_config(k, v)]


def shrink_dict(d: dict, rules: Rules, fired: set[str] | None = None, path: str = "") -> dict:
    """Apply the rules and fixups to one config dict and, recursively, to its sub-config dicts."""
    fired = fired if fired is not None else set()
    original = dict(d)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if is_sub_config(key, value):
            out[key] = shrink_dict(value, rules, fired, f"{path}{key}.")
            continue
        if isinstance(value, list) and value and all(isinstance(x, dict) and "model_type" in x for x in value):
            out[key] = [shrink_dict(x, rules, fired, f"{path}{key}[{i}].") for i, x in enumerate(value)]
            continue
        rule = rules.rule_for(key, d)
        new = rule.apply(value) if rule else value
        if new != value:
            fired.add(rule.name)
        out[key] = new
    for name in rules.fixups:
        if name in rules.disabled:
            continue
        if FIXUPS[name](original, out, rules):
            fired.add(name)
    return out


# ----------------------------------------------------------------------------- fixups
# Each takes (original dict, shrunk dict, rules), edits the shrunk dict in place, returns True if it changed it.

_LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "decoder_layers", "encoder_layers")


def _fix_per_layer_lists(orig: dict, new: dict, rules: Rules) -> bool:
    """Per-layer lists (layer_types, block types, per-layer sizes, index lists) follow the new layer count.

    A list as long as the old layer count keeps one entry of each distinct kind (first occurrences,
    in order): a hybrid model keeps its attention *and* its mamba/linear layers, and the layer count
    grows to the number of kinds (at most 4) when two layers cannot hold them all. A sorted list of
    layer indices keeps the indices below the new count; a {layer index: ...} dict likewise.
    """
    changed = False
    for count_key in _LAYER_COUNT_KEYS:
        old_n, new_n = orig.get(count_key), new.get(count_key)
        if not (_is_int(old_n) and _is_int(new_n)) or new_n >= old_n or old_n <= 1:
            continue
        if isinstance(orig.get("depths"), list) and len(orig["depths"]) == old_n:
            continue  # swin-style: this "layer count" is the stage count; per-stage lists keep their length
        per_layer = {}
        for key, value in new.items():
            if key == count_key or key in _LAYER_COUNT_KEYS or not isinstance(value, list) or len(value) != old_n:
                continue
            rule = rules.rule_for(key, new)
            if rule is not None and rule.name in ("width", "stage-depths"):
                continue
            if _looks_like_indices(value, old_n):
                continue
            kinds = []
            for v in value:
                if v not in kinds:
                    kinds.append(v)
            per_layer[key] = kinds[:4]
        n = max([new_n] + [len(k) for k in per_layer.values()])
        if n != new_n:
            new[count_key] = n
            changed = True
        for key, kinds in per_layer.items():
            new[key] = [kinds[i % len(kinds)] for i in range(n)]
            changed = True
        for key, value in list(new.items()):
            if "out_indices" in key or "out_features" in key:
                continue  # backbone outputs: the backbone-stages fixup moves them
            if isinstance(value, list) and value and _looks_like_indices(value, old_n) and max(value) >= n:
                new[key] = [i for i in value if i < n]
                changed = True
            elif isinstance(value, dict) and value and all(str(k).isdigit() for k in value) \
                    and any(int(k) >= n for k in value):
                new[key] = {k: v for k, v in value.items() if int(k) < n}
                changed = True
    return changed


def _looks_like_indices(value: list, n: int) -> bool:
    return all(_is_int(v) and 0 <= v < n for v in value) and value == sorted(set(value)) and len(value) < n


def _fix_kv_heads(orig: dict, new: dict, rules: Rules) -> bool:
    changed = False
    for kv_key, v in list(new.items()):
        if not _is_int(v) or v <= 0 or not ("key_value_heads" in kv_key or kv_key.endswith("kv_heads")):
            continue
        prefix = kv_key.replace("num_key_value_heads", "").replace("key_value_heads", "").replace("num_kv_heads", "") \
            .replace("n_kv_heads", "").replace("kv_heads", "")
        for heads_key in (f"{prefix}num_attention_heads", f"{prefix}attention_heads", f"{prefix}num_heads",
                          "num_attention_heads", "n_head", "num_heads"):
            h = new.get(heads_key)
            if _is_int(h) and h > 0:
                kv = math.gcd(h, v)
                if kv != v:
                    new[kv_key] = kv
                    changed = True
                break
    return changed


def _fix_mla_head_dim(orig: dict, new: dict, rules: Rules) -> bool:
    nope, rope = new.get("qk_nope_head_dim"), new.get("qk_rope_head_dim")
    if _is_int(nope) and _is_int(rope) and "qk_head_dim" in new and new["qk_head_dim"] != nope + rope:
        new["qk_head_dim"] = nope + rope
        return True
    return False


def _fix_ssm_heads(orig: dict, new: dict, rules: Rules) -> bool:
    """Mamba2-style blocks need heads * head_dim == expand * hidden."""
    changed = False
    for heads_key, dim_key, expand_key, hidden_key in (
            ("num_heads", "head_dim", "expand", "hidden_size"),
            ("mamba_n_heads", "mamba_d_head", "mamba_expand", "hidden_size"),
            ("mamba_num_heads", "mamba_head_dim", "mamba_expand", "hidden_size"),
            ("ssm_num_heads", "ssm_head_dim", "expand", "hidden_size")):
        h, d, e, w = (new.get(k) for k in (heads_key, dim_key, expand_key, hidden_key))
        if not (_is_int(h) and _is_int(d) and isinstance(e, (int, float)) and _is_int(w)):
            continue
        inner = new["mamba_d_ssm"] if _is_int(new.get("mamba_d_ssm")) else int(e * w)
        if h * d != inner and inner % d == 0:
            new[heads_key] = inner // d
            changed = True
        groups = new.get("n_groups", new.get("mamba_n_groups"))
        if _is_int(groups) and groups > 0 and new[heads_key] % groups:
            new["n_groups" if "n_groups" in new else "mamba_n_groups"] = 1
            changed = True
    return changed


_TOKEN_KEY = re.compile(r"(token_id|token_ids|token_index|_token|^(im_start|im_end|im_newline|image_patch|frame_start|"
                        r"frame_end|tag_pad|subs_pad|codec_pad|codec_bos|codec_nothink|codec_think_bos|codec_think_eos|"
                        r"audio_stream_bos|audio_stream_eos)_id|_token_offset)$")


def token_keys(d: dict) -> list[str]:
    return [k for k in d if _TOKEN_KEY.search(k) and (_is_int(d[k]) or _is_int_list(d[k]))]


def _walk_dicts(d: dict):
    yield d
    for key, value in d.items():
        if is_sub_config(key, value):
            yield from _walk_dicts(value)
        elif isinstance(value, list):
            for x in value:
                if isinstance(x, dict) and "model_type" in x:
                    yield from _walk_dicts(x)


def remap_token_ids(root: dict) -> bool:
    """Token ids at or above the new vocab move to distinct ids at its top end, across the whole tree.

    One mapping for every (sub-)config: the same old id (an image token named at the top level and in
    the text config) stays the same id, distinct ids stay distinct, and ids already below the vocab
    are left alone and never reused.
    """
    dicts = list(_walk_dicts(root))
    vocabs = [d["vocab_size"] for d in dicts if _is_int(d.get("vocab_size")) and d["vocab_size"] > 8]
    if not vocabs:
        return False
    vocab = min(vocabs)

    def ids(d, k):
        return d[k] if isinstance(d[k], list) else [d[k]]
    entries = [(d, k) for d in dicts for k in token_keys(d)]
    old_ids = sorted({i for d, k in entries for i in ids(d, k) if i >= vocab})
    if not old_ids:
        return False
    taken = {i for d, k in entries for i in ids(d, k) if 0 <= i < vocab}
    mapping, candidate = {}, vocab - 1
    for old in old_ids:
        while candidate in taken:
            candidate -= 1
        mapping[old] = candidate
        taken.add(candidate)
        candidate -= 1
    for d, k in entries:
        v = d[k]
        d[k] = [mapping.get(i, i) for i in v] if isinstance(v, list) else mapping.get(v, v)
    return True


def _fix_token_ids(orig: dict, new: dict, rules: Rules) -> bool:
    return False  # applied once over the whole config tree by shrink_config (remap_token_ids)


def _fix_backbone_stages(orig: dict, new: dict, rules: Rules) -> bool:
    """Backbone outputs (out_indices / out_features) name stages that still exist after the layer cut.

    A backbone that fed k stages to its neck keeps feeding k: its last k stages, the layer count
    raised to k where needed (DPT-style necks read four).
    """
    count_key = next((k for k in ("num_hidden_layers", "num_layers") if _is_int(new.get(k)) and _is_int(orig.get(k))), None)
    if count_key is None or new[count_key] >= orig[count_key]:
        return False
    changed = False
    bidx = new.get("backbone_out_indices")
    if _is_int_list(bidx) and max(bidx) >= new[count_key]:  # DPT: hidden-state indices read by the neck
        n = max(new[count_key], len(bidx))
        new[count_key] = n
        new["backbone_out_indices"] = list(range(n - len(bidx), n))
        changed = True
    idx = new.get("out_indices")
    feats = new.get("out_features")
    k = len(idx) if isinstance(idx, list) and idx else len(feats) if isinstance(feats, list) and feats else 0
    if not k:
        return changed
    n = max(new[count_key], k)
    new[count_key] = n
    stages = list(range(n - k + 1, n + 1))
    if isinstance(idx, list) and idx:
        new["out_indices"] = stages
    if isinstance(feats, list) and feats:
        new["out_features"] = [f"stage{i}" for i in stages]
    if isinstance(new.get("stage_names"), list):
        new["stage_names"] = ["stem"] + [f"stage{i}" for i in range(1, n + 1)]
    return True


def _head_dim(d: dict) -> int | None:
    """The attention head size of a config dict: head_dim, else hidden_size // num_attention_heads."""
    hidden, heads = d.get("hidden_size"), d.get("num_attention_heads")
    if _is_int(d.get("head_dim")):
        return d["head_dim"]
    return hidden // heads if _is_int(hidden) and _is_int(heads) and heads else None


def _fix_rope_sections(orig: dict, new: dict, rules: Rules) -> bool:
    """Multimodal RoPE sections (t, h, w) must add up to head_dim / 2 of the shrunk attention."""
    changed = False
    for key in ("rope_parameters", "rope_scaling"):
        rp = new.get(key)
        if not isinstance(rp, dict) or not _is_int_list(rp.get("mrope_section")):
            continue
        head_dim = _head_dim(new)
        if not head_dim:
            continue
        factor = new.get("partial_rotary_factor", rp.get("partial_rotary_factor", 1.0)) or 1.0
        sections, target = rp["mrope_section"], int(head_dim * factor) // 2
        if sum(sections) == target:
            continue
        scaled = [max(1, s * target // sum(sections)) for s in sections]
        scaled[0] += target - sum(scaled)
        if scaled[0] < 1:
            continue
        new[key] = {**rp, "mrope_section": scaled}
        changed = True
    return changed


def _fix_hierarchical_resolution(orig: dict, new: dict, rules: Rules) -> bool:
    """Swin-style stages halve the patch grid; the last stage must still hold one attention window,
    so the image grows to patch * window * 2**(stages - 1) (64 px for patch 4, window 2, 4 stages)."""
    depths, window, size, patch = (new.get(k) for k in ("depths", "window_size", "image_size", "patch_size"))
    if not (isinstance(depths, list) and depths and _is_int(window) and _is_int(size) and _is_int(patch)):
        return False
    need = patch * window * 2 ** (len(depths) - 1)
    if size >= need:
        return False
    new["image_size"] = need
    return True


def _side(v: Any) -> int | None:
    return v if _is_int(v) else (v[0] if _is_int_list(v) else None)


def _grid(backbone: dict) -> float | None:
    """Patch-grid side of a (SAM-style) image backbone config: image side / patch (or patch stride)."""
    side, patch = _side(backbone.get("image_size")), _side(backbone.get("patch_size") or backbone.get("patch_stride"))
    return side / patch if side and patch else None


def _fix_feature_map_sizes(orig: dict, new: dict, rules: Rules) -> bool:
    """SAM2/SAM3-style vision configs list the backbone's feature-map sizes ([[256, 256], ...] for a
    1024 px image); they follow the backbone's patch grid, which the image and patch rules shrank."""
    sizes = new.get("backbone_feature_sizes")
    before, after = (_grid(d.get("backbone_config") or {}) for d in (orig, new))
    if not (isinstance(sizes, list) and sizes and before and after and after < before):
        return False
    new["backbone_feature_sizes"] = [[max(1, round(x * after / before)) for x in pair] for pair in sizes]
    return new["backbone_feature_sizes"] != sizes


def _fix_prompt_grid(orig: dict, new: dict, rules: Rules) -> bool:
    """A SAM prompt encoder's image_size / patch_size is the grid of the image embeddings the mask decoder
    adds its dense prompt to: the vision config's last feature map, or its own patch grid (SAM 1)."""
    pe, vision = new.get("prompt_encoder_config"), new.get("vision_config")
    if not (isinstance(pe, dict) and isinstance(vision, dict) and _is_int(pe.get("image_size"))):
        return False
    sizes = vision.get("backbone_feature_sizes")
    grid = _side(sizes[-1]) if isinstance(sizes, list) and sizes else _grid(vision)
    if not grid or pe["image_size"] % int(grid):
        return False
    want = {"patch_size": pe["image_size"] // int(grid)}
    if "image_embedding_size" in pe:  # SAM 1 states the grid itself
        want["image_embedding_size"] = int(grid)
    if all(pe.get(k) == v for k, v in want.items()):
        return False
    pe.update(want)
    return True


def _fix_wide_rope(orig: dict, new: dict, rules: Rules) -> bool:
    """A partial_rotary_factor above 1 spans more than one head: the rotary table is sized to the model
    width (EfficientLoFTR's 2D RoPE: head_dim * factor == hidden_size / 2), so the factor keeps that
    ratio when heads and width shrink by different amounts."""
    holder = new.get("rope_parameters") if isinstance(new.get("rope_parameters"), dict) else new
    factor = holder.get("partial_rotary_factor")
    hd0, hd1 = _head_dim(orig), _head_dim(new)
    if not (isinstance(factor, (int, float)) and factor > 1 and hd0 and hd1
            and _is_int(orig.get("hidden_size")) and _is_int(new.get("hidden_size"))):
        return False
    wanted = factor * hd0 / orig["hidden_size"] * new["hidden_size"] / hd1
    if wanted == factor:
        return False
    holder["partial_rotary_factor"] = wanted
    return True


def _scaled(value: Any, num: int, den: int) -> Any:
    if _is_int(value):
        return max(1, value * num // den) if value > 1 else value  # 1 is an input channel, not a width
    if isinstance(value, list):
        return [_scaled(v, num, den) for v in value]
    return value


def _fix_channels_follow_width(orig: dict, new: dict, rules: Rules) -> bool:
    """Backbones whose per-block channel lists end in the model width (EfficientLoFTR: the last stage's
    channels are hidden_size) scale all their channel lists by the width's shrink factor, keeping every
    in/out pair consistent. Keys and the key that marks such a config are data ([channels_follow_width])."""
    spec = rules.raw.get("channels_follow_width", {})
    before, after = orig.get("hidden_size"), new.get("hidden_size")
    if not (set(spec.get("when", ())) & new.keys() and _is_int(before) and _is_int(after) and after < before):
        return False
    changed = False
    for key in spec.get("keys", ()):
        if key in orig:
            value = _scaled(orig[key], after, before)
            changed |= value != new.get(key)
            new[key] = value
    return changed


_FEATURE_LAYER_KEYS = ("vision_feature_layer", "vision_feature_layers", "feature_layers", "select_layer",
                       "mm_vision_select_layer", "vision_feature_layer_indices")


def clamp_feature_layers(root: dict) -> bool:
    """Indices of vision layers whose features a projector reads (vipllava's [-2, -5, -8, -11, 6])
    point at layers that still exist: positive ones at most the last layer, negative ones at most
    the embedding output. The number of indices (the projector's input width) is kept."""
    layers = None
    for d in _walk_dicts(root):
        for key in ("vision_config", "vision_tower_config"):
            sub = d.get(key)
            if isinstance(sub, dict) and _is_int(sub.get("num_hidden_layers")):
                layers = sub["num_hidden_layers"]
    if layers is None:
        return False
    changed = False

    def clamp(i):
        return min(i, layers - 1) if i >= 0 else max(i, -(layers + 1))
    for d in _walk_dicts(root):
        for key in _FEATURE_LAYER_KEYS:
            v = d.get(key)
            new = clamp(v) if _is_int(v) else [clamp(i) for i in v] if _is_int_list(v) else v
            if new != v:
                d[key] = new
                changed = True
    return changed


def _fix_feature_layers(orig: dict, new: dict, rules: Rules) -> bool:
    return False  # needs the vision layer count from a sibling sub-config: shrink_config runs clamp_feature_layers


def _fix_layout_2d(orig: dict, new: dict, rules: Rules) -> bool:
    c, sh, w = new.get("coordinate_size"), new.get("shape_size"), new.get("hidden_size")
    if not (_is_int(c) and _is_int(sh) and _is_int(w)) or 4 * c + 2 * sh == w:
        return False
    new["coordinate_size"] = w // 6
    new["shape_size"] = (w - 4 * (w // 6)) // 2
    return 4 * new["coordinate_size"] + 2 * new["shape_size"] == w


FIXUPS: dict[str, Callable[[dict, dict, Rules], bool]] = {
    "feature-map-sizes": _fix_feature_map_sizes,
    "prompt-grid": _fix_prompt_grid,
    "channels-follow-width": _fix_channels_follow_width,
    "wide-rope": _fix_wide_rope,
    "layout-2d": _fix_layout_2d,
    "feature-layers": _fix_feature_layers,
    "hierarchical-resolution": _fix_hierarchical_resolution,
    "backbone-stages": _fix_backbone_stages,
    "rope-sections": _fix_rope_sections,
    "per-layer-lists": _fix_per_layer_lists,
    "kv-heads-divide": _fix_kv_heads,
    "mla-head-dim": _fix_mla_head_dim,
    "ssm-heads": _fix_ssm_heads,
    "token-ids": _fix_token_ids,
}


# ----------------------------------------------------------------------------- config
_MROPE_DEFAULT = re.compile(r"get\(\s*[\"']mrope_section[\"']\s*,\s*\[([\d,\s]+)\]")


def code_mrope_default(config_class) -> list[int] | None:
    """The mrope_section a model's code falls back to when its config names none (read from its source)."""
    import importlib
    import inspect as _inspect
    try:
        mod = importlib.import_module(config_class.__module__.replace(".configuration_", ".modeling_"))
        source = _inspect.getsource(mod)
    except Exception:
        return None
    found = _MROPE_DEFAULT.search(source)
    if not found:  # modular models reuse another model's rotary class: look there too
        for other in re.findall(r"from \.\.(\w+)\.modeling_\w+ import", source):
            try:
                found = _MROPE_DEFAULT.search(_inspect.getsource(importlib.import_module(
                    f"transformers.models.{other}.modeling_{other}")))
            except Exception:
                continue
            if found:
                break
    return [int(x) for x in found.group(1).split(",") if x.strip()] if found else None


def _add_code_mrope(root: dict, config_class) -> bool:
    """Give each (sub-)config the RoPE sections its model code falls back to, explicitly, so the
    rope-sections fixup can scale them to the new head_dim."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    changed = False
    for d in _walk_dicts(root):
        rp = d.get("rope_parameters")
        if not (isinstance(rp, dict) and "mrope_section" not in rp and _is_int(d.get("num_attention_heads"))):
            continue
        cls = CONFIG_MAPPING[d["model_type"]] if d.get("model_type") in CONFIG_MAPPING else config_class
        default = code_mrope_default(cls) or (code_mrope_default(config_class) if cls is not config_class else None)
        if default:
            d["rope_parameters"] = {**rp, "mrope_section": list(default)}
            changed = True
    return changed


def shrink_config(config_class, rules: Rules | None = None):
    """(tiny config, names of the rules and fixups that changed something)."""
    rules = rules or default_rules()
    base = config_class()
    fired: set[str] = set()
    original = base.to_dict()
    if "rope-sections" in rules.fixups and "rope-sections" not in rules.disabled:
        _add_code_mrope(original, config_class)
    small = shrink_dict(original, rules, fired)
    if "token-ids" in rules.fixups and "token-ids" not in rules.disabled and remap_token_ids(small):
        fired.add("token-ids")
    if "feature-layers" in rules.fixups and "feature-layers" not in rules.disabled and clamp_feature_layers(small):
        fired.add("feature-layers")
    small.pop("transformers_version", None)
    return config_class.from_dict(small), sorted(fired)
