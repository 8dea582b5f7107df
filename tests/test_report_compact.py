"""The page's and matrix.json's JSON (hfmatrix/report/compact.py): NaN and inf stay visible as strings
and never make invalid JSON, with orjson and with the plain-json fallback alike."""
from __future__ import annotations

import json
import math

import pytest

from hfmatrix.report import compact


def _strict(text: str):
    """json.loads that refuses NaN/Infinity (what a browser's JSON.parse refuses)."""
    def refuse(name):
        raise ValueError(f"{name} in JSON")
    return json.loads(text, parse_constant=refuse)


def test_errors_and_measures_for_the_page() -> None:
    assert compact.err(None) is None and compact.err(1.23456e-7) == 1.23e-7
    assert compact.err(math.nan) == "NaN" and compact.err(math.inf) == "inf" and compact.err(-math.inf) == "inf"
    assert compact.round_floats({"a": [0.123456] * 100, 3: math.nan, "s": "x"}) == \
        {"a": [0.1235] * 64, "3": "nan", "s": "x"}                        # 4 digits, long lists cut, keys as text
    ms = compact.round_measures({"f": 2 / 3, "n": math.nan, "i": -math.inf, "k": 7, "b": True, "z": None,
                                 "l": [1 / 3, math.inf], "d": {"x": 1e-9 / 3}})
    assert ms == {"f": 0.6667, "n": "nan", "i": "-inf", "k": 7, "b": True, "z": None,
                  "l": [0.3333, "inf"], "d": {"x": 3.333e-10}}
    assert compact.clean((1.0, [math.nan], {1: math.inf})) == [1.0, ["nan"], {"1": "inf"}]


@pytest.fixture(params=["orjson", "json"])
def backend(request, monkeypatch):
    """Both writers: orjson where installed, else the stdlib fallback (orjson is an optional speed-up)."""
    if request.param == "orjson":
        if compact.orjson is None:
            pytest.skip("orjson is not installed: the fallback is the only writer here")
    else:
        monkeypatch.setattr(compact, "orjson", None)
    return request.param


def test_dumps_sorts_keys_and_keeps_nan_visible(backend) -> None:
    a, b = compact.dumps({"b": 1, "a": [math.nan]}), compact.dumps({"a": [math.nan], "b": 1})
    assert a == b                                                      # equal dicts intern to one string
    assert _strict(a) == {"a": ["nan"] if backend == "json" else [None], "b": 1}
    assert _strict(compact.dumps({"p": object()}))["p"].startswith("<object")   # default=str, not a crash


@pytest.mark.parametrize("indent", [False, True])
def test_documents_are_valid_json_with_nan_anywhere(backend, indent) -> None:
    doc = {"total": 1.5, "cells": [{"err": math.nan, "tol": math.inf}], "k": {2: "two"}}
    text = compact.dump_document(doc, indent=indent)
    got = _strict(text)                                                # never a bare NaN token
    assert got["total"] == 1.5 and got["k"] == {"2": "two"}
    assert got["cells"][0]["err"] in ("nan", None) and got["cells"][0]["tol"] in ("inf", None)
    assert ("\n" in text) is indent
    if backend == "json" or indent:
        assert got["cells"][0] == {"err": "nan", "tol": "inf"}        # NaN stays visible, not null
